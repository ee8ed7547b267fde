"""Published teacher logits: the shipped files, publishing, and students
that distil from them without naming a teacher."""

import json
import os

import numpy as np
import pytest

from mre_jax.config import labels
from mre_jax.errors import TeacherLogitsError
from mre_jax.training import logits_catalog
from mre_jax.training import published_logits
from mre_jax.training import teacher_logits
from mre_jax.training import trainer


@pytest.mark.parametrize("dataset", logits_catalog.published())
def test_shipped_logits_are_whole_and_say_where_they_came_from(dataset):
  path = logits_catalog.path(dataset)
  with np.load(path, allow_pickle=False) as f:
    logits, indices = f["logits"], f["indices"]
    meta = json.loads(str(f["meta"]))
  info = logits_catalog.provenance(path)
  assert meta["format"] == teacher_logits.FORMAT and meta["dataset"] == dataset
  assert logits.dtype == np.float16 and np.isfinite(logits).all()
  assert logits.shape == (meta["num_examples"], 2, labels.NUM_CLASSES)
  assert len(np.unique(indices)) == meta["num_examples"]
  teachers = info["logits_meta"]["teacher"].get(
      "members", [info["logits_meta"]["teacher"]])
  for teacher in meta["teacher"].get("members", [meta["teacher"]]):
    teacher.pop("workdir", None)  # The file keeps it; the record does not.
  assert info["dataset"] == dataset and info["logits_meta"] == meta
  runs = info.get("members", [info])
  assert len(teachers) == len(runs) and info["device"]
  for teacher, run in zip(teachers, runs):
    assert run["best_epoch"] == teacher["checkpoint_epoch"]
    assert 0 < run["accuracy"]["test"] < 1 and run["device"]
    assert f"{100 * run['accuracy']['test']:.2f}%" in (
        logits_catalog.describe(path))


def test_fer2013_logits_are_published():
  assert "fer2013" in logits_catalog.published()


@pytest.fixture
def published(teacher_run, student_run, tmp_path, monkeypatch):
  """The tiny teacher's logits, published into a folder of the test's."""
  folder = tmp_path / "published"
  source = os.path.join(student_run[0], teacher_logits.LOGITS_FILENAME)
  target = published_logits.publish(teacher_run[0], str(folder), source)
  monkeypatch.setattr(logits_catalog, "FOLDER", str(folder))
  return target


def test_publish_writes_float16_logits_and_the_runs_own_numbers(
    published, teacher_run, student_run):
  with open(os.path.join(teacher_run[0], "eval_test.json")) as f:
    evaluation = json.load(f)
  info = logits_catalog.provenance(published)
  assert os.path.basename(published) == "synthetic_faces.npz"
  assert info["accuracy"]["test"] == evaluation["accuracy"]
  assert info["best_epoch"] == evaluation["checkpoint_step"]
  assert info["model"] == "teacher" and info["epochs"] == 2
  source = os.path.join(student_run[0], teacher_logits.LOGITS_FILENAME)
  with np.load(source) as full, np.load(published) as half:
    assert half["logits"].dtype == np.float16
    np.testing.assert_allclose(half["logits"], full["logits"], rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_array_equal(half["indices"], full["indices"])


def test_a_student_naming_no_teacher_distils_from_the_published_logits(
    published, data_dir, tmp_path, tiny_config):
  config = tiny_config(data_dir, model="student_c", epochs=1)
  workdir = tmp_path / "student"
  run = trainer.Trainer(config, str(workdir))
  assert config.distill.teacher_logits == published and run.kd_weight > 0
  run.train()
  with open(workdir / "config.json") as f:
    assert json.load(f)["distill"]["teacher_logits"] == published
  # The data check still refuses them for other data: a holdout validation
  # split takes examples out of the train split.
  config = tiny_config(data_dir, model="student_c", epochs=1)
  config.dataset.validation = "holdout"
  with pytest.raises(TeacherLogitsError,
                     match="(?s)does not match.*the published logits"):
    trainer.Trainer(config, str(tmp_path / "other")).train()


def test_a_named_teacher_or_the_runs_own_file_wins(published, tmp_path,
                                                   data_dir, tiny_config):
  config = tiny_config(data_dir, model="student_c", teacher_workdir="t")
  logits_catalog.apply_default(config, str(tmp_path / "none.npz"))
  assert config.distill.teacher_logits == ""
  config = tiny_config(data_dir, model="student_c")
  own = tmp_path / teacher_logits.LOGITS_FILENAME
  own.write_bytes(b"")
  logits_catalog.apply_default(config, str(own))
  assert config.distill.teacher_logits == ""
  config.dataset.name = "raf_db"
  logits_catalog.apply_default(config, str(tmp_path / "none.npz"))
  assert config.distill.teacher_logits == ""


def test_publishing_needs_the_teachers_evaluated_logits(
    teacher_run, baseline_run, student_run, tmp_path):
  with pytest.raises(TeacherLogitsError, match="does not exist"):
    published_logits.publish(teacher_run[0], str(tmp_path))
  source = os.path.join(student_run[0], teacher_logits.LOGITS_FILENAME)
  with pytest.raises(TeacherLogitsError, match="a distilled student"):
    published_logits.publish(student_run[0], str(tmp_path), source)
  with pytest.raises(TeacherLogitsError, match="evaluated checkpoint"):
    published_logits.publish(baseline_run[0], str(tmp_path), source)
  assert not os.listdir(tmp_path)
