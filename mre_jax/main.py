"""Command line: train, evaluate or export teacher logits for one config.

    python -m mre_jax.main --config=configs/studentA.py:fer2013,exp=E1 \\
        --workdir=runs/E1 [--mode=train|evaluate|export_logits] \\
        [--config.some.field=value ...]

Multi-process runs are detected under SLURM and Open MPI, or described by
``--coordinator_address``, ``--num_processes`` and ``--process_id``.

Errors in the user's input (flags, config files and overrides, data,
checkpoints) end with one ``error:`` message, exit status 2. A run stopped by
Ctrl-C or SIGTERM ends with one line, exit status 130.
"""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mre_jax.errors import DatasetError, Interrupted, UserError
from mre_jax.runtime import distributed
from mre_jax.runtime import host_memory

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/studentA.py:fer2013,exp=E1.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
flags.DEFINE_enum("mode", "train", ["train", "evaluate", "export_logits"],
                  "train (then evaluate the best checkpoint), evaluate a "
                  "checkpoint, or export a student's teacher logits.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs: process 0's HOST:PORT (same on every "
                    "process). Not needed under SLURM or Open MPI.")
flags.DEFINE_integer("num_processes", None,
                     "Multi-process runs: the number of processes.")
flags.DEFINE_integer("process_id", None,
                     "Multi-process runs: this process's id, 0 to "
                     "num_processes - 1.")
flags.mark_flags_as_required(["config", "workdir"])

DEMO_HINT = ("To try mre_jax without any download, run the offline demo: "
             "python -m mre_jax.main --config=configs/demo.py "
             "--workdir=/tmp/mre_demo")


def run(config, workdir: str, mode: str) -> None:
  """Dispatches one command; raises UserError for bad input.

  Evaluation needs only the workdir's checkpoint and the data: it never
  imports the training code.
  """
  # Imported here so that flag and config errors come before JAX starts.
  # pylint: disable=g-import-not-at-top
  if config.get("workflow") == "demo":
    from mre_jax import demo
    demo.run(config, workdir, mode)
  elif mode == "evaluate":
    from mre_jax.evaluation import evaluator
    evaluator.evaluate_config(config, workdir)
  elif mode == "train":
    from mre_jax.training import trainer
    trainer.train_and_evaluate(config, workdir)
  else:
    from mre_jax.config import config_lib
    from mre_jax.training import teacher_logits
    config_lib.validate(config)
    teacher_logits.export_command(config, workdir)


INTERRUPTED = ("interrupted: checkpoints saved before the interruption are "
               "kept; rerun the same command to continue.")


def main(argv) -> None:
  del argv  # Checked by parse_flags.
  host_memory.keep_freed_memory()
  logging.set_verbosity(logging.INFO)
  # On the handler, so that it also sees the records of libraries that log
  # through Python's logging (JAX's backend probing) rather than absl.
  logging.get_absl_handler().addFilter(_progress_only)
  try:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                           FLAGS.process_id)
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except DatasetError as e:
    _fail(f"{e}\n{DEMO_HINT}")
  except UserError as e:
    _fail(str(e))
  except Interrupted as e:
    _stop(str(e))
  except KeyboardInterrupt:
    _stop(INTERRUPTED)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _progress_only(record) -> bool:
  """Keeps our INFO lines and every warning; drops libraries' INFO lines
  (e.g. JAX's "Unable to initialize backend 'tpu'" while probing)."""
  return (record.levelno >= std_logging.WARNING or
          os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _stop(message: str) -> None:
  """Ends an interrupted run with one line and the shell's Ctrl-C status."""
  print(" ".join(message.split()), file=sys.stderr)
  sys.exit(130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every mistake as one ``error:`` line."""
  try:
    argv = FLAGS(argv)
    FLAGS.config.get("workflow")  # A file that failed to load raises here.
  except flags.Error as e:
    _fail(_flag_error(str(e)))
  except UserError as e:  # Raised by a config file's get_config.
    _fail(str(e))
  except SyntaxError as e:
    _fail(f"could not load --config: {e.filename}, line {e.lineno}: {e.msg}")
  except ImportError as e:  # A config file's own imports failed.
    _fail(f"could not load --config: {e}\nConfig files build on "
          "mre_jax.config.recipe and import nothing else from the repository.")
  except BrokenPipeError:  # --help piped into head.
    raise
  except OSError as e:
    _fail(f"could not load --config: {_last_line(str(e))}\nConfig files "
          "live in configs/, e.g. --config=configs/studentA.py:fer2013,exp=E1")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    _fail(_override_problem(e, argv))
  if len(argv) > 1:
    _fail(f"unexpected argument(s) {' '.join(argv[1:])}: every argument is a "
          "flag such as --workdir=DIR; see --helpshort")
  return argv


def _flag_error(message: str) -> str:
  """absl's message for a bad flag, as one line without its traceback."""
  required = re.search(r"Flag --(\w+) must have a value other than None",
                       message)
  if required:
    name = required.group(1)
    return f"--{name} is required: {FLAGS[name].help}"
  if "Traceback (most recent call last)" in message:  # From get_config.
    return f"could not load --config: {_last_line(message)}"
  return " ".join(message.removeprefix("flag ").split())


def _override_problem(error: Exception, argv: list[str]) -> str:
  """Names the override of an unknown field, e.g. --config.dataset.bogus=1."""
  problem = _override_error(error)
  first, _, hint = problem.partition("\n")  # Hint: "Did you mean ...?"
  field = first.strip("'\"")
  problem = " ".join(problem.split())
  for arg in argv[1:]:
    path = re.match(r"--?(?:no)?config\.([\w.]+)", arg)
    names = path.group(1).split(".") if path else []
    if field in names:
      parent = ".".join(["config", *names[:names.index(field)]])
      hint = " ".join(hint.split())
      return f"{arg}: {parent} has no field {field!r}" + (
          f". {hint}" if hint else "")
  if any(re.match(r"--?(?:no)?config\.", arg) for arg in argv[1:]):
    return f"bad --config override: unknown field or wrong type: {problem}"
  # Without overrides it is a bug in the file's get_config.
  return f"could not load --config: {type(error).__name__}: {problem}"


def _last_line(message: str) -> str:
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[-1] if lines else message


def _override_error(error: Exception) -> str:
  """The readable message inside ml_collections' nested lookup errors."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  return str(error.args[0]) if error.args else str(error)


def entry_point() -> None:
  """Runs main; mistakes found while parsing flags end in one message."""
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:  # While a config file loads, say.
    _stop(INTERRUPTED)


if __name__ == "__main__":
  entry_point()
