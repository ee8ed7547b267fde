"""The package's layout rules, checked on its source."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mre_jax"
MAX_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
  """The modules ``path`` imports, ``from a import b`` giving ``a.b``."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found.update(f"{node.module}.{alias.name}" for alias in node.names)
  return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


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
