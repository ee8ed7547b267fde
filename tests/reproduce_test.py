"""The GPU reproduction driver, end to end on the CPU in tiny mode.

The data are tiny archives in the real datasets' layouts, so that the steps
read them the way they read the real ones. One driver run covers the
benchmark, the FER2013 teacher, E1, and E4 cut off by its time budget; a
second shows a failed step (no FER2013 data) that does not stop a later,
independent one: the RAF-DB teacher.
"""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
from PIL import Image
import pytest

from mre_jax.reproduce import common
from mre_jax.reproduce import steps as reproduce_step
from mre_jax.workdir import run_info

ROOT = pathlib.Path(__file__).resolve().parents[1]
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise",
                "neutral")
FER_TRAIN_PER_CLASS = reproduce_step.TINY_IMAGES + 1  # One more than kept.
# E4 is cut off by its budget after at least one epoch (compiling and
# training that epoch took up to 20 s on a busy 2-core machine). Its epochs
# cannot all run within the budget on any machine (each saves a checkpoint),
# and tiny runs never stop early, so the cut-off is certain.
E4_EPOCHS, E4_BUDGET_S = 10**6, 40


def _jpeg(rng, shape, mode) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8).squeeze(),
                  mode).save(buffer, format="JPEG")
  return buffer.getvalue()


def _archive(path: pathlib.Path, files: dict[str, bytes]) -> None:
  path.parent.mkdir(parents=True)
  with tarfile.open(path, "w:xz") as archive:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
  """``fer2013/fer2013.tar.xz`` and ``rafdb/rafdb_basic.tar.xz``, tiny."""
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(0)
  fer = {}
  for label, emotion in enumerate(FER_EMOTIONS):
    for i in range(FER_TRAIN_PER_CLASS):
      fer[f"train/{emotion}/Training_{label}{i}.jpg"] = _jpeg(
          rng, (48, 48), "L")
    for prefix in ("PublicTest", "PrivateTest"):
      for i in range(2):
        fer[f"test/{emotion}/{prefix}_{label}{i}.jpg"] = _jpeg(
            rng, (48, 48), "L")
  raf = {}
  for split, per_class in (("train", reproduce_step.TINY_IMAGES), ("test", 2)):
    rows = ["image,label"]
    for label in range(1, 8):
      for i in range(per_class):
        name = f"{split}_{label}{i:03d}_aligned.jpg"
        raf[f"DATASET/{split}/{label}/{name}"] = _jpeg(rng, (100, 100, 3),
                                                       "RGB")
        rows.append(f"{name},{label}")
    raf[f"{split}_labels.csv"] = ("\n".join(rows) + "\n").encode()
  _archive(root / "fer2013" / "fer2013.tar.xz", fer)
  _archive(root / "rafdb" / "rafdb_basic.tar.xz", raf)
  return root


def _json(path: pathlib.Path):
  return json.loads(path.read_text())


