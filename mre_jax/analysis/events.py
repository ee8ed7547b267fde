"""Tasks within a recording, read from an events CSV (``--events``).

Two forms, one per file:

* ranges: ``label,start_s,end_s``, one row per task; tasks may leave gaps
  between them but must not overlap;
* markers: ``label,time_s``, each starting a task that runs to the next
  marker or to the end of the recording.

Times are seconds (``75.5``) or ``[h:]mm:ss[.fff]`` (``01:15.5``). A first
row whose times hold no digit is a header and is skipped; blank rows and
rows starting with ``#`` are ignored. Labels must be unique, so that a task
is one row of the study's table.

:func:`read_events` checks the file on its own, :func:`fit_to_video` against
the length of the video, before any frame is analysed. Every mistake is one
:class:`~mre_jax.errors.AnalysisError` naming the file and the row.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Sequence

from mre_jax.analysis.table import mmss
from mre_jax.errors import AnalysisError

FORMS = ("label,start_s,end_s (e.g. login,0,42.5)",
         "label,time_s (e.g. login,0), each marker starting a task")


@dataclasses.dataclass(frozen=True)
class Task:
  """One task: its label, its time span in the video, its row in the file."""
  label: str
  start_s: float
  end_s: float | None  # None: to the end of the video (the last marker).
  row: int

  def fields(self) -> dict[str, object]:
    return {"label": self.label, "start_s": round(self.start_s, 3),
            "end_s": None if self.end_s is None else round(self.end_s, 3)}


@dataclasses.dataclass(frozen=True)
class Events:
  """The tasks of one events file, in time order."""
  path: str
  form: str  # "ranges" or "markers".
  tasks: tuple[Task, ...]

  def describe(self) -> dict[str, object]:
    return {"file": self.path, "form": self.form,
            "tasks": [t.fields() for t in self.tasks]}


def _where(path: str, row: int) -> str:
  return f"--events {path}, row {row}"


def parse_time(text: str) -> float:
  """Seconds from ``75.5``, ``01:15.5`` or ``1:01:15``; ValueError if not."""
  parts = text.strip().split(":")
  try:
    if len(parts) > 3 or any(not p.strip() for p in parts):
      raise ValueError(text)
    seconds = 0.0
    for part in parts:
      seconds = seconds * 60 + float(part)
  except ValueError:
    raise ValueError(text) from None
  if not math.isfinite(seconds) or seconds < 0:
    raise ValueError(text)
  return seconds


def _is_header(cells: Sequence[str]) -> bool:
  """A first row whose times hold no digit names the columns."""
  return not any(c.isdigit() for cell in cells[1:] for c in cell)


def _rows(path: str) -> list[tuple[int, list[str]]]:
  """(line number, cells) of the file's meaningful rows."""
  if not os.path.isfile(path):
    raise AnalysisError(f"--events {path} does not exist: give a CSV file "
                        f"with rows {FORMS[0]} or {FORMS[1]}")
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      lines = list(enumerate(csv.reader(f), start=1))
  except (UnicodeDecodeError, csv.Error) as e:
    raise AnalysisError(f"--events {path} is not a readable UTF-8 CSV file "
                        f"({e}); save it as CSV (comma separated)") from None
  rows = []
  for number, cells in lines:
    cells = [c.strip() for c in cells]
    while cells and not cells[-1]:
      cells.pop()
    if cells and not cells[0].startswith("#"):
      rows.append((number, cells))
  if rows and _is_header(rows[0][1]):
    rows = rows[1:]
  if not rows:
    raise AnalysisError(f"--events {path} holds no events: write one row "
                        f"per task, {FORMS[0]}, or one per marker, "
                        f"{FORMS[1]}")
  return rows


def _task(path: str, number: int, cells: list[str], width: int) -> Task:
  """One row as a task; the row's form must be the file's."""
  where = _where(path, number)
  if len(cells) != width:
    raise AnalysisError(
        f"{where}: expected {width} values like the first row "
        f"({FORMS[0] if width == 3 else FORMS[1]}), got {len(cells)}: "
        f"{','.join(cells)}")
  label = cells[0]
  if not label:
    raise AnalysisError(f"{where}: the task's label is empty; name it")
  try:
    times = [parse_time(c) for c in cells[1:]]
  except ValueError as e:
    raise AnalysisError(
        f"{where}: {e} is not a time; write seconds (75.5) or mm:ss "
        "(01:15.5), never negative") from None
  if width == 3 and times[1] <= times[0]:
    raise AnalysisError(f"{where}: task {label!r} ends ({cells[2]}) before "
                        f"it starts ({cells[1]}); swap or fix the times")
  return Task(label, times[0], times[1] if width == 3 else None, number)


def _check_order(path: str, tasks: list[Task]) -> None:
  """Unique labels; ranges that do not overlap; markers at distinct times."""
  rows: dict[str, int] = {}
  for task in tasks:
    if task.label in rows:
      raise AnalysisError(
          f"{_where(path, task.row)}: the label {task.label!r} is also on "
          f"row {rows[task.label]}; give each task its own label (e.g. "
          f"{task.label} 2)")
    rows[task.label] = task.row
  for before, after in zip(tasks, tasks[1:]):
    end = before.end_s if before.end_s is not None else before.start_s
    if after.start_s < end or (before.end_s is None
                               and after.start_s == before.start_s):
      raise AnalysisError(
          f"{_where(path, after.row)}: task {after.label!r} starts at "
          f"{after.start_s:g} s, before task {before.label!r} (row "
          f"{before.row}) ends at {end:g} s; tasks must not overlap")


def read_events(path: str) -> Events:
  """The tasks of an events CSV, checked, in time order."""
  rows = _rows(path)
  width = len(rows[0][1])
  if width not in (2, 3):
    raise AnalysisError(
        f"{_where(path, rows[0][0])}: expected {FORMS[0]} or {FORMS[1]}, "
        f"got {len(rows[0][1])} values: {','.join(rows[0][1])}")
  tasks = [_task(path, number, cells, width) for number, cells in rows]
  tasks.sort(key=lambda t: t.start_s)
  _check_order(path, tasks)
  if width == 2:  # A marker's task runs to the next marker.
    tasks = [dataclasses.replace(t, end_s=after.start_s)
             for t, after in zip(tasks, tasks[1:])] + tasks[-1:]
  return Events(os.path.abspath(path), "ranges" if width == 3 else "markers",
                tuple(tasks))


def fit_to_video(events: Events, duration_s: float | None,
                 frame_s: float) -> Events:
  """The tasks with the last marker's end set; refuses times past the end.

  ``duration_s`` is the video's length (None: unknown, nothing is checked
  and the last marker runs to the end); a task may end up to one frame
  (``frame_s``) after it, as the length is rounded to frames.
  """
  if duration_s is None or duration_s <= 0:
    return events
  starts = [(t, "starts", t.start_s) for t in events.tasks
            if t.start_s >= duration_s]
  ends = [(t, "ends", t.end_s) for t in events.tasks
          if t.end_s is not None and t.end_s > duration_s + frame_s + 1e-6]
  if starts or ends:
    task, verb, time = (starts + ends)[0]
    raise AnalysisError(
        f"{_where(events.path, task.row)}: task {task.label!r} {verb} at "
        f"{mmss(time)} ({time:g} s), past the end of the video "
        f"({mmss(duration_s)}, {duration_s:g} s); check that the events "
        "belong to this video")
  tasks = [dataclasses.replace(t, end_s=min(t.end_s or duration_s,
                                            duration_s))
           for t in events.tasks]
  return dataclasses.replace(events, tasks=tuple(tasks))
