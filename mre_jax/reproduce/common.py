"""What the reproduction driver (:mod:`mre_jax.reproduce`) and its step
processes (:mod:`mre_jax.reproduce.steps`) share: the steps, their options
and files, and child processes bounded in time."""


from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags

from mre_jax import cli
from mre_jax.errors import Interrupted, UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TINY_ENV = "MRE_JAX_REPRODUCE_TINY"
LOGITS = "teacher_logits.npz"
DATA_FOLDERS = {"fer2013": "fer2013", "raf_db": "rafdb"}
KILL_GRACE_S = 10.0  # From SIGTERM at a budget's end to SIGKILL.


class ReproduceError(UserError):
  """A bad step, budget or data folder, or a step's missing input."""


@dataclasses.dataclass(frozen=True)
class Step:
  """A step: its default budget and, for training, config and input."""
  name: str
  budget_s: float
  config: str = ""  # A file in configs/.
  arg: str = ""  # Its argument, dataset first.
  needs: str = ""  # The step whose teacher logits it distils.
  reserve_s: float = 0.0  # Kept after training; at most 40% of the budget.

  @property
  def dataset(self) -> str:
    return self.arg.split(",")[0]


STEPS = {s.name: s for s in (
    Step("bench", 180),
    Step("teacher_fer", 480, "teacher.py", "fer2013", reserve_s=75),
    Step("teacher_raf", 240, "teacher.py", "raf_db", reserve_s=60),
    Step("e1", 240, "studentA.py", "fer2013,exp=E1", "teacher_fer", 45),
    Step("e4", 240, "studentB.py", "fer2013,exp=E4", "teacher_fer", 45),
)}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined when it runs: importing this module
  defines none, so it can share a process with other commands."""
  flags.DEFINE_string("outdir", None, "Where the results and manifest.json go.")
  flags.DEFINE_list("steps", list(STEPS), f"Steps to run, of {list(STEPS)}.")
  flags.DEFINE_string("data", "../shared/data", "Folder holding fer2013/ and "
                      "rafdb/ with the downloaded archives (or files).")
  flags.DEFINE_string("workdirs", os.path.join(
      os.environ.get("TMPDIR", "/tmp"), "mre_jax_reproduce"), "Scratch "
      "folder: workdirs, prepared datasets, caches. Each step starts its "
      "workdir anew.")
  flags.DEFINE_list("budget_s", [], "Seconds per step: a number for every "
                    "step and/or STEP=SECONDS. Default: " + ", ".join(
                        f"{s.name}={s.budget_s:g}" for s in STEPS.values()))
  flags.DEFINE_list("epochs", [], "Epochs per training step, given like "
                    "--budget_s. Default: the recipe's (1 with --tiny).")
  flags.DEFINE_string("inputs", None, "Folder with earlier steps' outputs "
                      "(teacher_fer/teacher_logits.npz). Default: --outdir.")
  flags.DEFINE_string("install_wheels", "", "Folder of wheels to install "
                      "into <workdirs>/site if a requirement is missing "
                      "(mre_jax.runtime.offline_install.NEEDED).")
  flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"],
                    "Compute dtype. auto: bfloat16, float32 with --tiny.")
  flags.DEFINE_bool("tiny", os.environ.get(TINY_ENV, "") not in ("", "0"),
                    f"Tiny steps, for a check on a CPU (also {TINY_ENV}=1).")


def parse_steps(names: list[str]) -> list[Step]:
  """The named steps in the driver's order; raises for unknown names."""
  unknown = [n for n in names if n not in STEPS]
  if unknown or not names:
    raise ReproduceError(f"unknown step(s) {unknown or names}: expected some "
                         f"of {','.join(STEPS)}")
  return [s for s in STEPS.values() if s.name in names]


def per_step(values: list[str], default: dict[str, float], flag: str,
             parse: Callable[[str], float] = float,
             steps: Sequence[str] = tuple(STEPS)) -> dict[str, float]:
  """``["60", "e1=30"]``: 30 for e1, 60 for every other step. Values are
  read with ``parse``, finite and positive; named steps among ``steps``."""
  named = {}
  for item in values:
    name, _, value = item.rpartition("=")
    if name and name not in steps:
      raise ReproduceError(f"--{flag}={item}: unknown step {name!r}; expected "
                           f"one of {','.join(steps)}")
    try:
      named[name] = parse(value)
    except ValueError:
      named[name] = 0.0
    if not 0 < named[name] < math.inf:
      kind = "whole" if parse is int else "finite"
      raise ReproduceError(f"--{flag}={item}: expected a positive {kind} "
                           "number or STEP=NUMBER")
  everyone = named.pop("", None)
  return {s: named.get(s, everyone or default[s]) for s in STEPS}


