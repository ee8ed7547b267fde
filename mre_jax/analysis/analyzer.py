"""The analysis: frames -> faces -> emotions -> table, summary and moments.

    analyzer = Analyzer.from_model("runs/raf/studentC")
    result = analyzer.analyze("test_recording.mp4")
    result.write("out/")   # emotions.csv, summary.json, timeline.png, ...

One pass over the frames of a :mod:`~mre_jax.analysis.sources` source. Faces
are found by the Haar detector and followed by the
:mod:`~mre_jax.analysis.tracking` tracker (``detector="none"``: the whole
frame is the face, id 0). Crops wait in a queue and are classified
``batch_size`` at a time, always padded to the same batch so the classifier
compiles one program; a live camera classifies each frame at once. Rows are
then smoothed per face (:mod:`~mre_jax.analysis.smoothing`), counted
(:mod:`~mre_jax.analysis.summary`) and searched for key moments
(:mod:`~mre_jax.analysis.moments`), in time order.

Still images are analysed one by one: faces are numbered left to right in
each image, with no tracking and no smoothing across images.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np

from mre_jax.analysis import classifier as classifier_lib
from mre_jax.analysis import detection
from mre_jax.analysis import outputs
from mre_jax.analysis import sources as sources_lib
from mre_jax.analysis import table
from mre_jax.analysis import tracking
from mre_jax.analysis.moments import Moment
from mre_jax.analysis.moments import MomentFinder
from mre_jax.analysis.smoothing import Smoother
from mre_jax.analysis.summary import FaceStats
from mre_jax.analysis.summary import build_summary
from mre_jax.errors import AnalysisError

DETECTORS = ("haar", "none")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the analysis does; the defaults suit webcam-style recordings."""
  sample_fps: float = 5.0  # Analysed frames per second of video; 0: all.
  detector: str = "haar"
  smoothing_s: float = 0.5
  batch_size: int = 64
  gradcam: bool = False
  duration_s: float | None = None
  haar: detection.HaarSettings = detection.HaarSettings()
  tracking: tracking.TrackerSettings = tracking.TrackerSettings()
  moments_per_face: int = 3
  merge_gap_s: float = 1.0
  # The crop classified, relative to the detector's box: resized crop_scale
  # times about its centre and moved down by crop_shift of its height. On
  # RAF-DB test faces the cascade's box is about 7% larger than RAF-DB's
  # aligned crop and 4% higher; a RAF-DB student B scored 43% on the boxes
  # as found, 53% with (0.84, 0.04) and 63% on the aligned crops.
  crop_scale: float = 1.0
  crop_shift: float = 0.0

  def __post_init__(self):
    if self.detector not in DETECTORS:
      raise AnalysisError(f"unknown detector {self.detector!r}; expected one "
                          f"of {', '.join(DETECTORS)}")
    if not 0.2 <= self.crop_scale <= 5 or abs(self.crop_shift) > 1:
      raise AnalysisError(f"crop_scale {self.crop_scale} must lie in [0.2, "
                          f"5] and crop_shift {self.crop_shift} in [-1, 1]")
    if not (0 <= self.sample_fps < math.inf and 0 <= self.smoothing_s <
            math.inf and self.batch_size >= 1):
      raise AnalysisError("sample_fps and smoothing_s must be finite numbers "
                          ">= 0 and batch_size >= 1")
    if self.duration_s is not None and not 0 < self.duration_s < math.inf:
      raise AnalysisError("duration_s must be a finite number > 0, got "
                          f"{self.duration_s}")

  def describe(self) -> dict[str, Any]:
    return {"sample_fps": self.sample_fps, "smoothing_s": self.smoothing_s,
            "batch_size": self.batch_size, "gradcam": self.gradcam,
            "duration_s": self.duration_s,
            "moments_per_face": self.moments_per_face,
            "merge_gap_s": self.merge_gap_s, "crop_scale": self.crop_scale,
            "crop_shift": self.crop_shift}


