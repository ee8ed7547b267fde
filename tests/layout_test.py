"""The package's layout rules, checked on its source."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mre_jax"
MAX_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

# The package's layers, bottom up. A module may import its own folder and
# the layers below its own; the commands at the top may also import each
# other, without circles. Each name is a folder of mre_jax/ or, for
# "commands", a module or package at its top.
LAYERS = (
    ("errors",),
    ("cli", "config", "runtime"),
    ("models", "data"),
    ("datasets", "workdir"),
    ("evaluation", "inference"),
    ("training", "analysis"),
    ("commands",),
)
# What a user runs, as python -m mre_jax.<command> (benchmarks: each of its
# modules); demo runs through main (--config=configs/demo.py).
COMMANDS = ("main", "analyze", "study", "export", "convert", "report", "demo",
            "pretrained", "reproduce", "benchmarks")
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _imports(path: pathlib.Path) -> set[str]:
  """The modules ``path`` imports: ``from a import b`` gives ``a.b`` where
  that is a module, else ``a``."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        found.add(sub if sub in MODULES else node.module)
  return found


def _unit(name: str) -> str:
  """The folder (or top-level module) of mre_jax that ``name`` is in."""
  return name.split(".")[1] if name.count(".") else "mre_jax"


def _layer(unit: str) -> int:
  return LAYER["commands"] if unit in COMMANDS else LAYER[unit]


def test_the_top_holds_only_commands_and_the_foundation():
  top = {_unit(n) for n in MODULES} - {"mre_jax"}
  unknown = sorted(top - set(COMMANDS) - set(LAYER))
  assert not unknown, f"not in a layer nor a command: {unknown}"
  modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  assert modules <= set(COMMANDS) | {"errors", "cli"}, sorted(
      modules - set(COMMANDS) - {"errors", "cli"})
  for name in COMMANDS:
    path = PACKAGE / f"{name}.py"
    if name != "demo":
      files = [path] if path.is_file() else (PACKAGE / name).glob("*.py")
      assert any('__name__ == "__main__"' in f.read_text() or
                 f.name == "__main__.py" for f in files), (
                     f"python -m mre_jax.{name}[.<module>] runs nothing")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name):
  unit = _unit(name)
  if unit == "mre_jax":
    return
  upward = sorted(
      i for i in _imports(MODULES[name]) if i in MODULES and
      _unit(i) not in (unit, "mre_jax") and (
          _layer(_unit(i)) > _layer(unit) or
          (_layer(_unit(i)) == _layer(unit) and unit not in COMMANDS)))
  assert not upward, f"{name} imports {upward}, not below {unit}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One circle in ``graph``, or None."""
  state, path = {}, []

  def visit(node):
    state[node] = "open"
    path.append(node)
    for succ in sorted(graph.get(node, ())):
      if state.get(succ) == "open":
        return path[path.index(succ):] + [succ]
      if succ not in state:
        found = visit(succ)
        if found:
          return found
    path.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_circles_between_modules_or_commands():
  modules = {n: {i for i in _imports(p) if i in MODULES and i != n}
             for n, p in MODULES.items()}
  assert _cycle(modules) is None, " -> ".join(_cycle(modules))
  commands = {}
  for name, targets in modules.items():
    if _unit(name) in COMMANDS:
      commands.setdefault(_unit(name), set()).update(
          _unit(t) for t in targets
          if _unit(t) in COMMANDS and _unit(t) != _unit(name))
  assert _cycle(commands) is None, " -> ".join(_cycle(commands))


def _closure(name: str) -> set[str]:
  """Every mre_jax module reachable from ``name`` through imports."""
  seen, todo = set(), [name]
  while todo:
    current = todo.pop()
    if current in seen or current not in MODULES:
      continue
    seen.add(current)
    todo.extend(i for i in _imports(MODULES[current]) if i in MODULES)
  return seen


@pytest.mark.parametrize("name", sorted(
    n for n in MODULES if n.startswith(("mre_jax.evaluation",
                                        "mre_jax.inference"))))
def test_evaluation_and_inference_never_import_training(name):
  training = sorted(m for m in _closure(name)
                    if m.startswith("mre_jax.training"))
  assert not training, f"{name} imports {training}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_reaches_into_configs_or_sys_path(name):
  source = MODULES[name].read_text()
  assert not any(i == "configs" or i.startswith("configs.")
                 for i in _imports(MODULES[name])), name
  assert "sys.path" not in source, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
  lines = len(MODULES[name].read_text().splitlines())
  assert lines <= MAX_LINES, f"{name} has {lines} lines"
