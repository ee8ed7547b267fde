"""RAF-DB (basic emotions) as a TFDS builder: aligned 100x100 RGB faces.

Two layouts are read from the manual dir, as folders or inside one archive
(``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tar.xz``), with or without a leading
``basic/`` folder and with LF or CRLF line endings:

* the Kaggle mirror: ``DATASET/{train,test}/<1..7>/*_aligned.jpg`` with
  ``train_labels.csv`` and ``test_labels.csv`` (header ``image,label``). The
  CSVs are authoritative: they list the examples and their labels, and every
  listed image must sit in the folder of its label; any disagreement (missing,
  unlisted or misfiled image) is an error. Without the two CSVs, the folders
  give the labels;
* RAF-DB's own distribution: ``EmoLabel/list_patition_label.txt`` with lines
  such as ``train_00001.jpg 5`` (the split is the name's prefix) and images in
  ``Image/aligned/train_00001_aligned.jpg``.

RAF-DB's labels 1..7 (surprise, fear, disgust, happiness, sadness, anger,
neutral) are remapped to the canonical order of
:data:`mre_jax.datasets.CLASS_NAMES`. RAF-DB has no validation split; see
``validation="holdout"`` in :func:`mre_jax.datasets.load_splits`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import posixpath

import numpy as np
import tensorflow_datasets as tfds

from mre_jax.datasets import builders
from mre_jax.datasets import sources
from mre_jax.errors import DatasetError

IMAGE_SHAPE = (100, 100, 3)
SPLITS = ("train", "test")
RAF_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger",
             "neutral")
# Canonical label of RAF-DB label r (1..7) at index r - 1.
RAF_TO_CANONICAL = (5, 2, 1, 3, 4, 0, 6)
RAF_FOLDERS = frozenset(str(r) for r in range(1, 8))
LABEL_FILE = "EmoLabel/list_patition_label.txt"
ALIGNED_DIR = "Image/aligned/"

LAYOUTS = """\
  (a) the Kaggle mirror: DATASET/train/<1..7>/train_NNNNN_aligned.jpg,
      DATASET/test/<1..7>/test_NNNN_aligned.jpg, train_labels.csv and
      test_labels.csv (header image,label; e.g. train_00001_aligned.jpg,5);
  (b) RAF-DB's distribution: [basic/]EmoLabel/list_patition_label.txt (lines
      such as "train_00001.jpg 5") and
      [basic/]Image/aligned/train_00001_aligned.jpg;
  (c) (a) or (b) inside one archive (.zip, .tar, .tar.gz, .tar.xz), e.g.
      rafdb_basic.tar.xz.
Labels are RAF-DB's 1..7 = surprise, fear, disgust, happiness, sadness, anger,
neutral. The files may sit in the manual dir or in its subfolder raf_db/ or
rafdb/; the manual dir may also be the archive itself."""

_CITATION = """\
@inproceedings{li2017reliable,
  title={Reliable Crowdsourcing and Deep Locality-Preserving Learning for
         Expression Recognition in the Wild},
  author={Li, Shan and Deng, Weihong and Du, JunPing},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition
             (CVPR)},
  year={2017}
}"""


@dataclasses.dataclass(frozen=True)
class KaggleLayout:
  """``DATASET/`` (and the label CSVs) below ``prefix``."""
  prefix: str


@dataclasses.dataclass(frozen=True)
class OriginalLayout:
  """``EmoLabel/`` and ``Image/aligned/`` below ``prefix``."""
  prefix: str


def canonical_label(raf_label: int) -> int:
  """Maps RAF-DB's 1..7 to the canonical 0..6."""
  return RAF_TO_CANONICAL[raf_label - 1]


def _parent(name: str, levels: int) -> str:
  parts = name.split("/")[:-levels]
  return "".join(p + "/" for p in parts)


def detect_layout(tree: sources.SourceTree
                  ) -> KaggleLayout | OriginalLayout | None:
  """The RAF-DB layout in a tree: the Kaggle mirror first, then shallowest."""
  kaggle, original = set(), set()
  for name in tree.names:
    parts = name.split("/")
    if len(parts) >= 4 and parts[-4] == "DATASET" and parts[-3] in SPLITS:
      kaggle.add(_parent(name, 4))
    if name == LABEL_FILE or name.endswith("/" + LABEL_FILE):
      original.add(name[:-len(LABEL_FILE)])
  if kaggle:
    return KaggleLayout(sources.shallowest(kaggle))
  if original:
    return OriginalLayout(sources.shallowest(original))
  return None