@dataclasses.dataclass
class AnalysisResult:
  """Rows, summary and key moments of one analysis."""
  rows: list[dict[str, Any]]
  summary: dict[str, Any]
  moments: list[Moment]
  class_names: tuple[str, ...]
  gradcam: bool = False

  def to_csv(self, path: str | None = None) -> str | None:
    """The CSV text, or writes it to ``path``."""
    if path is None:
      return table.to_csv(self.rows, self.class_names)
    with open(path, "w", newline="", encoding="utf-8") as f:
      table.to_csv(self.rows, self.class_names, f)
    return None

  def write(self, output_dir: str) -> dict[str, str]:
    """Writes every output into ``output_dir`` (atomically); their paths."""
    return outputs.write_all(
        output_dir, rows=self.rows, class_names=self.class_names,
        summary=self.summary, moments=self.moments, with_gradcam=self.gradcam,
        **drawing_functions())


def drawing_functions() -> dict[str, Callable[..., Any]]:
  """The writers of timeline.png and report.html; they need matplotlib,
  which comes with the ``app`` extra."""
  try:
    # pylint: disable-next=g-import-not-at-top
    from mre_jax.analysis import report_html, timeline
  except ModuleNotFoundError as e:
    raise AnalysisError(
        f"{e.name} is needed to draw timeline.png and report.html: install "
        "the application's extra, pip install -e '.[app]'") from e
  return {"timeline": timeline.write_timeline,
          "report": report_html.write_report}


@dataclasses.dataclass
class _Pending:
  """A frame whose faces wait for the classifier."""
  frame: sources_lib.Frame
  faces: list[tuple[int, detection.Box]]
  crops: np.ndarray  # uint8 (F, S, S, C), one per face.


def _check_something_was_read(source: sources_lib.FrameSource) -> None:
  """Refuses a run in which every image or frame failed to decode, before
  any output is written."""
  stats = source.stats
  if stats.frames_total and stats.unreadable == stats.frames_total:
    what = "images" if source.kind == "images" else "frames"
    raise AnalysisError(
        f"could not read any of the {stats.frames_total} {what} of "
        f"{source.name} (each is named in a warning above); nothing was "
        "written. Give images Pillow can read or a video OpenCV can decode.")


