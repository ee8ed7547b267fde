"""Tests for mre_jax.datasets: builders, layouts, errors and loading.

Small fixtures in every supported layout are written to tmp dirs by the tests
themselves. Real-data tests read the shared archives (see conftest) and
prepare each real dataset once per module.
"""

from __future__ import annotations

import csv
import gzip
import io
import pathlib
import sys
import tarfile
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import mre_jax.datasets as datasets
from mre_jax.datasets import common
from mre_jax.datasets import raf_db
from mre_jax.datasets import synthetic_faces
from mre_jax.errors import DatasetError

FER_EMOTIONS = datasets.CLASS_NAMES
RAF_TO_CANONICAL = (5, 2, 1, 3, 4, 0, 6)


# ----------------------------------------------------------------------------
# Fixture helpers.


def _jpeg(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze()).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def _decoded(data: bytes, mode: str) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert(mode))


def _write(path: pathlib.Path, data: bytes | str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(data, str):
    path.write_bytes(data.encode())
  else:
    path.write_bytes(data)


def _gray(rng: np.random.Generator) -> np.ndarray:
  return rng.integers(0, 256, (48, 48), dtype=np.uint8)


def _rgb(rng: np.random.Generator) -> np.ndarray:
  return rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)


def _tar(source: pathlib.Path, target: pathlib.Path, mode: str) -> None:
  with tarfile.open(target, mode) as archive:
    for path in sorted(source.rglob("*")):
      if path.is_file():
        archive.add(path, arcname=path.relative_to(source).as_posix())


def _zip(source: pathlib.Path, target: pathlib.Path, root: str = "") -> None:
  with zipfile.ZipFile(target, "w") as archive:
    for path in sorted(source.rglob("*")):
      if path.is_file():
        archive.write(path, root + path.relative_to(source).as_posix())


def _records(builder, split: str) -> dict[str, tuple[np.ndarray, int]]:
  source = builder.as_data_source(split)
  return {r["key"].decode(): (r["image"], int(r["label"]))
          for r in source.__getitems__(range(len(source)))}


def _prepare_with_tfds(name: str, data_dir: pathlib.Path,
                       manual_dir: pathlib.Path):
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _fer_csv_rows(rng, counts=(("Training", 9), ("PublicTest", 4),
                               ("PrivateTest", 3))):
  rows = []
  for usage, n in counts:
    for i in range(n):
      rows.append((i % 7, _gray(rng), usage))
  return rows


def _fer_csv_text(rows) -> str:
  lines = ["emotion,pixels,Usage"]
  for label, pixels, usage in rows:
    lines.append(f"{label},{' '.join(map(str, pixels.reshape(-1)))},{usage}")
  return "\n".join(lines) + "\n"


def _fer_folders(root: pathlib.Path, rng, *, prefixes: bool = True,
                 train_per_class: int = 2) -> dict[str, np.ndarray]:
  """Kaggle FER folders; returns relative path -> JPEG-decoded pixels."""
  files = {}
  for label, emotion in enumerate(FER_EMOTIONS):
    for i in range(train_per_class):
      files[f"train/{emotion}/Training_{label}{i:03d}.jpg"] = _gray(rng)
    if prefixes:
      files[f"test/{emotion}/PublicTest_{label}1.jpg"] = _gray(rng)
      files[f"test/{emotion}/PrivateTest_{label}1.jpg"] = _gray(rng)
      files[f"test/{emotion}/PrivateTest_{label}2.jpg"] = _gray(rng)
    else:
      files[f"test/{emotion}/im{label}a.jpg"] = _gray(rng)
      files[f"test/{emotion}/im{label}b.jpg"] = _gray(rng)
  # One file name in two emotion folders, as in the real data.
  files["train/surprise/Training_8475486.jpg"] = _gray(rng)
  files["train/angry/Training_8475486.jpg"] = _gray(rng)
  decoded = {}
  for relpath, pixels in files.items():
    data = _jpeg(pixels)
    _write(root / relpath, data)
    decoded[relpath] = _decoded(data, "L")
  return decoded


