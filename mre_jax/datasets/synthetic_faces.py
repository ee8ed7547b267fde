"""Procedurally drawn 48x48 grayscale faces: an offline stand-in for FER2013.

Each face is a skin-toned ellipse with two eyes, two brows, a faint nose and a
mouth. The class sets the expression through seven parameters (mouth curve,
opening, width and asymmetry, eye opening, brow height and brow tilt), e.g.
happy: a wide upward-curved mouth and narrowed eyes; surprise: a round open
mouth, wide eyes and raised brows; angry: a tight mouth and lowered brows
tilted down towards the nose. The expression is blended with neutral at a
random intensity and jittered, then drawn under random pose (position, scale,
roll, yaw), lighting gradient, gain, occlusion and noise. Classes therefore
overlap: a small CNN learns them well but not perfectly.

Generation is vectorised numpy, deterministic in the config's seed, and takes
a second or two for the default 8,000 faces; nothing is downloaded. Labels are
balanced (each class within one example of ``size / 7``).

Configs: ``default`` (train 6,000 / validation 1,000 / test 1,000, seed 0),
``tiny`` (512 / 128 / 128, seed 0), or any sizes and seed through
:func:`make_config` or a config name such as ``train2000_val500_test500_seed3``
(accepted by :func:`mre_jax.datasets.prepare` and ``load_splits``).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow_datasets as tfds

from mre_jax.datasets import builders
from mre_jax.datasets import common
from mre_jax.errors import DatasetError

IMAGE_SIZE = 48
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
SPLITS = ("train", "validation", "test")
# Splits are kept in memory by TFDS's writer (its disk spill needs TensorFlow).
MAX_SPLIT_SIZE = 200_000
_CHUNK = 1024
_CUSTOM_NAME = re.compile(r"train(\d+)_val(\d+)_test(\d+)_seed(\d+)")

# Expression parameters per canonical class, in the columns of _PARAM_NAMES:
# mouth curve (> 0 smiles), mouth opening, mouth half-width, mouth asymmetry
# (sign drawn at random), eye half-height, brow height (negative is up) and
# brow tilt (> 0 lowers the inner ends, as in a frown).
_PARAM_NAMES = ("curve", "opening", "width", "asymmetry", "eye", "brow",
                "tilt")
_EXPRESSIONS = np.array([
    # curve opening width asym  eye   brow   tilt
    [-0.35, 0.00, 0.24, 0.00, 0.070, -0.37, 0.13],   # angry
    [-0.60, 0.03, 0.27, 0.35, 0.060, -0.41, 0.07],   # disgust
    [-0.30, 0.10, 0.36, 0.00, 0.160, -0.53, -0.09],  # fear
    [1.60, 0.06, 0.40, 0.00, 0.070, -0.47, 0.00],    # happy
    [-1.30, 0.00, 0.29, 0.00, 0.075, -0.46, -0.12],  # sad
    [0.10, 0.22, 0.17, 0.00, 0.170, -0.58, -0.02],   # surprise
    [0.00, 0.00, 0.30, 0.00, 0.110, -0.46, 0.00],    # neutral
], dtype=np.float32)
_NEUTRAL = _EXPRESSIONS[common.CLASS_NAMES.index("neutral")]
_JITTER = np.array([0.25, 0.02, 0.035, 0.06, 0.018, 0.03, 0.035],
                   dtype=np.float32)


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Split sizes and seed of a synthetic_faces variant."""
  train_size: int = 6000
  validation_size: int = 1000
  test_size: int = 1000
  seed: int = 0

  def sizes(self) -> dict[str, int]:
    return {"train": self.train_size, "validation": self.validation_size,
            "test": self.test_size}


def make_config(train_size: int, validation_size: int, test_size: int,
                seed: int = 0) -> SyntheticFacesConfig:
  """A custom config, named ``train{N}_val{N}_test{N}_seed{S}``."""
  config = SyntheticFacesConfig(
      name=f"train{train_size}_val{validation_size}_test{test_size}"
           f"_seed{seed}",
      description=f"{train_size}/{validation_size}/{test_size} faces, "
                  f"seed {seed}.",
      train_size=train_size, validation_size=validation_size,
      test_size=test_size, seed=seed)
  _check_config(config)
  return config