class Analyzer:
  """Analyses images, videos and cameras with one classifier."""

  def __init__(self, classifier: Any, settings: Settings = Settings(),
               model_info: dict[str, Any] | None = None):
    self.classifier = classifier
    self.settings = settings
    self.class_names = tuple(classifier.class_names)
    self.model_info = model_info or classifier_lib.describe(classifier, None)
    self.detector = (detection.HaarDetector(settings.haar)
                     if settings.detector == "haar" else None)

  @classmethod
  def from_model(cls, path: str, **settings: Any) -> Analyzer:
    """The analyzer of a workdir or exported file; ``settings``: Settings."""
    settings = Settings(**settings)
    classifier = classifier_lib.load(path, batch_size=settings.batch_size)
    return cls(classifier, settings, classifier_lib.describe(classifier, path))

  def classify(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """float32 (N, K) raw probabilities of crops, in order.

    The classifier groups them by size and pads each batch to a power of
    two (:func:`mre_jax.inference.images.padded_batches`).
    """
    if not len(crops):
      return np.zeros((0, len(self.class_names)), np.float32)
    return self.classifier.probabilities(list(crops))

  def analyze(self, input_path: str, *,
              progress: Callable[[int], None] | None = None,
              on_rows: Callable[[sources_lib.Frame, list[dict[str, Any]]],
                                None] | None = None,
              warn: Callable[[str], None] | None = None,
              on_open: Callable[[sources_lib.FrameSource], None] | None = None
              ) -> AnalysisResult:
    """Analyses an image, a folder of images, a video or ``webcam:N``.

    ``progress(n)`` is called after each analysed frame, ``on_rows(frame,
    rows)`` with each frame's rows in order, ``warn(message)`` for skipped
    input, and ``on_open(source)`` once the input is open.
    """
    warn = warn or logging.warning
    source = sources_lib.open_source(
        input_path, sample_fps=self.settings.sample_fps,
        duration_s=self.settings.duration_s, warn=warn)
    if on_open is not None:
      on_open(source)
    return self.analyze_source(source, progress=progress, on_rows=on_rows)

  def analyze_video(self, path: str, **kwargs: Any) -> AnalysisResult:
    """Analyses one video file (see :meth:`analyze`)."""
    if not path.lower().endswith(sources_lib.VIDEO_SUFFIXES):
      raise AnalysisError(f"{path} is not a video file (expected "
                          f"{', '.join(sources_lib.VIDEO_SUFFIXES)})")
    return self.analyze(path, **kwargs)

  def analyze_images(self, path: str, **kwargs: Any) -> AnalysisResult:
    """Analyses one image or a folder of images (see :meth:`analyze`)."""
    if path.lower().endswith(sources_lib.VIDEO_SUFFIXES):
      raise AnalysisError(f"{path} is a video: use analyze_video")
    return self.analyze(path, **kwargs)

  def analyze_source(self, source: sources_lib.FrameSource, *,
                     progress: Callable[[int], None] | None = None,
                     on_rows: Callable[..., None] | None = None
                     ) -> AnalysisResult:
    """Runs the analysis over an open source."""
    start = time.perf_counter()
    run = _Run(self, source, on_rows)
    stopped = "end"
    tracker = None
    if self.detector is not None and source.kind != "images":
      settings = self.settings.tracking
      if source.live:
        settings = dataclasses.replace(settings, lag=0)
      tracker = tracking.Tracker(self.detector, settings)
    try:
      for frame in source.frames():
        if tracker is not None:
          for done, faces in tracker.push(frame, frame.image):
            run.add(done, faces)
        else:
          run.add(frame, self._faces(frame.image))
        if source.live:
          run.flush()
        if progress is not None:
          progress(1)
      stopped = source.stop_reason
    except KeyboardInterrupt:
      if not source.live:
        raise
      stopped = "interrupted"
    if tracker is not None:
      for done, faces in tracker.finish():
        run.add(done, faces)
    run.flush()
    _check_something_was_read(source)
    moments = run.moments.finish()
    if self.settings.gradcam:
      self._explain(moments)
    wall = time.perf_counter() - start
    stats = source.stats
    frames = {"total": stats.frames_total, "analysed": run.analysed,
              "with_face": run.with_face,
              "unreadable_skipped": stats.unreadable}
    if source.kind == "images":
      frames["not_images_skipped"] = stats.not_images
    detector = (
        {**self.detector.describe(),
         "tracking": tracker.describe() if tracker else None}
        if self.detector else {"name": "none"})
    summary = build_summary(
        source=source.describe(), frames=frames,
        faces=run.stats.faces(moments), model=self.model_info,
        detector=detector, settings=self.settings.describe(), wall_s=wall,
        stopped=stopped)
    return AnalysisResult(run.rows, summary, moments, self.class_names,
                          gradcam=self.settings.gradcam)

  def _faces(self, image: np.ndarray) -> list[tuple[int, detection.Box]]:
    """A still image's faces, numbered left to right."""
    height, width = image.shape[:2]
    if self.detector is None:
      return [(0, detection.Box(0, 0, width, height))]
    reduced = self.detector.reduce(image)
    boxes = [b.scaled(reduced.scale).clipped(width, height)
             for b in self.detector.detect(reduced.grey)]
    boxes = sorted((b for b in boxes if b.w and b.h), key=lambda b: b.x)
    return list(enumerate(boxes))

  def _explain(self, moments: list[Moment]) -> None:
    """Grad-CAM overlays of the key moments' crops, where available."""
    with_crops = [m for m in moments if m.crop is not None]
    if not with_crops:
      return
    from mre_jax.analysis import gradcam  # pylint: disable=g-import-not-at-top
    if not hasattr(self.classifier, "variables"):
      logging.warning("Grad-CAM needs a training workdir's model (an "
                      "exported file has no gradients); no overlays")
      return
    ids = [self.class_names.index(m.emotion) for m in with_crops]
    heatmaps = gradcam.gradcam(self.classifier, [m.crop for m in with_crops],
                               ids)
    for moment, heatmap in zip(with_crops, heatmaps):
      moment.overlay = gradcam.overlay(moment.crop, heatmap)


class _Run:
  """The state of one pass: queued crops, rows, smoothing and statistics."""

  def __init__(self, analyzer: Analyzer, source: sources_lib.FrameSource,
               on_rows: Callable[..., None] | None):
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

  def add(self, frame: sources_lib.Frame,
          faces: list[tuple[int, detection.Box]]) -> None:
    """Queues a frame's faces; classifies when a batch is full."""
    self.analysed += 1
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
    self.moments.add(face_id, frame.source, frame.index, frame.time_s,
                     row["emotion"], row["confidence"], crop)
    return row
