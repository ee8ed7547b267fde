"""emotions.csv: one row per face per analysed frame.

Columns: ``source, frame, time_s, face_id, x, y, w, h``, one probability per
class (the model's raw output, summing to 1), then ``emotion, confidence``
(the label after temporal smoothing and its smoothed probability) and
``valence`` (:mod:`~mre_jax.analysis.valence`, from the raw probabilities).
Boxes are in pixels of the original frame. Rows are plain dicts keyed by
column, so they read the same from the CSV, the API and the plots.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Sequence

import numpy as np

from mre_jax.analysis.detection import Box
from mre_jax.analysis.valence import valence

LEADING = ("source", "frame", "time_s", "face_id", "x", "y", "w", "h")
TRAILING = ("emotion", "confidence", "valence")


def mmss(seconds: float) -> str:
  """``75.4`` -> ``"01:15"``; ``h:mm:ss`` from an hour on."""
  total = max(int(math.floor(float(seconds) + 1e-6)), 0)
  hours, rest = divmod(total, 3600)
  if hours:
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
  return f"{rest // 60:02d}:{rest % 60:02d}"


def columns(class_names: Sequence[str]) -> tuple[str, ...]:
  return LEADING + tuple(class_names) + TRAILING


def make_row(*, source: str, frame: int, time_s: float, face_id: int,
             box: Box, probs: np.ndarray, class_names: Sequence[str],
             smoothed: np.ndarray) -> dict[str, Any]:
  """One CSV row from a face's raw and smoothed probabilities."""
  label = int(np.argmax(smoothed))
  row: dict[str, Any] = {
      "source": source, "frame": int(frame), "time_s": round(time_s, 4),
      "face_id": int(face_id), "x": box.x, "y": box.y, "w": box.w,
      "h": box.h}
  row.update({name: float(p) for name, p in zip(class_names, probs)})
  row["emotion"] = class_names[label]
  row["confidence"] = round(float(smoothed[label]), 6)
  row["valence"] = round(valence(probs, class_names), 6)
  return row


def to_csv(rows: Sequence[dict[str, Any]], class_names: Sequence[str],
           stream: io.TextIOBase | None = None) -> str | None:
  """Writes ``rows`` as CSV to ``stream``, or returns the text."""
  out = stream if stream is not None else io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(columns(class_names))
  names = set(class_names)
  for row in rows:
    writer.writerow([f"{row[c]:.6f}" if c in names else row[c]
                     for c in columns(class_names)])
  return None if stream is not None else out.getvalue()
