"""Train-only augmentations: what each does, determinism, and sharding."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax.data import augment
from mre_jax.data import input_pipeline
from mre_jax.errors import ConfigError

SIZE = 16
affine = jax.jit(augment.affine, static_argnames="fill")
erase = jax.jit(augment.erase, static_argnames="fill")
random_boxes = jax.jit(augment.random_boxes, static_argnums=(1, 2))


def _images(batch=4, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, SIZE, SIZE, 3))


def test_integer_shift_moves_a_pattern_exactly():
  images = np.zeros((1, SIZE, SIZE, 3), np.float32)
  images[0, 5:8, 6:9] = np.arange(27, dtype=np.float32).reshape(3, 3, 3) + 1
  out = affine(jnp.asarray(images), jnp.zeros(1),
                       jnp.asarray([[2.0, -3.0]]), fill=0.0)
  expected = np.zeros_like(images)
  expected[0, 7:10, 3:6] = images[0, 5:8, 6:9]
  np.testing.assert_array_equal(out, expected)


def test_pixels_from_outside_take_the_fill():
  images = jnp.ones((1, SIZE, SIZE, 1))
  out = np.asarray(affine(images, jnp.zeros(1),
                                  jnp.asarray([[0.0, 4.0]]), fill=-1.0))
  np.testing.assert_array_equal(out[0, :, :4], -1.0)
  np.testing.assert_array_equal(out[0, :, 4:], 1.0)


def test_no_warp_is_the_identity_and_a_quarter_turn_is_rot90():
  images = _images()
  zeros = jnp.zeros(4)
  np.testing.assert_array_equal(
      affine(images, zeros, jnp.zeros((4, 2))), images)
  turned = affine(images, jnp.full(4, math.pi / 2), jnp.zeros((4, 2)))
  np.testing.assert_allclose(turned, np.rot90(images, k=-1, axes=(1, 2)),
                             atol=1e-5)


def test_erase_changes_only_the_rectangle():
  images = _images(2)
  boxes = jnp.asarray([[3, 4, 5, 2], [0, 0, 0, 7]], jnp.int32)
  out = np.asarray(erase(images, boxes, fill=0.0))
  changed = np.any(out != np.asarray(images), axis=-1)
  expected = np.zeros((2, SIZE, SIZE), bool)
  expected[0, 3:8, 4:6] = True  # The second box has height 0: not erased.
  np.testing.assert_array_equal(changed, expected)
  np.testing.assert_array_equal(out[0, 3:8, 4:6], 0.0)


def test_random_boxes_fit_and_follow_the_probability():
  boxes = np.asarray(random_boxes(jax.random.key(0), 512, 32, 1.0))
  top, left, height, width = boxes.T
  assert np.all(height >= 1) and np.all(width >= 1)
  assert np.all(top + height <= 32) and np.all(left + width <= 32)
  area = height * width / 32**2
  # ERASE_AREA, give or take the rounding of the sides and the clipping.
  assert 0.01 <= area.min() and area.max() <= 0.4
  assert area.min() < 0.05 and area.max() > 0.25
  assert len({tuple(b) for b in boxes}) > 400
  none = random_boxes(jax.random.key(0), 512, 32, 0.0)
  assert not np.any(np.asarray(none)[:, 2])
  some = np.asarray(random_boxes(jax.random.key(1), 512, 32, 0.25))
  assert 0.2 < np.mean(some[:, 2] > 0) < 0.3


def test_random_affine_stays_in_range():
  angles, shifts = augment.random_affine(jax.random.key(0), 256, 64, 0.1,
                                         10.0)
  assert angles.shape == (256,) and shifts.shape == (256, 2)
  assert np.abs(angles).max() <= math.radians(10) + 1e-6
  assert np.abs(angles).max() > math.radians(9)
  assert np.abs(shifts).max() <= 6.4 + 1e-5
  assert np.abs(shifts).max() > 6.0


def test_zoom_scales_a_pattern_about_the_centre():
  """A square of side 4 at the centre of a 16x16 image, zoomed 2x, covers a
  square of side about 8; zooming out halves it. Scales of 1 change
  nothing, and the warp stream without scale jitter is unchanged."""
  images = np.zeros((2, 16, 16, 1), np.float32)
  images[:, 6:10, 6:10] = 1.0
  none = np.zeros(2, np.float32)
  out = np.asarray(affine(images, none, np.zeros((2, 2), np.float32),
                          scales=np.asarray([2.0, 0.5], np.float32)))
  assert 50 <= (out[0] > 0.5).sum() <= 80
  assert 2 <= (out[1] > 0.5).sum() <= 6
  np.testing.assert_allclose(out[0], out[0, ::-1], atol=1e-6)
  same = affine(images, none, np.zeros((2, 2), np.float32),
                scales=np.ones(2, np.float32))
  np.testing.assert_array_equal(same, images)
  scales = augment.random_scales(jax.random.key(0), 256, 0.1)
  assert 0.9 <= float(scales.min()) < 0.92 and 1.08 < float(scales.max()) <= 1.1


def test_apply_is_deterministic_keeps_shape_and_off_is_identity():
  images = _images()
  full = augment.Augmentation(shift=0.1, rotation=10.0, erasing=0.5,
                              scale=0.1)
  run = jax.jit(lambda x, rng: augment.apply(x, rng, full))
  first = run(images, jax.random.key(1))
  assert first.shape == images.shape and first.dtype == images.dtype
  np.testing.assert_array_equal(first, run(images, jax.random.key(1)))
  assert not np.allclose(first, run(images, jax.random.key(2)))
  assert not np.allclose(first, images)
  off = augment.apply(images, jax.random.key(1), augment.Augmentation())
  assert off is images and not augment.Augmentation().enabled


@pytest.mark.parametrize("field,value", [
    ("shift", 0.6), ("rotation", -1.0), ("erasing", 1.5), ("scale", 0.7)])
def test_bad_strengths_name_the_field(field, value):
  with pytest.raises(ConfigError, match=f"config.augment_{field}="):
    augment.Augmentation(**{field: value})


def test_augmented_batches_are_the_same_on_1_and_4_devices_in_a_scan():
  """Per-example draws in the global view: the mesh changes nothing, and
  the flips are those drawn without augmentation."""
  rng = np.random.default_rng(0)
  host = {"image": rng.integers(0, 256, (32, 12, 12, 1), np.uint8),
          "label": np.zeros(32, np.int32)}
  full = augment.Augmentation(shift=0.1, rotation=10.0, erasing=0.5)
  results = []
  for num_devices, augmentation in ((1, full), (4, full), (4, None)):
    mesh = input_pipeline.make_mesh(num_devices)
    data = input_pipeline.put_on_mesh(host, mesh)

    @jax.jit
    def two_steps(data, mesh=mesh, augmentation=augmentation):
      perm = jnp.arange(32, dtype=jnp.int32)
      def step(_, i):
        batch = input_pipeline.train_batch(
            data, jax.random.fold_in(jax.random.key(3), i), perm, i,
            batch_size=16, image_size=16, mesh=mesh,
            augmentation=augmentation)
        return None, (batch["image"], batch["flip"])
      return jax.lax.scan(step, None, jnp.arange(2))[1]

    results.append(two_steps(data))
  (one, flips), (four, flips4), (plain, plain_flips) = results
  assert one.shape == (2, 16, 16, 16, 3) and one.dtype == jnp.float32
  np.testing.assert_allclose(one, four, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(flips, flips4)
  np.testing.assert_array_equal(flips, plain_flips)
  assert not np.allclose(one, plain)
