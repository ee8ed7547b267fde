"""Faces followed across the frames of a video, with stable ids.

A full Haar scan of every frame is the slowest step of the analysis, and it
still misses a face in some frames. :class:`Tracker` scans the whole frame
only every ``detect_every`` analysed frames while every known face is in
view (every frame otherwise: while there is no face, or one was lost) and, in
between, looks for each face only around where it was: first with the
cascade in that small region
(:meth:`~mre_jax.analysis.detection.HaarDetector.detect_near`), then, if the
cascade misses, by matching the face's last detected appearance
(normalised cross-correlation, ``cv2.matchTemplate``; at most
``max_followed`` frames in a row). A match must reach ``min_similarity``, so
a face that leaves is not followed onto the background.

Scans' detections are paired with tracks by overlap (IoU of at least
``match_iou``, also asked of a detection near a face). An unpaired detection
starts a track, which gets the next face id once the cascade has found it
``confirm`` times (2 keeps one-frame false detections out, at the cost of
faces the cascade finds only once). A face that is neither detected nor
matched keeps its id, without a box, for ``max_missed`` frames, and gets it
back if a scan finds it where it was and it still looks the same (a new
person in the same place gets a new id).

Frames are held back ``lag`` frames before they are returned. When a face is
first found, or found again, the held-back frames before it are searched
backwards for the same appearance, so the frames between scans, and those
where the cascade missed a face that it finds a moment later, still get it.
Live analysis uses ``lag=0``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from mre_jax.analysis.detection import Box
from mre_jax.analysis.detection import HaarDetector
from mre_jax.analysis.detection import Reduced
from mre_jax.errors import AnalysisError

Item = TypeVar("Item")
_TEMPLATE = 32  # Templates are matched at this width, for speed.


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
  """How often to scan, how long to keep an unseen face, what is a match."""
  detect_every: int = 4
  max_missed: int = 5
  max_followed: int = 8
  lag: int = 4
  match_iou: float = 0.3
  # On the benchmark's video, a face matched to itself 1-3 frames away
  # scored >= 0.88 in 99% of cases; face templates on background <= 0.83.
  min_similarity: float = 0.85
  confirm: int = 1  # Detections before a track gets an id.

  def __post_init__(self):
    if (self.detect_every < 1 or self.lag < 0 or self.confirm < 1
        or min(self.max_missed, self.max_followed) < 0):
      raise AnalysisError(
          f"bad tracker settings {self}: detect_every and confirm >= 1, and "
          "max_missed, max_followed and lag >= 0")


class _Track:
  """One face: its box and template in reduced-frame pixels."""

  def __init__(self, box: Box, grey: np.ndarray):
    self.face_id: int | None = None  # Given once confirmed.
    self.hits = 1  # Frames where the cascade found it.
    self.missed = 0  # Consecutive frames without the face.
    self.followed = 0  # Consecutive frames followed by looks alone.
    self.box = box
    self.template = _template(grey, box)

  def detected(self, box: Box, grey: np.ndarray) -> None:
    self.box, self.missed, self.followed = box, 0, 0
    self.hits += 1
    self.template = _template(grey, box)


def _template(grey: np.ndarray, box: Box) -> np.ndarray | None:
  """The face's pixels at width ``_TEMPLATE``; None when clipped."""
  b = box.clipped(grey.shape[1], grey.shape[0])
  if b != box or b.w < 8 or b.h < 8:
    return None
  patch = grey[b.y:b.y + b.h, b.x:b.x + b.w]
  size = (_TEMPLATE, max(int(round(_TEMPLATE * b.h / b.w)), 1))
  return cv2.resize(patch, size, interpolation=cv2.INTER_AREA)


def match_template(grey: np.ndarray, box: Box, template: np.ndarray | None,
                   min_similarity: float) -> Box | None:
  """Where ``template`` (last seen at ``box``) best matches nearby, or None.

  The region around ``box`` (half its size on each side) is shrunk by the
  template's own scale; the best normalised correlation must reach
  ``min_similarity``. The box keeps its size.
  """
  if template is None:
    return None
  height, width = grey.shape[:2]
  region = box.grown(0.5).clipped(width, height)
  factor = _TEMPLATE / box.w
  size = (int(round(region.w * factor)), int(round(region.h * factor)))
  if size[0] <= template.shape[1] or size[1] <= template.shape[0]:
    return None
  patch = grey[region.y:region.y + region.h, region.x:region.x + region.w]
  patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
  scores = cv2.matchTemplate(patch, template, cv2.TM_CCOEFF_NORMED)
  _, best, _, (left, top) = cv2.minMaxLoc(scores)
  if not best >= min_similarity:  # Also refuses NaN (flat patches).
    return None
  return Box(region.x + int(round(left / factor)),
             region.y + int(round(top / factor)), box.w, box.h)


@dataclasses.dataclass
class _Held(Generic[Item]):
  item: Item
  reduced: Reduced
  boxes: dict[_Track, Box]


