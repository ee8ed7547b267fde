"""In-memory splits and the names every dataset shares.

The dataset layer's light core: :class:`SplitData` (a split held as numpy
arrays), inverse-frequency :func:`class_weights` and the stratified
:func:`holdout_mask`, plus the label, dataset and validation-mode names
re-exported from :mod:`mre_jax.config.labels` and
:mod:`mre_jax.config.dataset_names`.
Reading downloaded files lives in :mod:`mre_jax.datasets.sources`; the TFDS
builders, preparing and loading in :mod:`mre_jax.datasets.builders`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mre_jax.config.dataset_names import DATASET_NAMES
from mre_jax.config.dataset_names import VALIDATION_MODES
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.errors import DatasetError

__all__ = [
    "CLASS_NAMES",
    "DATASET_NAMES",
    "HOLDOUT_EVERY",
    "NUM_CLASSES",
    "SplitData",
    "VALIDATION_MODES",
    "class_weights",
    "holdout_mask",
]

# Every HOLDOUT_EVERY-th example of each class becomes validation (10%).
HOLDOUT_EVERY = 10


@dataclasses.dataclass(frozen=True, eq=False)
class SplitData:
  """One split held in memory.

  Attributes:
    images: uint8 ``(N, H, W, C)``; ``C`` is 1 (grayscale) or 3 (RGB).
    labels: int32 ``(N,)`` in the canonical order of :data:`CLASS_NAMES`.
    indices: int64 ``(N,)`` positions of the examples in the underlying TFDS
      split, used to align precomputed per-example outputs such as teacher
      logits.
    dataset: the dataset name, e.g. ``"fer2013"``.
    version: the builder version, e.g. ``"1.0.0"``.
    split: what was loaded: ``"train"``, ``"validation"``, ``"test"``,
      ``"train-holdout"`` (train without the holdout) or ``"holdout"``.
    class_names: the label names, index-aligned with the labels.
  """
  images: np.ndarray
  labels: np.ndarray
  indices: np.ndarray
  dataset: str
  version: str
  split: str
  class_names: tuple[str, ...] = CLASS_NAMES

  def __post_init__(self):
    n = self.labels.shape[0]
    if self.images.ndim != 4 or self.images.shape[0] != n:
      raise DatasetError(
          f"{self.dataset}/{self.split}: images {self.images.shape} do not "
          f"match {n} labels")
    if self.indices.shape != (n,):
      raise DatasetError(
          f"{self.dataset}/{self.split}: indices {self.indices.shape} do not "
          f"match {n} labels")

  @property
  def num_examples(self) -> int:
    return int(self.labels.shape[0])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def subset(self, mask: np.ndarray, split: str) -> SplitData:
    """The examples selected by a boolean ``mask``, renamed to ``split``."""
    return dataclasses.replace(
        self, images=self.images[mask], labels=self.labels[mask],
        indices=self.indices[mask], split=split)


def class_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """The share of each class in ``labels``; an absent class counts once, so
  that its log stays finite."""
  counts = np.bincount(np.asarray(labels).reshape(-1),
                       minlength=num_classes).astype(np.float64)
  return np.maximum(counts, 1) / max(counts.sum(), 1)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Inverse-frequency class weights ``w_c = n / (K * n_c)``.

  ``n`` is the number of labels, ``K`` the number of classes and ``n_c`` the
  count of class ``c``, so a balanced dataset gets all-ones weights and the
  label-weighted mean weight is 1. Classes absent from ``labels`` get weight 0.

  Args:
    labels: integer labels in ``[0, num_classes)``.
    num_classes: ``K``.

  Returns:
    float32 ``(K,)`` weights.
  """
  labels = np.asarray(labels).reshape(-1)
  if num_classes < 1:
    raise DatasetError(f"num_classes must be positive, got {num_classes}")
  if labels.size == 0:
    raise DatasetError("cannot compute class weights from zero labels")
  if not np.issubdtype(labels.dtype, np.integer):
    raise DatasetError(f"labels must be integers, got dtype {labels.dtype}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise DatasetError(
        f"labels must lie in [0, {num_classes}), got values in "
        f"[{labels.min()}, {labels.max()}]")
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  safe = np.maximum(counts, 1.0)
  weights = np.where(counts > 0, labels.size / (num_classes * safe), 0.0)
  return weights.astype(np.float32)


def holdout_mask(labels: np.ndarray, every: int = HOLDOUT_EVERY) -> np.ndarray:
  """Deterministic stratified holdout: every ``every``-th example per class.

  Within each class, taken in the given order, the ``every``-th,
  ``2*every``-th, ... examples are selected, i.e. ``floor(n_c / every)``
  examples of a class with ``n_c`` examples (10% for ``every=10``).

  Args:
    labels: integer labels, in the order that defines the selection.
    every: the selection period.

  Returns:
    A boolean mask, True for the held-out examples.
  """
  labels = np.asarray(labels)
  mask = np.zeros(labels.shape[0], dtype=bool)
  for c in np.unique(labels):
    positions = np.flatnonzero(labels == c)
    mask[positions[every - 1::every]] = True
  return mask
