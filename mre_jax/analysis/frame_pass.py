"""One pass of the analysis over the frames: its state, in one object.

:class:`Pass` queues each frame's face crops, classifies them
``batch_size`` at a time and turns them into rows, in order: smoothed per
face (:mod:`~mre_jax.analysis.smoothing`), counted per face
(:class:`~mre_jax.analysis.summary.FaceStats`) and searched for key moments,
overall and per task. It also keeps the time of every analysed frame, which
the per-task table counts. Frames waiting for their batch keep only their
crops, not their pixels (a batch of 720p frames would hold 170 MB).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from mre_jax.analysis import detection
from mre_jax.analysis import events as events_lib
from mre_jax.analysis import sources as sources_lib
from mre_jax.analysis import table
from mre_jax.analysis import tasks as tasks_lib
from mre_jax.analysis.moments import MomentFinder
from mre_jax.analysis.smoothing import Smoother
from mre_jax.analysis.summary import FaceStats


_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


@dataclasses.dataclass
class _Pending:
  """A frame whose faces wait for the classifier."""
  frame: sources_lib.Frame
  faces: list[tuple[int, detection.Box]]
  crops: np.ndarray  # uint8 (F, S, S, C), one per face.


class Pass:
  """The state of one pass: queued crops, rows, smoothing and statistics."""

  def __init__(self, analyzer: Any, source: sources_lib.FrameSource,
               on_rows: Callable[..., None] | None,
               tasks: Sequence[events_lib.Task]):
    self.analyzer = analyzer
    self.names = analyzer.class_names
    self.crop_size = int(analyzer.classifier.image_size)
    self.on_rows = on_rows
    self.rows: list[dict[str, Any]] = []
    self.pending: list[_Pending] = []
    self.queued = 0
    self.analysed = 0
    self.with_face = 0
    self.smoother = Smoother(analyzer.settings.smoothing_s)
    self.stats = FaceStats(self.names, source.seconds_per_frame())
    self.moments = MomentFinder(analyzer.settings.moments_per_face,
                                analyzer.settings.merge_gap_s)
    self.task_moments = tasks_lib.TaskMoments(
        tasks, analyzer.settings.moments_per_face,
        analyzer.settings.merge_gap_s)
    self.frame_times: list[float] = []  # Of every analysed frame.

  def add(self, frame: sources_lib.Frame,
          faces: list[tuple[int, detection.Box]]) -> None:
    """Queues a frame's faces; classifies when a batch is full."""
    self.analysed += 1
    self.frame_times.append(frame.time_s)
    self.with_face += bool(faces)
    if self.analyzer.detector is None:
      crops = frame.image[None]  # The whole frame, as evaluation sees it.
    else:
      settings = self.analyzer.settings
      if (settings.crop_scale, settings.crop_shift) != (1.0, 0.0):
        height, width = frame.image.shape[:2]
        faces = [(i, b.reframed(settings.crop_scale,
                                settings.crop_shift).clipped(width, height))
                 for i, b in faces]
        faces = [(i, b) for i, b in faces if b.w and b.h]
      crops = detection.crop_faces(frame.image, [b for _, b in faces],
                                   self.crop_size)
    if self.on_rows is None:  # Frames wait for a batch: keep no pixels.
      frame = dataclasses.replace(frame, image=_NO_PIXELS)
    self.pending.append(_Pending(frame, faces, crops))
    self.queued += len(faces)
    if self.queued >= self.analyzer.settings.batch_size:
      self.flush()

  def flush(self) -> None:
    """Classifies the queued crops and turns them into rows, in order."""
    pending, self.pending, self.queued = self.pending, [], 0
    crops = [c for p in pending for c in p.crops]
    probs = self.analyzer.classify(crops) if crops else None
    at = 0
    for p in pending:
      frame_rows = []
      for (face_id, box), crop in zip(p.faces, p.crops):
        frame_rows.append(self._row(p.frame, face_id, box, probs[at], crop))
        at += 1
      if self.on_rows is not None:
        self.on_rows(p.frame, frame_rows)

  def _row(self, frame: sources_lib.Frame, face_id: int, box: detection.Box,
           probs: np.ndarray, crop: np.ndarray) -> dict[str, Any]:
    key = (frame.source, face_id)
    smoothed = self.smoother(key, frame.time_s, probs)
    row = table.make_row(source=frame.source, frame=frame.index,
                         time_s=frame.time_s, face_id=face_id, box=box,
                         probs=probs, class_names=self.names,
                         smoothed=smoothed)
    label = self.names.index(row["emotion"])
    self.rows.append(row)
    self.stats.add(face_id, frame.time_s, probs, label)
    for finder in (self.moments, self.task_moments):
      finder.add(face_id, frame.source, frame.index, frame.time_s,
                 row["emotion"], row["confidence"], crop)
    return row
