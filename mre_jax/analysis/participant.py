"""``--faces=main``: keep the participant, the face seen longest.

In a usability session the participant faces the camera throughout, while
a moderator, a passer-by or a face on a poster is seen for less time. The
face with the most analysed frames is kept (ties: the lower id, the one
found first); the rows, key moments and per-face statistics of the others
are dropped, and the summary says how many were.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Sequence

from mre_jax.analysis.moments import Moment

FACES = ("all", "main")


@dataclasses.dataclass
class Kept:
  """What an analysis keeps of its faces."""
  rows: list[dict[str, Any]]
  moments: list[Moment]
  task_moments: list[Moment]
  faces: dict[str, dict[str, Any]]
  main_face: int | None = None
  dropped: int = 0


def main_face(rows: Sequence[dict[str, Any]]) -> int | None:
  """The face id with the most rows; None when there is no row."""
  counts = collections.Counter(r["face_id"] for r in rows)
  if not counts:
    return None
  return min(counts, key=lambda face: (-counts[face], face))


def keep(mode: str, rows: list[dict[str, Any]], moments: list[Moment],
         task_moments: list[Moment],
         faces: dict[str, dict[str, Any]]) -> Kept:
  """Everything (``all``), or only the main face's (``main``)."""
  if mode == "all":
    return Kept(rows, moments, task_moments, faces)
  face = main_face(rows)
  if face is None:
    return Kept(rows, moments, task_moments, faces)
  return Kept([r for r in rows if r["face_id"] == face],
              [m for m in moments if m.face_id == face],
              [m for m in task_moments if m.face_id == face],
              {k: v for k, v in faces.items() if k == str(face)},
              main_face=face, dropped=len(faces) - 1)


def frames_with_face(rows: Sequence[dict[str, Any]]) -> int:
  """Analysed frames (or images) with at least one of ``rows``."""
  return len({(r["source"], r["frame"]) for r in rows})
