"""python -m mre_jax.benchmarks.session_speed on a few seconds of video."""

import json
import os
import subprocess
import sys

import cv2
import pytest

from conftest import PROJECT_ROOT
from mre_jax.benchmarks import session_speed


def test_the_generated_session_is_720p_at_30_frames_per_second(tmp_path):
  path = str(tmp_path / "s.mp4")
  session_speed.write_session(path, 1.0)
  capture = cv2.VideoCapture(path)
  assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30)
  assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 30
  ok, frame = capture.read()
  capture.release()
  assert ok and frame.shape == (720, 1280, 3)


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "mre_jax.benchmarks.session_speed", *args],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)


def test_it_measures_time_and_memory(tmp_path):
  out = tmp_path / "results.json"
  done = _run("--minutes=0.05", f"--videos={tmp_path}", "--breakdown",
              f"--json={out}", "--batch_size=8")
  assert done.returncode == 0, done.stderr
  assert "0.05 min of 1280x720 video at 5 frames/s: " in done.stdout
  results = json.loads(out.read_text())
  run = results["runs"]["0.05"]
  assert run["frames_analysed"] == 15  # 3 s at 5 frames/s.
  assert len(run["rss_mb_by_quarter"]) == 4
  assert run["peak_rss_mb"] >= max(run["rss_mb_by_quarter"]) > 0
  assert run["decode_s"] > 0 and 0 < run["classify_s"] < run["wall_s"]
  done = _run("--minutes=ten")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith("error: --minutes")
