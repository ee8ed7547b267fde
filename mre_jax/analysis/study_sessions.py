"""The sessions of a study: who, which recording, which tasks.

``--sessions`` is either

* a folder of recordings: every video file directly in it is a session, its
  participant the file's name without its suffix (``P01.mp4`` -> ``P01``),
  its events ``<events_dir>/P01.csv`` when that file exists (``events_dir``
  defaults to the folder itself); or
* a CSV file with the header ``participant,video,events`` (``events`` may be
  empty or left out), one row per session; relative paths are relative to
  the CSV's folder, and an empty ``events`` falls back to ``events_dir``.

:func:`plan` then checks every session before any is analysed: the events
files are read and fitted to their video's length (a mistake stops the
study with one error naming the file and row), and a video that cannot be
opened is marked to be reported and skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from typing import Sequence

import cv2

from mre_jax.analysis import events as events_lib
from mre_jax.analysis.sources import VIDEO_SUFFIXES
from mre_jax.errors import AnalysisError

_NAME = re.compile(r"^[^/\\.][^/\\]*$")
COLUMNS = ("participant", "video", "events")


@dataclasses.dataclass(frozen=True)
class Session:
  """One participant's recording and, if any, its events file."""
  participant: str
  video: str
  events: str | None = None


@dataclasses.dataclass(frozen=True)
class Planned:
  """A session as checked before the study starts."""
  session: Session
  events: events_lib.Events | None
  length_s: float | None  # By the video's header; None if it does not say.
  problem: str | None = None  # Why it cannot be read; it is then skipped.


def _check_name(name: str, where: str) -> str:
  if not _NAME.match(name):
    raise AnalysisError(
        f"{where}: participant {name!r} cannot name a folder; use letters, "
        "digits, spaces, '-' or '_', not starting with '.' and without '/'")
  return name


def _events_beside(events_dir: str | None, participant: str) -> str | None:
  if not events_dir:
    return None
  path = os.path.join(events_dir, participant + ".csv")
  return path if os.path.isfile(path) else None


def _from_folder(folder: str, events_dir: str | None) -> list[Session]:
  videos = sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(VIDEO_SUFFIXES)
                  and not f.startswith("."))
  if not videos:
    raise AnalysisError(
        f"--sessions {folder} holds no video files "
        f"({', '.join(VIDEO_SUFFIXES)}) directly in it; put the recordings "
        "there, or give a CSV with the columns participant,video,events")
  sessions, seen = [], {}
  for name in videos:
    participant = _check_name(os.path.splitext(name)[0],
                              f"--sessions {folder}, {name}")
    if participant in seen:
      raise AnalysisError(f"--sessions {folder}: {seen[participant]} and "
                          f"{name} are both participant {participant!r}; "
                          "rename one")
    seen[participant] = name
    sessions.append(Session(participant, os.path.join(folder, name),
                            _events_beside(events_dir or folder,
                                           participant)))
  return sessions


def _from_csv(path: str, events_dir: str | None) -> list[Session]:
  base = os.path.dirname(os.path.abspath(path))
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      rows = list(csv.reader(f))
  except (UnicodeDecodeError, csv.Error) as e:
    raise AnalysisError(f"--sessions {path} is not a readable UTF-8 CSV "
                        f"file ({e})") from None
  header = [c.strip().lower() for c in rows[0]] if rows else []
  if header[:2] != list(COLUMNS[:2]) or header[2:] not in ([], ["events"]):
    raise AnalysisError(
        f"--sessions {path}: the first row must be the header "
        f"{','.join(COLUMNS)} (events may be left out), got "
        f"{','.join(rows[0]) if rows else 'an empty file'}")
  sessions, seen = [], {}
  for number, cells in enumerate(rows[1:], start=2):
    cells = [c.strip() for c in cells] + [""] * 3
    if not any(cells):
      continue
    where = f"--sessions {path}, row {number}"
    participant, video, events = cells[:3]
    if not participant or not video:
      raise AnalysisError(f"{where}: expected participant,video[,events] "
                          f"with both participant and video given")
    _check_name(participant, where)
    if participant in seen:
      raise AnalysisError(f"{where}: participant {participant!r} is also on "
                          f"row {seen[participant]}; one row per session")
    seen[participant] = number
    events_path = (os.path.join(base, events) if events
                   else _events_beside(events_dir, participant))
    if events and not os.path.isfile(events_path):
      raise AnalysisError(f"{where}: the events file {events} does not "
                          "exist")
    sessions.append(Session(participant, os.path.join(base, video),
                            events_path))
  if not sessions:
    raise AnalysisError(f"--sessions {path} lists no session under its "
                        "header")
  return sessions


def list_sessions(spec: str, events_dir: str | None = None) -> list[Session]:
  """The sessions ``--sessions`` names, in order."""
  if events_dir and not os.path.isdir(events_dir):
    raise AnalysisError(f"--events_dir {events_dir} is not a folder")
  if os.path.isdir(spec):
    return _from_folder(spec, events_dir)
  if os.path.isfile(spec) and spec.lower().endswith(".csv"):
    return _from_csv(spec, events_dir)
  raise AnalysisError(
      f"--sessions {spec} is neither a folder of recordings nor a CSV file "
      f"with the columns {','.join(COLUMNS)}")


def _video_header(path: str) -> tuple[float | None, float | None, str | None]:
  """(length in s, frame rate, problem) from a video's header."""
  if not os.path.isfile(path):
    return None, None, f"{path} does not exist"
  capture = cv2.VideoCapture(path)
  try:
    if not capture.isOpened():
      return None, None, (f"cannot read {path} as a video: OpenCV (FFmpeg) "
                          "cannot open it")
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
  finally:
    capture.release()
  if not 0 < fps < 1000:
    return None, None, None
  return (frames / fps if frames > 0 else None), fps, None


def plan(sessions: Sequence[Session]) -> list[Planned]:
  """Every session checked: its events read and fitted to its video."""
  planned = []
  for session in sessions:
    events = (events_lib.read_events(session.events) if session.events
              else None)
    length, fps, problem = _video_header(session.video)
    if events is not None and problem is None:
      events = events_lib.fit_to_video(events, length, 1.0 / (fps or 30.0))
    planned.append(Planned(session, events, length, problem))
  return planned
