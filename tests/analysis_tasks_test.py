"""Tasks, valence and the participant in the analysis of one recording:
the events CSV, per-task statistics and moments, ``faces="main"`` and
``python -m mre_jax.analyze --events --faces``."""

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import PROJECT_ROOT
from expression_model import ExpressionModel
from mre_jax.analysis import analyzer as analyzer_lib
from mre_jax.analysis import detection
from mre_jax.analysis import events
from mre_jax.analysis import participant
from mre_jax.analysis import table
from mre_jax.analysis import tasks
from mre_jax.analysis import valence
from mre_jax.benchmarks import analysis as bench
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.errors import AnalysisError

FPS = 10.0


def _csv(folder, text: str, name: str = "events.csv") -> str:
  path = folder / name
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_valence_is_happy_minus_the_strongest_negative():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(7), size=200)
  got = valence.valences(probs, CLASS_NAMES)
  index = {n: i for i, n in enumerate(CLASS_NAMES)}
  for p, v in zip(probs, got):
    negative = max(p[index[n]] for n in ("angry", "disgust", "fear", "sad"))
    assert v == pytest.approx(p[index["happy"]] - negative)
  assert got.min() >= -1 and got.max() <= 1 and got.min() < 0 < got.max()
  # Surprise and neutral do not count: moving mass between them changes
  # nothing.
  moved = probs.copy()
  moved[:, index["surprise"]] += moved[:, index["neutral"]]
  moved[:, index["neutral"]] = 0
  np.testing.assert_allclose(valence.valences(moved, CLASS_NAMES), got)
  assert valence.valence(np.eye(7)[index["happy"]], CLASS_NAMES) == 1.0
  assert valence.valence(np.eye(7)[index["fear"]], CLASS_NAMES) == -1.0
  row = table.make_row(source="v", frame=0, time_s=0.0, face_id=0,
                       box=detection.Box(0, 0, 1, 1), probs=probs[0],
                       class_names=CLASS_NAMES, smoothed=probs[0])
  assert list(row)[-1] == "valence"
  assert row["valence"] == pytest.approx(got[0], abs=1e-6)
  header = table.to_csv([row], CLASS_NAMES).splitlines()[0].split(",")
  assert header[-3:] == ["emotion", "confidence", "valence"]


def test_events_ranges_with_a_header_and_markers(tmp_path):
  ranges = events.read_events(_csv(tmp_path, (
      "label,start_s,end_s\n\n# a comment\n"
      "search,01:00,1:30.5\nlogin,0,42\n")))
  assert ranges.form == "ranges"
  assert [(t.label, t.start_s, t.end_s, t.row) for t in ranges.tasks] == [
      ("login", 0.0, 42.0, 5), ("search", 60.0, 90.5, 4)]
  markers = events.read_events(_csv(tmp_path, "b,10\na,0\nc,25\n", "m.csv"))
  assert markers.form == "markers"
  assert [(t.label, t.start_s, t.end_s) for t in markers.tasks] == [
      ("a", 0.0, 10.0), ("b", 10.0, 25.0), ("c", 25.0, None)]
  fitted = events.fit_to_video(markers, 40.0, 1 / 30)
  assert fitted.tasks[-1].end_s == 40.0
  assert events.fit_to_video(ranges, 90.5, 1 / 30).tasks == ranges.tasks
  assert events.fit_to_video(markers, None, 1 / 30) == markers


@pytest.mark.parametrize("text,message", [
    ("login,0,10\nsearch,x,20\n", r"row 2: x is not a time"),
    ("login,0,10\nsearch,20,15\n", r"row 2: task 'search' ends .* before"),
    ("login,0,10\nsearch,8,15\n",
     r"row 2: task 'search' starts at 8 s, before task 'login' \(row 1\)"),
    ("login,0,10\nlogin,12,15\n", r"row 2: the label 'login' is also on "
     "row 1"),
    ("login,0,10\nsearch,12\n", r"row 2: expected 3 values"),
    ("login,0\nsearch,0\n", r"row 2: task 'search' starts at 0 s"),
    (",0,10\n", r"row 1: the task's label is empty"),
    ("login,-5,10\n", r"row 1: -5 is not a time"),
    ("label,start_s,end_s\n", r"holds no events"),
    ("login,0,1,2,3\n", r"row 1: expected label,start_s,end_s"),
])
def test_bad_events_are_one_error_naming_the_row(tmp_path, text, message):
  with pytest.raises(AnalysisError, match=message):
    events.read_events(_csv(tmp_path, text))


