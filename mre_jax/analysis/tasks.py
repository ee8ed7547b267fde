"""Per-task statistics of an analysis: the table of ``summary["tasks"]``.

Each analysed frame belongs to the task whose span ``[start_s, end_s)``
holds its time, or to none. For every task the summary gives its duration,
the frames analysed in it and those with a face (and the time they stand
for), the share of those face-frames per smoothed emotion, the mean raw
probabilities, the mean valence and the task's own key moments: episodes
are found within each task (:class:`TaskMoments`), so every task has its
strongest moments, even when another task's are stronger.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import numpy as np

from mre_jax.analysis.events import Task
from mre_jax.analysis.moments import Moment
from mre_jax.analysis.moments import MomentFinder
from mre_jax.analysis.participant import frames_with_face


def task_index(tasks: Sequence[Task], time_s: float) -> int | None:
  """The index of the task at ``time_s`` (tasks in time order), or None."""
  i = bisect.bisect_right([t.start_s for t in tasks], time_s) - 1
  if i < 0:
    return None
  end = tasks[i].end_s
  return i if end is None or time_s < end else None


class TaskMoments:
  """The key moments of each task, found within the task's span."""

  def __init__(self, tasks: Sequence[Task], per_face: int,
               merge_gap_s: float):
    self.tasks = tuple(tasks)
    self._finders = [MomentFinder(per_face, merge_gap_s) for _ in tasks]

  def add(self, face_id: int, source: str, frame: int, time_s: float,
          emotion: str, confidence: float, crop: np.ndarray | None) -> None:
    i = task_index(self.tasks, time_s)
    if i is not None:
      self._finders[i].add(face_id, source, frame, time_s, emotion,
                           confidence, crop)

  def finish(self) -> list[Moment]:
    """Every task's moments, each labelled with its task, in time order."""
    moments = []
    for task, finder in zip(self.tasks, self._finders):
      for moment in finder.finish():
        moment.task = task.label
        moments.append(moment)
    return sorted(moments, key=lambda m: (m.time_s, m.face_id))


def _rounded(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
  return {n: round(float(v), 4) for n, v in zip(names, values)}


def summarise(tasks: Sequence[Task], rows: Sequence[dict[str, Any]],
              frame_times: Sequence[float], class_names: Sequence[str],
              seconds_per_frame: float,
              moments: Sequence[Moment]) -> list[dict[str, Any]]:
  """One dict per task: time, frames, shares, probabilities and valence.

  ``rows`` are the analysis's rows (those of the faces kept),
  ``frame_times`` the times of every analysed frame, ``moments`` the
  tasks' key moments (:class:`TaskMoments`).
  """
  names = list(class_names)
  per_task: list[list[dict[str, Any]]] = [[] for _ in tasks]
  for row in rows:
    i = task_index(tasks, row["time_s"])
    if i is not None:
      per_task[i].append(row)
  analysed = [0] * len(tasks)
  for time_s in frame_times:
    i = task_index(tasks, time_s)
    if i is not None:
      analysed[i] += 1
  out = []
  for i, task in enumerate(tasks):
    task_rows = per_task[i]
    with_face = frames_with_face(task_rows)
    entry: dict[str, Any] = {
        **task.fields(),
        "duration_s": (round(task.end_s - task.start_s, 3)
                       if task.end_s is not None else None),
        "frames_analysed": analysed[i], "frames_with_face": with_face,
        "seconds_with_face": round(with_face * seconds_per_frame, 3),
        "dominant_emotion": None, "emotion_share": None,
        "mean_probabilities": None, "mean_valence": None,
        "key_moments": [m.fields() for m in moments if m.task == task.label]}
    if task_rows:
      counts = np.bincount([names.index(r["emotion"]) for r in task_rows],
                           minlength=len(names))
      probs = np.array([[r[n] for n in names] for r in task_rows])
      entry.update(
          dominant_emotion=names[int(np.argmax(counts))],
          emotion_share=_rounded(names, counts / len(task_rows)),
          mean_probabilities=_rounded(names, probs.mean(axis=0)),
          mean_valence=round(float(np.mean([r["valence"]
                                             for r in task_rows])), 4))
    out.append(entry)
  return out

