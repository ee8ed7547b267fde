"""Face boxes in frames, and the face crops the classifier is given.

:class:`HaarDetector` runs OpenCV's ``haarcascade_frontalface_alt2`` on a
reduced grey copy of the frame (shorter side ``detect_side`` pixels: half
size for 640x480), which is several times faster than the full frame and
finds the faces a webcam shows: those at least ``min_face`` = 32 pixels in the
reduced frame, i.e. 64 pixels at 480p, 96 at 720p.
:meth:`HaarDetector.detect_near` searches a small region around a known face
over a narrow range of sizes, which costs a fraction of a full scan; the
tracker uses it between full detections.

:func:`crop_faces` cuts each box out of the full-resolution RGB frame and
resamples it to the model's input size with PIL's antialiased bilinear filter,
the filter training's resize (:func:`mre_jax.data.input_pipeline.preprocess`)
reproduces. Every crop then has one shape, so the classifier runs one
compiled program for all of them, and its own preprocessing (channel
matching, normalisation) does the rest.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image

from mre_jax.errors import AnalysisError

CASCADE = "haarcascade_frontalface_alt2.xml"


@dataclasses.dataclass(frozen=True)
class Box:
  """An axis-aligned box in pixels: left, top, width, height."""
  x: int
  y: int
  w: int
  h: int

  @property
  def area(self) -> int:
    return self.w * self.h

  @property
  def center(self) -> tuple[float, float]:
    return self.x + self.w / 2, self.y + self.h / 2

  def iou(self, other: Box) -> float:
    """Intersection over union with ``other`` (0 when disjoint)."""
    ix = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
    iy = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
    if ix <= 0 or iy <= 0:
      return 0.0
    inter = ix * iy
    return inter / float(self.area + other.area - inter)

  def scaled(self, factor: float) -> Box:
    return Box(int(round(self.x * factor)), int(round(self.y * factor)),
               int(round(self.w * factor)), int(round(self.h * factor)))

  def grown(self, margin: float) -> Box:
    """The box enlarged by ``margin`` of its size on every side."""
    dx, dy = int(round(self.w * margin)), int(round(self.h * margin))
    return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy)

  def reframed(self, scale: float, shift: float) -> Box:
    """The box resized ``scale`` times about its centre, then moved down by
    ``shift`` of its height."""
    w, h = self.w * scale, self.h * scale
    cx, cy = self.x + self.w / 2, self.y + self.h / 2 + shift * self.h
    return Box(int(round(cx - w / 2)), int(round(cy - h / 2)),
               int(round(w)), int(round(h)))

  def clipped(self, width: int, height: int) -> Box:
    """The part of the box inside a ``width`` x ``height`` image."""
    x0, y0 = max(self.x, 0), max(self.y, 0)
    x1, y1 = min(self.x + self.w, width), min(self.y + self.h, height)
    return Box(x0, y0, max(x1 - x0, 0), max(y1 - y0, 0))


@dataclasses.dataclass(frozen=True)
class HaarSettings:
  """The cascade's parameters (see ``CascadeClassifier.detectMultiScale``).

  ``scale_factor`` and ``min_neighbors`` trade recall for speed and false
  alarms. On the benchmark's video (``mre_jax.benchmarks.analysis``), with
  tracking, (1.08, 2) found 95-96% of the frames with a face at 54% of the
  time of (1.05, 3), which found 92-97%; (1.1, 2) found 94%, (1.08, 3) 88%.
  Raise ``min_neighbors`` if a cluttered background gives false faces.
  ``min_face`` is the smallest face, in pixels of the reduced frame.
  """
  scale_factor: float = 1.08
  min_neighbors: int = 2
  detect_side: int = 240
  min_face: int = 32

  def __post_init__(self):
    if not self.scale_factor > 1.0:
      raise AnalysisError(f"the detector's scale factor must exceed 1, got "
                          f"{self.scale_factor}")
    if self.min_neighbors < 0 or self.detect_side < 24 or self.min_face < 20:
      raise AnalysisError(
          f"bad detector settings {self}: min_neighbors >= 0, detect_side "
          ">= 24 and min_face >= 20 (the cascade's window)")


@dataclasses.dataclass(frozen=True)
class Reduced:
  """A frame as the detector scans it: grey, shrunk by ``scale``."""
  grey: np.ndarray
  scale: float  # Full-frame pixels per reduced pixel (>= 1).
  width: int  # Of the full frame.
  height: int


def reduce(frame: np.ndarray, detect_side: int) -> Reduced:
  """uint8 RGB (or grey) frame -> its grey copy with shorter side <= side."""
  height, width = frame.shape[:2]
  grey = frame if frame.ndim == 2 else (
      frame[..., 0] if frame.shape[-1] == 1
      else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
  scale = max(1.0, min(height, width) / detect_side)
  if scale > 1.0:
    size = (max(int(round(width / scale)), 1),
            max(int(round(height / scale)), 1))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
  return Reduced(np.ascontiguousarray(grey), scale, width, height)


class HaarDetector:
  """Frontal faces with OpenCV's Haar cascade, in reduced-frame pixels."""

  def __init__(self, settings: HaarSettings = HaarSettings()):
    self.settings = settings
    path = os.path.join(cv2.data.haarcascades, CASCADE)
    self._cascade = cv2.CascadeClassifier(path)
    if self._cascade.empty():
      raise AnalysisError(f"cannot load OpenCV's face detector {path}; "
                          "reinstall opencv-python-headless")

  def reduce(self, frame: np.ndarray) -> Reduced:
    return reduce(frame, self.settings.detect_side)

  def detect(self, grey: np.ndarray) -> list[Box]:
    """Every face in the reduced frame, largest first."""
    s = self.settings
    found = self._cascade.detectMultiScale(
        grey, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
        minSize=(s.min_face, s.min_face))
    boxes = [Box(*map(int, b)) for b in found]
    return sorted(boxes, key=lambda b: -b.area)

  def detect_near(self, grey: np.ndarray, box: Box,
                  min_iou: float = 0.0) -> Box | None:
    """The face around ``box`` (from a nearby frame), or None.

    Searches the box grown by half its size on each side, for faces of 0.75
    to 1.35 times its width; the one found must overlap ``box`` by at least
    ``min_iou``, so that a different face close by is not taken for it.
    """
    height, width = grey.shape[:2]
    region = box.grown(0.5).clipped(width, height)
    smallest = max(int(box.w * 0.75), self.settings.min_face)
    largest = int(box.w * 1.35) + 1
    if region.w < smallest or region.h < smallest:
      return None
    patch = grey[region.y:region.y + region.h, region.x:region.x + region.w]
    found = self._cascade.detectMultiScale(
        patch, scaleFactor=self.settings.scale_factor,
        minNeighbors=self.settings.min_neighbors,
        minSize=(smallest, smallest), maxSize=(largest, largest))
    boxes = [Box(int(x) + region.x, int(y) + region.y, int(w), int(h))
             for x, y, w, h in found]
    best = max(boxes, key=box.iou, default=None)
    return best if best is not None and box.iou(best) >= min_iou else None

  def describe(self) -> dict[str, Any]:
    return {"name": "haar", "cascade": CASCADE,
            **dataclasses.asdict(self.settings)}


def crop_faces(frame: np.ndarray, boxes: Sequence[Box],
               size: int) -> np.ndarray:
  """uint8 (N, size, size, C) crops of ``boxes`` (full-frame pixels).

  Boxes are clipped to the frame first; the crop is resampled with PIL's
  antialiased bilinear filter, as training resizes its faces.
  """
  height, width = frame.shape[:2]
  channels = 1 if frame.ndim == 2 else frame.shape[-1]
  out = np.empty((len(boxes), size, size, channels), np.uint8)
  for i, box in enumerate(boxes):
    b = box.clipped(width, height)
    if b.w == 0 or b.h == 0:
      raise ValueError(f"box {box} lies outside the {width}x{height} frame")
    patch = frame[b.y:b.y + b.h, b.x:b.x + b.w]
    if patch.shape[:2] == (size, size):
      out[i] = patch.reshape(size, size, channels)
      continue
    if patch.ndim == 3 and channels == 1:
      patch = patch[..., 0]
    image = Image.fromarray(np.ascontiguousarray(patch))
    resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    out[i] = resized.reshape(size, size, channels)
  return out
