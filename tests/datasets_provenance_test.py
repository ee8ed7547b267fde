"""Tests for mre_jax.datasets.provenance: a prepared dataset knows its source.

A dataset prepared from some files must not silently stand in for others: the
scenario is a few hundred images prepared first, then ``manual_dir`` switched
to the full download with the same ``data_dir``.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
import tarfile

import numpy as np
import pytest

from datasets_test import _fer_folders
from datasets_test import _gray
from datasets_test import _jpeg
from datasets_test import _tar
from datasets_test import _write
from datasets_test import _zip
import mre_jax.datasets as datasets
from mre_jax.datasets import provenance
from mre_jax.errors import DatasetError

RECORD = "fer2013/1.0.0/" + provenance.RECORD_NAME


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


@pytest.fixture
def fer(tmp_path, rng) -> dict[str, pathlib.Path]:
  """A full FER2013 folder and a subset of it (a copy without some images)."""
  full, subset = tmp_path / "full", tmp_path / "subset"
  _fer_folders(full, rng, train_per_class=3)
  shutil.copytree(full, subset)
  for path in subset.glob("train/*/Training_*002.jpg"):
    path.unlink()
  return {"full": full, "subset": subset, "data": tmp_path / "data"}


def _listing(folder: pathlib.Path) -> dict[str, tuple[int, int]]:
  return {p.relative_to(folder).as_posix(): (p.stat().st_size,
                                             p.stat().st_mtime_ns)
          for p in sorted(folder.rglob("*"))}


def _prepare(fer: dict[str, pathlib.Path], manual_dir: pathlib.Path):
  return datasets.prepare("fer2013", data_dir=fer["data"],
                          manual_dir=manual_dir)


def _num_train(builder) -> int:
  return builder.info.splits["train"].num_examples


@pytest.mark.parametrize("switch", ["folder", "archive", "added in place"])
def test_other_source_is_refused_and_nothing_changes(fer, switch):
  builder = _prepare(fer, fer["subset"])
  assert _num_train(builder) == 16
  record = json.loads((fer["data"] / RECORD).read_text())
  assert record["manual_dir"] == str(fer["subset"])
  assert record["source"]["num_files"] == 37  # 16 + 7 + 14 images.
  before = _listing(fer["data"])
  if switch == "folder":
    manual, now = fer["full"], f"folder {fer['full']} (44 files, "
  elif switch == "archive":
    manual = fer["full"].parent / "downloads"
    manual.mkdir()
    _tar(fer["full"], manual / "fer2013.tar.xz", "w:xz")
    now = f"archive {manual / 'fer2013.tar.xz'} ("
  else:  # The full download unpacked over the subset.
    shutil.copytree(fer["full"], fer["subset"], dirs_exist_ok=True)
    manual, now = fer["subset"], f"folder {fer['subset']} (44 files, "
  with pytest.raises(DatasetError) as info:
    _prepare(fer, manual)
  message = str(info.value)
  data_path = fer["data"] / "fer2013/1.0.0"
  assert (f"prepared from: folder {fer['subset']} (37 files, "
          in message), message
  assert f"the manual dir {manual} now holds: {now}" in message, message
  assert f"delete {data_path};" in message
  assert "another --config.dataset.data_dir" in message
  with pytest.raises(DatasetError, match="prepared from other files"):
    datasets.load_splits("fer2013", data_dir=fer["data"], manual_dir=manual)
  assert _listing(fer["data"]) == before
  # Deleting the prepared folder, as the message says, prepares anew.
  shutil.rmtree(data_path)
  assert _num_train(_prepare(fer, manual)) == 23
  assert _num_train(_prepare(fer, manual)) == 23


def test_same_files_are_reused(fer, tmp_path):
  _prepare(fer, fer["subset"])
  before = _listing(fer["data"])
  _prepare(fer, fer["subset"])
  # Other files than the ones read (notes, other datasets) do not count.
  _write(fer["subset"] / "notes.txt", "downloaded from kaggle")
  _write(fer["subset"] / "DATASET/train/1/train_00001_aligned.jpg", b"x")
  _prepare(fer, fer["subset"])
  # A copy elsewhere holds the same names and sizes.
  copy = tmp_path / "copy"
  shutil.copytree(fer["subset"], copy / "fer2013")
  _prepare(fer, copy)
  assert _listing(fer["data"]) == before


def test_same_archive_is_reused_and_archives_skipped_are_remembered(
    fer, tmp_path, rng):
  manual = tmp_path / "manual"
  manual.mkdir()
  # Searched first (no name hints, alphabetical) and holding no FER2013.
  _write(tmp_path / "other/readme.txt", "not FER2013")
  _tar(tmp_path / "other", manual / "a.tar.gz", "w:gz")
  _tar(fer["subset"], manual / "b.tar.gz", "w:gz")
  _prepare(fer, manual)
  record = json.loads((fer["data"] / RECORD).read_text())
  assert record["source"]["kind"] == "archive"
  assert record["skipped_archives"] == [
      ["a.tar.gz", (manual / "a.tar.gz").stat().st_size]]
  before = _listing(fer["data"])
  _prepare(fer, manual)
  _prepare(fer, manual / "b.tar.gz")  # The archive itself as manual dir.
  # A zip added later, searched first, is listed cheaply: no FER2013 in it.
  _zip(tmp_path / "other", manual / "0.zip")
  _prepare(fer, manual)
  assert _listing(fer["data"]) == before
  # A zip holding FER2013 would be read instead: refused.
  _zip(fer["full"], manual / "0.zip")
  with pytest.raises(DatasetError, match=r"now holds: archive .*0\.zip"):
    _prepare(fer, manual)
  # An unreadable archive: nothing usable to compare with (nor to prepare).
  _write(manual / "0.zip", _jpeg(_gray(rng)))
  _prepare(fer, manual)
  assert _listing(fer["data"]) == before


def test_deleted_downloads_are_reused_and_logged(fer, caplog):
  builder = _prepare(fer, fer["subset"])
  shutil.rmtree(fer["subset"])
  with caplog.at_level(logging.INFO):
    splits = datasets.load_splits("fer2013", data_dir=fer["data"],
                                  manual_dir=fer["subset"])
  assert splits["train"].num_examples == 16
  text = caplog.text
  assert (f"was prepared from folder {fer['subset']} (37 files" in text
          and f"the manual dir {fer['subset']} no longer exists" in text), text
  assert (f"Loaded fer2013 (train 16, validation 7, test 14 examples) from "
          f"{builder.data_dir}, prepared from folder {fer['subset']} (37 "
          "files") in text, text
  # The default manual dir (absent here) is checked the same way.
  datasets.prepare("fer2013", data_dir=fer["data"])


def test_manual_dir_without_dataset_files_reuses(fer, caplog):
  _prepare(fer, fer["subset"])
  for folder in ("train", "test"):
    shutil.rmtree(fer["subset"] / folder)
  with caplog.at_level(logging.INFO):
    assert _num_train(_prepare(fer, fer["subset"])) == 16
  assert ("holds no usable fer2013 files now (no FER2013 files found"
          in caplog.text), caplog.text


def test_unrecorded_source_is_reused_with_a_warning(fer, caplog):
  _prepare(fer, fer["subset"])
  (fer["data"] / RECORD).unlink()
  with caplog.at_level(logging.INFO):
    splits = datasets.load_splits("fer2013", data_dir=fer["data"],
                                  manual_dir=fer["full"])
  assert splits["train"].num_examples == 16
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "source is unknown" in warnings[0], warnings
  assert "prepared from an unrecorded source" in caplog.text
  assert not (fer["data"] / RECORD).exists()


def test_failed_preparation_writes_no_record(fer):
  _write(fer["subset"] / "test/sad/PrivateTest_99.jpg", b"not a jpeg")
  with pytest.raises(DatasetError, match="cannot decode"):
    _prepare(fer, fer["subset"])
  assert not list(fer["data"].rglob(provenance.RECORD_NAME))
  (fer["subset"] / "test/sad/PrivateTest_99.jpg").unlink()
  _prepare(fer, fer["subset"])
  assert (fer["data"] / RECORD).is_file()


def test_generated_dataset_has_no_source(tmp_path, caplog):
  with caplog.at_level(logging.INFO):
    datasets.load_splits("synthetic_faces", data_dir=tmp_path, config="tiny")
  assert not list(tmp_path.rglob(provenance.RECORD_NAME))
  assert "generated from builder config 'tiny'" in caplog.text


def test_real_subset_then_full_archive(real_data_dir, tmp_path):
  """The reported scenario: 280 real images first, then the full archive."""
  archive = real_data_dir / "fer2013/fer2013.tar.xz"
  subset = tmp_path / "fer_subset"
  wanted = {"Training": 200, "PublicTest": 40, "PrivateTest": 40}
  with tarfile.open(archive, "r|xz") as tar:
    for member in tar:
      kind = member.name.rsplit("/", 1)[-1].split("_")[0]
      if member.isfile() and wanted.get(kind, 0) > 0:
        wanted[kind] -= 1
        _write(subset / member.name, tar.extractfile(member).read())
      if not any(wanted.values()):
        break
  data_dir = tmp_path / "data"
  builder = datasets.prepare("fer2013", data_dir=data_dir, manual_dir=subset)
  assert sum(s.num_examples for s in builder.info.splits.values()) == 280
  with pytest.raises(DatasetError) as info:
    datasets.prepare("fer2013", data_dir=data_dir,
                     manual_dir=archive.parent)
  message = str(info.value)
  print(message)
  assert f"prepared from: folder {subset} (280 files" in message
  assert f"now holds: archive {archive} (42.7 MB)" in message