def _drive(*flags, timeout=600) -> subprocess.CompletedProcess:
  """Runs the driver in tiny mode; on a timeout, stops it (and its steps)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             MRE_JAX_REPRODUCE_TINY="1", MRE_JAX_COMMIT="abc123")
  argv = [sys.executable, "-m", "mre_jax.reproduce", *flags]
  with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True) as proc:
    try:
      stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.terminate()
      stdout, stderr = proc.communicate()
      pytest.fail(f"the driver ran over {timeout} s:\n{stdout[-3000:]}")
  return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.mktemp("workdirs")


@pytest.fixture(scope="module")
def full_run(data, workdirs, tmp_path_factory):
  """The FER2013 steps; E4 with more epochs than its budget allows."""
  outdir = tmp_path_factory.mktemp("out")
  proc = _drive(f"--outdir={outdir}", f"--data={data}",
                f"--workdirs={workdirs}", f"--epochs=1,e4={E4_EPOCHS}",
                f"--budget_s=e4={E4_BUDGET_S}", "--steps=bench,teacher_fer,"
                "e1,e4")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return outdir, _json(outdir / "manifest.json")["steps"]


@pytest.fixture(scope="module")
def raf_run(data, workdirs, tmp_path_factory):
  """teacher_fer without its data (fails), then teacher_raf."""
  raf_only = tmp_path_factory.mktemp("raf_only")
  (raf_only / "rafdb").symlink_to(data / "rafdb")
  outdir = tmp_path_factory.mktemp("raf_out")
  proc = _drive(f"--outdir={outdir}", f"--data={raf_only}",
                f"--workdirs={workdirs}", "--steps=teacher_raf,teacher_fer")
  return outdir, _json(outdir / "manifest.json")["steps"], proc


def test_manifest_records_every_step(full_run, raf_run):
  steps = {**full_run[1], "teacher_raf": raf_run[1]["teacher_raf"]}
  assert list(full_run[1]) == ["bench", "teacher_fer", "e1", "e4"]
  for name, entry in steps.items():
    expected = "cut_off" if name == "e4" else "done"
    assert entry["status"] == expected, (name, entry)
    # The tree's commit when it has one (as the runs record it); only a
    # copy without .git records MRE_JAX_COMMIT.
    assert entry["commit"] == run_info.git_commit() and entry["tiny"] is True
    assert entry["wall_s"] > 0 and entry["start"] <= entry["end"]
    assert entry["device"] and "cpu" in entry["device"].lower(), entry
    assert f"--steps={name}" in entry["command"]
    assert "log.txt" in entry["outputs"]
    if name != "bench":
      assert entry["equivalent"].startswith("python -m mre_jax.main --config=")


def test_benchmark_json(full_run):
  outdir, _ = full_run
  record = _json(outdir / "bench" / "bench.json")
  model = record["models"]["student_c"]
  assert model["width"] == 4 and model["params"] > 0
  assert model["jax"]["train"]["4"]["images_per_second"] > 0
  assert "torch_eager" in model or "PyTorch skipped" in str(record["notes"])
  assert isinstance(record["targets"], list)


@pytest.mark.parametrize("step,examples,channels", [
    ("teacher_fer", 7 * reproduce_step.TINY_IMAGES, 1),
    ("teacher_raf", None, 3)])
def test_teacher_outputs(full_run, raf_run, step, examples, channels):
  outdir = (full_run if step == "teacher_fer" else raf_run)[0] / step
  evals = _json(outdir / "eval.json")
  assert set(evals) == {"validation", "test"}
  for split, result in evals.items():
    assert result["split"] == split and 0 <= result["accuracy"] <= 1
    assert result["model"] == "teacher" and result["checkpoint_step"] == 1
  run = _json(outdir / "run.json")
  assert run["status"] == "done" and run["epochs"] == 1
  assert run["config"]["model_width"] == 4
  assert run["config"]["dtype"] == "float32"
  with np.load(outdir / common.LOGITS) as f:
    logits, indices = f["logits"], f["indices"]
    meta = json.loads(str(f["meta"]))
  assert logits.dtype == np.float16 and logits.shape[1:] == (2, 7)
  assert logits.shape[0] == (examples or meta["num_examples"])
  assert indices.shape == logits.shape[:1] and np.isfinite(logits).all()
  # RAF-DB's validation split is held out of train.
  assert meta["split"] in ("train", "train-holdout")
  assert meta["channels"] == channels


@pytest.mark.parametrize("step,model", [("e1", "student_a"),
                                        ("e4", "student_b")])
def test_student_outputs(full_run, step, model):
  outdir = full_run[0] / step
  run = _json(outdir / "run.json")
  assert run["config"]["model"] == model
  # The logits file alone, not the teacher's workdir.
  assert run["config"]["distill"]["teacher_logits"] == str(
      full_run[0] / "teacher_fer" / common.LOGITS)
  assert not run["config"]["distill"]["teacher_workdir"]
  assert not (outdir / common.LOGITS).exists()
  entry = full_run[1][step]
  if step == "e4":  # Cut off by its budget: what it did is kept.
    assert entry["status"] == "cut_off", entry
    assert entry["wall_s"] < E4_BUDGET_S + common.KILL_GRACE_S
    assert 1 <= run["epochs"] < E4_EPOCHS and len(run["history"]) >= 1
    # Training stops in time to evaluate, unless a busy CPU made even the
    # first epoch late: then evaluation is killed at the budget's end.
    finished = run["phase"] == "finished"
    assert ("stopped by the budget" if finished else "killed at the end") in (
        entry["note"]), entry
  else:
    assert entry["status"] == run["status"] == "done" and run["epochs"] == 1
    finished = True
  if finished:
    evals = _json(outdir / "eval.json")
    assert evals["test"]["model"] == model
    assert evals["test"]["checkpoint_step"] == run["best_epoch"]


def test_failed_step_does_not_stop_later_ones(raf_run):
  _, steps, proc = raf_run
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert list(steps) == ["teacher_fer", "teacher_raf"]
  assert steps["teacher_fer"]["status"] == "failed"
  assert "fer2013 does not exist" in steps["teacher_fer"]["error"]
  assert steps["teacher_fer"]["outputs"] == []
  assert steps["teacher_raf"]["status"] == "done", steps["teacher_raf"]
  assert "teacher_fer  failed" in proc.stdout


def test_bad_input_is_one_error_line(tmp_path):
  proc = _drive(f"--outdir={tmp_path}", "--steps=bench,e7")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown step(s) ['e7']: expected some of "
      "bench,teacher_fer,teacher_raf,e1,e4"]
  with pytest.raises(common.ReproduceError, match="--budget_s=e9=3"):
    common.per_step(["e9=3"], {}, "budget_s")
  with pytest.raises(common.ReproduceError, match="positive finite"):
    common.per_step(["e1=-1"], {}, "budget_s")
  with pytest.raises(common.ReproduceError, match="positive finite"):
    common.per_step(["nan"], {}, "budget_s")
  with pytest.raises(common.ReproduceError, match="positive whole"):
    common.per_step(["0.5"], {}, "epochs", int)
  with pytest.raises(common.ReproduceError, match="unknown step 'bench'"):
    common.per_step(["bench=3"], {}, "epochs", int, ["e1", "e4"])
  default = {s: 10.0 for s in common.STEPS}
  assert common.per_step(["60", "e1=30"], default, "budget_s") == {
      "bench": 60, "teacher_fer": 60, "teacher_raf": 60, "e1": 30, "e4": 60}


def test_flag_mistakes_are_one_error_line(tmp_path):
  proc = _drive(f"--outdir={tmp_path}", "--dtype=float16")
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
  assert proc.stderr.startswith("error: flag --dtype=float16:"), proc.stderr


@pytest.fixture
def received_sigints():
  """The times SIGINT reached this process while the test ran."""
  received = []
  previous = signal.signal(signal.SIGINT,
                           lambda *_: received.append(time.time()))
  yield received
  signal.signal(signal.SIGINT, previous)


def test_epoch_budget_stops_training_before_an_epoch_would_overrun(
    tmp_path, received_sigints):
  received = received_sigints
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for epoch, seconds in ((1, 30.0), (2, 5.0)):
      f.write(json.dumps({"epoch": epoch, "epoch_seconds": seconds}) + "\n")
  # 5 s per epoch after the first (compiling) one; 60 s left: no stop.
  with reproduce_step.EpochBudget(str(tmp_path), time.time() + 60) as budget:
    time.sleep(0.6)
  assert not budget.stopped and not received
  # 3 s left: the next epoch would overrun, so training is told to stop.
  with reproduce_step.EpochBudget(str(tmp_path), time.time() + 3) as budget:
    deadline = time.time() + 5
    while not received and time.time() < deadline:
      time.sleep(0.05)
  assert budget.stopped and len(received) == 1
