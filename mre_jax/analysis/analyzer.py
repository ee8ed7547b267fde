"""The analysis: frames -> faces -> emotions -> table, summary and moments.

    analyzer = Analyzer.from_model("runs/raf/studentC")
    result = analyzer.analyze("test_recording.mp4")
    result.write("out/")   # emotions.csv, summary.json, timeline.png, ...

One pass over the frames of a :mod:`~mre_jax.analysis.sources` source. Faces
are found by the Haar detector and followed by the
:mod:`~mre_jax.analysis.tracking` tracker (``detector="none"``: the whole
frame is the face, id 0). Crops wait in a queue
(:mod:`~mre_jax.analysis.frame_pass`) and are classified ``batch_size`` at
a time, always padded to the same batch so the classifier compiles one
program; a live camera classifies each frame at once. Rows are then smoothed
per face (:mod:`~mre_jax.analysis.smoothing`), counted
(:mod:`~mre_jax.analysis.summary`) and searched for key moments
(:mod:`~mre_jax.analysis.moments`), in time order. With an events file the
summary gets a table per task (:mod:`~mre_jax.analysis.tasks`); with
``faces="main"`` only the face seen longest is kept
(:mod:`~mre_jax.analysis.participant`).

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
from mre_jax.analysis import events as events_lib
from mre_jax.analysis import frame_pass
from mre_jax.analysis import outputs
from mre_jax.analysis import participant
from mre_jax.analysis import sources as sources_lib
from mre_jax.analysis import table
from mre_jax.analysis import tasks as tasks_lib
from mre_jax.analysis import tracking
from mre_jax.analysis.moments import Moment
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
  # times about its centre and moved down by crop_shift of its height.
  # None: the model's own framing (a shipped model's card records its
  # training faces', mre_jax.analysis.framing), else the box as found. On
  # RAF-DB test faces the cascade's box is about 7% larger than RAF-DB's
  # aligned crop and 4% higher; a RAF-DB student B scored 43% on the boxes
  # as found, 53% with (0.84, 0.04) and 63% on the aligned crops.
  crop_scale: float | None = None
  crop_shift: float | None = None
  faces: str = "all"  # Or "main": only the face seen longest.

  def __post_init__(self):
    if self.detector not in DETECTORS:
      raise AnalysisError(f"unknown detector {self.detector!r}; expected one "
                          f"of {', '.join(DETECTORS)}")
    if self.faces not in participant.FACES:
      raise AnalysisError(f"unknown faces {self.faces!r}; expected one of "
                          f"{', '.join(participant.FACES)}")
    scale = 1.0 if self.crop_scale is None else self.crop_scale
    shift = 0.0 if self.crop_shift is None else self.crop_shift
    if not 0.2 <= scale <= 5 or abs(shift) > 1:
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
            "crop_shift": self.crop_shift, "faces": self.faces}


@dataclasses.dataclass
class AnalysisResult:
  """Rows, summary and key moments (overall and per task) of one analysis."""
  rows: list[dict[str, Any]]
  summary: dict[str, Any]
  moments: list[Moment]
  class_names: tuple[str, ...]
  gradcam: bool = False
  task_moments: list[Moment] = dataclasses.field(default_factory=list)

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
        task_moments=self.task_moments, **drawing_functions())


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


def with_model_framing(settings: Settings, classifier: Any) -> Settings:
  """``settings`` with an unset crop framing taken from the classifier's
  model card (``preprocessing.crop``), or the detector's box as found."""
  card = getattr(classifier, "card", None) or {}
  crop = card.get("preprocessing", {}).get("crop") or {}
  return dataclasses.replace(
      settings,
      crop_scale=(crop.get("scale", 1.0) if settings.crop_scale is None
                  else settings.crop_scale),
      crop_shift=(crop.get("shift", 0.0) if settings.crop_shift is None
                  else settings.crop_shift))


