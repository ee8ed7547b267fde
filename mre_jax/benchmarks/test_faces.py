"""Test faces of the real datasets, for the analysis benchmark's videos.

:func:`raf_test_faces` and :func:`fer_test_faces` read a random choice of
RAF-DB's and FER2013's test faces (FER2013's PrivateTest) straight from the
downloaded files, with their canonical labels; :func:`test_faces` mixes
both, so that one video shows the faces of every shipped model's dataset.
"""

from __future__ import annotations

import os
import pathlib
import tarfile

import numpy as np

from mre_jax.errors import UserError

_RAF_LABELS = frozenset("1234567")  # RAF-DB's label folders.
DATASETS = ("raf_db", "fer2013")


def _stream_kaggle_test(archive: pathlib.Path
                        ) -> list[tuple[str, bytes, int]] | None:
  """(name, JPEG bytes, RAF label) of the Kaggle layout's test images.

  Streams a tar archive and stops once past ``DATASET/test/`` (which the
  published archive stores first); None when the archive is not laid out so.
  """
  found = []
  with tarfile.open(archive, mode="r|*") as tar:
    for member in tar:
      parts = member.name.removeprefix("./").split("/")
      in_test = (len(parts) >= 4 and parts[-4] == "DATASET"
                 and parts[-3] == "test" and parts[-2] in _RAF_LABELS
                 and member.isfile())
      if in_test:
        found.append((member.name, tar.extractfile(member).read(),
                      int(parts[-2])))
      elif found and "DATASET" in parts:
        break
  return found or None


def raf_test_faces(data: str | os.PathLike[str], count: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``count`` RAF-DB test faces (uint8 RGB 100x100) and canonical labels.

  From ``rafdb/`` under ``data``, chosen at random with ``seed``. The Kaggle
  layout's tar archive is streamed only as far as its test images; other
  layouts are read with the project's RAF-DB code.
  """
  # pylint: disable=g-import-not-at-top
  from mre_jax.datasets import raf_db
  from mre_jax.datasets import sources
  folder = pathlib.Path(data) / "rafdb"
  archives = sorted(p for p in folder.iterdir()
                    if sources.is_archive(p)) if folder.is_dir() else []
  entries = None
  if archives and not archives[0].name.lower().endswith(".zip"):
    entries = _stream_kaggle_test(archives[0])
  if entries is None:
    tree = (sources.ArchiveTree(archives[0]) if archives
            else sources.FolderTree(folder))
    layout = raf_db.detect_layout(tree)
    if layout is None:
      raise UserError(f"no RAF-DB files in {folder}: --data must hold "
                      "rafdb/ with the downloaded archive or its files")
    listed = (raf_db.kaggle_entries if isinstance(layout, raf_db.KaggleLayout)
              else raf_db.original_entries)(tree, layout.prefix)["test"]
    entries = [(layout.prefix + name, tree.read(layout.prefix + name), label)
               for name, label in listed]
  chosen = _choose(len(entries), count, seed, folder)
  images = np.stack([sources.decode_image(entries[i][1], raf_db.IMAGE_SHAPE,
                                          entries[i][0]) for i in chosen])
  labels = np.array([raf_db.canonical_label(entries[i][2]) for i in chosen])
  return images, labels


def _stream_fer_test(archive: pathlib.Path) -> list[tuple[str, bytes, int]]:
  """(name, JPEG bytes, label) of the Kaggle folder layout's PrivateTest
  images, read from a tar archive in one pass."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.datasets import common
  found = []
  with tarfile.open(archive, mode="r|*") as tar:
    for member in tar:
      parts = member.name.removeprefix("./").split("/")
      if (len(parts) >= 3 and parts[-3] == "test" and member.isfile()
          and parts[-1].startswith("PrivateTest_")
          and parts[-2].lower() in common.CLASS_NAMES):
        found.append((member.name, tar.extractfile(member).read(),
                      common.CLASS_NAMES.index(parts[-2].lower())))
  return found


def fer_test_faces(data: str | os.PathLike[str], count: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``count`` FER2013 PrivateTest faces (uint8 grey 48x48x1) and labels,
  from the Kaggle folder layout's archive in ``fer2013/`` under ``data``."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.datasets import fer2013
  from mre_jax.datasets import sources
  folder = pathlib.Path(data) / "fer2013"
  archives = sorted(p for p in folder.iterdir() if sources.is_archive(p)
                    and not p.name.lower().endswith(".zip")
                    ) if folder.is_dir() else []
  entries = _stream_fer_test(archives[0]) if archives else []
  if not entries:
    raise UserError(f"no FER2013 PrivateTest images in {folder}: --data "
                    "must hold fer2013/ with the downloaded archive in its "
                    "train/ and test/ folder layout")
  chosen = _choose(len(entries), count, seed, folder)
  images = np.stack([sources.decode_image(entries[i][1], fer2013.IMAGE_SHAPE,
                                          entries[i][0]) for i in chosen])
  return images, np.array([entries[i][2] for i in chosen])


def _choose(available: int, count: int, seed: int,
            folder: pathlib.Path) -> np.ndarray:
  if not 0 < count <= available:
    raise UserError(f"--faces={count}: expected 1 to {available}, the test "
                    f"faces in {folder}")
  return np.random.default_rng(seed).choice(available, count, replace=False)


def test_faces(data: str | os.PathLike[str], datasets: tuple[str, ...],
               count: int, seed: int = 0
               ) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
  """``count`` faces shared evenly among ``datasets`` (of
  :data:`DATASETS`), shuffled: the faces, their labels and each one's
  dataset."""
  readers = {"raf_db": raf_test_faces, "fer2013": fer_test_faces}
  faces, labels, names = [], [], []
  for i, name in enumerate(datasets):
    share = count // len(datasets) + (i < count % len(datasets))
    if share:
      images, found = readers[name](data, share, seed)
      faces += list(images)
      labels += list(found)
      names += [name] * share
  order = np.random.default_rng(seed).permutation(len(faces))
  return ([faces[i] for i in order], np.asarray(labels)[order],
          [names[i] for i in order])
