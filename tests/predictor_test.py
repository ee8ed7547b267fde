"""The application predictor: training's preprocessing, any image size."""

import dataclasses

import numpy as np
import pytest

from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.errors import ImageError
from mre_jax.evaluation import predict
from mre_jax.inference import images as images_lib
from mre_jax.inference import predictor as predictor_lib
from mre_jax.inference.predictor import Predictor


@pytest.fixture(scope="module")
def teacher(teacher_run):
  return Predictor.from_workdir(teacher_run[0], batch_size=16)


def test_probabilities_equal_the_evaluation_of_the_split(teacher, teacher_run):
  """Same preprocessing and model as evaluation: same logits, any batch."""
  workdir, config, _ = teacher_run
  test = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "test"]
  mesh = input_pipeline.make_mesh(1)
  data = input_pipeline.put_on_mesh({"image": test.images}, mesh)
  loaded = predict.make_predict_fn(teacher.model, mesh, teacher.image_size)
  expected = predict.predict(loaded, teacher.variables, data, mesh, 64)
  np.testing.assert_allclose(teacher.logits(test.images), expected,
                             rtol=1e-5, atol=1e-5)
  probs = teacher.probabilities(test.images)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  assert np.mean(probs.argmax(-1) == test.labels) == pytest.approx(
      np.mean(expected.argmax(-1) == test.labels))
  assert teacher.image_size == 16 and teacher.class_names[3] == "happy"


def test_images_of_any_size_and_colour_keep_their_order(teacher):
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (40, 40), np.uint8)
  images = [grey, rng.integers(0, 256, (90, 70, 3), np.uint8),
            np.repeat(grey[..., None], 3, axis=-1),
            rng.integers(0, 256, (20, 30, 4), np.uint8), grey[..., None]]
  together = teacher.probabilities(images)
  alone = np.concatenate([teacher.probabilities([i]) for i in images])
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
  # A grey face as RGB, or with one channel, is the same face.
  np.testing.assert_allclose(together[2], together[0], atol=1e-6)
  np.testing.assert_allclose(together[4], together[0], atol=1e-6)
  # RGBA: the alpha channel is dropped.
  np.testing.assert_allclose(
      together[3], teacher.probabilities([images[3][..., :3]])[0], atol=1e-6)
  assert np.abs(together[1] - together[0]).max() > 1e-4  # Input matters.


def test_batches_larger_than_batch_size_are_split(teacher):
  images = np.random.default_rng(1).integers(0, 256, (37, 32, 32, 1),
                                             np.uint8)
  np.testing.assert_allclose(teacher.logits(images),
                             np.concatenate([teacher.logits(images[:20]),
                                             teacher.logits(images[20:])]),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 8, 8), np.float32), "dtype float32"),
    (np.zeros((8, 8, 3), np.uint8), "looks like one colour image"),
    ([np.zeros((8, 8, 2), np.uint8)], "shape"),
    (np.zeros((1, 1, 8, 8, 3), np.uint8), "expected a batch"),
    ("face.png", "expected images as an array or a list"),
])
def test_bad_images_are_refused(teacher, images, message):
  with pytest.raises(ImageError, match=message):
    teacher.probabilities(images)


def test_batch_buckets_are_powers_of_two_up_to_the_batch_size():
  assert [images_lib.bucket(n, 64) for n in (1, 2, 3, 5, 64, 65)] == [
      1, 2, 4, 8, 64, 64]
  assert images_lib.bucket(20, 16) == 16


def test_bound_forward_is_forward_with_the_predictors_variables(
    teacher, monkeypatch):
  images = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 1), np.uint8)
  expected = teacher.forward(teacher.variables, images)
  assert teacher.binds_variables  # A tiny model's: compiled in.
  # Only images are passed; constants fold in another order.
  assert len(teacher.lower(images).args_info[0]) == 1
  np.testing.assert_allclose(teacher.bound_forward(images), expected,
                             rtol=1e-5, atol=1e-6)
  monkeypatch.setattr(predictor_lib, "BIND_MAX_BYTES", 0)
  large = dataclasses.replace(teacher)
  assert not large.binds_variables  # Passed: exactly the same program.
  assert len(large.lower(images).args_info[0]) > 1
  np.testing.assert_array_equal(large.bound_forward(images), expected)
