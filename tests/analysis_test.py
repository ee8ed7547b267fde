"""The recording analysis: sources, faces, tracking, rows, summary, outputs.

Test videos are written here with OpenCV: drawn synthetic faces (and, when
the shared data are present, real RAF-DB test faces) pasted into larger
noisy frames, with blank frames between them. The model is the tiny trained
teacher of ``conftest.teacher_run``.
"""

import csv
import io
import json
import os

import cv2
import numpy as np
import pytest

from mre_jax.analysis import analyzer as analyzer_lib
from mre_jax.analysis import detection
from mre_jax.analysis import moments as moments_lib
from mre_jax.analysis import outputs
from mre_jax.analysis import smoothing
from mre_jax.analysis import sources
from mre_jax.analysis import table
from mre_jax.analysis import tracking
from mre_jax.benchmarks import analysis as bench
from mre_jax.benchmarks import test_faces
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.errors import AnalysisError
from mre_jax.errors import UserError
from mre_jax.inference.predictor import Predictor

FPS = 10.0
FRAME = (320, 240)
COLUMNS = ["source", "frame", "time_s", "face_id", "x", "y", "w", "h",
           *CLASS_NAMES, "emotion", "confidence", "valence"]


def _read_frames(path: str) -> list[np.ndarray]:
  capture = cv2.VideoCapture(path)
  frames = []
  while True:
    ok, bgr = capture.read()
    if not ok:
      break
    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
  capture.release()
  return frames


def _csv_rows(text: str) -> list[dict[str, str]]:
  return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def model(teacher_run):
  return Predictor.from_workdir(teacher_run[0], batch_size=16)


@pytest.fixture(scope="module")
def analyzer(model, teacher_run):
  from mre_jax.analysis import classifier  # pylint: disable=g-import-not-at-top
  return analyzer_lib.Analyzer(
      model, analyzer_lib.Settings(sample_fps=0, batch_size=16),
      classifier.describe(model, teacher_run[0]))


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
  """Three faces, 6 frames each, 2 blank frames after each, 10 frames/s."""
  folder = tmp_path_factory.mktemp("video")
  frames = bench.compose_frames(
      bench.detectable_faces(3), np.random.default_rng(1), size=FRAME,
      face_px=(100, 130), frames_per_face=6, blank_frames=2, noise=4.0)
  return bench.write_video(str(folder / "faces.avi"), frames, fps=FPS)


@pytest.fixture(scope="module")
def face_result(analyzer, face_video):
  return analyzer.analyze(face_video.path)


def test_rows_follow_the_faces_with_stable_ids(face_result, face_video):
  rows = face_result.rows
  assert list(rows[0]) == COLUMNS
  assert len(rows) == face_result.summary["frames"]["with_face"]
  ids_of_face: dict[int, set[int]] = {}
  for row in rows:
    truth = face_video.truth[row["frame"]]
    assert truth is not None, f"a row on blank frame {row['frame']}"
    box = detection.Box(row["x"], row["y"], row["w"], row["h"])
    assert box.iou(detection.Box(*truth)) > 0.3
    assert row["time_s"] == pytest.approx(row["frame"] / FPS, abs=1e-4)
    ids_of_face.setdefault(face_video.face_of_frame[row["frame"]],
                           set()).add(row["face_id"])
  assert sorted(ids_of_face) == [0, 1, 2]
  assert all(len(ids) == 1 for ids in ids_of_face.values()), ids_of_face
  assert len(set().union(*ids_of_face.values())) == 3
  found = {r["frame"] for r in rows}
  with_face = [i for i, t in enumerate(face_video.truth) if t is not None]
  assert len(found) >= 0.9 * len(with_face)


