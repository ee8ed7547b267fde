"""One way to load a model: from the checkpoint's own description."""

import jax
import numpy as np
import pytest

from mre_jax import models
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.errors import CheckpointError
from mre_jax.workdir import checkpointing


def test_load_model_rebuilds_the_trained_model(teacher_run):
  workdir, config, results = teacher_run
  loaded = checkpointing.load_model(workdir)
  assert loaded.name == "teacher" and loaded.model.width == 4
  assert loaded.model.se_reduction == models.MODEL_SPECS["teacher"].se_reduction
  assert loaded.image_size == config.image_size == 16
  assert loaded.class_names == CLASS_NAMES and loaded.channels == 1
  assert loaded.step == results["test"]["checkpoint_step"]
  manager = checkpointing.open_manager(workdir, read_only=True)
  raw = checkpointing.restore(manager, loaded.step,
                              model=models.abstract_variables(loaded.model))
  jax.tree.map(np.testing.assert_array_equal, loaded.variables,
               raw["model"])


def test_which_checkpoint(teacher_run):
  workdir = teacher_run[0]
  latest = checkpointing.load_model(workdir, "latest")
  assert latest.step == latest.meta["epoch"] == 2
  assert checkpointing.load_model(workdir, 2).step == 2
  with pytest.raises(CheckpointError, match="expected 'latest', 'best'"):
    checkpointing.load_model(workdir, "newest")
  with pytest.raises(CheckpointError, match="no checkpoint for epoch 7"):
    checkpointing.load_model(workdir, 7)


def test_not_a_workdir(tmp_path):
  with pytest.raises(CheckpointError, match="holds no checkpoints"):
    checkpointing.load_model(str(tmp_path))


def test_checkpoint_without_a_model_description(tmp_path):
  model = models.get_model("student_c", width=2)
  variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype),
                           models.abstract_variables(model))
  manager = checkpointing.open_manager(str(tmp_path))
  checkpointing.save(manager, 1, model=variables,
                     meta={"model": {"name": "student_c", "width": 2}})
  manager.close()
  with pytest.raises(CheckpointError, match="older mre_jax"):
    checkpointing.load_model(str(tmp_path), "latest")


def test_model_meta_needs_a_name_per_class():
  model = models.get_model("student_c", width=2, num_classes=3)
  with pytest.raises(CheckpointError, match="3 outputs"):
    checkpointing.model_meta("student_c", model)
  assert checkpointing.model_meta(
      "student_c", model, ("a", "b", "c"))["num_classes"] == 3