def _missing_message(where: str) -> str:
  return f"no RAF-DB files found in {where}. Accepted layouts:\n{LAYOUTS}"


def _text(tree: sources.SourceTree, name: str) -> str:
  try:
    return tree.read(name).decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DatasetError(f"cannot read {tree.describe(name)}: {e}") from e


def _raf_label(text: str, where: str) -> int:
  try:
    label = int(text.strip())
  except ValueError:
    raise DatasetError(
        f"{where}: label {text!r} is not an integer 1..7") from None
  if not 1 <= label <= 7:
    raise DatasetError(f"{where}: label {label} is outside 1..7")
  return label


# ----------------------------------------------------------------------------
# Kaggle layout.


def _scan_kaggle_folders(tree: sources.SourceTree, prefix: str
                         ) -> dict[tuple[str, str], tuple[str, int]]:
  """``(split, file name) -> (relative path, RAF label)`` of every image."""
  found = {}
  root = prefix + "DATASET/"
  for name in tree.names:
    if not name.startswith(root) or not sources.is_image_name(name):
      continue
    relpath = name[len(prefix):]
    parts = relpath.split("/")
    if len(parts) != 4 or parts[1] not in SPLITS:
      raise DatasetError(
          f"unexpected image {tree.describe(name)}: images must sit in "
          "DATASET/train/<1..7>/ or DATASET/test/<1..7>/")
    if parts[2] not in RAF_FOLDERS:
      raise DatasetError(
          f"unknown emotion folder {tree.describe(_parent(name, 1))}; "
          "expected RAF-DB labels 1..7")
    key = (parts[1], parts[3])
    if key in found:
      raise DatasetError(
          f"{parts[3]} occurs in two label folders of DATASET/{parts[1]}: "
          f"{found[key][0]} and {relpath}")
    found[key] = (relpath, int(parts[2]))
  return found


def _label_csv(tree: sources.SourceTree, prefix: str, split: str) -> str | None:
  for folder in (prefix, prefix + "DATASET/"):
    name = f"{folder}{split}_labels.csv"
    if name in tree.names:
      return name
  return None


def _csv_entries(tree: sources.SourceTree, name: str, split: str,
                 folders: dict[tuple[str, str], tuple[str, int]]
                 ) -> list[tuple[str, int]]:
  """Checks a label CSV against the folders; returns (relpath, RAF label)."""
  where_file = tree.describe(name)
  reader = csv.reader(io.StringIO(_text(tree, name), newline=""))
  try:
    header = [h.strip().lower() for h in next(reader)]
  except StopIteration:
    raise DatasetError(f"{where_file} is empty") from None
  if "image" not in header or "label" not in header:
    raise DatasetError(
        f"{where_file} line 1: header {header} lacks image,label")
  image_col, label_col = header.index("image"), header.index("label")
  entries, listed = [], set()
  for row in reader:
    where = f"{where_file} line {reader.line_num}"
    if not row or all(not field.strip() for field in row):
      continue
    if len(row) != len(header):
      raise DatasetError(
          f"{where}: expected {len(header)} fields, got {len(row)}")
    image = row[image_col].strip()
    label = _raf_label(row[label_col], where)
    if image in listed:
      raise DatasetError(f"{where}: {image} is listed twice")
    listed.add(image)
    if (split, image) not in folders:
      raise DatasetError(
          f"{where}: image {image} is listed but missing; expected "
          f"{tree.describe(f'DATASET/{split}/{label}/{image}')}")
    relpath, folder_label = folders[(split, image)]
    if folder_label != label:
      raise DatasetError(
          f"{where}: {image} has label {label} in the CSV but sits in "
          f"{tree.describe(relpath)} (label {folder_label}); the label CSVs "
          "are authoritative, so move the image or fix the CSV")
    entries.append((relpath, label))
  unlisted = sorted(relpath for (s, image), (relpath, _) in folders.items()
                    if s == split and image not in listed)
  if unlisted:
    raise DatasetError(
        f"{len(unlisted)} image(s) of DATASET/{split} are not listed in "
        f"{where_file}, e.g. {unlisted[:3]}")
  return entries