def _raf_kaggle(root: pathlib.Path, rng, *, per_class: int = 2,
                newline: str = "\n") -> dict[str, tuple[np.ndarray, int]]:
  """The RAF-DB Kaggle mirror; returns file name -> (pixels, RAF label)."""
  files = {}
  for split in ("train", "test"):
    rows = ["image,label"]
    for raf_label in range(1, 8):
      for i in range(per_class):
        name = f"{split}_{raf_label}{i:03d}_aligned.jpg"
        data = _jpeg(_rgb(rng))
        _write(root / f"DATASET/{split}/{raf_label}/{name}", data)
        files[name] = (_decoded(data, "RGB"), raf_label)
        rows.append(f"{name},{raf_label}")
    _write(root / f"{split}_labels.csv", newline.join(rows) + newline)
  return files


def _raf_original(root: pathlib.Path, rng, *, per_class: int = 2,
                  newline: str = "\n") -> dict[str, tuple[np.ndarray, int]]:
  """RAF-DB's own layout; returns image name -> (pixels, RAF label)."""
  files, lines = {}, []
  for split in ("train", "test"):
    for raf_label in range(1, 8):
      for i in range(per_class):
        name = f"{split}_{raf_label}{i:03d}.jpg"
        data = _jpeg(_rgb(rng))
        _write(root / f"Image/aligned/{split}_{raf_label}{i:03d}_aligned.jpg",
               data)
        files[name] = (_decoded(data, "RGB"), raf_label)
        lines.append(f"{name} {raf_label}")
  _write(root / "EmoLabel/list_patition_label.txt",
         newline.join(lines) + newline)
  return files


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


# ----------------------------------------------------------------------------
# Shared helpers and the loading API.


def test_class_weights_formula():
  labels = np.array([0, 0, 0, 1, 3, 3])
  weights = datasets.class_weights(labels, 4)
  n, k = 6, 4
  expected = [n / (k * 3), n / (k * 1), 0.0, n / (k * 2)]
  assert weights.dtype == np.float32
  np.testing.assert_allclose(weights, expected, rtol=1e-6)
  balanced = datasets.class_weights(np.arange(14) % 7, 7)
  np.testing.assert_allclose(balanced, np.ones(7))


@pytest.mark.parametrize("labels", [np.array([0, 7]), np.array([-1, 2]),
                                    np.array([], dtype=np.int64),
                                    np.array([0.5, 1.0])])
def test_class_weights_rejects_bad_labels(labels):
  with pytest.raises(DatasetError):
    datasets.class_weights(labels, 7)


def test_holdout_mask_is_stratified_every_tenth():
  labels = np.array([0] * 25 + [1] * 9 + [2] * 10)
  mask = common.holdout_mask(labels)
  assert np.flatnonzero(mask[:25]).tolist() == [9, 19]
  assert not mask[25:34].any()
  assert np.flatnonzero(mask[34:]).tolist() == [9]


def test_public_api():
  assert datasets.CLASS_NAMES == ("angry", "disgust", "fear", "happy", "sad",
                                  "surprise", "neutral")
  assert datasets.DATASET_NAMES == ("fer2013", "raf_db", "synthetic_faces")
  for name in datasets.DATASET_NAMES:
    assert tfds.builder_cls(name).__module__.startswith("mre_jax.datasets.")


def test_unknown_dataset_config_and_validation(tmp_path):
  with pytest.raises(DatasetError, match="fer2013, raf_db, synthetic_faces"):
    datasets.prepare("mnist", data_dir=tmp_path)
  with pytest.raises(DatasetError, match="default, tiny"):
    datasets.prepare("synthetic_faces", data_dir=tmp_path, config="huge")
  with pytest.raises(DatasetError, match="no config"):
    datasets.prepare("fer2013", data_dir=tmp_path, config="x")
  with pytest.raises(DatasetError, match="auto, holdout, test"):
    datasets.load_splits("synthetic_faces", data_dir=tmp_path, config="tiny",
                         validation="public")


def test_dataset_errors_wrapped_by_tfds_reach_the_user(tmp_path,
                                                       monkeypatch):
  def failing(self, examples):
    yield examples.keys[0], {"image": examples.images[0], "label": 0,
                             "key": examples.keys[0]}
    try:
      raise DatasetError("corrupt input while writing")
    except DatasetError as e:
      raise RuntimeError("writer failed") from e

  monkeypatch.setattr(synthetic_faces.SyntheticFaces, "_generate_examples",
                      failing)
  builder = tfds.builder("synthetic_faces/tiny", data_dir=str(tmp_path))
  with pytest.raises(DatasetError, match="corrupt input while writing"):
    builder.download_and_prepare()
  with pytest.raises(DatasetError, match="corrupt input while writing"):
    datasets.prepare("synthetic_faces", data_dir=tmp_path, config="tiny")
  assert not (tmp_path / "synthetic_faces/tiny/1.0.0").exists()


