"""Train-only image augmentation, computed on the device inside the train step.

Applied after :func:`mre_jax.data.input_pipeline.preprocess` (which resizes,
flips and normalises; evaluation and inference use it alone) to the normalised
float images ``(B, S, S, C)``:

* a random affine warp, rotation by up to ``rotation`` degrees about the
  centre, a zoom by a factor in ``[1 - scale, 1 + scale]`` about it (scale
  jitter: the detector's crops vary in size) and a shift by up to
  ``shift * S`` pixels per axis, as one bilinear
  resample (four row gathers per pixel, cheap on every backend); pixels from
  outside the image take the value 0: after normalisation, the ImageNet mean
  colour;
* random erasing (Zhong et al., 2020): with probability ``erasing`` a
  rectangle of 2-33% of the image, aspect ratio 0.3-3.3 (torchvision's
  ``RandomErasing`` defaults), is set to 0, that mean colour.

Every random draw is a function of the step's RNG and has shape ``(B, ...)``
in the global view, like the flip bits, so a seed gives the same batch on any
number of devices and in ``lax.scan`` chunks; all work is per example, so a
batch sharded on its first axis needs no communication. Disabled
augmentations cost nothing: their code is not traced.

When distilling, the teacher's logits are those of the flipped or unflipped
but otherwise unaugmented image: precomputed logits cannot follow a random
warp, and the teacher's view of the whole face remains a sound target.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from mre_jax.config import config_lib

ERASE_AREA = (0.02, 0.33)  # Fraction of the image (torchvision default).
ERASE_RATIO = (0.3, 3.3)  # Height / width (torchvision default).
FILL = 0.0  # The normalised ImageNet mean colour.


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Strengths of the train-only augmentations; zero turns one off.

  Attributes:
    shift: largest shift per axis as a fraction of the image side.
    rotation: largest rotation in degrees, either way.
    erasing: probability of erasing one rectangle of an image.
    scale: largest zoom away from 1, either way (0.1: factors 0.9-1.1).
  """
  shift: float = 0.0
  rotation: float = 0.0
  erasing: float = 0.0
  scale: float = 0.0

  def __post_init__(self):
    config_lib.check_augmentation(dataclasses.asdict(self))

  @classmethod
  def from_config(cls, config: Any) -> Augmentation:
    """From a run's ``augment_shift``, ``augment_rotation``,
    ``augment_erasing`` and ``augment_scale`` fields (the last absent from
    runs older than it: 0)."""
    return cls(shift=float(config.augment_shift),
               rotation=float(config.augment_rotation),
               erasing=float(config.augment_erasing),
               scale=float(config.get("augment_scale", 0.0)))

  @property
  def warps(self) -> bool:
    return self.shift > 0 or self.rotation > 0 or self.scale > 0

  @property
  def enabled(self) -> bool:
    return self.warps or self.erasing > 0


def random_affine(rng: jax.Array, batch_size: int, image_size: int,
                  shift: float, rotation: float
                  ) -> tuple[jax.Array, jax.Array]:
  """Per-example warp parameters, uniform in the given ranges.

  Returns:
    angles: float32 (B,), radians in ``[-rotation, rotation]`` degrees.
    shifts: float32 (B, 2), (down, right) pixels in ``[-shift, shift] * S``.
  """
  angle_rng, shift_rng = jax.random.split(rng)
  limit = math.radians(rotation)
  angles = jax.random.uniform(angle_rng, (batch_size,), jnp.float32,
                              -limit, limit)
  pixels = shift * image_size
  shifts = jax.random.uniform(shift_rng, (batch_size, 2), jnp.float32,
                              -pixels, pixels)
  return angles, shifts


def random_scales(rng: jax.Array, batch_size: int,
                  scale: float) -> jax.Array:
  """float32 (B,) zoom factors, uniform in ``[1 - scale, 1 + scale]``."""
  return jax.random.uniform(rng, (batch_size,), jnp.float32, 1 - scale,
                            1 + scale)


