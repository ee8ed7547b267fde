"""FER2013 as a TFDS builder: 48x48 grayscale faces, seven emotions.

The builder reads the files users actually have, from the manual dir:

* the challenge's ``fer2013.csv`` (or ``fer2013.csv.gz``), columns
  ``emotion,pixels,Usage``: ``Usage`` Training / PublicTest / PrivateTest
  becomes train / validation / test;
* the Kaggle folder layout ``train/<emotion>/*.jpg`` and
  ``test/<emotion>/*.jpg``: files named ``PublicTest_*`` in ``test/`` are
  validation and ``PrivateTest_*`` are test, which recovers the challenge's
  three splits exactly. Mirrors without these prefixes keep ``test/`` as test
  and move every 10th image of each emotion folder of ``train/`` (in sorted
  path order) to validation;
* either of the above inside a ``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tar.xz``
  archive, read without unpacking.

Examples are keyed by their path relative to the layout's root (e.g.
``train/angry/Training_8475486.jpg``) or by CSV line, since a few file names
occur in two emotion folders.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import zlib

import numpy as np
import tensorflow_datasets as tfds

from mre_jax.datasets import builders
from mre_jax.datasets import common
from mre_jax.datasets import sources
from mre_jax.errors import DatasetError

IMAGE_SHAPE = (48, 48, 1)
NUM_PIXELS = 48 * 48
CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation",
                  "PrivateTest": "test"}
TEST_PREFIX_TO_SPLIT = {"PublicTest": "validation", "PrivateTest": "test"}

LAYOUTS = """\
  (a) fer2013.csv or fer2013.csv.gz: the challenge's CSV with columns
      emotion,pixels,Usage (emotion 0..6, 2304 space-separated pixels,
      Usage Training/PublicTest/PrivateTest);
  (b) the Kaggle folders train/<emotion>/*.jpg and test/<emotion>/*.jpg,
      <emotion> one of angry, disgust, fear, happy, sad, surprise, neutral;
  (c) (a) or (b) inside one archive (.zip, .tar, .tar.gz, .tar.xz), e.g.
      the Kaggle download fer2013.tar.xz or archive.zip.
They may sit in the manual dir or in its subfolder fer2013/; the manual dir
may also be the archive itself."""

_CITATION = """\
@inproceedings{goodfellow2013challenges,
  title={Challenges in Representation Learning: A Report on Three Machine
         Learning Contests},
  author={Goodfellow, Ian J. and Erhan, Dumitru and Carrier, Pierre Luc and
          Courville, Aaron and Mirza, Mehdi and Hamner, Ben and Cukierski,
          Will and Tang, Yichuan and Thaler, David and Lee, Dong-Hyun and
          others},
  booktitle={Neural Information Processing (ICONIP)},
  pages={117--124},
  year={2013}
}"""


@dataclasses.dataclass(frozen=True)
class CsvLayout:
  """The challenge CSV at ``name`` inside a tree."""
  name: str


@dataclasses.dataclass(frozen=True)
class FolderLayout:
  """Kaggle folders ``train/`` and ``test/`` below ``prefix``."""
  prefix: str


def detect_layout(tree: sources.SourceTree) -> CsvLayout | FolderLayout | None:
  """The FER2013 layout in a tree: the CSV wins over folders, then depth."""
  csvs = {n for n in tree.names if n.rsplit("/", 1)[-1].lower() in CSV_NAMES}
  if csvs:
    return CsvLayout(sources.shallowest(csvs))
  roots = {"train": set(), "test": set()}
  for name in tree.names:
    parts = name.split("/")
    if (len(parts) >= 3 and parts[-3] in roots and
        parts[-2].lower() in common.CLASS_NAMES):
      roots[parts[-3]].add("".join(p + "/" for p in parts[:-3]))
  prefix = sources.shallowest(roots["train"] & roots["test"])
  return None if prefix is None else FolderLayout(prefix)


def _missing_message(where: str) -> str:
  return f"no FER2013 files found in {where}. Accepted layouts:\n{LAYOUTS}"


# ----------------------------------------------------------------------------
# CSV layout.


def _csv_text(tree: sources.SourceTree, name: str) -> str:
  data = tree.read(name)
  try:
    if name.lower().endswith(".gz"):
      data = gzip.decompress(data)
    return data.decode("utf-8-sig")
  except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
    raise DatasetError(f"cannot read {tree.describe(name)}: {e}") from e


def _parse_pixels(text: str, where: str) -> np.ndarray:
  tokens = text.split()
  if len(tokens) != NUM_PIXELS:
    raise DatasetError(
        f"{where}: expected {NUM_PIXELS} pixel values (48x48), got "
        f"{len(tokens)}")
  try:
    values = np.array(tokens, dtype=np.int64)
  except ValueError as e:
    raise DatasetError(f"{where}: pixels must be integers: {e}") from e
  if values.min() < 0 or values.max() > 255:
    raise DatasetError(f"{where}: pixel values must lie in 0..255")
  return values.astype(np.uint8).reshape(IMAGE_SHAPE)


def csv_examples(tree: sources.SourceTree, name: str
                 ) -> dict[str, builders.Examples]:
  """Parses the challenge CSV; errors name the file and line number."""
  where_file = tree.describe(name)
  basename = name.rsplit("/", 1)[-1]
  reader = csv.reader(io.StringIO(_csv_text(tree, name), newline=""))
  try:
    header = [h.strip().lower() for h in next(reader)]
  except StopIteration:
    raise DatasetError(f"{where_file} is empty") from None
  except csv.Error as e:
    raise DatasetError(f"{where_file} line 1: {e}") from e
  missing = {"emotion", "pixels", "usage"} - set(header)
  if missing:
    raise DatasetError(
        f"{where_file} line 1: header {header} lacks the column(s) "
        f"{sorted(missing)}; expected emotion,pixels,Usage")
  col = {c: header.index(c) for c in ("emotion", "pixels", "usage")}
  rows = {split: ([], [], []) for split in USAGE_TO_SPLIT.values()}
  while True:
    try:
      row = next(reader)
    except StopIteration:
      break
    except csv.Error as e:
      raise DatasetError(f"{where_file} line {reader.line_num}: {e}") from e
    line = reader.line_num
    where = f"{where_file} line {line}"
    if not row or (len(row) == 1 and not row[0].strip()):
      continue
    if len(row) != len(header):
      raise DatasetError(
          f"{where}: expected {len(header)} fields, got {len(row)}")
    try:
      label = int(row[col["emotion"]].strip())
    except ValueError:
      raise DatasetError(
          f"{where}: emotion {row[col['emotion']]!r} is not an integer "
          "0..6") from None
    if not 0 <= label < common.NUM_CLASSES:
      raise DatasetError(f"{where}: emotion {label} is outside 0..6")
    usage = row[col["usage"]].strip()
    if usage not in USAGE_TO_SPLIT:
      raise DatasetError(
          f"{where}: Usage {usage!r} is not one of "
          f"{', '.join(USAGE_TO_SPLIT)}")
    keys, labels, images = rows[USAGE_TO_SPLIT[usage]]
    keys.append(f"{basename}:{line}")
    labels.append(label)
    images.append(_parse_pixels(row[col["pixels"]], where))
  for split, (keys, _, _) in rows.items():
    if not keys:
      usage = next(u for u, s in USAGE_TO_SPLIT.items() if s == split)
      raise DatasetError(
          f"{where_file} has no {usage} rows; the three Usage values "
          f"{', '.join(USAGE_TO_SPLIT)} are all required")
  return {split: builders.Examples(tuple(keys), np.array(labels, np.int64),
                                   np.stack(images))
          for split, (keys, labels, images) in rows.items()}


# ----------------------------------------------------------------------------
# Folder layout.


def _test_split_of(relpath: str) -> str | None:
  filename = relpath.rsplit("/", 1)[-1]
  for prefix, split in TEST_PREFIX_TO_SPLIT.items():
    if filename.startswith(prefix):
      return split
  return None


def _scan_folders(tree: sources.SourceTree, prefix: str
                  ) -> dict[str, list[tuple[str, int]]]:
  """(relative path, label) of every image in train/ and test/, sorted."""
  found = {"train": [], "test": []}
  for name in tree.names:
    if not name.startswith(prefix):
      continue
    relpath = name[len(prefix):]
    parts = relpath.split("/")
    if parts[0] not in found or not sources.is_image_name(relpath):
      continue
    if len(parts) != 3:
      raise DatasetError(
          f"unexpected image {tree.describe(name)}: images must sit in "
          f"{parts[0]}/<emotion>/")
    emotion = parts[1].lower()
    if emotion not in common.CLASS_NAMES:
      folder = tree.describe(f"{prefix}{parts[0]}/{parts[1]}")
      raise DatasetError(
          f"unknown emotion folder {folder}; expected one of "
          f"{', '.join(common.CLASS_NAMES)}")
    found[parts[0]].append((relpath, common.CLASS_NAMES.index(emotion)))
  return found


def folder_examples(tree: sources.SourceTree, prefix: str
                    ) -> dict[str, builders.Examples]:
  """Decodes the Kaggle folder layout into train / validation / test."""
  found = _scan_folders(tree, prefix)
  test_splits = [_test_split_of(relpath) for relpath, _ in found["test"]]
  if any(s is None for s in test_splits) and any(test_splits):
    unprefixed = next(r for (r, _), s in zip(found["test"], test_splits)
                      if s is None)
    raise DatasetError(
        f"{tree.describe(prefix + 'test')} mixes files named "
        f"PublicTest_*/PrivateTest_* with others, e.g. {unprefixed}; either "
        "all test files carry the prefix or none does")
  listing = {"train": found["train"]}
  if any(test_splits):
    listing["validation"] = [e for e, s in zip(found["test"], test_splits)
                             if s == "validation"]
    listing["test"] = [e for e, s in zip(found["test"], test_splits)
                       if s == "test"]
  else:
    listing["test"] = found["test"]
  for split, entries in listing.items():
    if not entries:
      raise DatasetError(
          f"no images for split {split!r} in {tree.describe(prefix)}")
  splits = {}
  for split, entries in listing.items():
    relpaths = [relpath for relpath, _ in entries]
    splits[split] = builders.Examples(
        keys=tuple(relpaths),
        labels=np.array([label for _, label in entries], dtype=np.int64),
        images=sources.decode_images(
            tree, [prefix + r for r in relpaths], IMAGE_SHAPE))
  if "validation" not in splits:
    mask = common.holdout_mask(splits["train"].labels)
    splits["validation"] = splits["train"].select(mask)
    splits["train"] = splits["train"].select(~mask)
  return splits


