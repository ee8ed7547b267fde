"""The TFDS builders' base class, and preparing and loading datasets.

One base class, so that every dataset writes the same features and fails with
the same DatasetError; the dataset modules only find and decode their files.

Every dataset is a registered TFDS ``GeneratorBasedBuilder`` that writes
``array_record`` files (readable without TensorFlow) with three features:

* ``image``: ``Tensor(shape=(H, W, C), dtype=uint8)``;
* ``label``: ``ClassLabel`` over :data:`CLASS_NAMES`, the canonical order;
* ``key``: the example's unique source key (a relative path inside the manual
  data, a CSV line, or a generated index).

:func:`prepare` builds a dataset once per ``data_dir``; :func:`load_splits`
reads prepared splits into memory as :class:`SplitData` and derives the
validation split. A dataset prepared from manual files records which files
(:mod:`mre_jax.datasets.provenance`), and is reused only while the manual dir
holds the same ones, or none at all.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import types
from collections.abc import Collection, Iterator
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from mre_jax.datasets import provenance
from mre_jax.datasets import sources
from mre_jax.datasets.common import CLASS_NAMES
from mre_jax.datasets.common import DATASET_NAMES
from mre_jax.datasets.common import NUM_CLASSES
from mre_jax.datasets.common import SplitData
from mre_jax.datasets.common import VALIDATION_MODES
from mre_jax.datasets.common import holdout_mask
from mre_jax.errors import DatasetError


@dataclasses.dataclass(frozen=True, eq=False)
class Examples:
  """The validated examples of one split, ready to be written."""
  keys: tuple[str, ...]
  labels: np.ndarray
  images: np.ndarray

  def check(self, split: str, shape: tuple[int, int, int]) -> None:
    """Raises DatasetError unless keys, labels and images are consistent."""
    n = len(self.keys)
    if n == 0:
      raise DatasetError(f"split {split!r} has no examples")
    if len(set(self.keys)) != n:
      seen, duplicates = set(), []
      for key in self.keys:
        if key in seen:
          duplicates.append(key)
        seen.add(key)
      raise DatasetError(
          f"split {split!r} has duplicate keys, e.g. {duplicates[:3]}")
    if self.labels.shape != (n,) or self.images.shape != (n, *shape):
      raise DatasetError(
          f"split {split!r}: {n} keys, labels {self.labels.shape}, images "
          f"{self.images.shape}; expected images of shape {shape}")
    if self.images.dtype != np.uint8:
      raise DatasetError(f"split {split!r}: images must be uint8")
    if self.labels.min() < 0 or self.labels.max() >= NUM_CLASSES:
      raise DatasetError(f"split {split!r}: labels outside 0..{NUM_CLASSES-1}")

  def select(self, mask: np.ndarray) -> Examples:
    keys = tuple(k for k, m in zip(self.keys, mask) if m)
    return Examples(keys, self.labels[mask], self.images[mask])


def _dataset_error_in_chain(error: BaseException) -> DatasetError | None:
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, DatasetError):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder,
                         skip_registration=True):
  """Base builder: array_record output, canonical labels, DatasetError.

  Subclasses set ``IMAGE_SHAPE`` and implement ``_info`` (with
  :meth:`_image_info`) and ``_load_examples``, which returns all splits
  already decoded and checked, so nothing is written unless every input file
  is valid. A DatasetError wrapped by TFDS on the way out is re-raised as a
  DatasetError.

  Builders with ``MANUAL_DOWNLOAD_INSTRUCTIONS`` find their files with
  :func:`sources.find_manual_source`: after preparing, the source it chose is
  recorded beside the prepared files, and an already prepared dataset is
  checked against the manual dir before it is reused (see
  :func:`provenance.check_reuse`).
  """

  IMAGE_SHAPE: tuple[int, int, int]

  def __init__(self, **kwargs: Any):
    # TFDS's default tfrecord writer needs TensorFlow; array_record does not.
    kwargs.setdefault("file_format", "array_record")
    self._manual_dir_used: pathlib.Path | None = None
    self._new_record: provenance.Record | None = None
    super().__init__(**kwargs)

  @classmethod
  def resolve_config(cls, config: str | None
                     ) -> str | tfds.core.BuilderConfig | None:
    """Maps a config name to what the constructor takes, or raises."""
    if config is None:
      return None
    names = [c.name for c in cls.BUILDER_CONFIGS]
    if not names:
      raise DatasetError(
          f"dataset {cls.name!r} has no configs, got config={config!r}")
    if config not in names:
      raise DatasetError(
          f"unknown config {config!r} for dataset {cls.name!r} "
          f"(accepted: {', '.join(names)})")
    return config

  def download_and_prepare(self, *, download_dir=None, download_config=None,
                           **kwargs: Any) -> None:
    download_config = download_config or tfds.download.DownloadConfig()
    if download_config.manual_dir:
      manual_dir = pathlib.Path(download_config.manual_dir)
    else:
      root = pathlib.Path(download_dir or
                          pathlib.Path(self.data_dir_root) / "downloads")
      manual_dir = root / "manual"
    self._manual_dir_used = manual_dir.expanduser().absolute()
    self._new_record = None
    if (self.MANUAL_DOWNLOAD_INSTRUCTIONS and self.data_path.exists() and
        not download_config.download_mode.overwrite_dataset):
      provenance.check_reuse(self.name, self.data_path, self._manual_dir_used,
                             self._locate_source)
    try:
      super().download_and_prepare(
          download_dir=download_dir, download_config=download_config, **kwargs)
    except DatasetError:
      raise
    except Exception as e:
      cause = _dataset_error_in_chain(e)
      if cause is None:
        raise
      raise DatasetError(str(cause)) from e
    if self._new_record is not None:  # Prepared now, not reused.
      provenance.write_record(self.data_path, self._new_record)

  def _locate_source(self, manual_dir: pathlib.Path,
                     skip: Collection[tuple[str, int]]
                     ) -> sources.SourceLocated | None:
    """Where ``_load_examples`` would read from, without reading it."""
    with sources.locating_only(skip):
      try:
        self._load_examples(types.SimpleNamespace(manual_dir=manual_dir))
      except sources.SourceLocated as located:
        return located
    return None  # Not found with find_manual_source: nothing to compare.

  def prepared_from(self) -> str:
    """Where the prepared data came from, for log lines."""
    if not self.MANUAL_DOWNLOAD_INSTRUCTIONS:
      config = self.builder_config.name if self.builder_config else "default"
      return f"generated from builder config {config!r}"
    return provenance.describe_prepared(self.data_path)

  def _image_info(self, *, description: str, homepage: str = "",
                  citation: str = "") -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=description,
        features=tfds.features.FeaturesDict({
            # Raw bytes: the default int64 list is ~10x slower to write/read.
            "image": tfds.features.Tensor(
                shape=self.IMAGE_SHAPE, dtype=np.uint8,
                encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "key": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage=homepage,
        citation=citation,
    )

  def _manual_path(self, dl_manager: tfds.download.DownloadManager
                   ) -> pathlib.Path:
    try:
      return pathlib.Path(dl_manager.manual_dir)
    except (AssertionError, OSError):
      # TFDS insists on a non-empty folder; searching a missing or empty one
      # anyway gives the dataset's own message, and an archive is accepted.
      return self._manual_dir_used or pathlib.Path("<unknown manual dir>")

  def _load_examples(self, dl_manager: tfds.download.DownloadManager
                     ) -> dict[str, Examples]:
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    with sources.recording_search() as search:
      splits = self._load_examples(dl_manager)
    for split, examples in splits.items():
      examples.check(split, self.IMAGE_SHAPE)
    if search.tree is not None:
      self._new_record = provenance.Record.of_search(
          self._manual_dir_used or self._manual_path(dl_manager), search)
    return {split: self._generate_examples(examples)
            for split, examples in splits.items()}

  def _generate_examples(self, examples: Examples
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, label, image in zip(examples.keys, examples.labels,
                                 examples.images):
      yield key, {"image": image, "label": int(label), "key": key}


# ----------------------------------------------------------------------------
# Preparing and loading.


def _builder_class(name: str) -> type[ArrayRecordBuilder]:
  if name not in DATASET_NAMES:
    raise DatasetError(
        f"unknown dataset {name!r} (accepted: {', '.join(DATASET_NAMES)})")
  return tfds.builder_cls(name)


def make_builder(name: str, *, data_dir: str | os.PathLike[str],
                 config: str | None = None) -> ArrayRecordBuilder:
  """The builder of a dataset in ``data_dir`` (prepared or not)."""
  cls = _builder_class(name)
  resolved = cls.resolve_config(config)
  try:
    return cls(data_dir=os.fspath(data_dir), config=resolved)
  except DatasetError:
    raise
  except Exception as e:
    raise DatasetError(
        f"cannot open dataset {name!r} in {data_dir}: {e}") from e


def prepare(name: str, *, data_dir: str | os.PathLike[str],
            manual_dir: str | os.PathLike[str] | None = None,
            config: str | None = None) -> tfds.core.DatasetBuilder:
  """Prepares a dataset (once) and returns its builder.

  Already prepared datasets are reused, so calling this again is cheap. A
  failed preparation leaves nothing behind that looks complete: TFDS writes
  into a temporary folder and renames it only on success.

  A dataset prepared from manual files is reused only while the manual dir
  holds the same files (by names and sizes), or none (downloads deleted
  after preparing: logged). Other files raise a DatasetError that names both
  sources and changes nothing.

  Args:
    name: one of :data:`DATASET_NAMES`.
    data_dir: where the prepared dataset lives.
    manual_dir: where the downloaded files are; defaults to TFDS's
      ``<data_dir>/downloads/manual``. Ignored by ``synthetic_faces``.
    config: a builder config name (``synthetic_faces``: ``default``, ``tiny``
      or a custom name, see :mod:`mre_jax.datasets.synthetic_faces`).

  Returns:
    The prepared builder.

  Raises:
    DatasetError: for every failure, and for a prepared dataset whose
      recorded source differs from the manual dir's.
  """
  builder = make_builder(name, data_dir=data_dir, config=config)
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir is not None else None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except DatasetError:
    raise
  except Exception as e:
    raise DatasetError(f"preparing dataset {name!r} failed: {e}") from e
  return builder


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> SplitData:
  """Reads a whole prepared split into memory with one bulk read."""
  shape = tuple(builder.info.features["image"].shape)
  try:
    source = builder.as_data_source(split)
    records = source.__getitems__(range(len(source)))
    images = np.empty((len(records), *shape), dtype=np.uint8)
    for i, record in enumerate(records):
      images[i] = record["image"]
  except Exception as e:  # TFDS and array_record raise many types.
    raise DatasetError(
        f"the prepared {builder.name} split {split!r} in {builder.data_dir} "
        f"is unreadable ({type(e).__name__}: {e}). It may be damaged or "
        "written by another version; delete that folder and run again to "
        "prepare it anew.") from e
  labels = np.fromiter((r["label"] for r in records), dtype=np.int32,
                       count=len(records))
  return SplitData(
      images=images,
      labels=labels,
      indices=np.arange(len(records), dtype=np.int64),
      dataset=builder.name,
      version=str(builder.version),
      split=split,
      class_names=tuple(builder.info.features["label"].names),
  )


def load_splits(name: str, *, data_dir: str | os.PathLike[str],
                manual_dir: str | os.PathLike[str] | None = None,
                config: str | None = None,
                validation: str = "auto") -> dict[str, SplitData]:
  """Loads train, validation and test splits into memory, preparing if needed.

  Args:
    name: one of :data:`DATASET_NAMES`.
    data_dir: where the prepared dataset lives (or will).
    manual_dir: see :func:`prepare`.
    config: see :func:`prepare`.
    validation: where the validation split comes from:

      * ``"auto"``: the dataset's own validation split (FER2013's PublicTest,
        synthetic_faces' validation); ``"holdout"`` for raf_db, which has none.
      * ``"holdout"``: a stratified 10% of train, removed from train: within
        each class, in the order of the TFDS train split, the 10th, 20th,
        30th... examples (``floor(n_c / 10)`` per class). Train becomes
        ``"train-holdout"`` and validation ``"holdout"``.
      * ``"test"``: the test split doubles as validation.

  Returns:
    ``{"train": ..., "validation": ..., "test": ...}``.

  Raises:
    DatasetError: for a bad ``validation`` value or any preparation failure.
  """
  if validation not in VALIDATION_MODES:
    raise DatasetError(
        f"unknown validation mode {validation!r} "
        f"(accepted: {', '.join(VALIDATION_MODES)})")
  builder = prepare(name, data_dir=data_dir, manual_dir=manual_dir,
                    config=config)
  if validation == "auto":
    validation = "validation" if "validation" in builder.info.splits else (
        "holdout")
  train = read_split(builder, "train")
  test = read_split(builder, "test")
  if validation == "validation":
    valid = read_split(builder, "validation")
  elif validation == "test":
    valid = test
  else:
    mask = holdout_mask(train.labels)
    valid = train.subset(mask, "holdout")
    train = train.subset(~mask, "train-holdout")
  splits = {"train": train, "validation": valid, "test": test}
  logging.info(
      "Loaded %s (%s examples) from %s, %s.", name,
      ", ".join(f"{s.split} {s.num_examples:,}" for s in splits.values()),
      builder.data_dir, builder.prepared_from())
  return splits