def test_times_past_the_end_of_the_video_are_refused(tmp_path):
  ranges = events.read_events(_csv(tmp_path, "a,0,10\nb,10,20.5\n"))
  assert events.fit_to_video(ranges, 20.47, 1 / 30).tasks[-1].end_s == 20.47
  with pytest.raises(AnalysisError, match=r"row 2: task 'b' ends at 00:20 "
                     r"\(20.5 s\), past the end of the video \(00:19"):
    events.fit_to_video(ranges, 19.9, 1 / 30)
  markers = events.read_events(_csv(tmp_path, "a,0\nb,30\n", "m.csv"))
  with pytest.raises(AnalysisError, match="row 2: task 'b' starts at 00:30"):
    events.fit_to_video(markers, 25.0, 1 / 30)
  with pytest.raises(AnalysisError, match="does not exist"):
    events.read_events(str(tmp_path / "missing.csv"))


def _rows(labels, probs, face_id=0, start=0.0):
  return [table.make_row(source="v", frame=i, time_s=start + i / FPS,
                         face_id=face_id, box=detection.Box(0, 0, 1, 1),
                         probs=p, class_names=CLASS_NAMES,
                         smoothed=np.eye(7)[CLASS_NAMES.index(label)])
          for i, (label, p) in enumerate(zip(labels, probs))]


def test_task_table_counts_frames_shares_and_valence():
  rng = np.random.default_rng(1)
  probs = rng.dirichlet(np.ones(7), size=30)
  labels = ["happy"] * 12 + ["sad"] * 8 + ["neutral"] * 10
  rows = _rows(labels, probs)
  rows = [r for r in rows if not 2.0 <= r["time_s"] < 2.5]  # Face unseen.
  plan = [events.Task("one", 0.0, 1.0, 1), events.Task("two", 1.0, 2.5, 2),
          events.Task("three", 3.0, 4.0, 3)]
  frame_times = [i / FPS for i in range(30)]
  table_ = tasks.summarise(plan, rows, frame_times, CLASS_NAMES, 1 / FPS, [])
  one, two, three = table_
  assert (one["frames_analysed"], one["frames_with_face"]) == (10, 10)
  assert (two["frames_analysed"], two["frames_with_face"]) == (15, 10)
  assert two["seconds_with_face"] == pytest.approx(1.0)
  assert one["emotion_share"]["happy"] == 1.0
  assert two["emotion_share"]["happy"] == pytest.approx(0.2)
  assert two["emotion_share"]["sad"] == pytest.approx(0.8)
  assert two["dominant_emotion"] == "sad"
  in_two = [r for r in rows if 1.0 <= r["time_s"] < 2.5]
  assert two["mean_valence"] == pytest.approx(
      np.mean(valence.valences([[r[n] for n in CLASS_NAMES] for r in in_two],
                               CLASS_NAMES)), abs=1e-4)
  np.testing.assert_allclose(
      [two["mean_probabilities"][n] for n in CLASS_NAMES],
      np.mean([[r[n] for n in CLASS_NAMES] for r in in_two], axis=0),
      atol=1e-4)
  assert three["frames_analysed"] == 0 and three["emotion_share"] is None
  assert three["mean_valence"] is None and three["duration_s"] == 1.0


def test_key_moments_are_found_within_each_task():
  plan = [events.Task("a", 0.0, 1.0, 1), events.Task("b", 1.0, 2.0, 2)]
  finder = tasks.TaskMoments(plan, per_face=3, merge_gap_s=1.0)
  timeline = [(0.2, "happy", 0.6), (0.8, "happy", 0.9), (1.1, "happy", 0.7),
              (1.5, "sad", 0.8), (2.5, "sad", 0.99)]
  for i, (t, emotion, confidence) in enumerate(timeline):
    finder.add(0, "v", i, t, emotion, confidence, None)
  found = [(m.task, m.emotion, m.time_s, m.start_s, m.end_s)
           for m in finder.finish()]
  # The happy episode is cut at the task boundary; 2.5 s is in no task.
  assert found == [("a", "happy", 0.8, 0.2, 0.8),
                   ("b", "happy", 1.1, 1.1, 1.1), ("b", "sad", 1.5, 1.5, 1.5)]
  assert tasks.task_index(plan, 1.0) == 1
  assert tasks.task_index(plan, 2.0) is None


def test_the_main_face_is_the_one_seen_longest():
  probs = np.full((6, 7), 1 / 7)
  rows = (_rows(["happy"] * 3, probs, face_id=4)
          + _rows(["sad"] * 5, probs, face_id=2)
          + _rows(["sad"] * 5, probs, face_id=7))
  assert participant.main_face(rows) == 2  # Tie: the one found first.
  assert participant.main_face([]) is None
  faces = {"2": {}, "4": {}, "7": {}}
  kept = participant.keep("main", rows, [], [], faces)
  assert {r["face_id"] for r in kept.rows} == {2}
  assert kept.faces == {"2": {}} and kept.dropped == 2
  assert participant.keep("all", rows, [], [], faces).rows == rows


