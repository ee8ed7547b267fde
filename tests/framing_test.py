"""The training crops' framing, as the face detector sees it."""

import cv2
import numpy as np

from mre_jax.analysis import detection
from mre_jax.analysis import framing
from mre_jax.benchmarks import test_faces
from mre_jax.datasets import synthetic_faces


def _faces(count: int, seed: int = 0) -> np.ndarray:
  return synthetic_faces.render_faces(np.arange(count) % 7,
                                      np.random.default_rng(seed))


def test_reframing_the_detectors_box_recovers_the_training_crop():
  """Faces measured, then pasted elsewhere at another size: the detector's
  boxes, reframed as measured, cover the pasted crops better than the boxes
  themselves (median IoU with the crop)."""
  faces = _faces(40)
  measured = framing.measure(faces)
  assert measured.faces == 40 and measured.found >= 0.3
  assert measured != framing.Framing(faces=40)
  detector = detection.HaarDetector()
  side = 130
  truth = detection.Box(150, 90, side, side)
  raw, reframed = [], []
  for face in faces:
    frame = np.full((300, 360), 128, np.uint8)
    frame[90:90 + side, 150:150 + side] = cv2.resize(
        face[..., 0], (side, side), interpolation=cv2.INTER_LINEAR)
    boxes = [b for b in detector.detect(frame) if truth.iou(b) > 0.3]
    if boxes:
      box = max(boxes, key=truth.iou)
      raw.append(truth.iou(box))
      reframed.append(truth.iou(box.reframed(measured.scale, measured.shift)))
  assert len(raw) >= 10
  assert np.median(reframed) >= 0.78 and np.median(reframed) > np.median(
      raw) + 0.05


def test_undetectable_faces_keep_the_detectors_box():
  blank = np.full((5, 48, 48, 1), 128, np.uint8)
  assert framing.measure(blank) == framing.Framing(faces=5)


def test_raf_db_faces_are_framed_tighter_than_the_detectors_box(
    real_data_dir):
  faces, _ = test_faces.raf_test_faces(real_data_dir, 120, seed=1)
  measured = framing.measure(faces)
  assert measured.found >= 0.7
  assert 0.8 <= measured.scale <= 0.98 and 0.0 < measured.shift < 0.1
