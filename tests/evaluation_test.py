"""Evaluation from a workdir alone: trained teachers, students, imports."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROJECT_ROOT
from mre_jax import main
from mre_jax.datasets import loading
from mre_jax.errors import ConfigError
from mre_jax.evaluation import evaluator


def _spec(config):
  return loading.DataSpec.from_config(config.dataset)


def _read(workdir, split):
  with open(os.path.join(workdir, f"eval_{split}.json")) as f:
    return json.load(f)


def test_evaluate_reproduces_end_of_training_metrics(teacher_run):
  workdir, config, results = teacher_run
  assert set(results) == {"validation", "test"}
  again = evaluator.evaluate_workdir(workdir, data=_spec(config),
                                     batch_size=48)
  for split in ("validation", "test"):
    report = _read(workdir, split)
    assert report == json.loads(json.dumps(again[split]))
    assert report["accuracy"] == results[split]["accuracy"]
    assert report["loss"] == pytest.approx(results[split]["loss"])
    assert report["num_examples"] == sum(map(sum, report["confusion_matrix"]))
    assert 0 <= report["accuracy"] <= 1


def test_eval_files_record_what_was_evaluated(teacher_run):
  workdir, _, results = teacher_run
  report = _read(workdir, "test")
  assert report["dataset"] == "synthetic_faces"
  assert report["split"] == "test"
  assert report["image_size"] == 16
  assert report["model"] == "teacher"
  assert report["checkpoint_step"] == results["test"]["checkpoint_step"] >= 1
  assert os.path.getsize(os.path.join(workdir, "confusion_test.png")) > 0


def test_readme_evaluate_command_needs_no_teacher(student_run, data_dir,
                                                  tmp_path):
  """The README's command, for a distilled student whose teacher is gone."""
  source, _, results = student_run
  workdir = str(tmp_path / "E6")
  shutil.copytree(source, workdir)
  os.remove(os.path.join(workdir, "teacher_logits.npz"))
  for name in os.listdir(workdir):
    if name.startswith("eval_"):
      os.remove(os.path.join(workdir, name))
  result = subprocess.run(
      [sys.executable, "-m", "mre_jax.main",
       "--config=configs/studentC.py:synthetic_faces,exp=E6",
       "--config.dataset.builder_config=tiny",
       f"--config.dataset.data_dir={data_dir}", f"--workdir={workdir}",
       "--mode=evaluate"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert _read(workdir, "test")["accuracy"] == results["test"]["accuracy"]
  assert not os.path.exists(os.path.join(workdir, "teacher_logits.npz"))


@pytest.mark.parametrize("run", ["teacher_run", "baseline_run", "student_run"])
def test_evaluate_mode_for_every_kind_of_run(run, request, data_dir,
                                             tiny_config):
  workdir, trained_with, results = request.getfixturevalue(run)
  config = tiny_config(data_dir, model=trained_with.model)
  config.image_size = 64  # Ignored: the checkpoint says 16.
  main.run(config, workdir, "evaluate")
  for split in ("validation", "test"):
    assert _read(workdir, split)["accuracy"] == results[split]["accuracy"]
    assert _read(workdir, split)["image_size"] == 16


def test_evaluate_mode_for_an_imported_pytorch_checkpoint(data_dir, tmp_path,
                                                          tiny_config):
  torch = pytest.importorskip("torch")
  from mre_jax import convert  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.models import torch_reference
  torch.manual_seed(0)
  weights = str(tmp_path / "student_c.pth")
  torch.save(torch_reference.get_model("student_c").state_dict(), weights)
  workdir = str(tmp_path / "imported")
  convert.import_checkpoint(weights, "student_c", workdir, image_size=16)
  main.run(tiny_config(data_dir, model="student_c"), workdir, "evaluate")
  report = _read(workdir, "test")
  assert report["dataset"] == "synthetic_faces" and report["model"] == (
      "student_c")
  assert report["num_examples"] == 128 and report["checkpoint_step"] == 0


def test_another_dataset_is_refused_and_nothing_overwritten(teacher_run):
  workdir, config, _ = teacher_run
  before = _read(workdir, "test")
  spec = loading.DataSpec(name="fer2013", data_dir=config.dataset.data_dir)
  with pytest.raises(ConfigError, match="trained on 'synthetic_faces'"):
    evaluator.evaluate_workdir(workdir, data=spec)
  assert _read(workdir, "test") == before


def test_bad_splits_and_batch_are_refused(teacher_run, data_dir, tiny_config):
  workdir, _, _ = teacher_run
  with pytest.raises(ConfigError, match="cannot evaluate splits"):
    evaluator.evaluate_workdir(workdir, ["tset"])
  config = tiny_config(data_dir)
  config.eval_batch_size = 0
  with pytest.raises(ConfigError, match="eval_batch_size"):
    evaluator.evaluate_config(config, workdir)


def _tiny_fer_csv(path):
  """A valid fer2013.csv of 7 faces per split (random pixels)."""
  rng = np.random.default_rng(0)
  lines = ["emotion,pixels,Usage"]
  for usage in ("Training", "PublicTest", "PrivateTest"):
    for label in range(7):
      pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
      lines.append(f"{label},{pixels},{usage}")
  path.mkdir(parents=True)
  (path / "fer2013.csv").write_text("\n".join(lines) + "\n")


def test_another_dataset_when_asked_gets_files_of_its_own(teacher_run,
                                                          tmp_path,
                                                          tiny_config):
  workdir = str(tmp_path / "teacher")
  shutil.copytree(teacher_run[0], workdir)
  own = _read(workdir, "test")
  _tiny_fer_csv(tmp_path / "manual")
  config = tiny_config(str(tmp_path / "tfds"))
  config.dataset.name = "fer2013"
  config.dataset.builder_config = ""
  config.dataset.manual_dir = str(tmp_path / "manual")
  with pytest.raises(ConfigError, match="--config.eval.dataset=fer2013"):
    evaluator.evaluate_config(config, workdir)
  config.eval.dataset = "fer2013"
  results = evaluator.evaluate_config(config, workdir)
  report = _read(workdir, "fer2013_test")
  assert report == json.loads(json.dumps(results["test"]))
  assert report["dataset"] == "fer2013" and report["num_examples"] == 7
  assert os.path.isfile(os.path.join(workdir, "confusion_fer2013_test.png"))
  assert _read(workdir, "test") == own
