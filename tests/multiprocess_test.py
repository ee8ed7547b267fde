"""Multi-process training on CPU, and the scaling settings of the recipe.

The multi-process test starts two real ``python -m mre_jax.main`` processes on
localhost, two emulated CPU devices each, joined through JAX's distributed
runtime with gloo collectives: a four-device run over two processes. It
checks that process 0 alone prepares the dataset, that a run whose processes
die resumes from its last checkpoint, that the result matches a one-process
run of the same global batch, that only process 0 writes logs and files, and
that one process, or two started as a SLURM step would start them, evaluate
the two processes' checkpoint to the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import teacher
from mre_jax.data import input_pipeline
from mre_jax.errors import CheckpointError, ConfigError, DistributedError
from mre_jax.evaluation import evaluator
from mre_jax.runtime import distributed
from mre_jax.training import train
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
# A tiny teacher on synthetic faces. At larger learning rates its training
# amplifies float rounding (e.g. of cross-device sums) far beyond any
# tolerance; a power of two lets linear scaling reproduce the rate exactly.
OVERRIDES = {
    "model_width": 4, "dataset.name": "synthetic_faces",
    "dataset.builder_config": "tiny", "image_size": 16, "batch_size": 128,
    "eval_batch_size": 64, "learning_rate": 2.0**-10, "steps_per_dispatch": 8,
}
EPOCHS = 2
DEVICES_PER_PROCESS = 2
START_TIMEOUT_S = 240  # Until the first checkpoint of the run to interrupt.
RUN_TIMEOUT_S = 300  # For a whole run.

SLURM_STEP = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]",
              "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2"}


def make_config(data_dir, epochs=EPOCHS, **fields):
  config = teacher.get_config()
  for key, value in {**OVERRIDES, "num_epochs": epochs,
                     "dataset.data_dir": str(data_dir), **fields}.items():
    *parents, name = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


def command(data_dir, workdir, *flags):
  overrides = {**OVERRIDES, "num_epochs": EPOCHS, "dataset.data_dir": data_dir}
  return ([sys.executable, "-m", "mre_jax.main", "--config=configs/teacher.py",
           f"--workdir={workdir}"] +
          [f"--config.{k}={v}" for k, v in overrides.items()] + list(flags))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def latest_params(workdir):
  loaded = checkpointing.load_model(workdir, "latest",
                                    mesh=input_pipeline.make_mesh(1))
  return jax.tree.map(np.asarray, loaded.variables["params"])


class TwoProcesses:
  """``mre_jax.main`` as processes 0 and 1 of one run, logs in files.

  The processes get explicit distributed flags, or with ``slurm`` the
  environment of a two-task SLURM step, from which they detect the rest.
  """

  def __init__(self, tmp_path, name, data_dir, workdir, *flags, slurm=False):
    port = free_port()
    env = dict(os.environ,
               XLA_FLAGS="--xla_force_host_platform_device_count="
               f"{DEVICES_PER_PROCESS} --xla_backend_optimization_level=0",
               JAX_PLATFORMS="cpu",
               JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",
               JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    self.logs = [tmp_path / f"{name}_{i}.log" for i in range(2)]
    self.procs = []
    for i, log in enumerate(self.logs):
      if slurm:
        env.update(SLURM_STEP, SLURM_STEP_NODELIST="127.0.0.1",
                   SLURM_PROCID=str(i), SLURM_LOCALID=str(i),
                   JAX_COORDINATOR_PORT=str(port))
        distributed_flags = []
      else:
        distributed_flags = [f"--coordinator_address=127.0.0.1:{port}",
                             "--num_processes=2", f"--process_id={i}"]
      with open(log, "w") as f:
        self.procs.append(subprocess.Popen(
            command(data_dir, workdir, *flags, *distributed_flags),
            cwd=PROJECT_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT))

  def log(self, i: int) -> str:
    return self.logs[i].read_text()

  def report(self) -> str:
    return "\n".join(f"--- process {i} (exit {p.poll()}):\n"
                     f"{self.log(i)[-3000:]}" for i, p in enumerate(self.procs))

  def wait(self, timeout: float) -> list[int]:
    deadline = time.time() + timeout
    for p in self.procs:
      try:
        p.wait(max(deadline - time.time(), 1))
      except subprocess.TimeoutExpired:
        pytest.fail(f"processes still running after {timeout}s\n" +
                    self.report())
    return [p.returncode for p in self.procs]

  def kill(self, i: int) -> None:
    if self.procs[i].poll() is None:
      self.procs[i].send_signal(signal.SIGKILL)
    self.procs[i].wait(30)


@contextlib.contextmanager
def two_processes(*args, **kwargs):
  run = TwoProcesses(*args, **kwargs)
  try:
    yield run
  finally:
    for i in range(2):
      run.kill(i)


def test_two_processes_resume_and_match_one_process(tmp_path):
  data_dir = str(tmp_path / "tfds")  # Empty: process 0 prepares it.
  workdir = str(tmp_path / "run")
  ckpt_dir = pathlib.Path(checkpointing.checkpoint_dir(workdir))

  # Start, then kill process 1 once epoch 1 is checkpointed, then process 0
  # (as srun --kill-on-bad-exit would; on its own it stops at the runtime's
  # heartbeat timeout).
  with two_processes(tmp_path, "interrupted", data_dir, workdir) as run:
    deadline = time.time() + START_TIMEOUT_S
    while not (ckpt_dir / "1").is_dir():
      if time.time() > deadline or any(p.poll() is not None
                                       for p in run.procs):
        pytest.fail("no checkpoint of epoch 1\n" + run.report())
      time.sleep(0.05)
    run.kill(1)
    run.kill(0)
    saved = checkpointing.open_manager(workdir, read_only=True).all_steps()
    assert max(saved) < EPOCHS, "the run finished before it was killed"
    assert "Generating" in run.log(0) and "Generating" not in run.log(1)

  with two_processes(tmp_path, "resumed", data_dir, workdir) as run:
    assert run.wait(RUN_TIMEOUT_S) == [0, 0], run.report()
    assert f"Resumed {workdir} from epoch" in run.log(0), run.report()
    # Only process 0 logs progress and writes files.
    assert f"epoch {EPOCHS}/{EPOCHS}" in run.log(0)
    assert "train loss" not in run.log(1), run.report()

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(l)["epoch"] for l in f] == list(range(1, EPOCHS + 1))
  reports = {}
  for split in ("validation", "test"):
    with open(os.path.join(workdir, f"eval_{split}.json")) as f:
      reports[split] = json.load(f)
    assert reports[split]["num_examples"] == 128
    assert sum(map(sum, reports[split]["confusion_matrix"])) == 128
  # The best checkpoint survives the restart (it is what was evaluated).
  manager = checkpointing.open_manager(workdir, read_only=True)
  best = checkpointing.read_meta(manager, EPOCHS)["best_epoch"]
  assert best in manager.all_steps()
  assert reports["test"]["checkpoint_step"] == best

  # One process, four devices, same global batch: the same parameters.
  config = make_config(data_dir)
  reference = str(tmp_path / "reference")
  trainer.Trainer(config, reference, input_pipeline.make_mesh(4)).train()
  # Gradient sums over gloo and in-process collectives round differently.
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5),
      latest_params(reference), latest_params(workdir))

  # One process, one device, evaluates the two processes' checkpoint.
  again = evaluator.evaluate_config(config, workdir,
                                    input_pipeline.make_mesh(1))
  for split, report in reports.items():
    assert again[split]["num_examples"] == report["num_examples"]
    assert again[split]["checkpoint_step"] == report["checkpoint_step"]
    assert again[split]["accuracy"] == report["accuracy"]
    assert again[split]["loss"] == pytest.approx(report["loss"], rel=1e-5)

  # Two processes that find each other from SLURM's variables evaluate it too.
  with two_processes(tmp_path, "slurm", data_dir, workdir, "--mode=evaluate",
                     slurm=True) as run:
    assert run.wait(RUN_TIMEOUT_S) == [0, 0], run.report()
    assert "Joined a SLURM run of 2 processes: 4 devices" in run.log(0)
  with open(os.path.join(workdir, "eval_test.json")) as f:
    assert json.load(f)["accuracy"] == reports["test"]["accuracy"]


@pytest.mark.parametrize("flags,message", [
    ((None, 2, 0), "needs --coordinator_address"),
    (("127.0.0.1:1234", 2, None), "needs --coordinator_address"),
    (("127.0.0.1:1234", None, 0), "num_processes=None is invalid"),
    (("127.0.0.1:1234", 0, 0), "num_processes=0 is invalid"),
    (("127.0.0.1:1234", 2, 2), "process_id=2 is out of range"),
    (("127.0.0.1:1234", 2, -1), "process_id=-1 is out of range"),
    ((None, 1, 1), "process_id=1 is out of range"),
    (("127.0.0.1", 2, 0), "is not HOST:PORT"),
    (("127.0.0.1:99999", 2, 0), "is not HOST:PORT"),
])
def test_inconsistent_distributed_flags_are_refused(flags, message):
  with pytest.raises(DistributedError, match=message):
    distributed.initialize(*flags, environ={})


@pytest.mark.parametrize("flags,environ", [
    ((None, None, None), {}),
    ((None, 1, None), {}),
    (("127.0.0.1:1234", 1, 0), SLURM_STEP),
    ((None, None, None), dict(SLURM_STEP, SLURM_NTASKS="1")),
])
def test_single_process_runs_do_not_initialize(flags, environ):
  assert not distributed.initialize(*flags, environ=environ)


def test_launcher_detection():
  assert distributed.launcher_process_count(SLURM_STEP) == ("SLURM", 2)
  # A batch script outside srun is no multi-process step.
  batch = {k: v for k, v in SLURM_STEP.items() if k != "SLURM_STEP_NODELIST"}
  assert distributed.launcher_process_count(batch) == (None, 1)
  ompi = {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1",
          "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4"}
  assert distributed.launcher_process_count(ompi) == ("Open MPI", 4)
  with pytest.raises(DistributedError, match="SLURM_NTASKS"):
    distributed.launcher_process_count(dict(SLURM_STEP, SLURM_NTASKS="x"))


def test_command_line_reports_bad_flags_in_one_line(tmp_path):
  result = subprocess.run(
      command(str(tmp_path), str(tmp_path / "run"), "--num_processes=2"),
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2, result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--coordinator_address" in errors[0]
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("scale,linear,devices,batch,lr", [
    (False, False, 4, 16, 1e-3),
    (False, True, 4, 16, 1e-3),  # Nothing to scale: the batch is the paper's.
    (True, False, 4, 64, 1e-3),
    (True, True, 4, 64, 4e-3),
    (True, True, 2, 32, 2e-3),
    (True, True, 1, 16, 1e-3),
])
def test_batch_and_learning_rate_scaling(scale, linear, devices, batch, lr):
  config = teacher.get_config()
  config.scale_batch_with_devices = scale
  config.linear_lr_scaling = linear
  global_batch = train.global_batch_size(config,
                                         input_pipeline.make_mesh(devices))
  assert global_batch == batch
  assert train.learning_rate(config, global_batch) == pytest.approx(lr)


def test_batch_that_does_not_split_is_refused():
  config = teacher.get_config()
  with pytest.raises(ConfigError, match="multiple of 3"):
    train.global_batch_size(config, input_pipeline.make_mesh(3))
  config.scale_batch_with_devices = True
  assert train.global_batch_size(config, input_pipeline.make_mesh(3)) == 48


def test_scaled_recipe_trains_as_its_explicit_equivalent(tmp_path):
  """Per-device batch 32 and lr / 4 on 4 devices: batch 128 at the full lr."""
  data_dir = tmp_path / "tfds"
  mesh = input_pipeline.make_mesh(4)
  scaled = make_config(data_dir, epochs=1, batch_size=32,
                       learning_rate=OVERRIDES["learning_rate"] / 4,
                       scale_batch_with_devices=True, linear_lr_scaling=True)
  explicit = make_config(data_dir, epochs=1)
  runs = {}
  for name, config in (("scaled", scaled), ("explicit", explicit)):
    runs[name] = str(tmp_path / name)
    trainer.Trainer(config, runs[name], mesh).train()
  jax.tree.map(np.testing.assert_array_equal,
               latest_params(runs["scaled"]), latest_params(runs["explicit"]))
  with open(os.path.join(runs["scaled"], "metrics.jsonl")) as f:
    assert json.loads(f.readline())["learning_rate"] == (
        OVERRIDES["learning_rate"])
  # On two devices the same config means another global batch: no resume.
  with pytest.raises(CheckpointError, match="global_batch"):
    trainer.Trainer(scaled, runs["scaled"], input_pipeline.make_mesh(2)).train()
