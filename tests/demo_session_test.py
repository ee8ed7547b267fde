"""The demo's synthetic session video follows its schedule."""

import numpy as np
import pytest

from mre_jax.config.labels import CLASS_NAMES
from mre_jax.datasets import demo_session

cv2 = pytest.importorskip("cv2")


def test_labels_follow_the_schedule():
  schedule = (("happy", 1.0), ("sad", 0.5))
  labels = demo_session.frame_labels(schedule, fps=4)
  happy, sad = CLASS_NAMES.index("happy"), CLASS_NAMES.index("sad")
  assert labels.tolist() == [happy] * 4 + [sad] * 2


def test_video_has_one_drawn_face_per_scheduled_frame(tmp_path):
  schedule = (("neutral", 0.5), ("surprise", 0.5))
  path = str(tmp_path / "session.avi")
  labels = demo_session.write_session_video(path, schedule=schedule, fps=8)
  capture = cv2.VideoCapture(path)
  assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(8)
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(frame)
  assert len(frames) == len(labels) == 8
  size = demo_session.FRAME_SIZE
  assert frames[0].shape == (size, size, 3)
  # Grey faces (all channels equal up to JPEG), different in every frame.
  assert np.abs(frames[0].astype(int) - frames[0][..., :1]).max() <= 8
  assert all(np.abs(a.astype(int) - b).mean() > 1
             for a, b in zip(frames, frames[1:]))


def test_agreement_counts_matching_rows():
  labels = demo_session.frame_labels((("happy", 1.0), ("sad", 1.0)), fps=2)
  rows = [{"frame": 0, "emotion": "happy"}, {"frame": 1, "emotion": "sad"},
          {"frame": 2, "emotion": "sad"}, {"frame": 3, "emotion": "angry"}]
  assert demo_session.agreement(rows, labels) == 0.5
  assert demo_session.agreement([], labels) == 0.0