# ----------------------------------------------------------------------------
# synthetic_faces.


def test_synthetic_is_deterministic_in_the_seed():
  a = synthetic_faces.generate_split(300, 7, "train")
  b = synthetic_faces.generate_split(300, 7, "train")
  c = synthetic_faces.generate_split(300, 8, "train")
  v = synthetic_faces.generate_split(300, 7, "validation")
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert not np.array_equal(a.images, c.images)
  assert not np.array_equal(a.images, v.images)
  # Chunked rendering: a longer split starts with different faces but is
  # itself reproducible.
  big = synthetic_faces.generate_split(2100, 7, "train")
  np.testing.assert_array_equal(
      big.images, synthetic_faces.generate_split(2100, 7, "train").images)


def test_synthetic_tiny_through_load_splits(tmp_path):
  splits = datasets.load_splits("synthetic_faces", data_dir=tmp_path,
                                config="tiny")
  assert {k: v.num_examples for k, v in splits.items()} == {
      "train": 512, "validation": 128, "test": 128}
  for name, split in splits.items():
    assert split.split == name
    assert split.dataset == "synthetic_faces"
    assert split.version == "1.0.0"
    assert split.images.shape[1:] == (48, 48, 1)
    assert split.images.dtype == np.uint8
    assert split.labels.dtype == np.int32
    assert split.indices.dtype == np.int64
    assert split.class_names == datasets.CLASS_NAMES
    assert split.num_classes == 7
    counts = np.bincount(split.labels, minlength=7)
    assert counts.min() >= split.num_examples // 7
  again = datasets.load_splits("synthetic_faces", data_dir=tmp_path / "b",
                               config="tiny")
  np.testing.assert_array_equal(again["train"].images,
                                splits["train"].images)
  np.testing.assert_array_equal(again["train"].labels,
                                splits["train"].labels)


def test_damaged_prepared_split_is_one_clear_error(tmp_path):
  datasets.prepare("synthetic_faces", data_dir=tmp_path, config="tiny")
  (record,) = tmp_path.glob("synthetic_faces/tiny/*/*-train.array_record*")
  record.write_bytes(record.read_bytes()[:200])
  with pytest.raises(DatasetError, match="unreadable.*delete that folder"):
    datasets.load_splits("synthetic_faces", data_dir=tmp_path, config="tiny")


