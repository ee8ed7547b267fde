"""One run per workdir: a second run is refused and changes nothing."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from mre_jax.errors import UserError, WorkdirBusyError
from mre_jax.runtime import distributed
from mre_jax.training import trainer
from mre_jax.workdir import workdir_lock

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from mre_jax.workdir import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


def snapshot(workdir):
  """Every file's bytes and modification time."""
  files = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[path] = (f.read(), os.stat(path).st_mtime_ns)
  return files


def test_second_run_is_refused_until_the_holder_dies(data_dir, tmp_path,
                                                      monkeypatch,
                                                      tiny_config):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "metrics.jsonl").write_text('{"epoch": 1}\n')
  (workdir / "checkpoints").mkdir()
  holder = subprocess.Popen(
      [sys.executable, "-c", HOLDER, str(workdir)], cwd=PROJECT_ROOT,
      stdout=subprocess.PIPE, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    assert holder.stdout.readline() == "held\n"
    info = json.loads((workdir / ".lock").read_text())
    assert info["pid"] == holder.pid
    assert info["host"] == socket.gethostname()
    assert "workdir_lock" in info["command"] and info["since"]
    before = snapshot(workdir)

    with pytest.raises(WorkdirBusyError) as refused:
      trainer.train_and_evaluate(tiny_config(data_dir), str(workdir))
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert f"process {holder.pid} on {socket.gethostname()}" in message
    assert info["since"] in message and "--workdir" in message
    assert snapshot(workdir) == before

    # The other processes of a multi-process run follow process 0.
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    with workdir_lock.hold(str(workdir)):
      pass
    monkeypatch.undo()
    assert snapshot(workdir) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    holder.stdout.close()

  # The dead holder's lock is free.
  with workdir_lock.hold(str(workdir)):
    assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()
    with workdir_lock.hold(str(workdir)):  # Holds nest in one process.
      pass
    assert (workdir / ".lock").read_text()
  assert (workdir / ".lock").read_text() == ""


def test_lock_creates_the_workdir(tmp_path):
  workdir = tmp_path / "new" / "run"
  start = time.time()
  with workdir_lock.hold(str(workdir)):
    assert (workdir / ".lock").is_file()
  assert time.time() - start < 5