class Analyzer:
  """Analyses images, videos and cameras with one classifier."""

  def __init__(self, classifier: Any, settings: Settings = Settings(),
               model_info: dict[str, Any] | None = None):
    self.classifier = classifier
    self.settings = with_model_framing(settings, classifier)
    self.class_names = tuple(classifier.class_names)
    self.model_info = model_info or classifier_lib.describe(classifier, None)
    self.detector = (detection.HaarDetector(settings.haar)
                     if settings.detector == "haar" else None)

  @classmethod
  def from_model(cls, path: str | None, **settings: Any) -> Analyzer:
    """The analyzer of a shipped model's name, a workdir or an exported file
    (None: the shipped default); ``settings``: Settings."""
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
              on_open: Callable[[sources_lib.FrameSource], None] | None = None,
              events: events_lib.Events | None = None) -> AnalysisResult:
    """Analyses an image, a folder of images, a video or ``webcam:N``.

    ``progress(n)`` is called after each analysed frame, ``on_rows(frame,
    rows)`` with each frame's rows in order, ``warn(message)`` for skipped
    input, and ``on_open(source)`` once the input is open. ``events``: the
    video's tasks (:func:`mre_jax.analysis.events.read_events`).
    """
    warn = warn or logging.warning
    source = sources_lib.open_source(
        input_path, sample_fps=self.settings.sample_fps,
        duration_s=self.settings.duration_s, warn=warn)
    if on_open is not None:
      on_open(source)
    return self.analyze_source(source, progress=progress, on_rows=on_rows,
                               events=events)

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

  def check(self, source: sources_lib.FrameSource,
            events: events_lib.Events | None) -> events_lib.Events | None:
    """Refuses tasks or ``faces="main"`` where they mean nothing, and tasks
    past the end of the video, before any work; the tasks fitted to it."""
    if self.settings.faces == "main" and source.kind == "images":
      raise AnalysisError(
          f"--faces=main keeps the face seen longest in a video or camera; "
          f"{source.name} is {source.kind}: use --faces=all")
    if events is None:
      return None
    if source.kind != "video":
      raise AnalysisError(f"--events marks tasks in a video file; "
                          f"{source.name} is {source.kind}")
    return events_lib.fit_to_video(events, source.length_s(),
                                   1.0 / source.fps)

  def analyze_source(self, source: sources_lib.FrameSource, *,
                     progress: Callable[[int], None] | None = None,
                     on_rows: Callable[..., None] | None = None,
                     events: events_lib.Events | None = None
                     ) -> AnalysisResult:
    """Runs the analysis over an open source."""
    events = self.check(source, events)
    start = time.perf_counter()
    run = frame_pass.Pass(self, source, on_rows, events.tasks if events else ())
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
    kept = participant.keep(self.settings.faces, run.rows, moments,
                            run.task_moments.finish(), run.stats.faces(moments))
    if self.settings.gradcam:
      self._explain(kept.moments + kept.task_moments)
    wall = time.perf_counter() - start
    stats = source.stats
    frames = {"total": stats.frames_total, "analysed": run.analysed,
              "with_face": (run.with_face if self.settings.faces == "all"
                            else participant.frames_with_face(kept.rows)),
              "unreadable_skipped": stats.unreadable}
    if source.kind == "images":
      frames["not_images_skipped"] = stats.not_images
    detector = (
        {**self.detector.describe(),
         "tracking": tracker.describe() if tracker else None}
        if self.detector else {"name": "none"})
    summary = build_summary(
        source=source.describe(), frames=frames, faces=kept.faces,
        model=self.model_info, detector=detector,
        settings=self.settings.describe(), wall_s=wall, stopped=stopped)
    if self.settings.faces == "main":
      summary["participant"] = {"face_id": kept.main_face,
                                "other_faces_dropped": kept.dropped}
    if events is not None:
      summary["events"] = {"file": events.path, "form": events.form}
      summary["tasks"] = tasks_lib.summarise(
          events.tasks, kept.rows, run.frame_times, self.class_names,
          source.seconds_per_frame(), kept.task_moments)
    return AnalysisResult(kept.rows, summary, kept.moments, self.class_names,
                          gradcam=self.settings.gradcam,
                          task_moments=kept.task_moments)

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