@dataclasses.dataclass(frozen=True)
class Options:
  """The flags, shared by the driver and its step processes."""
  outdir: str
  data: str
  workdirs: str
  inputs: str
  tiny: bool
  dtype: str
  budgets: dict[str, float]
  epochs: dict[str, int]  # Training steps not named: the recipe's.

  @classmethod
  def from_flags(cls) -> Options:
    if not FLAGS.outdir:
      raise ReproduceError("--outdir is required: the folder for the results")
    tiny = FLAGS.tiny
    epochs = per_step(FLAGS.epochs, dict.fromkeys(STEPS, int(tiny)), "epochs",
                      int, [s for s in STEPS if s != "bench"])
    return cls(
        outdir=os.path.abspath(FLAGS.outdir), data=os.path.abspath(FLAGS.data),
        workdirs=os.path.abspath(FLAGS.workdirs),
        inputs=os.path.abspath(FLAGS.inputs or FLAGS.outdir), tiny=tiny,
        dtype=(FLAGS.dtype if FLAGS.dtype != "auto" else
               "float32" if tiny else "bfloat16"),
        budgets=per_step(FLAGS.budget_s,
                         {s.name: s.budget_s for s in STEPS.values()},
                         "budget_s"),
        epochs={s: int(e) for s, e in epochs.items() if e and s != "bench"})

  def argv(self, step: str) -> list[str]:
    """The flags that run ``step`` alone with these options."""
    args = [f"--outdir={self.outdir}", f"--steps={step}",
            f"--data={self.data}", f"--workdirs={self.workdirs}",
            f"--inputs={self.inputs}", f"--dtype={self.dtype}",
            f"--budget_s={step}={self.budgets[step]:g}"]
    if step in self.epochs:
      args.append(f"--epochs={step}={self.epochs[step]}")
    return args + (["--tiny"] if self.tiny else [])

  def data_folder(self, step: Step) -> str:
    return os.path.join(self.data, DATA_FOLDERS[step.dataset])

  def logits_input(self, step: Step) -> str:
    return os.path.join(self.inputs, step.needs, LOGITS)

  def check_inputs(self, step: Step) -> None:
    """Raises ReproduceError when the step's data or logits are missing."""
    if step.dataset and not os.path.isdir(self.data_folder(step)):
      raise ReproduceError(
          f"no {step.dataset} data: {self.data_folder(step)} does not exist; "
          "--data must hold fer2013/ and rafdb/ with the downloaded archives")
    if step.needs and not os.path.isfile(self.logits_input(step)):
      raise ReproduceError(
          f"{self.logits_input(step)} does not exist: run step {step.needs} "
          "first, or pass --inputs=DIR holding its outputs")


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` atomically: a killed step leaves whole files."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=2)
  os.replace(path + ".tmp", path)


def read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def run_bounded(argv: list[str], log_path: str, deadline: float,
                env: dict[str, str]) -> tuple[int | None, str]:
  """Runs ``argv`` until ``deadline``, its output appended to ``log_path``
  and echoed. Returns its exit status (None: killed at the deadline) and its
  last ``error:`` line, else its last line."""
  lines = []
  with open(log_path, "a") as log:
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO, env=env,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # Kill its children too.

    def pump():
      for line in proc.stdout:
        log.write(line)
        log.flush()
        sys.stdout.write(line)
        if line.strip():
          lines[:] = lines[-99:] + [line.strip()]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = None
    try:
      status = proc.wait(timeout=max(deadline - time.time(), 0.1))
    except subprocess.TimeoutExpired:
      pass
    finally:  # Also when this driver is stopped.
      for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 30)):
        if status is not None or proc.poll() is not None:
          break
        os.killpg(proc.pid, sig)
        try:
          proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
          pass
      reader.join(timeout=5)
  errors = [l for l in lines if l.startswith("error:")]
  return status, (errors or lines or ["no output"])[-1]


def child_env(opts: Options) -> dict[str, str]:
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75")
  # Steps (and evaluation after training) compile some of the same
  # programs: compile each once.
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 os.path.join(opts.workdirs, "jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (REPO, env.get("PYTHONPATH")) if p)
  if opts.tiny:  # Tiny steps mostly compile: XLA's cheapest level is ~5x
    # faster at it on a CPU.
    env["XLA_FLAGS"] = " ".join(
        [env.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
    ).strip()
  return env


def timestamp(t: float) -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def run(main_fn, define=define_flags) -> None:
  """Defines the flags and runs ``main_fn`` under absl; a user's mistake ends
  it with one ``error:`` line (status 2), an interruption with one line
  (status 130)."""

  def checked(argv: list[str]) -> None:
    try:
      main_fn(argv)
    except UserError as e:
      cli.fail(str(e))
    except (Interrupted, KeyboardInterrupt) as e:
      print(" ".join(str(e).split()) or "interrupted", file=sys.stderr,
            flush=True)
      sys.exit(130)

  define()
  app.run(checked, flags_parser=cli.parse_or_fail)