class Tracker(Generic[Item]):
  """Boxes with stable face ids for a stream of frames.

  ``push(item, frame)`` takes the next analysed frame (RGB or grey) and an
  opaque ``item`` that comes back with it; it returns the frames that are
  done, oldest first, as ``(item, [(face_id, box)])`` with boxes in
  full-frame pixels, ordered by id. ``finish()`` returns the rest.
  """

  def __init__(self, detector: HaarDetector,
               settings: TrackerSettings = TrackerSettings()):
    self.detector = detector
    self.settings = settings
    self._tracks: list[_Track] = []
    self._ids = itertools.count()
    self._held: collections.deque[_Held[Item]] = collections.deque()
    self._count = 0

  def push(self, item: Item, frame: np.ndarray
           ) -> list[tuple[Item, list[tuple[int, Box]]]]:
    reduced = self.detector.reduce(frame)
    held = _Held(item, reduced, self._step(reduced.grey))
    self._held.append(held)
    done = []
    while len(self._held) > self.settings.lag:
      done.append(self._output(self._held.popleft()))
    return done

  def finish(self) -> list[tuple[Item, list[tuple[int, Box]]]]:
    done = [self._output(h) for h in self._held]
    self._held.clear()
    return done

  def _output(self, held: _Held[Item]) -> tuple[Item, list[tuple[int, Box]]]:
    scale, w, h = held.reduced.scale, held.reduced.width, held.reduced.height
    boxes = []
    for track, box in held.boxes.items():
      box = box.scaled(scale).clipped(w, h)
      if track.face_id is not None and box.w > 0 and box.h > 0:
        boxes.append((track.face_id, box))
    return held.item, sorted(boxes, key=lambda b: b[0])

  def _step(self, grey: np.ndarray) -> dict[_Track, Box]:
    """Updates the tracks with one frame; returns its boxes by track."""
    s = self.settings
    steady = self._tracks and all(t.missed == 0 and t.face_id is not None
                                  for t in self._tracks)
    full = self._count % s.detect_every == 0 or not steady
    self._count += 1
    updated: set[_Track] = set()
    revived: list[_Track] = []
    new_boxes: list[Box] = []
    if full:
      detections = self.detector.detect(grey)
      pairs = sorted(((t.box.iou(d), ti, di)
                      for ti, t in enumerate(self._tracks)
                      for di, d in enumerate(detections)), reverse=True)
      used_tracks, used_detections = set(), set()
      for overlap, ti, di in pairs:
        if overlap < s.match_iou:
          break
        if ti in used_tracks or di in used_detections:
          continue
        track = self._tracks[ti]
        if track.missed and not self._looks_alike(track, detections[di],
                                                  grey):
          continue  # Someone else, where a lost face was.
        used_tracks.add(ti)
        used_detections.add(di)
        if track.missed:
          revived.append(track)
        track.detected(detections[di], grey)
        updated.add(track)
      new_boxes = [d for di, d in enumerate(detections)
                   if di not in used_detections]
    boxes: dict[_Track, Box] = {}
    for track in self._tracks:
      if track in updated or self._follow(track, grey):
        boxes[track] = track.box
    boxes = self._without_duplicates(boxes)
    for box in new_boxes:
      if any(box.iou(b) >= s.match_iou for b in boxes.values()):
        continue
      track = _Track(box, grey)
      self._tracks.append(track)
      boxes[track] = box
      revived.append(track)
    for track in self._tracks:
      if track.face_id is None and track.hits >= s.confirm:
        track.face_id = next(self._ids)
    for track in revived:
      if track in boxes:
        self._fill_back(track)
    self._tracks = [t for t in self._tracks if t.missed <= s.max_missed]
    return boxes

  def _looks_alike(self, track: _Track, box: Box, grey: np.ndarray) -> bool:
    """Whether a detection has the lost face's last appearance: a face that
    is lost and found again keeps its id, someone new gets one."""
    template = _template(grey, box)
    if track.template is None or template is None:
      return True
    template = cv2.resize(template, track.template.shape[::-1],
                          interpolation=cv2.INTER_AREA)
    score = cv2.matchTemplate(template, track.template,
                              cv2.TM_CCOEFF_NORMED)[0, 0]
    return bool(score >= self.settings.min_similarity)

  def _follow(self, track: _Track, grey: np.ndarray) -> bool:
    """Finds a track's face near its last box; False if it is not there.

    Only a face seen in the previous frame is looked for nearby; a lost one
    comes back only through a scan's detection where it was, so that it
    cannot jump onto another face or onto the background.
    """
    if track.missed:
      track.missed += 1
      return False
    found = self.detector.detect_near(grey, track.box, self.settings.match_iou)
    if found is not None:
      track.detected(found, grey)
      return True
    followed = None
    if track.followed < self.settings.max_followed:
      followed = match_template(grey, track.box, track.template,
                                self.settings.min_similarity)
    if followed is None:
      track.missed = 1
      return False
    track.box = followed
    track.followed += 1
    return True

  def _without_duplicates(self, boxes: dict[_Track, Box]
                          ) -> dict[_Track, Box]:
    """Drops the later of two tracks that have converged on one face."""
    order = {t: i for i, t in enumerate(self._tracks)}
    keep: dict[_Track, Box] = {}
    for track in sorted(boxes, key=lambda t: (t.face_id is None, order[t])):
      if all(boxes[track].iou(b) < 0.5 for b in keep.values()):
        keep[track] = boxes[track]
    self._tracks = [t for t in self._tracks if t in keep or t not in boxes]
    return keep

  def _fill_back(self, track: _Track) -> None:
    """Finds a face in the held-back frames, newest first, by its looks."""
    box = track.box
    for held in reversed(self._held):
      if track in held.boxes:
        return
      box = match_template(held.reduced.grey, box, track.template,
                           self.settings.min_similarity)
      if box is None or any(box.iou(b) >= self.settings.match_iou
                            for b in held.boxes.values()):
        return
      held.boxes[track] = box

  def describe(self) -> dict[str, Any]:
    return dataclasses.asdict(self.settings)