def _check_config(config: SyntheticFacesConfig) -> None:
  for split, size in config.sizes().items():
    if not common.NUM_CLASSES <= size <= MAX_SPLIT_SIZE:
      raise DatasetError(
          f"synthetic_faces config {config.name!r}: {split} size {size} must "
          f"lie in {common.NUM_CLASSES}..{MAX_SPLIT_SIZE}")
  if config.seed < 0:
    raise DatasetError(
        f"synthetic_faces config {config.name!r}: seed must be >= 0")


# ----------------------------------------------------------------------------
# Rendering.


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 + 0.5 * np.tanh(0.5 * x)


def _segment_distance(u, v, x0, y0, x1, y1):
  """Distance from points (u, v) to the segments (x0, y0)-(x1, y1)."""
  dx, dy = x1 - x0, y1 - y0
  t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0, 1)
  return np.hypot(u - x0 - t * dx, v - y0 - t * dy)


def _sample_params(labels: np.ndarray, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
  """Expression and nuisance parameters, each shaped (n, 1, 1)."""
  n = labels.shape[0]
  intensity = rng.uniform(0.5, 1.0, size=(n, 1)).astype(np.float32)
  expression = (_NEUTRAL + intensity * (_EXPRESSIONS[labels] - _NEUTRAL)
                + rng.normal(size=(n, len(_PARAM_NAMES))) * _JITTER)
  expression[:, 3] *= rng.choice([-1.0, 1.0], size=n)
  params = {name: expression[:, i] for i, name in enumerate(_PARAM_NAMES)}
  params["opening"] = np.maximum(params["opening"], 0.0)
  params["width"] = np.maximum(params["width"], 0.1)
  params["eye"] = np.maximum(params["eye"], 0.02)
  params.update(
      cx=IMAGE_SIZE / 2 + np.clip(rng.normal(0, 2.0, n), -5, 5),
      cy=IMAGE_SIZE / 2 + np.clip(rng.normal(0, 2.0, n), -5, 5),
      scale=rng.uniform(14.0, 19.0, n),
      roll=np.clip(rng.normal(0, 0.2, n), -0.5, 0.5),
      yaw=rng.uniform(-0.12, 0.12, n),
      mouth_y=rng.normal(0.5, 0.03, n),
      background=rng.uniform(0.05, 0.95, n),
      skin=rng.uniform(0.55, 0.9, n),
      feature=rng.uniform(0.05, 0.25, n),
      light=rng.uniform(0.0, 0.5, n),
      light_angle=rng.uniform(0, 2 * np.pi, n),
      gain=rng.uniform(0.7, 1.2, n),
      offset=rng.uniform(-0.15, 0.15, n),
      occluded=rng.random(n) < 0.25,
      occ_x=rng.uniform(0, IMAGE_SIZE - 6, n),
      occ_y=rng.uniform(0, IMAGE_SIZE - 6, n),
      occ_w=rng.uniform(6, 18, n),
      occ_h=rng.uniform(6, 18, n),
      occ_value=rng.random(n),
      noise=rng.uniform(0.01, 0.05, n),
  )
  return {k: np.asarray(v, np.float32).reshape(n, 1, 1)
          for k, v in params.items()}


def render_faces(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Draws one face per label; returns uint8 ``(n, 48, 48, 1)``."""
  p = _sample_params(labels, rng)
  n = labels.shape[0]
  y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
  dx, dy = x - p["cx"], y - p["cy"]
  cos, sin = np.cos(p["roll"]), np.sin(p["roll"])
  u = (dx * cos + dy * sin) / p["scale"]
  v = (-dx * sin + dy * cos) / p["scale"]
  soft = 0.7 / p["scale"]  # About 0.7 pixel of edge blur, in face units.

  face = _sigmoid((1.0 - np.hypot(u, v / 1.25)) / soft)
  image = p["background"] * (1 - face) + p["skin"] * face
  ink = np.zeros_like(image)  # How much of the dark feature ink covers.

  yaw = p["yaw"]
  for side in (-1.0, 1.0):
    ex, ey = side * 0.36 + yaw, -0.15
    eye_d = np.hypot((u - ex) / 0.17, (v - ey) / p["eye"]) - 1.0
    ink = np.maximum(ink, _sigmoid(-eye_d * p["eye"] / soft))
    brow_y = p["brow"]
    brow_d = _segment_distance(u, v, side * 0.12 + yaw, brow_y + p["tilt"],
                               side * 0.55 + yaw, brow_y - p["tilt"])
    ink = np.maximum(ink, _sigmoid((0.045 - brow_d) / soft))
  nose_d = _segment_distance(u, v, yaw * 1.3, 0.02, yaw * 1.3 - 0.04, 0.24)
  ink = np.maximum(ink, 0.35 * _sigmoid((0.03 - nose_d) / soft))

  mx = u - yaw * 0.8
  center = p["mouth_y"] - p["curve"] * (mx * mx - p["width"] ** 2 / 3) + (
      p["asymmetry"] * mx)
  half_height = 0.03 + p["opening"] * np.sqrt(
      np.clip(1 - (mx / p["width"]) ** 2, 0, 1))
  mouth = (_sigmoid((half_height - np.abs(v - center)) / soft)
           * _sigmoid((p["width"] - np.abs(mx)) / soft))
  ink = np.maximum(ink, mouth)

  image = image * (1 - ink * face) + p["feature"] * ink * face
  cos_l, sin_l = np.cos(p["light_angle"]), np.sin(p["light_angle"])
  ramp = ((x - IMAGE_SIZE / 2) * cos_l + (y - IMAGE_SIZE / 2) * sin_l) / (
      IMAGE_SIZE / 2)
  image = image * (1 + p["light"] * ramp) * p["gain"] + p["offset"]
  occlusion = p["occluded"] * (
      (x >= p["occ_x"]) & (x < p["occ_x"] + p["occ_w"])
      & (y >= p["occ_y"]) & (y < p["occ_y"] + p["occ_h"]))
  image = np.where(occlusion > 0, p["occ_value"], image)
  image = image + p["noise"] * rng.standard_normal(image.shape,
                                                   dtype=np.float32)
  pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
  return pixels.reshape(n, *IMAGE_SHAPE)


def generate_split(size: int, seed: int, split: str) -> builders.Examples:
  """The faces of one split: balanced labels, deterministic in the seed."""
  split_index = SPLITS.index(split)
  rng = np.random.default_rng([seed, split_index])
  labels = rng.permutation(np.arange(size) % common.NUM_CLASSES)
  images = np.empty((size, *IMAGE_SHAPE), dtype=np.uint8)
  for chunk, start in enumerate(range(0, size, _CHUNK)):
    chunk_rng = np.random.default_rng([seed, split_index, chunk + 1])
    stop = min(start + _CHUNK, size)
    images[start:stop] = render_faces(labels[start:stop], chunk_rng)
  keys = tuple(f"{split}/{i:06d}" for i in range(size))
  return builders.Examples(keys, labels.astype(np.int64), images)


# ----------------------------------------------------------------------------
# Builder.


class SyntheticFaces(builders.ArrayRecordBuilder):
  """Procedural 48x48 grayscale faces in seven expression classes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  IMAGE_SHAPE = IMAGE_SHAPE
  BUILDER_CONFIGS = [
      SyntheticFacesConfig(
          name="default", description="6,000/1,000/1,000 faces, seed 0.",
          train_size=6000, validation_size=1000, test_size=1000, seed=0),
      SyntheticFacesConfig(
          name="tiny", description="512/128/128 faces, seed 0.",
          train_size=512, validation_size=128, test_size=128, seed=0),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  @classmethod
  def resolve_config(cls, config: str | None
                     ) -> str | tfds.core.BuilderConfig | None:
    """Built-in names pass through; ``train{N}_val{N}_test{N}_seed{S}`` too."""
    if config is None or config in [c.name for c in cls.BUILDER_CONFIGS]:
      return config
    match = _CUSTOM_NAME.fullmatch(config)
    if match is None:
      raise DatasetError(
          f"unknown config {config!r} for dataset 'synthetic_faces' "
          "(accepted: default, tiny, or train<N>_val<N>_test<N>_seed<S>, "
          "e.g. train2000_val500_test500_seed3)")
    return make_config(*(int(g) for g in match.groups()))

  def _info(self) -> tfds.core.DatasetInfo:
    return self._image_info(
        description=__doc__.split("\n\n", 1)[0])

  def _load_examples(self, dl_manager: tfds.download.DownloadManager
                     ) -> dict[str, builders.Examples]:
    del dl_manager  # Nothing to download.
    config = self.builder_config
    _check_config(config)
    return {split: generate_split(size, config.seed, split)
            for split, size in config.sizes().items()}
