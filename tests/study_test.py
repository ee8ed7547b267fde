"""A whole study on generated sessions: ``python -m mre_jax.study``.

Each participant's recording is a drawn face whose expression follows a
known schedule per task (the demo's session video,
:mod:`mre_jax.datasets.demo_session`). The classifier is the HOG model of
``expression_model`` (the tests' tiny trained models do not follow drawn
expressions); it recognises happy, sad, surprise and angry faces best, so
the schedules use those: one positive (happy), one neutral-valence
(surprise) and one negative (sad or angry) task per participant, in a
different order for each, so that the study must find a different most
negative task for each.
"""

import base64
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROJECT_ROOT
from expression_model import ExpressionModel
from mre_jax import study
from mre_jax.analysis import analyzer as analyzer_lib
from mre_jax.analysis import study_sessions
from mre_jax.datasets import demo_session
from mre_jax.errors import AnalysisError
from mre_jax.models import shipped

SECONDS = 3.0  # Per task.
SCHEDULES = {
    "P01": (("login", "happy"), ("search", "surprise"), ("checkout", "sad")),
    "P02": (("login", "sad"), ("search", "happy"), ("checkout", "surprise")),
    "P03": (("login", "surprise"), ("search", "angry"), ("checkout", "happy")),
}
NEGATIVE = {"sad", "angry"}
SETTINGS = analyzer_lib.Settings(detector="none", sample_fps=demo_session.FPS,
                                 faces="main", batch_size=32)


def _write_events(path, schedule, markers: bool) -> None:
  lines = ([f"{label},{i * SECONDS:g}" for i, (label, _) in
            enumerate(schedule)] if markers else
           ["task,start_s,end_s"] + [f"{label},{i * SECONDS:g},"
                                     f"{(i + 1) * SECONDS:g}"
                                     for i, (label, _) in enumerate(schedule)])
  path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
  """The study's folder: P01-P03's videos and events, and an unreadable
  P04 recording."""
  folder = tmp_path_factory.mktemp("recordings")
  for seed, (participant, schedule) in enumerate(SCHEDULES.items()):
    demo_session.write_session_video(
        str(folder / f"{participant}.avi"), seed=seed,
        schedule=[(emotion, SECONDS) for _, emotion in schedule])
    _write_events(folder / f"{participant}.csv", schedule,
                  markers=participant == "P02")
  (folder / "P04.mp4").write_bytes(b"\x00\x01 not a video" * 64)
  return folder


@pytest.fixture(scope="module")
def model():
  return ExpressionModel()


def _run(model, recordings, output, **kwargs):
  lines = []
  analyzer = analyzer_lib.Analyzer(model, SETTINGS)
  result = study.run_study(sessions=str(recordings), output=str(output),
                           settings=SETTINGS, model_key="expression-model",
                           analyzer=kwargs.pop("analyzer", analyzer),
                           out=lines.append, **kwargs)
  return result, lines


@pytest.fixture(scope="module")
def generated(model, recordings, tmp_path_factory):
  output = tmp_path_factory.mktemp("study")
  result, lines = _run(model, recordings, output)
  return output, result, lines


