"""Class probabilities for face images, from a trained or imported model.

    predictor = Predictor.from_workdir("runs/fer/E1")
    probs = predictor.probabilities(faces)  # (N, 7), rows sum to 1.

Faces are uint8 images of any size, grey or RGB (or RGBA, whose alpha is
dropped): one array (N, H, W) / (N, H, W, C), or a list of single images of
different sizes. Each goes through exactly the training preprocessing
(:func:`mre_jax.input_pipeline.preprocess`, after matching the channels the
model was trained on), then a jitted forward pass in eval mode. Batches are
padded to power-of-two sizes up to ``batch_size``, so a stream of single
frames and a folder of thousands compile a handful of programs between them.
Nothing here imports the training code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import numpy as np

from mre_jax import checkpointing
from mre_jax import input_pipeline
from mre_jax import models
from mre_jax.errors import ImageError


def _as_image(image: Any, where: str) -> np.ndarray:
  """One image -> uint8 (H, W, C) with C in {1, 3}."""
  array = np.asarray(image)
  if array.dtype != np.uint8:
    raise ImageError(f"{where} has dtype {array.dtype}; expected uint8 pixels "
                     "(0-255), e.g. as read by PIL or OpenCV.")
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
    raise ImageError(f"{where} has shape {array.shape}; expected (H, W), "
                     "(H, W, 1), (H, W, 3) or (H, W, 4).")
  return array[..., :3] if array.shape[-1] == 4 else array


def as_images(images: Any) -> list[np.ndarray]:
  """A batch array or a list of single images -> uint8 (H, W, C) images."""
  if isinstance(images, (str, bytes)):
    raise ImageError(f"expected images as an array or a list, got "
                     f"{type(images).__name__} {images!r:.60}: read the image "
                     "file first, e.g. with PIL or OpenCV.")
  if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
    array = np.asarray(images)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
      raise ImageError(
          f"an array of shape {array.shape} looks like one colour image; "
          "pass a batch (N, H, W, C) or a list of images.")
    if array.ndim not in (3, 4):
      raise ImageError(
          f"images of shape {array.shape}: expected a batch (N, H, W) or "
          "(N, H, W, C), or a list of single images.")
    return [_as_image(a, f"image {i}") for i, a in enumerate(array)]
  if isinstance(images, Sequence):
    return [_as_image(a, f"image {i}") for i, a in enumerate(images)]
  raise ImageError(f"expected images as an array or a list, got "
                   f"{type(images).__name__}.")


def bucket(count: int, batch_size: int) -> int:
  """The padded batch for ``count`` images: a power of two <= batch_size."""
  return min(batch_size, 1 << max(count - 1, 0).bit_length())


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A model with its variables and preprocessing, ready for face crops."""
  model: models.ResEmoteNet
  variables: Any
  image_size: int
  class_names: tuple[str, ...]
  batch_size: int = 64
  channels: int | None = None  # Of the training images; None: keep input's.

  @classmethod
  def from_workdir(cls, workdir: str, which: str | int = "best",
                   batch_size: int = 64) -> Predictor:
    """The predictor of checkpoint ``which`` of a trained or imported run."""
    loaded = checkpointing.load_model(workdir, which)
    return cls(model=loaded.model, variables=loaded.variables,
               image_size=loaded.image_size, class_names=loaded.class_names,
               batch_size=batch_size, channels=loaded.channels)

  @functools.cached_property
  def forward(self):
    """Jitted ``(variables, uint8 (B, H, W, C)) -> float32 logits (B, K)``."""

    def forward(variables, images):
      images = input_pipeline.match_channels(images, self.channels)
      x = input_pipeline.preprocess(images, image_size=self.image_size)
      return self.model.apply(variables, x, train=False)

    return jax.jit(forward)

  def logits(self, images: Any) -> np.ndarray:
    """float32 logits (N, K) of ``images``, in order."""
    images = as_images(images)
    out = np.zeros((len(images), len(self.class_names)), np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
      by_shape.setdefault(image.shape, []).append(i)
    for ids in by_shape.values():
      for start in range(0, len(ids), self.batch_size):
        chunk = ids[start:start + self.batch_size]
        batch = np.stack([images[i] for i in chunk])
        padded = bucket(len(chunk), self.batch_size)
        if padded > len(chunk):
          pad = np.zeros((padded - len(chunk),) + batch.shape[1:], np.uint8)
          batch = np.concatenate([batch, pad])
        logits = self.forward(self.variables, batch)
        out[chunk] = np.asarray(logits)[:len(chunk)]
    return out

  def probabilities(self, images: Any) -> np.ndarray:
    """float32 class probabilities (N, K) of ``images``; rows sum to 1."""
    logits = self.logits(images).astype(np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)

  def __call__(self, images: Any) -> np.ndarray:
    return self.probabilities(images)
