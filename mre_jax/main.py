"""Command line: train, evaluate or export teacher logits for one config.

    python -m mre_jax.main --config=configs/studentA.py:fer2013,exp=E1 \\
        --workdir=runs/E1 [--mode=train|evaluate|export_logits] \\
        [--config.some.field=value ...]

Multi-process runs are detected under SLURM and Open MPI, or described by
``--coordinator_address``, ``--num_processes`` and ``--process_id``.

Errors in the user's input end with one ``error:`` message, exit status 2.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mre_jax import distributed
from mre_jax.errors import DatasetError, UserError

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
    from mre_jax import config_lib
    from mre_jax.training import teacher_logits
    config_lib.validate(config)
    teacher_logits.export_command(config, workdir)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_logger().addFilter(_progress_only)
  try:
    FLAGS.config.get("workflow")  # A file that failed to load raises here.
  except OSError as e:
    _fail(f"could not load --config: {e}\nConfig files live in configs/, "
          "e.g. --config=configs/studentA.py:fer2013,exp=E1")
  try:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                           FLAGS.process_id)
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except DatasetError as e:
    _fail(f"{e}\n{DEMO_HINT}")
  except UserError as e:
    _fail(str(e))


def _progress_only(record) -> bool:
  """Keeps our INFO lines and libraries' warnings; drops libraries' INFO."""
  return (record.levelno >= std_logging.WARNING or
          f"{os.sep}mre_jax{os.sep}" in record.pathname)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _override_error(error: Exception) -> str:
  """The readable message inside ml_collections' nested lookup errors."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  return str(error.args[0]) if error.args else str(error)


def entry_point() -> None:
  """Runs main; config mistakes found while parsing end in one message."""
  try:
    app.run(main)
  except UserError as e:  # Raised by a config file's get_config.
    _fail(str(e))
  except ImportError as e:  # A config file's own imports failed.
    _fail(f"could not load --config: {e}\nConfig files build on "
          "mre_jax.recipe and import nothing else from the repository.")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if FLAGS.is_parsed():
      raise
    _fail("bad --config override: unknown field or wrong type: "
          f"{_override_error(e)}")


if __name__ == "__main__":
  entry_point()
