"""Teachers named by a workdir, a shipped model, or an ensemble of them."""

import json
import os

import numpy as np
import pytest

from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.errors import CheckpointError, ConfigError, TeacherLogitsError
from mre_jax.inference.predictor import Predictor
from mre_jax.models import shipped
from mre_jax.training import logits_catalog
from mre_jax.training import published_logits
from mre_jax.training import run_record
from mre_jax.training import teacher_logits
from mre_jax.training import teachers


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_refs_split_on_commas():
  assert teachers.refs(" a, b/c ,,") == ["a", "b/c"]
  assert teachers.refs("") == []


def test_one_teacher_is_kept_and_an_ensemble_averages_log_probabilities():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 5, 2, 7)).astype(np.float32) * 3
  assert teachers.combine([a]) is a
  combined = teachers.combine([a, b + 100.0])  # A shift changes nothing.
  np.testing.assert_allclose(combined, (log_softmax(a) + log_softmax(b)) / 2,
                             rtol=1e-5, atol=1e-5)
  probs = np.exp(log_softmax(combined))
  geometric = np.sqrt(np.exp(log_softmax(a)) * np.exp(log_softmax(b)))
  np.testing.assert_allclose(
      probs, geometric / geometric.sum(-1, keepdims=True), rtol=1e-5)


def test_a_shipped_teacher_predicts_as_the_shipped_model():
  name = shipped.names()[0]
  mesh = input_pipeline.make_mesh(1)
  teacher = teachers.load(name, "best", mesh)
  card = shipped.card(name)
  assert teacher.workdir == name and teacher.step == (
      card["training"]["best_epoch"])
  assert teacher.meta["run"]["dataset"] == card["dataset"]["name"]
  images = np.random.default_rng(1).integers(
      0, 256, (8, 64, 64, card["preprocessing"]["channels"]), np.uint8)
  data = input_pipeline.put_on_mesh({"image": images}, mesh)
  from mre_jax.evaluation import predict  # pylint: disable=g-import-not-at-top
  predict_fn = predict.make_predict_fn(teacher.model, mesh,
                                       teacher.image_size)
  logits = predict.predict(predict_fn, teacher.variables, data, mesh, 8)
  np.testing.assert_allclose(
      logits, Predictor.from_shipped(name).logits(images), rtol=1e-4,
      atol=1e-4)


def test_unknown_or_foreign_teachers_are_refused(teacher_run, data_dir,
                                                tmp_path, tiny_config):
  def export(ref):
    config = tiny_config(data_dir, model="student_c", teacher_workdir=ref)
    teacher_logits.export_command(config, str(tmp_path))
  with pytest.raises(CheckpointError, match="neither a workdir nor a shipped"):
    export("no_such_model")
  with pytest.raises(CheckpointError, match="trained on"):
    export(shipped.names()[0])  # Another dataset than synthetic_faces.
  with pytest.raises(CheckpointError, match="trained on"):
    export(f"{teacher_run[0]},{shipped.names()[0]}")  # One bad member.
  with pytest.raises(ConfigError, match="names no teacher"):
    export(" , ")
  assert not os.listdir(tmp_path)


def test_an_ensemble_teaches_records_and_publishes(
    teacher_run, baseline_run, data_dir, tmp_path, tiny_config):
  from mre_jax.training import trainer  # pylint: disable=g-import-not-at-top
  pair = f"{teacher_run[0]},{baseline_run[0]}"
  config = tiny_config(data_dir, model="student_c", epochs=1,
                       teacher_workdir=pair, temperature=3.0, alpha=0.2)
  workdir = tmp_path / "student"
  trainer.train_and_evaluate(config, str(workdir))
  path = str(workdir / teacher_logits.LOGITS_FILENAME)
  train = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "train"]
  logits = teacher_logits.load(path, train, config.image_size)

  singles = []
  for ref in (teacher_run[0], baseline_run[0]):
    one = tiny_config(data_dir, model="student_c", teacher_workdir=ref)
    single_dir = str(tmp_path / os.path.basename(ref))
    teacher_logits.export_command(one, single_dir)
    singles.append(teacher_logits.load(os.path.join(
        single_dir, teacher_logits.LOGITS_FILENAME), train, 16))
  np.testing.assert_allclose(
      logits, np.mean([log_softmax(x) for x in singles], 0), atol=1e-5)

  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))["teacher"]
  assert [m["model"]["name"] for m in meta["members"]] == ["teacher",
                                                           "student_c"]
  assert meta["combination"] == teachers.COMBINATION
  run = run_record.load_run(str(workdir))
  assert run["teacher"].startswith("ensemble of teacher (trained on ")
  assert "student_c (trained on synthetic_faces" in run["teacher"]
  assert run["experiment"].endswith("kd-from-ensemble")

  folder = str(tmp_path / "published")
  with pytest.raises(TeacherLogitsError, match="give --logits"):
    published_logits.publish(pair, folder)
  target = published_logits.publish(pair, folder, path)
  info = logits_catalog.provenance(target)
  assert [m["best_epoch"] for m in info["members"]] == [
      m["checkpoint_epoch"] for m in meta["members"]]
  assert all("workdir" not in m for m in info["logits_meta"]["teacher"][
      "members"])
  description = logits_catalog.describe(target)
  assert description.startswith("an ensemble (mean log-softmax) of teacher")
  with pytest.raises(TeacherLogitsError, match="same teachers in the same"):
    published_logits.publish(f"{baseline_run[0]},{teacher_run[0]}", folder,
                             path)


def test_logits_of_a_replaced_shipped_teacher_are_not_published(tmp_path):
  name = shipped.names()[0]
  card = shipped.card(name)
  teacher = {"shipped": name,
             "checkpoint_epoch": card["training"]["best_epoch"],
             "params_fingerprint": "0" * 16, "model": card["model"]}
  source = str(tmp_path / "logits.npz")
  np.savez(source, logits=np.zeros((2, 2, 7), np.float32),
           indices=np.arange(2), meta=json.dumps(
               {"dataset": card["dataset"]["name"], "teacher": teacher}))
  folder = tmp_path / "published"
  with pytest.raises(TeacherLogitsError, match="another .* than the one"):
    published_logits.publish(name, str(folder), source)
  assert not folder.exists()