def kaggle_entries(tree: sources.SourceTree, prefix: str
                   ) -> dict[str, list[tuple[str, int]]]:
  """(relative path, RAF label) per split of the Kaggle layout."""
  folders = _scan_kaggle_folders(tree, prefix)
  csvs = {split: _label_csv(tree, prefix, split) for split in SPLITS}
  present = [name for name in csvs.values() if name is not None]
  if not present:
    return {split: sorted((relpath, label)
                          for (s, _), (relpath, label) in folders.items()
                          if s == split)
            for split in SPLITS}
  if len(present) != len(SPLITS):
    missing = [f"{s}_labels.csv" for s, name in csvs.items() if name is None]
    raise DatasetError(
        f"{tree.describe(present[0])} is present but {missing[0]} is missing "
        f"from {tree.describe(prefix)}; provide both label CSVs or neither")
  return {split: _csv_entries(tree, csvs[split], split, folders)
          for split in SPLITS}


# ----------------------------------------------------------------------------
# Original layout.


def original_entries(tree: sources.SourceTree, prefix: str
                     ) -> dict[str, list[tuple[str, int]]]:
  """(relative path, RAF label) per split of RAF-DB's own layout."""
  name = prefix + LABEL_FILE
  names = set(tree.names)
  entries = {split: [] for split in SPLITS}
  listed = set()
  for line_number, line in enumerate(_text(tree, name).splitlines(), 1):
    where = f"{tree.describe(name)} line {line_number}"
    if not line.strip():
      continue
    fields = line.split()
    if len(fields) != 2:
      raise DatasetError(
          f"{where}: expected '<image> <label>', got {line.strip()!r}")
    image, label_text = fields
    label = _raf_label(label_text, where)
    split = image.split("_", 1)[0]
    if split not in SPLITS:
      raise DatasetError(
          f"{where}: image name {image!r} starts with neither train_ nor "
          "test_")
    if image in listed:
      raise DatasetError(f"{where}: {image} is listed twice")
    listed.add(image)
    stem, ext = posixpath.splitext(image)
    relpath = f"{ALIGNED_DIR}{stem}_aligned{ext}"
    if prefix + relpath not in names:
      raise DatasetError(
          f"{where}: image {image} is listed but missing; expected "
          f"{tree.describe(prefix + relpath)}")
    entries[split].append((relpath, label))
  return entries


# ----------------------------------------------------------------------------
# Builder.


class RafDb(builders.ArrayRecordBuilder):
  """RAF-DB basic emotions: 15,339 aligned 100x100 RGB faces."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  IMAGE_SHAPE = IMAGE_SHAPE
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Obtain RAF-DB (basic emotions) and place ONE of these in the manual dir
(by default <data_dir>/downloads/manual):
{LAYOUTS}
In (a) the label CSVs are authoritative: each listed image must sit in the
folder of its CSV label (without the CSVs, the folders give the labels).
Splits: train (12,271) and test (3,068).
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return self._image_info(
        description=(
            "RAF-DB basic emotions: aligned 100x100 RGB faces in the wild, "
            "labels remapped to angry, disgust, fear, happy, sad, surprise, "
            "neutral."),
        homepage="http://www.whdeng.cn/raf/model1.html",
        citation=_CITATION,
    )

  def _load_examples(self, dl_manager: tfds.download.DownloadManager
                     ) -> dict[str, builders.Examples]:
    tree, layout = sources.find_manual_source(
        self._manual_path(dl_manager),
        subdirs=("raf_db", "rafdb"),
        name_hints=("raf",),
        detect=detect_layout,
        describe_missing=_missing_message,
    )
    if isinstance(layout, KaggleLayout):
      entries = kaggle_entries(tree, layout.prefix)
    else:
      entries = original_entries(tree, layout.prefix)
    splits = {}
    for split, split_entries in entries.items():
      if not split_entries:
        raise DatasetError(
            f"no images for split {split!r} in {tree.describe(layout.prefix)}")
      relpaths = [relpath for relpath, _ in split_entries]
      splits[split] = builders.Examples(
          keys=tuple(relpaths),
          labels=np.array([canonical_label(r) for _, r in split_entries],
                          dtype=np.int64),
          images=sources.decode_images(
              tree, [layout.prefix + r for r in relpaths], IMAGE_SHAPE))
    return splits