def test_probabilities_are_the_predictors_on_the_same_crops(
    face_result, face_video, model):
  frames = _read_frames(face_video.path)
  crops = np.concatenate([
      detection.crop_faces(frames[r["frame"]],
                           [detection.Box(r["x"], r["y"], r["w"], r["h"])],
                           model.image_size) for r in face_result.rows])
  expected = model.probabilities(crops)
  got = np.array([[r[n] for n in CLASS_NAMES] for r in face_result.rows])
  np.testing.assert_allclose(got, expected, atol=1e-5)
  np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
  parsed = _csv_rows(face_result.to_csv())
  assert list(parsed[0]) == COLUMNS and len(parsed) == len(face_result.rows)
  from_csv = np.array([[float(r[n]) for n in CLASS_NAMES] for r in parsed])
  np.testing.assert_allclose(from_csv.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(from_csv, got, atol=1e-6)


def test_labels_are_smoothed_per_face(face_result):
  smoother = smoothing.Smoother(0.5)
  for row in face_result.rows:
    raw = np.array([row[n] for n in CLASS_NAMES])
    smoothed = smoother(row["face_id"], row["time_s"], raw)
    assert row["emotion"] == CLASS_NAMES[int(np.argmax(smoothed))]
    assert row["confidence"] == pytest.approx(smoothed.max(), abs=1e-6)


def test_summary_counts_frames_faces_and_moments(face_result, face_video,
                                                 teacher_run):
  summary = json.loads(json.dumps(face_result.summary))  # JSON-able.
  frames = summary["frames"]
  assert frames["total"] == frames["analysed"] == len(face_video.truth)
  assert frames["with_face"] == len({r["frame"] for r in face_result.rows})
  assert frames["unreadable_skipped"] == 0
  assert summary["input"]["kind"] == "video"
  assert summary["input"]["fps"] == FPS
  assert len(summary["faces"]) == 3 and summary["note"] is None
  for face_id, face in summary["faces"].items():
    rows = [r for r in face_result.rows if str(r["face_id"]) == face_id]
    assert face["frames"] == len(rows)
    assert face["seconds_seen"] == pytest.approx(len(rows) / FPS)
    assert sum(face["emotion_share"].values()) == pytest.approx(1, abs=1e-3)
    assert face["dominant_emotion"] == max(face["emotion_share"],
                                           key=face["emotion_share"].get)
    mean = np.mean([[r[n] for n in CLASS_NAMES] for r in rows], axis=0)
    np.testing.assert_allclose(
        [face["mean_probabilities"][n] for n in CLASS_NAMES], mean,
        atol=1e-4)
    for moment in face["key_moments"]:
      assert moment["emotion"] != "neutral"
      assert set(moment) >= {"source", "frame", "time_s", "face_id",
                             "emotion", "confidence"}
      assert moment["start_s"] <= moment["time_s"] <= moment["end_s"]
  model = summary["model"]
  assert model["name"] == "teacher" and model["params"] > 0
  assert model["checkpoint"]["workdir"] == os.path.abspath(teacher_run[0])
  assert summary["detector"]["name"] == "haar"
  assert summary["timing"]["wall_s"] > 0 and summary["timing"]["frames_per_s"]


def test_sampling_uses_the_frame_index_and_the_videos_fps(
    analyzer, face_video):
  sampled = analyzer_lib.Analyzer(
      analyzer.classifier,
      analyzer_lib.Settings(sample_fps=5, batch_size=16,
                            detector="none")).analyze(face_video.path)
  frames = [r["frame"] for r in sampled.rows]
  assert frames == list(range(0, len(face_video.truth), 2))
  assert [r["time_s"] for r in sampled.rows] == pytest.approx(
      [f / FPS for f in frames], abs=1e-4)
  assert {r["face_id"] for r in sampled.rows} == {0}
  assert (sampled.rows[0]["x"], sampled.rows[0]["w"]) == (0, FRAME[0])
  assert sampled.summary["frames"]["total"] == len(face_video.truth)
  limited = analyzer_lib.Analyzer(
      analyzer.classifier,
      analyzer_lib.Settings(sample_fps=0, duration_s=1.0, batch_size=16,
                            detector="none")).analyze(face_video.path)
  assert [r["frame"] for r in limited.rows] == list(range(10))
  assert limited.summary["timing"]["stopped"] == "duration"


def test_outputs_are_written_at_once_and_keep_other_files(
    face_result, tmp_path, monkeypatch):
  out = tmp_path / "out"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  (out / "emotions.csv").write_text("old")
  paths = face_result.write(str(out))
  assert set(paths) >= {"emotions.csv", "summary.json", "timeline.png"}
  assert (out / "notes.txt").read_text() == "mine"
  parsed = _csv_rows((out / "emotions.csv").read_text())
  assert len(parsed) == len(face_result.rows)
  summary = json.loads((out / "summary.json").read_text())
  assert summary["frames"] == face_result.summary["frames"]
  assert (out / "report.html").stat().st_size > 1000
  before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

  def broken(*args, **kwargs):
    raise RuntimeError("disk full")

  monkeypatch.setattr(analyzer_lib, "drawing_functions",
                      lambda: {"timeline": broken, "report": broken})
  with pytest.raises(RuntimeError, match="disk full"):
    face_result.write(str(out))
  after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
  assert after == before
  assert not [p for p in out.iterdir() if p.name.startswith(".")]
  fresh = tmp_path / "fresh"
  with pytest.raises(RuntimeError):
    face_result.write(str(fresh))
  assert not fresh.exists()


class _HappyModel:
  """The model with its neutral and happy outputs swapped: key moments."""

  def __init__(self, model):
    self._model = model
    self._order = list(range(len(CLASS_NAMES)))
    happy, neutral = CLASS_NAMES.index("happy"), CLASS_NAMES.index("neutral")
    self._order[happy], self._order[neutral] = neutral, happy

  def __getattr__(self, name):
    return getattr(self._model, name)

  def probabilities(self, images):
    return self._model.probabilities(images)[:, self._order]


def test_gradcam_overlays_go_to_the_report_and_folder(model, face_video,
                                                      tmp_path):
  explained = analyzer_lib.Analyzer(
      _HappyModel(model), analyzer_lib.Settings(sample_fps=0, batch_size=16,
                                                gradcam=True)).analyze(
                                                    face_video.path)
  moments = explained.moments
  assert moments and all(m.crop is not None for m in moments)
  assert all(m.overlay is not None and m.overlay.dtype == np.uint8
             and m.overlay.shape == m.crop.shape for m in moments)
  paths = explained.write(str(tmp_path))
  pictures = sorted(os.listdir(paths["gradcam"]))
  assert pictures == sorted(outputs.moment_name(m) for m in moments)
  faces = explained.summary["faces"]
  assert sum(len(f["key_moments"]) for f in faces.values()) == len(moments)
  assert "data:image/png;base64" in (tmp_path / "report.html").read_text()


def test_no_face_anywhere_is_not_an_error(analyzer, tmp_path):
  rng = np.random.default_rng(3)
  frames = ((rng.integers(0, 256, (240, 320, 3), np.uint8), None, None)
            for _ in range(6))
  video = bench.write_video(str(tmp_path / "empty.mp4"), frames, fps=FPS)
  result = analyzer.analyze(video.path)
  assert result.rows == [] and result.moments == []
  assert result.summary["faces"] == {} and result.summary["note"]
  assert result.summary["frames"]["analysed"] == 6
  result.write(str(tmp_path / "out"))
  assert _csv_rows((tmp_path / "out" / "emotions.csv").read_text()) == []


def _corrupt_middle(path: str) -> None:
  data = bytearray(open(path, "rb").read())
  rng = np.random.default_rng(0)
  middle = len(data) // 2
  for offset in range(middle - 3000, middle + 3000, 97):
    data[offset:offset + 40] = rng.integers(0, 256, 40, np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(data)


def test_frames_damaged_part_way_are_skipped_and_counted(analyzer,
                                                         tmp_path):
  count = 40

  def frames():
    for i in range(count):
      frame = np.full((120, 160, 3), (i * 6) % 256, np.uint8)
      cv2.putText(frame, str(i), (30, 90), cv2.FONT_HERSHEY_SIMPLEX, 2,
                  (255, 255, 255), 4)
      yield frame, None, None

  path = bench.write_video(str(tmp_path / "damaged.mp4"), frames(),
                           fps=FPS).path
  _corrupt_middle(path)
  warnings = []
  result = analyzer_lib.Analyzer(
      analyzer.classifier,
      analyzer_lib.Settings(sample_fps=0, detector="none",
                            batch_size=16)).analyze(path, warn=warnings.append)
  frames_seen = result.summary["frames"]
  analysed = [r["frame"] for r in result.rows]
  assert frames_seen["unreadable_skipped"] >= 1
  assert frames_seen["analysed"] == len(analysed)
  assert len(analysed) + frames_seen["unreadable_skipped"] <= count
  assert max(analysed) >= count - 5  # It went on after the damage.
  assert analysed == sorted(analysed)
  assert all(r["time_s"] == pytest.approx(r["frame"] / FPS, abs=1e-4)
             for r in result.rows)


def test_images_and_folders_with_detector_none_match_evaluation(
    analyzer, teacher_run, tmp_path):
  from mre_jax.datasets import loading  # pylint: disable=g-import-not-at-top
  _, config, _ = teacher_run
  test = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "test"]
  folder = tmp_path / "faces"
  (folder / "more").mkdir(parents=True)
  count = 24
  for i in range(count):
    where = folder / "more" if i % 2 else folder
    cv2.imwrite(str(where / f"face_{i:03d}.png"), test.images[i])
  (folder / "notes.txt").write_text("not an image")
  (folder / "broken.png").write_bytes(b"\x89PNG not really")
  warnings = []
  result = analyzer_lib.Analyzer(
      analyzer.classifier,
      analyzer_lib.Settings(detector="none",
                            batch_size=16)).analyze(str(folder),
                                                    warn=warnings.append)
  frames = result.summary["frames"]
  assert frames["analysed"] == count and frames["total"] == count + 1
  assert frames["unreadable_skipped"] == 1
  assert frames["not_images_skipped"] == 1
  assert any("notes.txt" in w for w in warnings)
  assert any("broken.png" in w for w in warnings)
  by_name = {r["source"]: r for r in result.rows}
  assert len(by_name) == count
  order = [f"{'more/' if i % 2 else ''}face_{i:03d}.png" for i in range(count)]
  rows = [by_name[name] for name in order]
  assert all(r["frame"] == 0 and r["time_s"] == 0 and r["face_id"] == 0
             for r in rows)
  got = np.array([[r[n] for n in CLASS_NAMES] for r in rows])
  expected = analyzer.classifier.probabilities(test.images[:count])
  np.testing.assert_allclose(got, expected, atol=1e-5)
  labels = test.labels[:count]
  assert np.mean(got.argmax(-1) == labels) == np.mean(
      expected.argmax(-1) == labels)
  assert [r["emotion"] for r in rows] == [CLASS_NAMES[i]
                                          for i in got.argmax(-1)]
  one = folder / "face_000.png"
  single = analyzer_lib.Analyzer(
      analyzer.classifier,
      analyzer_lib.Settings(detector="none")).analyze(str(one))
  assert [r["source"] for r in single.rows] == ["face_000.png"]
  assert analyzer.analyze(str(one)).rows == []  # Too small for the cascade.


@pytest.mark.parametrize("make,message", [
    (lambda d: str(d / "missing.mp4"), "does not exist"),
    (lambda d: _write(d / "fake.mp4", b"not a video" * 100),
     "cannot read .* as a video"),
    (lambda d: _write(d / "fake.png", b"not an image"),
     "cannot read .* as an image"),
    (lambda d: _write(d / "notes.xyz", b"what is this"),
     "neither an image nor a video"),
    (lambda d: _folder_without_images(d), "holds no images"),
    (lambda d: _folder_of_broken_images(d),
     "could not read any of the 2 images of .*nothing was written"),
    (lambda d: "webcam:99", "no camera 99"),
    (lambda d: "webcam:x", "bad camera"),
])
def test_bad_inputs_are_clear_errors(analyzer, tmp_path, make, message):
  with pytest.raises(AnalysisError, match=message):
    analyzer.analyze(make(tmp_path))


def _write(path, data: bytes) -> str:
  path.write_bytes(data)
  return str(path)


def _folder_without_images(tmp_path) -> str:
  folder = tmp_path / "docs"
  folder.mkdir()
  (folder / "readme.txt").write_text("hello")
  return str(folder)


def _folder_of_broken_images(tmp_path) -> str:
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in ("a.png", "b.jpg"):
    (folder / name).write_bytes(b"not an image")
  return str(folder)


def test_a_model_that_is_neither_workdir_nor_export_is_refused(tmp_path):
  with pytest.raises(AnalysisError, match="does not exist"):
    analyzer_lib.Analyzer.from_model(str(tmp_path / "nothing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="neither a training workdir"):
    analyzer_lib.Analyzer.from_model(str(tmp_path / "empty"))
  with pytest.raises(UserError):
    analyzer_lib.Analyzer.from_model(_write(tmp_path / "model.zip", b"x"))


class _FakeCamera:
  """A camera that plays a video's frames, then raises Ctrl-C."""

  def __init__(self, path: str, interrupt_after: int | None):
    self.capture = cv2.VideoCapture(path)
    self.reads = 0
    self.interrupt_after = interrupt_after

  def isOpened(self):  # pylint: disable=invalid-name
    return True

  def get(self, prop):
    return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

  def read(self):
    self.reads += 1
    if self.interrupt_after is not None and self.reads > self.interrupt_after:
      raise KeyboardInterrupt
    return self.capture.read()

  def release(self):
    self.capture.release()


def test_a_live_camera_stops_on_ctrl_c_and_keeps_its_rows(
    analyzer, face_video, monkeypatch):
  monkeypatch.setattr(sources, "_open_camera",
                      lambda index: _FakeCamera(face_video.path, 12))
  seen = []
  result = analyzer.analyze("webcam:0",
                            on_rows=lambda frame, rows: seen.append(frame))
  assert result.summary["timing"]["stopped"] == "interrupted"
  assert result.summary["input"]["kind"] == "webcam"
  assert result.summary["frames"]["analysed"] == len(seen) == 12
  assert all(r["source"] == "webcam:0" for r in result.rows)
  assert [f.index for f in seen] == list(range(12))


def test_cli_prints_a_line_per_second_for_a_camera(
    teacher_run, face_video, monkeypatch, tmp_path, capsys):
  from mre_jax import analyze  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sources, "_open_camera",
                      lambda index: _FakeCamera(face_video.path, None))
  out = tmp_path / "live"
  summary = analyze.run(
      model=teacher_run[0], input_path="webcam:3", output=str(out),
      settings={"sample_fps": 0, "batch_size": 16, "duration_s": 30.0})
  printed = capsys.readouterr().out.splitlines()
  assert printed[0].startswith("analysing webcam:3")
  assert printed[1].startswith("00:00  ")
  assert summary["frames"]["analysed"] == len(face_video.truth)
  assert (out / "emotions.csv").exists() and (out / "summary.json").exists()


def test_smoother_moments_and_csv_units():
  smoother = smoothing.Smoother(1.0)
  first = smoother("a", 0.0, np.array([1.0, 0.0]))
  later = smoother("a", 1.0, np.array([0.0, 1.0]))
  np.testing.assert_allclose(first, [1, 0])
  np.testing.assert_allclose(later, [np.exp(-1), 1 - np.exp(-1)])
  np.testing.assert_allclose(smoothing.Smoother(0)("a", 0, [0.2, 0.8]),
                             [0.2, 0.8])
  finder = moments_lib.MomentFinder(per_face=2, merge_gap_s=1.0)
  timeline = [(0.0, "happy", 0.6), (0.2, "happy", 0.9), (0.4, "neutral", 0.7),
              (0.8, "happy", 0.7), (3.0, "sad", 0.5), (3.2, "sad", 0.55),
              (6.0, "angry", 0.8), (9.0, "fear", 0.4)]
  for i, (t, emotion, confidence) in enumerate(timeline):
    finder.add(0, "v.mp4", i, t, emotion, confidence, np.zeros((2, 2, 3)))
  found = finder.finish()
  assert [(m.emotion, m.time_s, m.start_s, m.end_s) for m in found] == [
      ("happy", 0.2, 0.0, 0.8), ("angry", 6.0, 6.0, 6.0)]
  row = table.make_row(source="s", frame=3, time_s=0.3, face_id=1,
                       box=detection.Box(1, 2, 3, 4),
                       probs=np.full(7, 1 / 7), class_names=CLASS_NAMES,
                       smoothed=np.eye(7)[3])
  assert list(row) == COLUMNS
  assert row["emotion"] == "happy" and row["confidence"] == 1.0
  box = detection.Box(10, 10, 100, 100)
  assert box.reframed(0.9, 0.05) == detection.Box(15, 20, 90, 90)
  assert box.grown(0.5).clipped(150, 120) == detection.Box(0, 0, 150, 120)
  assert box.iou(detection.Box(60, 10, 100, 100)) == pytest.approx(1 / 3)


def test_tracker_keeps_ids_and_fills_in_frames_between_scans():
  faces = bench.detectable_faces(2, seed=5)
  frames = list(bench.compose_frames(
      faces, np.random.default_rng(2), size=FRAME, face_px=(100, 120),
      frames_per_face=9, blank_frames=3, noise=3.0))
  tracker = tracking.Tracker(detection.HaarDetector(),
                             tracking.TrackerSettings(detect_every=4, lag=4))
  done = []
  for i, (frame, _, _) in enumerate(frames):
    done += tracker.push(i, frame)
  done += tracker.finish()
  assert [i for i, _ in done] == list(range(len(frames)))
  ids = {}
  for i, boxes in done:
    truth = frames[i][1]
    if truth is None:
      assert boxes == [], f"a face on blank frame {i}"
      continue
    assert len(boxes) <= 1
    for face_id, box in boxes:
      assert box.iou(detection.Box(*truth)) > 0.3
      ids.setdefault(frames[i][2], set()).add(face_id)
  assert ids == {0: {0}, 1: {1}}
  found = sum(bool(b) for i, b in done if frames[i][1] is not None)
  assert found >= 0.9 * 18


def _ids_in_place(faces: list[np.ndarray], gap: int) -> list[set[int]]:
  """Face ids the tracker gives each face, pasted in one place in turn with
  ``gap`` blank frames between."""
  rng = np.random.default_rng(0)
  frames = []
  for k, face in enumerate(faces):
    big = cv2.resize(face, (110, 110), interpolation=cv2.INTER_LINEAR)
    for _ in range(6):
      frame = np.full((240, 320, 3), 128, np.uint8)
      frame[60:170, 100:210] = big
      frames.append((np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255)
                     .astype(np.uint8), k))
    frames += [(np.full((240, 320, 3), 128, np.uint8), None)] * gap
  tracker = tracking.Tracker(detection.HaarDetector(),
                             tracking.TrackerSettings(detect_every=1, lag=0))
  done = []
  for i, (frame, _) in enumerate(frames):
    done += tracker.push(i, frame)
  done += tracker.finish()
  per_face = [set() for _ in faces]
  for i, boxes in done:
    if frames[i][1] is not None:
      per_face[frames[i][1]].update(face_id for face_id, _ in boxes)
  return per_face


def test_someone_new_where_a_face_was_gets_a_new_id():
  a, b = bench.detectable_faces(2, seed=7)
  # Within max_missed frames: the same face is the same id, another is not.
  same = _ids_in_place([a, a], gap=2)
  assert same[0] == same[1] and len(same[0]) == 1
  other = _ids_in_place([a, b], gap=2)
  assert len(other[0]) == len(other[1]) == 1 and other[0] != other[1]


def test_real_faces_are_found_and_classified_as_the_predictor_does(
    real_data_dir, request, tmp_path):
  analyzer = request.getfixturevalue("analyzer")  # After the skip, if any.
  model = request.getfixturevalue("model")
  # Recall varies with the faces drawn (91-98% over seeds for 60 faces).
  faces, labels = test_faces.raf_test_faces(real_data_dir, 60, seed=0)
  with pytest.raises(UserError, match="--faces=100000: expected 1 to "):
    test_faces.raf_test_faces(real_data_dir, 100000)
  video = bench.write_video(
      str(tmp_path / "raf.mp4"),
      bench.compose_frames(faces, np.random.default_rng(0),
                           frames_per_face=5, blank_frames=1), fps=30.0)
  result = analyzer.analyze(video.path)
  found = bench.recall(video, result.rows)
  assert found["recall"] >= 0.9, found
  assert found["rows_on_blank_frames"] == 0
  frames = _read_frames(video.path)
  matched = found["matched"]
  rows = [matched[f] for f in sorted(matched)]
  truth = np.array([labels[video.face_of_frame[f]] for f in sorted(matched)])
  crops = np.concatenate([
      detection.crop_faces(frames[r["frame"]],
                           [detection.Box(r["x"], r["y"], r["w"], r["h"])],
                           model.image_size) for r in rows])
  analysed = np.array([[r[n] for n in CLASS_NAMES] for r in rows])
  direct = model.probabilities(crops)
  np.testing.assert_allclose(analysed, direct, atol=1e-5)
  assert np.mean(analysed.argmax(-1) == truth) == np.mean(
      direct.argmax(-1) == truth)


def test_benchmark_without_raf_db_is_one_clear_error(tmp_path):
  (tmp_path / "rafdb").mkdir()
  with pytest.raises(UserError, match="no RAF-DB files in .*--data must"):
    test_faces.raf_test_faces(tmp_path, 5)
