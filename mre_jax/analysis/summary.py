"""summary.json: what was analysed and what each face showed.

:class:`FaceStats` accumulates, per face id, the rows of the analysis in one
pass: how long the face was seen, the share of its frames per smoothed
emotion, its mean (raw) probabilities and its mean valence.
:func:`build_summary` puts these together with the frame counts, the key
moments, the model, the detector and the timing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mre_jax.analysis.moments import Moment
from mre_jax.analysis.valence import valence


class FaceStats:
  """Running totals of every face id's rows."""

  def __init__(self, class_names: Sequence[str], seconds_per_frame: float):
    self.class_names = tuple(class_names)
    self.seconds_per_frame = seconds_per_frame
    self._frames: dict[int, int] = {}
    self._first: dict[int, float] = {}
    self._last: dict[int, float] = {}
    self._prob_sums: dict[int, np.ndarray] = {}
    self._label_counts: dict[int, np.ndarray] = {}
    self._valence_sums: dict[int, float] = {}

  def add(self, face_id: int, time_s: float, probs: np.ndarray,
          label: int) -> None:
    """One row: raw probabilities and the smoothed label's index."""
    k = len(self.class_names)
    if face_id not in self._frames:
      self._frames[face_id] = 0
      self._first[face_id] = time_s
      self._prob_sums[face_id] = np.zeros(k)
      self._label_counts[face_id] = np.zeros(k, np.int64)
      self._valence_sums[face_id] = 0.0
    self._frames[face_id] += 1
    self._first[face_id] = min(self._first[face_id], time_s)
    self._last[face_id] = max(self._last.get(face_id, time_s), time_s)
    self._prob_sums[face_id] += probs
    self._label_counts[face_id][label] += 1
    self._valence_sums[face_id] += valence(probs, self.class_names)

  def faces(self, moments: Sequence[Moment]) -> dict[str, dict[str, Any]]:
    """Per face id (as a string, for JSON): its statistics and moments."""
    names = self.class_names
    out = {}
    for face_id in sorted(self._frames):
      frames = self._frames[face_id]
      counts = self._label_counts[face_id]
      share = counts / frames
      mean = self._prob_sums[face_id] / frames
      out[str(face_id)] = {
          "frames": frames,
          "seconds_seen": round(frames * self.seconds_per_frame, 3),
          "first_s": round(self._first[face_id], 3),
          "last_s": round(self._last[face_id], 3),
          "dominant_emotion": names[int(np.argmax(counts))],
          "emotion_share": {n: round(float(s), 4)
                            for n, s in zip(names, share)},
          "mean_probabilities": {n: round(float(p), 4)
                                 for n, p in zip(names, mean)},
          "mean_valence": round(self._valence_sums[face_id] / frames, 4),
          "key_moments": [m.fields() for m in moments
                          if m.face_id == face_id],
      }
    return out


def build_summary(*, source: dict[str, Any], frames: dict[str, int],
                  faces: dict[str, dict[str, Any]], model: dict[str, Any],
                  detector: dict[str, Any], settings: dict[str, Any],
                  wall_s: float, stopped: str) -> dict[str, Any]:
  """The summary's JSON object."""
  analysed = frames.get("analysed", 0)
  return {
      "input": source,
      "frames": frames,
      "faces_found": len(faces),
      "note": (None if faces else
               "no face was found in any analysed frame"),
      "faces": faces,
      "model": model,
      "detector": detector,
      "settings": settings,
      "timing": {"wall_s": round(wall_s, 3),
                 "frames_per_s": round(analysed / wall_s, 2) if wall_s else
                                 None,
                 "stopped": stopped},
  }
