"""Frames to analyse: from an image, a folder of images, a video or a camera.

:func:`open_source` turns ``--input`` into a :class:`FrameSource`, whose
``frames()`` yields :class:`Frame` objects (uint8 RGB pixels, the frame's
index and time) and whose ``stats`` count what was read and skipped.

* Images are read with PIL (EXIF orientation applied). A folder is searched
  recursively, in name order; files that are not images are skipped, counted
  and reported, and images that fail to decode are skipped and counted.
* Videos are read with OpenCV (FFmpeg). Frames are sampled at
  ``sample_fps`` by frame index, using the video's frame rate, and
  ``time_s = index / fps``. Frames that are not sampled are only grabbed, not
  converted. A frame that fails to decode part-way is skipped and counted, and
  reading goes on; failures at the very end are the end of the stream.
* ``webcam:N`` opens camera N; frames are sampled by the clock, ``time_s`` is
  seconds since the first frame, and the stream runs until ``duration_s``,
  Ctrl-C or the camera stops.

Problems with the input raise :class:`~mre_jax.errors.AnalysisError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from typing import Any, Callable, Iterator

import cv2
import numpy as np
from PIL import Image
from PIL import ImageOps

from mre_jax.errors import AnalysisError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff",
                  ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
_WEBCAM = re.compile(r"webcam:(\d+)$")
_MAX_FAILED_READS = 25  # Consecutive failures that end a video or camera.
_DEFAULT_FPS = 30.0

Warn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Frame:
  """One analysed frame: RGB pixels and where they come from."""
  source: str  # The file's name (relative to the input folder), or camera.
  index: int  # Frame number in the video; 0 for images.
  time_s: float
  image: np.ndarray  # uint8 (H, W, 3) RGB.


@dataclasses.dataclass
class SourceStats:
  """What a source read: frames seen, and what it skipped."""
  frames_total: int = 0  # Decoded or failed: the frames that were there.
  unreadable: int = 0  # Frames or image files that failed to decode.
  not_images: int = 0  # Files in a folder that are not images.


class FrameSource:
  """Base of the sources: a kind, a name, counts and a frame iterator."""
  kind = ""
  live = False  # Frames arrive in real time (a camera).
  stop_reason = "end"  # Or "duration" when duration_s ended the stream.

  def __init__(self, name: str):
    self.name = name
    self.stats = SourceStats()
    self.fps: float | None = None
    self.expected: int | None = None  # Frames to analyse, for progress.

  def frames(self) -> Iterator[Frame]:
    raise NotImplementedError

  def seconds_per_frame(self) -> float:
    """The time each analysed frame stands for (0 for still images)."""
    return 0.0

  def describe(self) -> dict[str, Any]:
    return {"kind": self.kind, "input": self.name}


def read_image(path: str) -> np.ndarray:
  """uint8 RGB pixels of an image file; AnalysisError if unreadable."""
  try:
    with Image.open(path) as image:
      image = ImageOps.exif_transpose(image)
      return np.asarray(image.convert("RGB"), dtype=np.uint8)
  except FileNotFoundError:
    raise AnalysisError(f"{path} does not exist") from None
  except Exception as e:  # Pillow raises many types for broken files.
    raise AnalysisError(f"cannot read {path} as an image: "
                        f"{type(e).__name__}: {e}") from e


class ImageSource(FrameSource):
  """Still images: one file, or every image below a folder."""
  kind = "images"

  def __init__(self, name: str, paths: list[str], root: str | None,
               warn: Warn):
    super().__init__(name)
    self.paths = paths
    self.root = root
    self.expected = len(paths)
    self._warn = warn

  def frames(self) -> Iterator[Frame]:
    for path in self.paths:
      label = (os.path.relpath(path, self.root) if self.root
               else os.path.basename(path))
      self.stats.frames_total += 1
      try:
        image = read_image(path)
      except AnalysisError as e:
        if self.root is None:
          raise
        self.stats.unreadable += 1
        self._warn(f"skipped {e}")
        continue
      yield Frame(label, 0, 0.0, image)

  def describe(self) -> dict[str, Any]:
    return {**super().describe(), "images": len(self.paths)}


def _tick_frame(tick: int, fps: float, sample_fps: float) -> int:
  """The first frame index at or after sampling instant ``tick``."""
  return int(math.ceil(tick * fps / sample_fps - 1e-6))


class VideoSource(FrameSource):
  """A video file read with OpenCV, sampled at ``sample_fps``."""
  kind = "video"

  def __init__(self, path: str, sample_fps: float,
               duration_s: float | None, warn: Warn):
    super().__init__(path)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
      raise AnalysisError(
          f"cannot read {path} as a video: OpenCV (FFmpeg) cannot open it. "
          "Is it a complete video file (mp4, avi, mov, mkv, webm)?")
    self._capture = capture
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not 0 < fps < 1000:
      warn(f"{path} does not say its frame rate; assuming "
           f"{_DEFAULT_FPS:g} frames per second")
      fps = _DEFAULT_FPS
    self.fps = float(fps)
    self.frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    self.sample_fps = (self.fps if not sample_fps or sample_fps >= self.fps
                       else float(sample_fps))
    self.duration_s = duration_s
    last = self.frame_count
    if duration_s is not None and self.frame_count:
      last = min(last, int(math.ceil(duration_s * self.fps)))
    self.expected = (int(math.ceil(last * self.sample_fps / self.fps))
                     if last else None)

  def seconds_per_frame(self) -> float:
    return 1.0 / self.sample_fps

  def length_s(self) -> float | None:
    """The video's length by its header (None: it does not say)."""
    return self.frame_count / self.fps if self.frame_count else None

  def frames(self) -> Iterator[Frame]:
    capture, fps = self._capture, self.fps
    label = os.path.basename(self.name)
    index, tick, failed, decoded = 0, 0, 0, 0
    try:
      while True:
        if self.duration_s is not None and index / fps >= self.duration_s:
          self.stop_reason = "duration"
          break
        wanted = index >= _tick_frame(tick, fps, self.sample_fps)
        ok = capture.grab()
        if ok and wanted:
          ok, bgr = capture.retrieve()
          ok = ok and bgr is not None and bgr.size > 0
        if not ok:
          failed += 1
          if failed >= _MAX_FAILED_READS or (
              self.frame_count and index + 1 >= self.frame_count):
            break
          index += 1
          continue
        self.stats.unreadable += failed  # Failures followed by a good frame.
        failed = 0
        decoded += 1
        self.stats.frames_total = index + 1
        if wanted:
          tick = int(math.floor(index * self.sample_fps / fps + 1e-6)) + 1
          yield Frame(label, index, index / fps,
                      cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    finally:
      capture.release()
    if not decoded:
      raise AnalysisError(f"no frame of {self.name} could be decoded: the "
                          "file is damaged or not a video")

  def describe(self) -> dict[str, Any]:
    return {**super().describe(), "fps": self.fps,
            "frame_count": self.frame_count,
            "width": self.width, "height": self.height,
            "duration_s": round(self.frame_count / self.fps, 3),
            "sample_fps": self.sample_fps}


def _open_camera(index: int) -> cv2.VideoCapture:
  return cv2.VideoCapture(index)


class CameraSource(FrameSource):
  """A live camera, sampled by the clock at ``sample_fps``."""
  kind = "webcam"
  live = True

  def __init__(self, name: str, index: int, sample_fps: float,
               duration_s: float | None, warn: Warn):
    super().__init__(name)
    capture = _open_camera(index)
    if not capture.isOpened():
      capture.release()
      raise AnalysisError(
          f"there is no camera {index} ({name}), or it is in use: try "
          "webcam:0, close other programs that use the camera, or check the "
          "operating system's camera permission")
    self._capture = capture
    self.sample_fps = float(sample_fps) if sample_fps and sample_fps > 0 else 0
    self.duration_s = duration_s
    self._warn = warn
    fps = capture.get(cv2.CAP_PROP_FPS)
    self.fps = float(fps) if 0 < fps < 1000 else None

  def seconds_per_frame(self) -> float:
    rate = self.sample_fps or self.fps or _DEFAULT_FPS
    return 1.0 / rate

  def frames(self) -> Iterator[Frame]:
    capture = self._capture
    start, last, index, failed = None, None, 0, 0
    try:
      while True:
        ok, bgr = capture.read()
        now = time.monotonic()
        if not ok or bgr is None:
          failed += 1
          if failed >= _MAX_FAILED_READS:
            self._warn(f"{self.name} stopped delivering frames")
            break
          continue
        failed = 0
        start = now if start is None else start
        elapsed = now - start
        if self.duration_s is not None and elapsed >= self.duration_s:
          self.stop_reason = "duration"
          break
        self.stats.frames_total += 1
        if (last is None or not self.sample_fps
            or elapsed - last >= 1.0 / self.sample_fps - 1e-3):
          last = elapsed
          yield Frame(self.name, index, elapsed,
                      cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    finally:
      capture.release()


def _has_suffix(path: str, suffixes: tuple[str, ...]) -> bool:
  return path.lower().endswith(suffixes)


def _folder_images(folder: str, warn: Warn) -> tuple[list[str], int]:
  """Image files below ``folder`` in name order, and the others' count."""
  images, others = [], []
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    for filename in sorted(filenames):
      if filename.startswith("."):
        continue
      path = os.path.join(dirpath, filename)
      (images if _has_suffix(filename, IMAGE_SUFFIXES) else others).append(
          path)
  shown = ", ".join(os.path.relpath(p, folder) for p in others[:3])
  shown += f" and {len(others) - 3} more" if len(others) > 3 else ""
  videos = any(_has_suffix(p, VIDEO_SUFFIXES) for p in others)
  hint = "; analyse a video on its own with --input=VIDEO" if videos else ""
  if not images:
    holds = f" (only {shown})" if others else ""
    raise AnalysisError(
        f"{folder} holds no images{holds}; looked for "
        f"{', '.join(IMAGE_SUFFIXES)} in it and its subfolders{hint}")
  if others:
    warn(f"skipped {len(others)} file(s) in {folder} that are not images: "
         f"{shown}{hint}")
  return images, len(others)


def _is_video_file(path: str) -> bool:
  capture = cv2.VideoCapture(path)
  try:
    return capture.isOpened()
  finally:
    capture.release()


def open_source(spec: str, *, sample_fps: float = 5.0,
                duration_s: float | None = None,
                warn: Warn = print) -> FrameSource:
  """The frame source ``--input`` names; AnalysisError if it is unusable."""
  camera = _WEBCAM.match(spec.strip())
  if camera:
    return CameraSource(spec.strip(), int(camera.group(1)), sample_fps,
                        duration_s, warn)
  if spec.startswith("webcam"):
    raise AnalysisError(f"bad camera {spec!r}: write webcam:N, e.g. webcam:0")
  path = os.path.abspath(os.path.expanduser(spec))
  if os.path.isdir(path):
    images, others = _folder_images(path, warn)
    source = ImageSource(path, images, path, warn)
    source.stats.not_images = others
    return source
  if not os.path.exists(path):
    raise AnalysisError(f"{spec} does not exist: give an image, a folder of "
                        "images, a video file or webcam:N")
  if not os.path.isfile(path):
    raise AnalysisError(f"{spec} is not a regular file or folder")
  if _has_suffix(path, VIDEO_SUFFIXES):
    return VideoSource(path, sample_fps, duration_s, warn)
  try:
    read_image(path)  # An unreadable image is an error, before any work.
    return ImageSource(path, [path], None, warn)
  except AnalysisError:
    if _has_suffix(path, IMAGE_SUFFIXES):
      raise
  if _is_video_file(path):
    return VideoSource(path, sample_fps, duration_s, warn)
  raise AnalysisError(
      f"{spec} is neither an image nor a video that can be read (images: "
      f"{', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)})")
