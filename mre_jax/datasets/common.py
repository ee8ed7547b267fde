"""Shared pieces of the dataset layer: labels, sources, builders and loading.

Every dataset is a registered TFDS ``GeneratorBasedBuilder`` that writes
``array_record`` files (readable without TensorFlow) with three features:

* ``image``: ``Tensor(shape=(H, W, C), dtype=uint8)``;
* ``label``: ``ClassLabel`` over :data:`CLASS_NAMES`, the canonical order;
* ``key``: the example's unique source key (a relative path inside the manual
  data, a CSV line, or a generated index).

:func:`prepare` builds a dataset once per ``data_dir``; :func:`load_splits`
reads prepared splits into memory as :class:`SplitData` and derives the
validation split.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import os
import pathlib
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mre_jax.errors import DatasetError
from mre_jax.labels import CLASS_NAMES
from mre_jax.labels import NUM_CLASSES
DATASET_NAMES = ("fer2013", "raf_db", "synthetic_faces")
VALIDATION_MODES = ("auto", "holdout", "test")

# Every HOLDOUT_EVERY-th example of each class becomes validation (10%).
HOLDOUT_EVERY = 10

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz",
                    ".tar.bz2", ".tbz2")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_Layout = TypeVar("_Layout")


# ----------------------------------------------------------------------------
# In-memory splits.


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


# ----------------------------------------------------------------------------
# Reading manual data: folders and archives.


def _is_hidden(name: str) -> bool:
  return any(part.startswith(".") or part == "__MACOSX"
             for part in name.split("/"))


def is_archive(path: os.PathLike[str] | str) -> bool:
  return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES)


class SourceTree:
  """Read-only files of a folder or an archive, named by relative posix path.

  Hidden files (``.DS_Store``, ``__MACOSX/``...) are skipped. ``names`` is
  sorted, so everything derived from a tree is deterministic.
  """

  def __init__(self, location: pathlib.Path, names: Sequence[str]):
    self.location = location
    self.names = tuple(sorted(names))

  def read(self, name: str) -> bytes:
    raise NotImplementedError

  def describe(self, name: str = "") -> str:
    """A human-readable location of ``name`` for error messages."""
    return str(self.location / name) if name else str(self.location)


class FolderTree(SourceTree):
  """The files below a folder, read lazily; archives inside are not opened."""

  def __init__(self, root: pathlib.Path):
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
      rel_dir = pathlib.Path(dirpath).relative_to(root).as_posix()
      for filename in filenames:
        if _is_hidden(filename) or is_archive(filename):
          continue
        names.append(filename if rel_dir == "." else f"{rel_dir}/{filename}")
    super().__init__(root, names)

  def read(self, name: str) -> bytes:
    try:
      return (self.location / name).read_bytes()
    except OSError as e:
      raise DatasetError(f"cannot read {self.describe(name)}: {e}") from e


class ArchiveTree(SourceTree):
  """The regular files of a zip or tar archive, read once into memory.

  Tar archives are streamed, so compressed tars (``.tar.xz``...) are
  decompressed in one sequential pass without unpacking to disk.
  """

  def __init__(self, path: pathlib.Path):
    try:
      if path.name.lower().endswith(".zip"):
        files = _read_zip(path)
      else:
        files = _read_tar(path)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile,
            lzma.LZMAError, zlib.error) as e:
      raise DatasetError(f"cannot read archive {path}: {e}") from e
    self._files = files
    super().__init__(path, files.keys())

  def read(self, name: str) -> bytes:
    return self._files[name]

  def describe(self, name: str = "") -> str:
    return f"{self.location}:{name}" if name else str(self.location)


def _read_zip(path: pathlib.Path) -> dict[str, bytes]:
  with zipfile.ZipFile(path) as archive:
    return {info.filename: archive.read(info)
            for info in archive.infolist()
            if not info.is_dir() and not _is_hidden(info.filename)}


def _read_tar(path: pathlib.Path) -> dict[str, bytes]:
  files = {}
  with tarfile.open(path, mode="r|*") as archive:
    for member in archive:
      name = member.name.removeprefix("./")
      if member.isfile() and not _is_hidden(name):
        files[name] = archive.extractfile(member).read()
  return files


def shallowest(prefixes: set[str]) -> str | None:
  """The prefix with the fewest folders (ties: alphabetical), or None."""
  if not prefixes:
    return None
  return min(prefixes, key=lambda p: (p.count("/"), p))


def find_manual_source(
    manual_dir: pathlib.Path,
    *,
    subdirs: Sequence[str],
    name_hints: Sequence[str],
    detect: Callable[[SourceTree], _Layout | None],
    describe_missing: Callable[[str], str],
) -> tuple[SourceTree, _Layout]:
  """Finds the first folder or archive in the manual dir holding a layout.

  The folders ``manual_dir/<subdir>`` (for each of ``subdirs``) and then
  ``manual_dir`` itself are searched in turn. In each, the files of the folder
  are tried first, then its archives: those whose name contains one of
  ``name_hints`` first, then the others, alphabetically. A ``manual_dir`` that
  is itself an archive is read directly.

  Args:
    manual_dir: the TFDS manual dir.
    subdirs: dataset-specific subfolders to search first.
    name_hints: lowercase substrings of likely archive names.
    detect: returns the layout found in a tree, or None.
    describe_missing: builds the error message from the searched paths.

  Returns:
    The tree and its layout.

  Raises:
    DatasetError: when nothing matches.
  """
  if manual_dir.is_file() and is_archive(manual_dir.name):
    tree = ArchiveTree(manual_dir)
    layout = detect(tree)
    if layout is None:
      raise DatasetError(describe_missing(str(manual_dir)))
    return tree, layout
  searched = []
  for folder in [manual_dir / s for s in subdirs] + [manual_dir]:
    if not folder.is_dir():
      continue
    searched.append(str(folder))
    tree = FolderTree(folder)
    layout = detect(tree)
    if layout is not None:
      return tree, layout
    archives = sorted(p for p in folder.iterdir()
                      if p.is_file() and is_archive(p.name))
    archives.sort(key=lambda p: not any(h in p.name.lower()
                                        for h in name_hints))
    for archive in archives:
      tree = ArchiveTree(archive)
      layout = detect(tree)
      if layout is not None:
        return tree, layout
  where = (", ".join(searched) if searched
           else f"{manual_dir} (which does not exist)")
  raise DatasetError(describe_missing(where))


def decode_image(data: bytes, shape: tuple[int, int, int],
                 where: str) -> np.ndarray:
  """Decodes image bytes to uint8 ``shape`` (grayscale or RGB) or raises.

  Color images are converted to grayscale for one channel and vice versa; the
  height and width must already match, nothing is resized.
  """
  mode = "L" if shape[2] == 1 else "RGB"
  try:
    with Image.open(io.BytesIO(data)) as image:
      array = np.asarray(image.convert(mode), dtype=np.uint8)
  except Exception as e:  # Pillow raises many types for broken files.
    raise DatasetError(f"cannot decode image {where}: {e}") from e
  if array.shape[:2] != shape[:2]:
    raise DatasetError(
        f"image {where} is {array.shape[1]}x{array.shape[0]} pixels, expected "
        f"{shape[1]}x{shape[0]}")
  return array.reshape(shape)


def decode_images(tree: SourceTree, names: Sequence[str],
                  shape: tuple[int, int, int]) -> np.ndarray:
  """Decodes the named images of a tree into one uint8 array."""
  images = np.empty((len(names), *shape), dtype=np.uint8)
  for i, name in enumerate(names):
    images[i] = decode_image(tree.read(name), shape, tree.describe(name))
  return images


# ----------------------------------------------------------------------------
# Builders.


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
  """

  IMAGE_SHAPE: tuple[int, int, int]

  def __init__(self, **kwargs: Any):
    # TFDS's default tfrecord writer needs TensorFlow; array_record does not.
    kwargs.setdefault("file_format", "array_record")
    self._manual_dir_used: pathlib.Path | None = None
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
      self._manual_dir_used = pathlib.Path(download_config.manual_dir)
    else:
      root = pathlib.Path(download_dir or
                          pathlib.Path(self.data_dir_root) / "downloads")
      self._manual_dir_used = root / "manual"
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
    splits = self._load_examples(dl_manager)
    for split, examples in splits.items():
      examples.check(split, self.IMAGE_SHAPE)
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
    DatasetError: for every failure.
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
  return {"train": train, "validation": valid, "test": test}
