"""Ctrl-C and SIGTERM stop a training run cleanly; rerunning resumes it.

In-process tests send the signal to the test's own process from inside the
loop (during a checkpoint's save, during validation); the command-line tests
interrupt a real ``python -m mre_jax.main`` once it has saved an epoch.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import pytest

from mre_jax.errors import Interrupted
from mre_jax.evaluation import evaluator
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing
from mre_jax.workdir import workdir_lock

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
RESUME = re.compile(r"rerun the same command to resume from epoch (\d+)")
MAIN_HANDLES_INTERRUPTED = "except Interrupted" in (
    PROJECT_ROOT / "mre_jax" / "main.py").read_text()


def logged_epochs(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line)["epoch"] for line in f]


def spy_saves(monkeypatch):
  """The epochs saved from now on."""
  real_save, saved = checkpointing.save, []

  def save(manager, epoch, **kwargs):
    real_save(manager, epoch, **kwargs)
    saved.append(epoch)
  monkeypatch.setattr(checkpointing, "save", save)
  return saved


def signal_self(times=2):
  for _ in range(times):
    os.kill(os.getpid(), signal.SIGTERM)


def test_signal_during_a_save_stops_after_it(data_dir, tmp_path, monkeypatch,
                                             tiny_config):
  config = tiny_config(data_dir, epochs=2)
  workdir = str(tmp_path / "run")
  real_save = checkpointing.save
  saved = []

  def save_under_signals(manager, epoch, **kwargs):
    signal_self()  # Twice: even a second signal waits for the save.
    real_save(manager, epoch, **kwargs)
    saved.append(epoch)
  monkeypatch.setattr(checkpointing, "save", save_under_signals)
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(Interrupted) as stopped:
    trainer.Trainer(config, workdir).train()
  message = str(stopped.value)
  assert "\n" not in message
  assert "stopped by SIGTERM after epoch 1/2" in message
  assert RESUME.search(message).group(1) == "1"
  assert saved == [1]
  assert signal.getsignal(signal.SIGTERM) is before
  assert not workdir_lock._held  # pylint: disable=protected-access
  # The checkpoint written under the signals is whole.
  manager = checkpointing.open_manager(workdir, read_only=True)
  assert manager.all_steps() == [1]
  assert checkpointing.read_meta(manager, 1)["epoch"] == 1
  checkpointing.load_model(workdir, "latest")

  monkeypatch.setattr(checkpointing, "save", real_save)
  saved = spy_saves(monkeypatch)
  loop = trainer.Trainer(config, workdir).train()
  assert loop.epoch == 2 and loop.finished and saved == [2]
  assert logged_epochs(workdir) == [1, 2]


def test_second_signal_outside_a_save_stops_at_once(data_dir, tmp_path,
                                                    monkeypatch, tiny_config):
  config = tiny_config(data_dir, epochs=2)
  workdir = str(tmp_path / "run")
  real_evaluate = evaluator.evaluate_split

  def evaluate_under_signals(*args, **kwargs):
    signal_self()
    return real_evaluate(*args, **kwargs)
  monkeypatch.setattr(evaluator, "evaluate_split", evaluate_under_signals)
  with pytest.raises(Interrupted, match=r"stopped by SIGTERM during epoch "
                     r"1/2 .*resume from epoch 0 \(the start\)"):
    trainer.Trainer(config, workdir).train()
  assert not os.listdir(checkpointing.checkpoint_dir(workdir))
  assert logged_epochs(workdir) == []


def start_main(data_dir, workdir, log):
  """A tiny teacher run of 20 epochs, as make_tiny_config describes it."""
  args = {"model_width": 4, "dataset.builder_config": "tiny",
          "dataset.data_dir": data_dir, "image_size": 16, "batch_size": 32,
          "eval_batch_size": 64, "learning_rate": 0.02,
          "steps_per_dispatch": 8, "num_epochs": 20}
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  # Not ignored in the child, even where this test runs in the background.
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    return subprocess.Popen(
        [sys.executable, "-m", "mre_jax.main",
         "--config=configs/teacher.py:synthetic_faces",
         f"--workdir={workdir}"] +
        [f"--config.{key}={value}" for key, value in args.items()],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
  finally:
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_command_line_run_stops_in_one_line_and_resumes(sig, data_dir,
                                                        tmp_path, monkeypatch,
                                                        tiny_config):
  workdir = str(tmp_path / "run")
  log_path = tmp_path / "stderr.log"
  with open(log_path, "w") as log:
    proc = start_main(data_dir, workdir, log)
  try:
    deadline = time.time() + 300
    while "epoch 1/20" not in log_path.read_text():
      assert proc.poll() is None, log_path.read_text()[-3000:]
      assert time.time() < deadline, "no epoch finished in 300 s"
      time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(120)
  finally:
    if proc.poll() is None:
      proc.kill()
  stderr = log_path.read_text()
  assert "Traceback" not in stderr, stderr[-3000:]
  if MAIN_HANDLES_INTERRUPTED:
    assert proc.returncode == 130, stderr[-3000:]
  else:
    assert proc.returncode != 0
  resume_lines = [l for l in stderr.splitlines() if RESUME.search(l)]
  assert len(resume_lines) == 1, stderr[-3000:]
  assert f"stopped by {sig.name}" in resume_lines[0]
  epoch = int(RESUME.search(resume_lines[0]).group(1))
  assert epoch >= 1
  assert logged_epochs(workdir) == list(range(1, epoch + 1))
  if sig == signal.SIGINT:
    return
  # Rerunning resumes from that epoch (one more epoch, to stay short).
  config = tiny_config(data_dir, epochs=epoch + 1)
  saved = spy_saves(monkeypatch)
  loop = trainer.Trainer(config, workdir).train()
  assert loop.epoch == epoch + 1 and loop.finished and saved == [epoch + 1]
  assert logged_epochs(workdir) == list(range(1, epoch + 2))
