"""study.csv: one row per participant and task, from the sessions' summaries.

Columns: ``participant, task, start_s, end_s, duration_s, frames_analysed,
frames_with_face, seconds_with_face, mean_valence, dominant_emotion``, then
``share_<emotion>`` per class (the share of the face's time with that
smoothed label). A session without events is one row, task
:data:`WHOLE`, from its faces (weighted by the frames each was seen in).
A task in which no face was seen has empty shares and valence.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

from mre_jax.config.labels import CLASS_NAMES

WHOLE = "whole recording"
LEADING = ("participant", "task", "start_s", "end_s", "duration_s",
           "frames_analysed", "frames_with_face", "seconds_with_face",
           "mean_valence", "dominant_emotion")


def class_names(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
  """The model's classes, as the summaries name them."""
  for summary in summaries:
    names = (summary.get("model") or {}).get("class_names")
    if names:
      return list(names)
  return list(CLASS_NAMES)


def columns(names: Sequence[str]) -> tuple[str, ...]:
  return LEADING + tuple(f"share_{n}" for n in names)


def _whole(summary: Mapping[str, Any], names: Sequence[str]
           ) -> dict[str, Any]:
  """The faces of a session without tasks, as one task."""
  faces = list((summary.get("faces") or {}).values())
  frames = sum(f["frames"] for f in faces)
  length = (summary.get("input") or {}).get("duration_s")
  row: dict[str, Any] = {
      "task": WHOLE, "start_s": 0.0, "end_s": length, "duration_s": length,
      "frames_analysed": summary["frames"]["analysed"],
      "frames_with_face": summary["frames"]["with_face"],
      "seconds_with_face": round(sum(f["seconds_seen"] for f in faces), 3),
      "mean_valence": None, "dominant_emotion": None,
      "shares": None}
  if frames:
    shares = {n: sum(f["frames"] * f["emotion_share"][n] for f in faces)
              / frames for n in names}
    row.update(
        mean_valence=round(sum(f["frames"] * f["mean_valence"]
                               for f in faces) / frames, 4),
        dominant_emotion=max(shares, key=shares.get),
        shares={n: round(v, 4) for n, v in shares.items()})
  return row


def session_rows(participant: str, summary: Mapping[str, Any],
                 names: Sequence[str]) -> list[dict[str, Any]]:
  """The rows of one session: one per task, or one for the recording."""
  tasks = summary.get("tasks")
  if not tasks:
    return [{"participant": participant, **_whole(summary, names)}]
  return [{"participant": participant, "task": t["label"],
           "start_s": t["start_s"], "end_s": t["end_s"],
           "duration_s": t["duration_s"],
           "frames_analysed": t["frames_analysed"],
           "frames_with_face": t["frames_with_face"],
           "seconds_with_face": t["seconds_with_face"],
           "mean_valence": t["mean_valence"],
           "dominant_emotion": t["dominant_emotion"],
           "shares": t["emotion_share"]} for t in tasks]


def to_csv(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
  """The CSV text of the study's rows."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns(names))
  for row in rows:
    shares = row.get("shares") or {}
    writer.writerow([_cell(row.get(c)) for c in LEADING]
                    + [_cell(shares.get(n)) for n in names])
  return out.getvalue()


def _cell(value: Any) -> Any:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return ""
  return value


def task_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """The tasks in the order they first appear (sessions in order)."""
  order: list[str] = []
  for row in rows:
    if row["task"] not in order:
      order.append(row["task"])
  return order


def most_negative(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
  """Per participant, the task with the lowest mean valence (participants
  with fewer than two tasks with a face are left out)."""
  scored: dict[str, list[tuple[float, str]]] = {}
  for row in rows:
    if row.get("mean_valence") is not None:
      scored.setdefault(row["participant"], []).append(
          (row["mean_valence"], row["task"]))
  return {p: min(s)[1] for p, s in scored.items() if len(s) >= 2}
