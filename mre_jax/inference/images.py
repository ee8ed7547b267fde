"""Face images as the inference models take them: checks and batch sizes.

Pure numpy, shared by :class:`~mre_jax.inference.predictor.Predictor` and
:class:`~mre_jax.inference.exported.ExportedModel`, so that an exported model
can be used where neither flax nor orbax is installed.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

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


def padded_batches(images: list[np.ndarray], batch_size: int
                   ) -> Iterator[tuple[list[int], np.ndarray]]:
  """``(indices, uint8 batch)`` of images of one shape at a time.

  Each batch holds up to ``batch_size`` images and is padded with zero
  images to :func:`bucket`'s size, so a few programs serve every count.
  """
  by_shape: dict[tuple[int, ...], list[int]] = {}
  for i, image in enumerate(images):
    by_shape.setdefault(image.shape, []).append(i)
  for ids in by_shape.values():
    for start in range(0, len(ids), batch_size):
      chunk = ids[start:start + batch_size]
      batch = np.stack([images[i] for i in chunk])
      padded = bucket(len(chunk), batch_size)
      if padded > len(chunk):
        pad = np.zeros((padded - len(chunk),) + batch.shape[1:], np.uint8)
        batch = np.concatenate([batch, pad])
      yield chunk, batch
