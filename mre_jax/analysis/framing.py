"""Where a dataset's faces sit in their crops, seen from the face detector.

Each dataset frames its faces its own way (RAF-DB's aligned 100x100 crops,
FER2013's 48x48 ones), and a model learns that framing; the analysis crops
around the Haar cascade's box, which frames a face differently. :func:`measure`
pastes training faces, enlarged, into a plain grey frame, finds each as the
analysis finds faces, and returns the reframing (:meth:`Box.reframed
<mre_jax.analysis.detection.Box.reframed>`) that turns the detector's box
back into the training crop: the median over the faces found. A shipped
model's card records it (``preprocessing.crop``), measured on its training
split, and the analyzer crops with it unless told otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from mre_jax.analysis import detection

FACE_SIDE = 160  # Pixels of the pasted face, as a webcam shows one.


@dataclasses.dataclass(frozen=True)
class Framing:
  """The training crop relative to the detector's box.

  Attributes:
    scale: the crop's side over the box's side.
    shift: how far the crop's centre lies below the box's, in box heights.
    faces: how many faces were measured.
    found: the share of them the detector found.
  """
  scale: float = 1.0
  shift: float = 0.0
  faces: int = 0
  found: float = 0.0

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _grey(image: np.ndarray) -> np.ndarray:
  if image.ndim == 3 and image.shape[-1] == 3:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
  return image.reshape(image.shape[:2])


def _box_of(image: np.ndarray, detector: detection.HaarDetector
            ) -> tuple[float, float] | None:
  """(crop side / box side, crop centre below box centre / box height) of
  one face, or None if the detector misses it."""
  face = cv2.resize(_grey(image), (FACE_SIDE, FACE_SIDE),
                    interpolation=cv2.INTER_LINEAR)
  frame = np.full((2 * FACE_SIDE, 2 * FACE_SIDE), 128, np.uint8)
  start = FACE_SIDE // 2
  frame[start:start + FACE_SIDE, start:start + FACE_SIDE] = face
  pasted = detection.Box(start, start, FACE_SIDE, FACE_SIDE)
  boxes = [b for b in detector.detect(frame) if pasted.iou(b) > 0.3]
  if not boxes:
    return None
  box = max(boxes, key=pasted.iou)
  centre = start + FACE_SIDE / 2
  return FACE_SIDE / box.w, (centre - (box.y + box.h / 2)) / box.h


def measure(images: np.ndarray,
            detector: detection.HaarDetector | None = None) -> Framing:
  """The median framing of uint8 faces (N, H, W[, C]); the identity if the
  detector finds none of them."""
  detector = detector or detection.HaarDetector()
  found = [f for f in (_box_of(image, detector) for image in images)
           if f is not None]
  if not found:
    return Framing(faces=len(images))
  scales, shifts = np.asarray(found).T
  return Framing(scale=round(float(np.median(scales)), 4),
                 shift=round(float(np.median(shifts)), 4), faces=len(images),
                 found=round(len(found) / len(images), 4))
