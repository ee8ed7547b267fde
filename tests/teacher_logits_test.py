"""Teacher logits: exported from the teacher's checkpoint, checked on load."""

import json
import logging
import os

import numpy as np
import pytest

from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.datasets import SplitData
from mre_jax.errors import CheckpointError, ConfigError, TeacherLogitsError
from mre_jax.evaluation import predict
from mre_jax.training import teacher_logits
from mre_jax.training import teachers
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing


def test_exported_logits_are_the_teachers_predictions(teacher_run,
                                                      student_run):
  teacher_dir = teacher_run[0]
  student_dir, config, _ = student_run
  path = os.path.join(student_dir, teacher_logits.LOGITS_FILENAME)
  train = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "train"]
  logits = teacher_logits.load(path, train, config.image_size)
  teacher = checkpointing.load_model(teacher_dir)
  mesh = input_pipeline.make_mesh(1)
  data = input_pipeline.put_on_mesh({"image": train.images}, mesh)
  predict_fn = predict.make_predict_fn(teacher.model, mesh,
                                       teacher.image_size)
  for view, flip in ((0, False), (1, True)):
    expected = predict.predict(predict_fn, teacher.variables, data, mesh, 64,
                               flip=flip)
    np.testing.assert_allclose(logits[:, view], expected, rtol=1e-5,
                               atol=1e-5)
  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))
  assert meta["teacher"]["checkpoint_epoch"] == teacher.step
  assert meta["teacher"]["params_fingerprint"] == (
      teachers.params_fingerprint(teacher.variables["params"]))
  assert meta["image_size"] == config.image_size and meta["split"] == "train"
  assert meta["num_examples"] == train.num_examples == len(logits)


def test_mismatched_logits_file_is_refused(student_run, data_dir, tmp_path,
                                           tiny_config):
  source = os.path.join(student_run[0], teacher_logits.LOGITS_FILENAME)
  config = tiny_config(data_dir, model="student_c", epochs=1,
                       teacher_logits=source)
  config.image_size = 48
  with pytest.raises(TeacherLogitsError, match="image_size"):
    trainer.Trainer(config, str(tmp_path / "student")).train()


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"), (b"not an npz", "unreadable")])
def test_missing_or_damaged_file(student_run, tmp_path, content, message):
  _, config, _ = student_run
  path = tmp_path / "logits.npz"
  if content is not None:
    path.write_bytes(content)
  train = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "train"]
  with pytest.raises(TeacherLogitsError, match=message):
    teacher_logits.load(str(path), train, config.image_size)


def test_export_needs_a_teacher(data_dir, tmp_path, tiny_config):
  config = tiny_config(data_dir, model="student_c")
  with pytest.raises(ConfigError, match="teacher_workdir is empty"):
    teacher_logits.export_command(config, str(tmp_path))


def _split(dataset="synthetic_faces", labels=(0, 1, 2, 3), class_names=None):
  labels = np.asarray(labels, np.int32)
  kwargs = {} if class_names is None else {"class_names": class_names}
  return SplitData(images=np.zeros((len(labels), 8, 8, 1), np.uint8),
                   labels=labels, indices=np.arange(len(labels)),
                   dataset=dataset, version="1.0.0", split="train", **kwargs)


@pytest.mark.parametrize("split,size,message", [
    (_split("fer2013"), 16, "trained on synthetic_faces, but this student "
     "trains on fer2013"),
    (_split(class_names=tuple("abcdefg")), 16, "is labelled"),
    (_split(), 48, "--config.image_size=16"),
])
def test_teacher_of_another_dataset_labels_or_size_is_refused(
    teacher_run, split, size, message):
  teacher = checkpointing.load_model(teacher_run[0])
  with pytest.raises(CheckpointError, match=message):
    teacher_logits.check_teacher(teacher, split, size)
  teacher_logits.check_teacher(teacher, _split(), 16)  # Its own: accepted.


def test_teacher_near_chance_is_warned_about(caplog):
  split = _split(labels=[3] * 6 + [0] * 4)  # Majority class: 60%.
  with caplog.at_level(logging.WARNING):
    teacher_logits.warn_if_near_chance(0.62, split, "runs/t")
  assert "NEAR CHANCE" in caplog.text and "60.00%" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    teacher_logits.warn_if_near_chance(0.9, split, "runs/t")
  assert "NEAR CHANCE" not in caplog.text