def test_validation_modes(tmp_path):
  auto = datasets.load_splits("synthetic_faces", data_dir=tmp_path,
                              config="tiny")
  holdout = datasets.load_splits("synthetic_faces", data_dir=tmp_path,
                                 config="tiny", validation="holdout")
  as_test = datasets.load_splits("synthetic_faces", data_dir=tmp_path,
                                 config="tiny", validation="test")
  train, valid = holdout["train"], holdout["validation"]
  assert (train.split, valid.split) == ("train-holdout", "holdout")
  expected = sum(c // 10 for c in np.bincount(auto["train"].labels))
  assert valid.num_examples == expected
  assert train.num_examples + valid.num_examples == 512
  np.testing.assert_array_equal(
      np.sort(np.concatenate([train.indices, valid.indices])), np.arange(512))
  np.testing.assert_array_equal(valid.images,
                                auto["train"].images[valid.indices])
  np.testing.assert_array_equal(valid.labels,
                                auto["train"].labels[valid.indices])
  assert as_test["validation"].split == "test"
  np.testing.assert_array_equal(as_test["validation"].images,
                                auto["test"].images)


def test_synthetic_custom_config(tmp_path):
  splits = datasets.load_splits("synthetic_faces", data_dir=tmp_path,
                                config="train70_val14_test21_seed3")
  assert [s.num_examples for s in splits.values()] == [70, 14, 21]
  config = synthetic_faces.make_config(70, 14, 21, seed=3)
  builder = tfds.builder("synthetic_faces", data_dir=str(tmp_path),
                         config=config)
  assert builder.info.splits["train"].num_examples == 70
  with pytest.raises(DatasetError, match="size 3"):
    synthetic_faces.make_config(3, 14, 21)


def test_synthetic_is_learnable_but_not_trivial():
  """Softmax regression on pixels: well above chance, far from perfect.

  Pose and lighting make a linear model weak (about 0.29 here, chance 0.14);
  a small CNN reaches about 0.85 on the default config.
  """
  train = synthetic_faces.generate_split(2100, 0, "train")
  test = synthetic_faces.generate_split(700, 0, "test")

  def features(images):
    x = images.reshape(len(images), 24, 2, 24, 2).mean((2, 4))
    x = x.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / (x.std(1, keepdims=True) + 1e-3)

  x, x_test = features(train.images), features(test.images)
  onehot = np.eye(7, dtype=np.float32)[train.labels]
  w = np.zeros((x.shape[1], 7), np.float32)
  for _ in range(150):
    logits = x @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    w -= 0.5 * (x.T @ (p - onehot) / len(x) + 1e-3 * w)
  accuracy = np.mean((x_test @ w).argmax(1) == test.labels)
  assert 0.22 < accuracy < 0.9, accuracy


# ----------------------------------------------------------------------------
# fer2013: CSV layout.


def test_fer_csv(tmp_path, rng):
  rows = _fer_csv_rows(rng)
  _write(tmp_path / "manual/fer2013.csv", _fer_csv_text(rows))
  builder = _prepare_with_tfds("fer2013", tmp_path / "data",
                               tmp_path / "manual")
  assert builder.info.features["image"].shape == (48, 48, 1)
  assert builder.info.features["image"].np_dtype == np.uint8
  assert builder.info.features["label"].names == list(datasets.CLASS_NAMES)
  assert (tmp_path / "data/fer2013/1.0.0").is_dir()
  assert list((tmp_path / "data/fer2013/1.0.0").glob("*.array_record*"))
  records = {split: _records(builder, split)
             for split in ("train", "validation", "test")}
  assert {s: len(r) for s, r in records.items()} == {
      "train": 9, "validation": 4, "test": 3}
  # Line 2 is the first data row.
  image, label = records["train"]["fer2013.csv:2"]
  np.testing.assert_array_equal(image[..., 0], rows[0][1])
  assert label == rows[0][0]
  image, label = records["test"]["fer2013.csv:16"]
  np.testing.assert_array_equal(image[..., 0], rows[14][1])
  assert label == rows[14][0]
  assert "tensorflow" not in sys.modules


def test_fer_csv_gz_in_subfolder_and_default_manual_dir(tmp_path, rng):
  rows = _fer_csv_rows(rng)
  manual = tmp_path / "data/downloads/manual/fer2013"
  _write(manual / "fer2013.csv.gz",
         gzip.compress(_fer_csv_text(rows).encode()))
  splits = datasets.load_splits("fer2013", data_dir=tmp_path / "data")
  assert [s.num_examples for s in splits.values()] == [9, 4, 3]
  assert splits["validation"].split == "validation"


@pytest.mark.parametrize("line, expected", [
    ("3,1 2 3,Training",
     r"line 4: expected 2304 pixel values \(48x48\), got 3"),
    ("x,{pixels},Training", r"line 4: emotion 'x' is not an integer"),
    ("7,{pixels},Training", r"line 4: emotion 7 is outside 0..6"),
    ("1,{pixels},Valid", r"line 4: Usage 'Valid'"),
    ("1,{pixels}", r"line 4: expected 3 fields, got 2"),
    ("1,{bad_pixels},Training", r"line 4: pixel values must lie in 0..255"),
])
def test_fer_csv_errors_name_the_line(tmp_path, rng, line, expected):
  rows = _fer_csv_rows(rng)
  lines = _fer_csv_text(rows).splitlines()
  pixels = " ".join(["7"] * 2304)
  bad_pixels = " ".join(["300"] * 2304)
  lines.insert(3, line.format(pixels=pixels, bad_pixels=bad_pixels))
  _write(tmp_path / "manual/fer2013.csv", "\n".join(lines) + "\n")
  with pytest.raises(DatasetError, match=expected) as info:
    datasets.prepare("fer2013", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")
  assert "fer2013.csv" in str(info.value)


def test_fer_csv_header_and_missing_usage(tmp_path, rng):
  _write(tmp_path / "a/fer2013.csv", "emotion,pixel,Usage\n")
  with pytest.raises(DatasetError, match=r"line 1: .*lacks.*pixels"):
    datasets.prepare("fer2013", data_dir=tmp_path / "d1",
                     manual_dir=tmp_path / "a")
  rows = _fer_csv_rows(rng, counts=(("Training", 3), ("PublicTest", 2)))
  _write(tmp_path / "b/fer2013.csv", _fer_csv_text(rows))
  with pytest.raises(DatasetError, match="no PrivateTest rows"):
    datasets.prepare("fer2013", data_dir=tmp_path / "d2",
                     manual_dir=tmp_path / "b")


def test_fer_csv_inside_challenge_tarball(tmp_path, rng):
  rows = _fer_csv_rows(rng)
  _write(tmp_path / "tree/fer2013/fer2013.csv", _fer_csv_text(rows))
  _write(tmp_path / "tree/fer2013/README", "challenge files")
  (tmp_path / "manual").mkdir()
  _tar(tmp_path / "tree", tmp_path / "manual/fer2013.tar.gz", "w:gz")
  builder = datasets.prepare("fer2013", data_dir=tmp_path / "data",
                             manual_dir=tmp_path / "manual")
  image, label = _records(builder, "validation")["fer2013.csv:11"]
  np.testing.assert_array_equal(image[..., 0], rows[9][1])
  assert label == rows[9][0]


# ----------------------------------------------------------------------------
# fer2013: folder and archive layouts.


def test_fer_folders_with_prefixes(tmp_path, rng):
  decoded = _fer_folders(tmp_path / "manual", rng)
  builder = _prepare_with_tfds("fer2013", tmp_path / "data",
                               tmp_path / "manual")
  records = {split: _records(builder, split)
             for split in ("train", "validation", "test")}
  assert {s: len(r) for s, r in records.items()} == {
      "train": 16, "validation": 7, "test": 14}
  for split, prefix in [("train", "train/"), ("validation", "test/"),
                        ("test", "test/")]:
    for key, (image, label) in records[split].items():
      assert key.startswith(prefix)
      assert label == FER_EMOTIONS.index(key.split("/")[1])
      np.testing.assert_array_equal(image[..., 0], decoded[key])
  assert all("PublicTest_" in k for k in records["validation"])
  assert all("PrivateTest_" in k for k in records["test"])
  # Same file name in two folders: two examples, two labels.
  assert records["train"]["train/angry/Training_8475486.jpg"][1] == 0
  assert records["train"]["train/surprise/Training_8475486.jpg"][1] == 5


def test_fer_folders_without_prefixes(tmp_path, rng):
  _fer_folders(tmp_path / "manual", rng, prefixes=False, train_per_class=11)
  builder = datasets.prepare("fer2013", data_dir=tmp_path / "data",
                             manual_dir=tmp_path / "manual")
  records = {split: _records(builder, split)
             for split in ("train", "validation", "test")}
  # 11 per class (+1 angry, +1 surprise); the 10th in sorted order of each
  # emotion folder is validation.
  assert {s: len(r) for s, r in records.items()} == {
      "train": 72, "validation": 7, "test": 14}
  assert "train/happy/Training_3009.jpg" in records["validation"]
  assert "train/angry/Training_0009.jpg" in records["validation"]
  assert all(k.startswith("test/") for k in records["test"])


@pytest.mark.parametrize("archive", ["fer2013.zip", "fer2013.tar.xz",
                                     "archive.tar.gz", "fer.tar"])
def test_fer_archives(tmp_path, rng, archive):
  decoded = _fer_folders(tmp_path / "tree", rng)
  manual = tmp_path / "manual"
  manual.mkdir()
  if archive.endswith(".zip"):
    _zip(tmp_path / "tree", manual / archive, root="fer2013/")
  else:
    mode = {"xz": "w:xz", "gz": "w:gz", "tar": "w"}[archive.rsplit(".", 1)[1]]
    _tar(tmp_path / "tree", manual / archive, mode)
  builder = datasets.prepare("fer2013", data_dir=tmp_path / "data",
                             manual_dir=manual)
  records = _records(builder, "train")
  assert len(records) == 16
  if archive == "fer.tar":  # The archive itself may be the manual dir.
    builder = datasets.prepare("fer2013", data_dir=tmp_path / "data2",
                               manual_dir=manual / archive)
    assert builder.info.splits["train"].num_examples == 16
  key = "train/fear/Training_2001.jpg"
  np.testing.assert_array_equal(records[key][0][..., 0], decoded[key])
  assert records[key][1] == 2


def test_fer_missing_files_lists_layouts_and_path(tmp_path):
  (tmp_path / "manual").mkdir()
  _write(tmp_path / "manual/notes.txt", "nothing here")
  with pytest.raises(DatasetError) as info:
    datasets.prepare("fer2013", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")
  message = str(info.value)
  assert str(tmp_path / "manual") in message
  assert "fer2013.csv" in message and "train/<emotion>/*.jpg" in message
  assert ".tar.xz" in message
  with pytest.raises(DatasetError, match="does not exist"):
    datasets.prepare("fer2013", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "absent")


def test_fer_unknown_emotion_folder(tmp_path, rng):
  _fer_folders(tmp_path / "manual", rng)
  _write(tmp_path / "manual/train/contempt/Training_1.jpg", _jpeg(_gray(rng)))
  with pytest.raises(DatasetError,
                     match=r"unknown emotion folder .*train/contempt"):
    datasets.prepare("fer2013", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")


def test_fer_mixed_test_prefixes(tmp_path, rng):
  _fer_folders(tmp_path / "manual", rng)
  _write(tmp_path / "manual/test/sad/im1.jpg", _jpeg(_gray(rng)))
  with pytest.raises(DatasetError, match="mixes files"):
    datasets.prepare("fer2013", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")


@pytest.mark.parametrize("content, expected", [
    (b"not a jpeg", "cannot decode image"),
    (None, "is 40x40 pixels, expected 48x48"),
])
def test_fer_bad_image_then_fixed_rerun(tmp_path, rng, content, expected):
  _fer_folders(tmp_path / "manual", rng)
  bad = tmp_path / "manual/test/sad/PrivateTest_99.jpg"
  if content is None:
    content = _jpeg(np.zeros((40, 40), np.uint8))
  _write(bad, content)
  data_dir = tmp_path / "data"
  with pytest.raises(DatasetError, match=expected) as info:
    datasets.prepare("fer2013", data_dir=data_dir,
                     manual_dir=tmp_path / "manual")
  assert str(bad) in str(info.value)
  # Nothing that looks prepared (or half-written) is left behind.
  assert not (data_dir / "fer2013/1.0.0").exists()
  assert not [p for p in data_dir.rglob("*") if "incomplete" in p.name]
  _write(bad, _jpeg(_gray(rng)))
  builder = datasets.prepare("fer2013", data_dir=data_dir,
                             manual_dir=tmp_path / "manual")
  assert builder.info.splits["test"].num_examples == 15


# ----------------------------------------------------------------------------
# raf_db.


def _check_raf(builder, files: dict[str, tuple[np.ndarray, int]],
               key_of) -> None:
  for split in ("train", "test"):
    records = _records(builder, split)
    expected = {n: v for n, v in files.items() if n.startswith(split)}
    assert len(records) == len(expected)
    for name, (pixels, raf_label) in expected.items():
      image, label = records[key_of(name, raf_label)]
      assert image.shape == (100, 100, 3)
      np.testing.assert_array_equal(image, pixels)
      assert label == RAF_TO_CANONICAL[raf_label - 1]
  assert set(builder.info.splits.keys()) == {"train", "test"}


def test_raf_label_remapping():
  names = [datasets.CLASS_NAMES[raf_db.canonical_label(r)] for r in range(1, 8)]
  assert names == ["surprise", "fear", "disgust", "happy", "sad", "angry",
                   "neutral"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_raf_kaggle_folders(tmp_path, rng, newline):
  files = _raf_kaggle(tmp_path / "manual", rng, newline=newline)
  builder = _prepare_with_tfds("raf_db", tmp_path / "data",
                               tmp_path / "manual")
  _check_raf(builder, files,
             lambda n, r: f"DATASET/{n.split('_')[0]}/{r}/{n}")


def test_raf_kaggle_without_csvs_uses_folders(tmp_path, rng):
  files = _raf_kaggle(tmp_path / "manual", rng)
  (tmp_path / "manual/train_labels.csv").unlink()
  (tmp_path / "manual/test_labels.csv").unlink()
  builder = datasets.prepare("raf_db", data_dir=tmp_path / "data",
                             manual_dir=tmp_path / "manual")
  _check_raf(builder, files,
             lambda n, r: f"DATASET/{n.split('_')[0]}/{r}/{n}")


@pytest.mark.parametrize("basic, newline", [("basic/", "\r\n"), ("", "\n"),
                                            ("basic/", "\n")])
def test_raf_original_layout(tmp_path, rng, basic, newline):
  files = _raf_original(tmp_path / "manual" / basic, rng, newline=newline)
  builder = datasets.prepare("raf_db", data_dir=tmp_path / "data",
                             manual_dir=tmp_path / "manual")
  _check_raf(builder, files,
             lambda n, r: f"Image/aligned/{n[:-4]}_aligned.jpg")


@pytest.mark.parametrize("archive", ["rafdb_basic.tar.xz", "raf.zip"])
def test_raf_archives_and_holdout(tmp_path, rng, archive):
  files = _raf_kaggle(tmp_path / "tree", rng, per_class=10)
  manual = tmp_path / "manual/rafdb"
  manual.mkdir(parents=True)
  if archive.endswith(".zip"):
    _zip(tmp_path / "tree", manual / archive)
  else:
    _tar(tmp_path / "tree", manual / archive, "w:xz")
  splits = datasets.load_splits("raf_db", data_dir=tmp_path / "data",
                                manual_dir=tmp_path / "manual")
  # No validation split: "auto" holds out every 10th train image per class.
  assert splits["train"].split == "train-holdout"
  assert splits["validation"].split == "holdout"
  assert splits["validation"].num_examples == 7
  assert splits["train"].num_examples == 63
  assert splits["test"].num_examples == 70
  assert splits["train"].images.shape[1:] == (100, 100, 3)
  assert len(files) == 140


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: _write(m / "train_labels.csv",
                      "image,label\ntrain_1000_aligned.jpg,9\n"),
     r"train_labels.csv line 2: label 9 is outside 1..7"),
    (lambda m: (m / "DATASET/test/4/test_4001_aligned.jpg").unlink(),
     r"test_labels.csv line 9: image test_4001_aligned.jpg is listed but "
     r"missing; expected .*DATASET/test/4/test_4001_aligned.jpg"),
    (lambda m: (m / "DATASET/train/2/train_2000_aligned.jpg").rename(
        m / "DATASET/train/3/train_2000_aligned.jpg"),
     r"train_labels.csv line 4: train_2000_aligned.jpg has label 2 in the "
     r"CSV but sits in .*DATASET/train/3/.*authoritative"),
    (lambda m: (m / "DATASET/train/1").rename(m / "DATASET/train/8"),
     r"unknown emotion folder .*DATASET/train/8"),
    (lambda m: _write(m / "DATASET/train/5/train_9999_aligned.jpg", b"x"),
     r"not listed in .*train_labels.csv.*train_9999_aligned.jpg"),
    (lambda m: _write(m / "DATASET/test/5/test_5000_aligned.jpg", b"junk"),
     r"cannot decode image .*DATASET/test/5/test_5000_aligned.jpg"),
    (lambda m: (m / "test_labels.csv").unlink(),
     r"test_labels.csv is missing"),
])
def test_raf_kaggle_errors(tmp_path, rng, mutate, expected):
  _raf_kaggle(tmp_path / "manual", rng)
  mutate(tmp_path / "manual")
  with pytest.raises(DatasetError, match=expected):
    datasets.prepare("raf_db", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")
  assert not (tmp_path / "data/raf_db/1.0.0").exists()


@pytest.mark.parametrize("line, expected", [
    ("train_1000.jpg 0", r"line 29: label 0 is outside 1..7"),
    ("train_1000.jpg", r"line 29: expected '<image> <label>'"),
    ("val_1000.jpg 3", r"line 29: .*starts with neither train_ nor test_"),
    ("train_7777.jpg 3",
     r"line 29: image train_7777.jpg is listed but missing; expected "
     r".*Image/aligned/train_7777_aligned.jpg"),
])
def test_raf_original_errors(tmp_path, rng, line, expected):
  _raf_original(tmp_path / "manual/basic", rng, newline="\r\n")
  labels = tmp_path / "manual/basic/EmoLabel/list_patition_label.txt"
  labels.write_bytes(labels.read_bytes() + line.encode() + b"\r\n")
  with pytest.raises(DatasetError, match=expected):
    datasets.prepare("raf_db", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")


def test_raf_missing_files(tmp_path):
  (tmp_path / "manual").mkdir()
  with pytest.raises(DatasetError) as info:
    datasets.prepare("raf_db", data_dir=tmp_path / "data",
                     manual_dir=tmp_path / "manual")
  message = str(info.value)
  assert str(tmp_path / "manual") in message
  assert "list_patition_label.txt" in message
  assert "train_labels.csv" in message


# ----------------------------------------------------------------------------
# Real data (prepared once per module).

FER_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "validation": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}
# README counts in RAF-DB order 1..7, remapped to the canonical order.
_RAF_README = {"train": [1290, 281, 717, 4772, 1982, 705, 2524],
               "test": [329, 74, 160, 1185, 478, 162, 680]}
RAF_COUNTS = {split: [counts[RAF_TO_CANONICAL.index(c)] for c in range(7)]
              for split, counts in _RAF_README.items()}


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> dict:
  return {"data_dir": tmp_path_factory.mktemp("real")}


def _real(cache: dict, name: str, manual_dir: pathlib.Path) -> dict:
  if name not in cache:
    builder = datasets.prepare(name, data_dir=cache["data_dir"],
                               manual_dir=manual_dir)
    cache[name] = {
        "builder": builder,
        "splits": datasets.load_splits(name, data_dir=cache["data_dir"],
                                       validation="test"),
    }
  return cache[name]


def _members(archive: pathlib.Path, names: list[str]) -> dict[str, bytes]:
  """Reads a few members of a tar.xz in one pass."""
  found = {}
  with tarfile.open(archive, "r|xz") as tar:
    for member in tar:
      if member.name in names:
        found[member.name] = tar.extractfile(member).read()
        if len(found) == len(names):
          break
  return found


def test_real_fer2013(real_data_dir, real_cache):
  archive = real_data_dir / "fer2013/fer2013.tar.xz"
  real = _real(real_cache, "fer2013", archive.parent)
  builder = real["builder"]
  assert {s: builder.info.splits[s].num_examples for s in FER_COUNTS} == {
      "train": 28709, "validation": 3589, "test": 3589}
  for split in ("train", "test"):
    data = real["splits"][split]
    assert data.images.shape == (len(data.labels), 48, 48, 1)
    assert np.bincount(data.labels, minlength=7).tolist() == FER_COUNTS[split]
  records = _records(builder, "validation")
  assert np.bincount([label for _, label in records.values()],
                     minlength=7).tolist() == FER_COUNTS["validation"]
  assert all("/PublicTest_" in key for key in records)
  train = _records(builder, "train")
  expected = {"train/angry/Training_8475486.jpg": 0,
              "train/surprise/Training_8475486.jpg": 5,
              "train/neutral/Training_52789098.jpg": 6,
              "train/surprise/Training_52789098.jpg": 5}
  members = _members(archive, list(expected))
  for key, label in expected.items():
    image, got = train[key]
    assert got == label
    np.testing.assert_array_equal(image[..., 0], _decoded(members[key], "L"))
  assert not np.array_equal(train["train/angry/Training_8475486.jpg"][0],
                            train["train/surprise/Training_8475486.jpg"][0])


def test_real_raf_db(real_data_dir, real_cache):
  archive = real_data_dir / "rafdb/rafdb_basic.tar.xz"
  real = _real(real_cache, "raf_db", archive.parent)
  builder = real["builder"]
  assert {s: builder.info.splits[s].num_examples for s in RAF_COUNTS} == {
      "train": 12271, "test": 3068}
  for split in ("train", "test"):
    data = real["splits"][split]
    assert data.images.shape == (len(data.labels), 100, 100, 3)
    assert np.bincount(data.labels, minlength=7).tolist() == RAF_COUNTS[split]
  train = _records(builder, "train")
  key = "DATASET/train/5/train_00001_aligned.jpg"  # RAF 5 = sadness.
  members = _members(archive, [key, "train_labels.csv"])
  image, label = train[key]
  assert datasets.CLASS_NAMES[label] == "sad"
  np.testing.assert_array_equal(image, _decoded(members[key], "RGB"))
  rows = list(csv.reader(io.StringIO(members["train_labels.csv"].decode())))
  assert rows[1] == ["train_00001_aligned.jpg", "5"]
