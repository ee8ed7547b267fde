"""The command line's console: interruptions and library noise."""

import logging
import os
import subprocess
import sys

import pytest

from mre_jax import main
from mre_jax.workdir import checkpointing

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs main's entry point with ``run`` replaced by one that raises.
_INTERRUPTED_RUN = """
import sys
from mre_jax import errors, main
def run(config, workdir, mode):
  raise {exception}
main.run = run
sys.argv = ["mre_jax.main", "--config=configs/teacher.py", "--workdir=unused"]
main.entry_point()
"""


@pytest.mark.parametrize("exception,line", [
    ("KeyboardInterrupt()", main.INTERRUPTED),
    ("errors.Interrupted('stopped after epoch 2 of 5, which is saved.\\n"
     "Rerun the same command to continue.')",
     "stopped after epoch 2 of 5, which is saved. Rerun the same command to "
     "continue."),
])
def test_an_interrupted_run_ends_with_one_line_and_status_130(exception,
                                                              line):
  result = subprocess.run(
      [sys.executable, "-c", _INTERRUPTED_RUN.format(exception=exception)],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 130, result.stderr
  assert result.stderr.strip().splitlines() == [line]


def _record(path, level):
  return logging.LogRecord("x", level, path, 1, "message", None, None)


def test_library_info_lines_are_dropped_but_not_warnings_or_ours():
  probe = os.path.join("site-packages", "jax", "_src", "xla_bridge.py")
  assert not main._progress_only(_record(probe, logging.INFO))
  assert main._progress_only(_record(probe, logging.WARNING))
  assert main._progress_only(_record(main.__file__, logging.INFO))


def test_reading_checkpoints_warns_of_nothing_and_writes_nothing(tmp_path,
                                                                  caplog):
  os.mkdir(checkpointing.checkpoint_dir(str(tmp_path)))
  with caplog.at_level(logging.WARNING):
    manager = checkpointing.open_manager(str(tmp_path), read_only=True)
    assert manager.latest_step() is None
  assert [r.getMessage() for r in caplog.records] == []
  assert os.listdir(checkpointing.checkpoint_dir(str(tmp_path))) == []