def _study_rows(output):
  with open(output / "study.csv", newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def _session_rows(output, participant):
  path = output / "sessions" / participant / "emotions.csv"
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_the_study_finds_each_participants_most_negative_task(generated):
  output, _, _ = generated
  rows = _study_rows(output)
  assert [(r["participant"], r["task"]) for r in rows] == [
      (p, label) for p, schedule in SCHEDULES.items() for label, _ in schedule]
  page = (output / "study.html").read_text(encoding="utf-8")
  shown = dict(re.findall(r'<tr class="negative"><td><a href="sessions/'
                          r'(P0\d)/report.html">P0\d</a></td>'
                          r'<td class="task">(\w+)</td>', page))
  for participant, schedule in SCHEDULES.items():
    valences = {r["task"]: float(r["mean_valence"]) for r in rows
                if r["participant"] == participant}
    negative = next(label for label, e in schedule if e in NEGATIVE)
    assert min(valences, key=valences.get) == negative, valences
    assert shown[participant] == negative
    happy = next(label for label, e in schedule if e == "happy")
    assert max(valences, key=valences.get) == happy, valences


def test_per_task_shares_agree_with_the_schedule(generated):
  output, _, _ = generated
  for row in _study_rows(output):
    schedule = dict(SCHEDULES[row["participant"]])
    scheduled = schedule[row["task"]]
    assert row["dominant_emotion"] == scheduled, row
    assert float(row[f"share_{scheduled}"]) >= 0.7, row
    assert int(row["frames_with_face"]) == int(row["frames_analysed"]) == 30
    assert float(row["duration_s"]) == SECONDS
    # The share is that of the session's own rows in the task's span.
    start = float(row["start_s"])
    frames = [r for r in _session_rows(output, row["participant"])
              if start <= float(r["time_s"]) < start + SECONDS]
    counted = sum(r["emotion"] == scheduled for r in frames) / len(frames)
    assert float(row[f"share_{scheduled}"]) == pytest.approx(counted,
                                                             abs=1e-3)


def test_progress_lines_and_the_unreadable_session(generated):
  output, result, lines = generated
  assert lines[0].startswith("study: 4 session(s): 0 already analysed, 1 "
                             "cannot be read, 3 to analyse")
  done = [line for line in lines if ": done in " in line]
  assert len(done) == 3
  assert "left for 2 session(s)" in done[0]
  assert any(line.startswith("[4/4] P04: cannot be read, skipped: cannot "
                             "read") for line in lines)
  assert lines[-1].endswith("3 participant(s); skipped P04")
  assert [o.status for o in result["outcomes"]] == ["analysed"] * 3 + [
      "unreadable"]
  assert sorted(os.listdir(output / "sessions")) == ["P01", "P02", "P03"]
  for participant in SCHEDULES:
    folder = output / "sessions" / participant
    assert {"emotions.csv", "summary.json", "timeline.png", "report.html",
            "session.json"} <= set(os.listdir(folder))
  page = (output / "study.html").read_text(encoding="utf-8")
  assert "P04.mp4</td><td colspan=3>not analysed: cannot read" in page


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(
    model, recordings, generated, tmp_path):
  output = tmp_path / "study"
  shutil.copytree(generated[0], output)
  csv_before = (output / "study.csv").read_text()
  _, lines = _run(model, recordings, output)
  assert lines[0].startswith("study: 4 session(s): 3 already analysed")
  assert (output / "study.csv").read_text() == csv_before
  # An output removed, an events file changed: those two are redone.
  os.remove(output / "sessions" / "P02" / "timeline.png")
  events = tmp_path / "events"
  shutil.copytree(recordings, events, ignore=shutil.ignore_patterns(
      "*.avi", "*.mp4"))
  text = (events / "P03.csv").read_text().replace("search", "browse")
  (events / "P03.csv").write_text(text)
  result, lines = _run(model, recordings, output, events_dir=str(events))
  statuses = {o.participant: o.status for o in result["outcomes"]}
  assert statuses == {"P01": "already done", "P02": "analysed",
                      "P03": "analysed", "P04": "unreadable"}
  assert (output / "sessions" / "P02" / "timeline.png").is_file()
  assert "browse" in {r["task"] for r in _study_rows(output)}
  # Other settings: every session is analysed again.
  other = analyzer_lib.Analyzer(model, analyzer_lib.Settings(
      detector="none", sample_fps=demo_session.FPS, faces="main",
      batch_size=32, smoothing_s=1.0))
  result = study.run_study(sessions=str(recordings), output=str(output),
                           settings=other.settings,
                           model_key="expression-model", analyzer=other,
                           out=lambda line: None)
  assert [o.status for o in result["outcomes"]][:3] == ["analysed"] * 3


class _Interrupting:
  """The model, until it has classified ``calls`` batches: then Ctrl-C."""

  def __init__(self, model, calls):
    self._model, self.calls = model, calls

  def __getattr__(self, name):
    return getattr(self._model, name)

  def probabilities(self, images):
    self.calls -= 1
    if self.calls < 0:
      raise KeyboardInterrupt
    return self._model.probabilities(images)


def test_ctrl_c_keeps_the_sessions_finished(model, recordings, tmp_path):
  output = tmp_path / "study"
  per_session = math.ceil(3 * SECONDS * demo_session.FPS /
                          SETTINGS.batch_size)  # Classifier calls.
  interrupting = analyzer_lib.Analyzer(_Interrupting(model, per_session + 1),
                                       SETTINGS)
  with pytest.raises(KeyboardInterrupt):
    _run(model, recordings, output, analyzer=interrupting)
  assert os.listdir(output / "sessions" / "P01") and sorted(
      os.listdir(output / "sessions")) == ["P01"]
  assert not (output / "study.csv").exists()
  _, lines = _run(model, recordings, output)
  assert lines[0].startswith("study: 4 session(s): 1 already analysed, 1 "
                             "cannot be read, 2 to analyse")
  assert len(_study_rows(output)) == 9


def test_bad_events_stop_the_study_before_any_work(model, recordings,
                                                   tmp_path):
  events = tmp_path / "events"
  events.mkdir()
  (events / "P02.csv").write_text("login,0,3\nsearch,2,6\n")
  output = tmp_path / "study"
  with pytest.raises(AnalysisError, match=r"P02.csv, row 2: task 'search' "
                     "starts at 2 s, before task 'login'"):
    _run(model, recordings, output, events_dir=str(events))
  assert not (output / "sessions").exists()
  (events / "P02.csv").write_text("login,0,3\nsearch,3,60\n")
  with pytest.raises(AnalysisError, match="row 2: task 'search' ends at "
                     "01:00 .* past the end of the video"):
    _run(model, recordings, output, events_dir=str(events))


@pytest.mark.parametrize("text,message", [
    ("name,video\nP01,a.mp4\n", "the first row must be the header"),
    ("participant,video\nP01,a.mp4\nP01,b.mp4\n",
     "row 3: participant 'P01' is also on row 2"),
    ("participant,video\n../up,a.mp4\n", "row 2: participant '../up' "
     "cannot name a folder"),
    ("participant,video,events\nP01,a.mp4,none.csv\n",
     "row 2: the events file none.csv does not exist"),
    ("participant,video\n", "lists no session"),
])
def test_a_sessions_csv_is_checked(tmp_path, text, message):
  path = tmp_path / "sessions.csv"
  path.write_text(text)
  with pytest.raises(AnalysisError, match=message):
    study_sessions.list_sessions(str(path))


def test_a_sessions_csv_names_videos_and_events(recordings, tmp_path):
  path = tmp_path / "sessions.csv"
  path.write_text("participant,video,events\n"
                  f"Anna,{recordings / 'P01.avi'},{recordings / 'P01.csv'}\n"
                  f"Ben,{recordings / 'P02.avi'},\n")
  sessions = study_sessions.list_sessions(str(path))
  assert [(s.participant, os.path.basename(s.video), s.events)
          for s in sessions] == [("Anna", "P01.avi",
                                  str(recordings / "P01.csv")),
                                 ("Ben", "P02.avi", None)]
  planned = study_sessions.plan(sessions)
  assert planned[0].length_s == pytest.approx(3 * SECONDS)
  assert planned[1].events is None and planned[1].problem is None
  with pytest.raises(AnalysisError, match="holds no video files"):
    study_sessions.list_sessions(str(tmp_path))


def test_the_command_runs_sessions_in_parallel(teacher_run, recordings,
                                               tmp_path):
  folder = tmp_path / "two"
  folder.mkdir()
  for name in ("P01.avi", "P01.csv", "P02.avi"):
    shutil.copy(recordings / name, folder / name)
  output = tmp_path / "study"
  args = [sys.executable, "-m", "mre_jax.study", f"--model={teacher_run[0]}",
          f"--sessions={folder}", f"--output={output}", "--jobs=2",
          "--detector=none", "--device=cpu"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert lines[0].endswith("faces=main, in 2 processes")
  progress = lines[1:3]
  assert [line[:6] for line in progress] == ["[1/2] ", "[2/2] "]
  assert {line[6:9] for line in progress} == {"P01", "P02"}
  assert all(": done in " in line for line in progress)
  rows = _study_rows(output)
  assert [(r["participant"], r["task"]) for r in rows] == [
      ("P01", "login"), ("P01", "search"), ("P01", "checkout"),
      ("P02", "whole recording")]
  assert int(rows[-1]["frames_with_face"]) == 45  # 9 s at 5 frames/s.
  bad = subprocess.run(args[:-3] + ["--jobs=0"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=300,
                       check=False)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith("error: ")


def test_without_model_the_shipped_default_is_used_and_kept(recordings,
                                                            tmp_path):
  """No --model: the shipped default analyses the study, and a rerun finds
  the session analysed with that same model and skips it."""
  if shipped.DEFAULT not in shipped.names():
    pytest.skip("the shipped default model is not in this checkout")
  folder = tmp_path / "one"
  folder.mkdir()
  shutil.copy(recordings / "P02.avi", folder / "P02.avi")
  output = tmp_path / "study"
  args = [sys.executable, "-m", "mre_jax.study", f"--sessions={folder}",
          f"--output={output}", "--detector=none", "--device=cpu"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  runs = [subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
          for _ in range(2)]
  assert all(r.returncode == 0 for r in runs), runs[-1].stderr
  summary = json.loads((output / "sessions" / "P02" / "summary.json"
                        ).read_text())
  assert summary["model"]["name"] == shipped.DEFAULT
  assert "done in" in runs[0].stdout and "done in" not in runs[1].stdout


CHROMIUM = "/usr/bin/chromium"
_COUNT_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-images",
                             loaded.length + "/" + images.length);
});
</script>"""


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
  profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"
  profile.mkdir()
  return subprocess.run(
      [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
       "--disable-quic", "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       f"--user-data-dir={profile}", *args],
      capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"no headless browser at {CHROMIUM} (Debian's "
                    "chromium package)")
@pytest.mark.parametrize("page", ["study.html", "sessions/P01/report.html"])
def test_pages_render_in_a_headless_browser(generated, tmp_path, page):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = generated[0] / page
  text = path.read_text(encoding="utf-8")
  sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
  assert len(sources) >= 3
  for source in sources:
    assert source.startswith("data:image/png;base64,"), source[:40]
    Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).load()
  for link in re.findall(r'href="([^"]+)"', text):
    assert (path.parent / link).is_file(), link
  # In the browser, a copy of the page counts the images that loaded.
  probe = tmp_path / "probe.html"
  probe.write_text(text.replace("</body>", _COUNT_IMAGES + "</body>"),
                   encoding="utf-8")
  done = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                   probe.as_uri())
  assert done.returncode == 0, done.stderr[-2000:]
  counted = re.search(r'data-images="(\d+)/(\d+)"', done.stdout)
  assert counted, done.stdout[:500]
  assert int(counted[1]) == int(counted[2]) == len(sources)
  shot = tmp_path / "page.png"
  done = _chromium(tmp_path, "--window-size=1000,1200",
                   f"--screenshot={shot}", path.as_uri())
  assert done.returncode == 0, done.stderr[-2000:]
  with Image.open(shot) as image:
    assert image.size == (1000, 1200)
    grey = np.asarray(image.convert("L"), np.float32)
  assert grey.std() > 10  # Text and pictures, not a blank page.