@pytest.fixture(scope="module")
def model():
  return ExpressionModel(per_class=60)


@pytest.fixture(scope="module")
def two_face_video(tmp_path_factory):
  """2 s at 10 frames/s: the participant at the left throughout, another
  face at the right during the first 0.8 s."""
  path = str(tmp_path_factory.mktemp("video") / "session.avi")
  main, other = [cv2.resize(f, (110, 110))
                 for f in bench.detectable_faces(2, 3)]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS,
                           (320, 240))
  rng = np.random.default_rng(0)
  for i in range(20):
    frame = np.full((240, 320, 3), 128, np.uint8)
    frame[60:170, 10:120] = main
    if i < 8:
      frame[60:170, 200:310] = other
    noise = rng.normal(0, 2, frame.shape)
    writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
  writer.release()
  return path


def test_main_face_and_tasks_in_a_video(model, two_face_video, tmp_path):
  csv_path = _csv(tmp_path, "start,0,1\nrest,1,2\n")
  settings = dict(sample_fps=0, batch_size=8)
  both = analyzer_lib.Analyzer(model, analyzer_lib.Settings(**settings))
  everyone = both.analyze(two_face_video)
  assert len(everyone.summary["faces"]) == 2
  main = analyzer_lib.Analyzer(
      model, analyzer_lib.Settings(faces="main", **settings)).analyze(
          two_face_video, events=events.read_events(csv_path))
  left = {r["face_id"] for r in everyone.rows if r["x"] < 160}
  assert {r["face_id"] for r in main.rows} == left
  assert main.rows == [r for r in everyone.rows if r["face_id"] in left]
  summary = json.loads(json.dumps(main.summary))
  assert summary["participant"] == {"face_id": left.pop(),
                                    "other_faces_dropped": 1}
  assert list(summary["faces"]) == [str(main.rows[0]["face_id"])]
  assert summary["frames"]["with_face"] == len(main.rows)
  assert summary["settings"]["faces"] == "main"
  start, rest = summary["tasks"]
  assert start["frames_analysed"] == rest["frames_analysed"] == 10
  assert start["frames_with_face"] + rest["frames_with_face"] == len(
      main.rows)
  assert summary["events"]["form"] == "ranges"
  paths = main.write(str(tmp_path / "out"))
  page = open(paths["report.html"], encoding="utf-8").read()
  assert page.count('<tr class="task">') == 2 and "Mean valence" in page
  assert "1 other face dropped" in page
  with open(paths["emotions.csv"], newline="", encoding="utf-8") as f:
    assert len(list(csv.DictReader(f))) == len(main.rows)
  with pytest.raises(AnalysisError, match="past the end of the video"):
    main_analyzer = analyzer_lib.Analyzer(model, analyzer_lib.Settings())
    main_analyzer.analyze(two_face_video, events=events.read_events(
        _csv(tmp_path, "start,0,1\nrest,1,9\n", "long.csv")))
  with pytest.raises(AnalysisError, match="--faces=main keeps"):
    analyzer_lib.Analyzer(model, analyzer_lib.Settings(faces="main")).analyze(
        _still_image(tmp_path))


def _still_image(tmp_path) -> str:
  path = str(tmp_path / "face.png")
  cv2.imwrite(path, np.full((48, 48, 3), 128, np.uint8))
  return path


def _analyze(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "mre_jax.analyze", *args],
                        cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


def test_cli_events_and_faces(teacher_run, two_face_video, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  bad = _csv(tmp_path, "start,0,1\nrest,0.5,2\n")
  done = _analyze(f"--model={teacher_run[0]}", f"--input={two_face_video}",
                  f"--output={out}", f"--events={bad}", "--faces=main")
  assert done.returncode == 2
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
  assert "row 2: task 'rest' starts at 0.5 s" in lines[0]
  assert sorted(os.listdir(out)) == ["notes.txt"]
  good = _csv(tmp_path, "start,0\nrest,1\n", "good.csv")
  done = _analyze(f"--model={teacher_run[0]}", f"--input={two_face_video}",
                  f"--output={out}", f"--events={good}", "--faces=main",
                  "--sample_fps=0", "--device=cpu")
  assert done.returncode == 0, done.stderr
  assert "dropped 1 other face(s)" in done.stdout
  assert "task start: " in done.stdout and "task rest: " in done.stdout
  summary = json.loads((out / "summary.json").read_text())
  assert [t["label"] for t in summary["tasks"]] == ["start", "rest"]
  assert summary["tasks"][1]["end_s"] == pytest.approx(2.0)
  assert (out / "notes.txt").read_text() == "mine"
