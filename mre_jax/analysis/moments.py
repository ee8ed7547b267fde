"""Key moments: each face's strongest non-neutral episodes.

An episode is a run of a face's analysed frames whose smoothed label is the
same non-neutral emotion. Runs of the same emotion separated by at most
``merge_gap_s`` seconds (neutral or unseen frames in between) are merged into
one. An episode's strength is its peak smoothed confidence; the frame at the
peak, with its face crop, represents it in the report.

The finder works in one pass and keeps at most ``per_face`` finished episodes
per face (plus the one still open), so only candidates' crops stay in memory.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Any

import numpy as np

NEUTRAL = "neutral"


@dataclasses.dataclass
class Moment:
  """One episode of a face, represented by its peak frame."""
  face_id: int
  emotion: str
  source: str
  frame: int
  time_s: float
  confidence: float
  start_s: float
  end_s: float
  crop: np.ndarray | None = None
  overlay: np.ndarray | None = None
  task: str | None = None  # The task it belongs to, when tasks are given.

  def fields(self) -> dict[str, Any]:
    """The JSON fields (no pixels); ``task`` only when it has one."""
    fields = {"source": self.source, "frame": self.frame,
              "time_s": round(self.time_s, 3), "face_id": self.face_id,
              "emotion": self.emotion,
              "confidence": round(self.confidence, 4),
              "start_s": round(self.start_s, 3),
              "end_s": round(self.end_s, 3)}
    if self.task is not None:
      fields["task"] = self.task
    return fields


class MomentFinder:
  """Collects the strongest episodes of each face from rows in time order."""

  def __init__(self, per_face: int = 3, merge_gap_s: float = 1.0,
               neutral: str = NEUTRAL):
    self.per_face = per_face
    self.merge_gap_s = merge_gap_s
    self.neutral = neutral
    self._open: dict[int, Moment] = {}
    self._kept: dict[int, list[tuple[float, int, Moment]]] = {}
    self._order = itertools.count()

  def add(self, face_id: int, source: str, frame: int, time_s: float,
          emotion: str, confidence: float, crop: np.ndarray | None) -> None:
    """One analysed row of ``face_id``, with its smoothed label."""
    current = self._open.get(face_id)
    if current is not None and (
        current.source != source
        or time_s - current.end_s > self.merge_gap_s
        or (emotion != self.neutral and emotion != current.emotion)):
      self._close(face_id)
      current = None
    if emotion == self.neutral:
      return
    if current is None:
      self._open[face_id] = Moment(face_id, emotion, source, frame, time_s,
                                   confidence, time_s, time_s, crop)
      return
    current.end_s = time_s
    if confidence > current.confidence:
      current.frame, current.time_s = frame, time_s
      current.confidence, current.crop = confidence, crop

  def _close(self, face_id: int) -> None:
    moment = self._open.pop(face_id)
    kept = self._kept.setdefault(face_id, [])
    heapq.heappush(kept, (moment.confidence, -next(self._order), moment))
    if len(kept) > self.per_face:
      heapq.heappop(kept)  # The weakest; its crop is let go.

  def finish(self) -> list[Moment]:
    """The kept moments, by face then time."""
    for face_id in list(self._open):
      self._close(face_id)
    moments = [m for kept in self._kept.values() for _, _, m in kept]
    return sorted(moments, key=lambda m: (m.face_id, m.source, m.time_s))
