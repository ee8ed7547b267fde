"""A synthetic usability session for the offline demo, and how well an
analysis of it follows the expressions it was drawn with.

Each frame of the video is one procedurally drawn ``synthetic_faces`` face
(:func:`mre_jax.datasets.synthetic_faces.render_faces`), whose expression
follows :data:`SCHEDULE`; the demo analyses it with ``--detector=none``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mre_jax.config.labels import CLASS_NAMES
from mre_jax.datasets import synthetic_faces
from mre_jax.errors import AnalysisError

# (expression, seconds): a participant who starts neutral, is pleased,
# surprised, then frustrated, calms down and ends annoyed.
SCHEDULE = (("neutral", 3.0), ("happy", 3.0), ("surprise", 2.0),
            ("sad", 3.0), ("neutral", 2.0), ("angry", 3.0))
FPS = 10.0
FRAME_SIZE = 144  # Pixels; the 48x48 faces are enlarged to stay watchable.


def frame_labels(schedule: Sequence[tuple[str, float]] = SCHEDULE,
                 fps: float = FPS) -> np.ndarray:
  """int (F,): the class of every frame of the schedule."""
  labels = []
  for name, seconds in schedule:
    labels += [CLASS_NAMES.index(name)] * int(round(seconds * fps))
  return np.asarray(labels, np.int64)


def write_session_video(path: str, seed: int = 0,
                        schedule: Sequence[tuple[str, float]] = SCHEDULE,
                        fps: float = FPS) -> np.ndarray:
  """Writes the session as an MJPG ``.avi``; returns the frames' classes."""
  import cv2  # pylint: disable=g-import-not-at-top
  labels = frame_labels(schedule, fps)
  faces = synthetic_faces.render_faces(labels, np.random.default_rng(seed))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                           (FRAME_SIZE, FRAME_SIZE))
  if not writer.isOpened():
    raise AnalysisError(f"OpenCV cannot write the demo video {path}; "
                        "reinstall with pip install -e '.[app]'.")
  try:
    for face in faces:
      big = cv2.resize(face[..., 0], (FRAME_SIZE, FRAME_SIZE),
                       interpolation=cv2.INTER_LINEAR)
      writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
  finally:
    writer.release()
  return labels


def agreement(rows: Sequence[dict[str, Any]], labels: np.ndarray) -> float:
  """Share of analysed frames whose (smoothed) emotion is the scheduled one."""
  if not rows:
    return 0.0
  hits = [row["emotion"] == CLASS_NAMES[labels[row["frame"]]] for row in rows]
  return float(np.mean(hits))