# ----------------------------------------------------------------------------
# Builder.


class Fer2013(builders.ArrayRecordBuilder):
  """FER2013: 35,887 48x48 grayscale faces in train/validation/test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  IMAGE_SHAPE = IMAGE_SHAPE
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download FER2013 (e.g. from Kaggle) and place ONE of these in the manual dir
(by default <data_dir>/downloads/manual):
{LAYOUTS}
Splits: train = Training (28,709), validation = PublicTest (3,589),
test = PrivateTest (3,589). In the folder layout, PublicTest_*/PrivateTest_*
file names in test/ select validation/test; without these prefixes test/ is
test and every 10th image per emotion of train/ (sorted paths) is validation.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return self._image_info(
        description=(
            "FER2013 facial expressions: 48x48 grayscale faces labelled "
            "angry, disgust, fear, happy, sad, surprise or neutral."),
        homepage=("https://www.kaggle.com/c/challenges-in-representation-"
                  "learning-facial-expression-recognition-challenge"),
        citation=_CITATION,
    )

  def _load_examples(self, dl_manager: tfds.download.DownloadManager
                     ) -> dict[str, builders.Examples]:
    tree, layout = sources.find_manual_source(
        self._manual_path(dl_manager),
        subdirs=("fer2013",),
        name_hints=("fer",),
        detect=detect_layout,
        describe_missing=_missing_message,
    )
    if isinstance(layout, CsvLayout):
      return csv_examples(tree, layout.name)
    return folder_examples(tree, layout.prefix)