def affine(images: jax.Array, angles: jax.Array, shifts: jax.Array,
           fill: float = FILL, scales: jax.Array | None = None) -> jax.Array:
  """Rotates and zooms each image about its centre, then shifts it; bilinear.

  Output pixel ``p`` takes the input at ``R(-angle) (p - c - shift) / zoom +
  c`` (``c`` the centre), so a pattern at ``q`` moves to ``q + shift``; a
  zero angle, no zoom and an integer shift move pixels exactly. Samples
  outside the image read ``fill``.

  Args:
    images: float (B, H, W, C).
    angles: (B,) radians, clockwise as displayed (y pointing down).
    shifts: (B, 2) pixels, (down, right).
    fill: the value of samples outside the image.
    scales: (B,) zoom factors (above 1 enlarges the face); None: 1.
  """
  b, h, w, c = images.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing="ij")
  cy, cx = (h - 1) / 2, (w - 1) / 2
  cos = jnp.cos(angles)[:, None, None]
  sin = jnp.sin(angles)[:, None, None]
  if scales is not None:
    cos, sin = cos / scales[:, None, None], sin / scales[:, None, None]
  dy = ys - cy - shifts[:, 0, None, None]
  dx = xs - cx - shifts[:, 1, None, None]
  src_y = cos * dy - sin * dx + cy
  src_x = sin * dy + cos * dx + cx
  y0, x0 = jnp.floor(src_y), jnp.floor(src_x)
  wy, wx = src_y - y0, src_x - x0
  flat = images.reshape(b, h * w, c)
  out = jnp.zeros_like(images)
  for oy, ox, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                         (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
    yi, xi = y0 + oy, x0 + ox
    inside = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
    index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
             ).astype(jnp.int32).reshape(b, h * w)
    values = jax.vmap(lambda im, i: jnp.take(im, i, axis=0))(flat, index)
    values = jnp.where(inside[..., None], values.reshape(b, h, w, c),
                       jnp.asarray(fill, images.dtype))
    out = out + weight[..., None].astype(images.dtype) * values
  return out


def random_boxes(rng: jax.Array, batch_size: int, image_size: int,
                 probability: float) -> jax.Array:
  """int32 (B, 4) rectangles ``(top, left, height, width)`` to erase.

  Area and aspect ratio are drawn from :data:`ERASE_AREA` and
  :data:`ERASE_RATIO` (log-uniform), sides rounded and clipped to the image;
  an example not erased (probability ``1 - probability``) gets height 0.
  """
  keys = jax.random.split(rng, 5)
  size = float(image_size)
  area = jax.random.uniform(keys[0], (batch_size,), jnp.float32,
                            *ERASE_AREA) * size * size
  log_ratio = jax.random.uniform(keys[1], (batch_size,), jnp.float32,
                                 math.log(ERASE_RATIO[0]),
                                 math.log(ERASE_RATIO[1]))
  ratio = jnp.exp(log_ratio)
  height = jnp.clip(jnp.round(jnp.sqrt(area * ratio)), 1, size)
  width = jnp.clip(jnp.round(jnp.sqrt(area / ratio)), 1, size)
  top = jnp.floor(jax.random.uniform(keys[2], (batch_size,)) *
                  (size - height + 1))
  left = jnp.floor(jax.random.uniform(keys[3], (batch_size,)) *
                   (size - width + 1))
  erased = jax.random.bernoulli(keys[4], probability, (batch_size,))
  height = jnp.where(erased, height, 0.0)
  return jnp.stack([top, left, height, width], axis=-1).astype(jnp.int32)


def erase(images: jax.Array, boxes: jax.Array,
          fill: float = FILL) -> jax.Array:
  """Sets each image's rectangle ``boxes[i] = (top, left, h, w)`` to fill."""
  _, h, w, _ = images.shape
  top, left, height, width = (boxes[:, k, None, None] for k in range(4))
  ys = jnp.arange(h, dtype=jnp.int32)[None, :, None]
  xs = jnp.arange(w, dtype=jnp.int32)[None, None, :]
  inside = ((ys >= top) & (ys < top + height) &
            (xs >= left) & (xs < left + width))
  return jnp.where(inside[..., None], jnp.asarray(fill, images.dtype), images)


def apply(images: jax.Array, rng: jax.Array, augmentation: Augmentation,
          constrain=lambda x: x) -> jax.Array:
  """The enabled augmentations of normalised images (B, S, S, C).

  ``constrain`` lays out each drawn parameter array like the batch (e.g.
  ``with_sharding_constraint`` on a mesh). Shape and dtype are kept.
  """
  batch, size = images.shape[0], images.shape[1]
  warp_rng, erase_rng = jax.random.split(rng)
  if augmentation.warps:
    angles, shifts = random_affine(warp_rng, batch, size, augmentation.shift,
                                   augmentation.rotation)
    # Drawn from a stream of its own, so that runs without scale jitter
    # keep their warps.
    scales = (constrain(random_scales(jax.random.fold_in(warp_rng, 2), batch,
                                      augmentation.scale))
              if augmentation.scale > 0 else None)
    images = affine(images, constrain(angles), constrain(shifts),
                    scales=scales)
  if augmentation.erasing > 0:
    boxes = random_boxes(erase_rng, batch, size, augmentation.erasing)
    images = erase(images, constrain(boxes))
  return images
