"""Command line: the emotions of the faces in images, videos or a webcam.

    python -m mre_jax.analyze --input=PATH --output=DIR \\
        [--model=SHIPPED_NAME|WORKDIR|EXPORTED_FILE] \\
        [--sample_fps=5] [--detector=haar|none] \\
        [--smoothing_s=0.5] [--batch_size=64] [--gradcam] \\
        [--device=cpu|gpu] [--duration_s=SECONDS] \\
        [--haar_scale_factor=1.08] [--haar_min_neighbors=2] \\
        [--events=TASKS.csv] [--faces=all|main]

``--input`` is an image, a folder of images, a video (mp4, avi, mov, mkv,
webm) or ``webcam:N``. Files show a progress bar; a camera prints one line
per second with each face's current emotion and runs until Ctrl-C or
``--duration_s``. ``--output`` receives ``emotions.csv`` (one row per face
per analysed frame), ``summary.json``, ``timeline.png`` and ``report.html``
(with ``--gradcam``, also ``gradcam/``), all written at the end, at once.
``--events`` names a CSV of the video's tasks (``label,start_s,end_s`` or
``label,time_s`` markers; :mod:`mre_jax.analysis.events`): the timeline
shades them and the summary and report get a table per task.
``--faces=main`` keeps only the face seen longest, the participant.

Mistakes in the input end with one ``error:`` line and exit status 2, and
nothing is written. Ctrl-C while analysing a file stops with status 130,
also without writing.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging

from mre_jax import cli
from mre_jax.errors import AnalysisError
from mre_jax.errors import UserError
from mre_jax.models import shipped

FLAGS = flags.FLAGS
_FACES_LISTED = 10


class _Progress:
  """A minimal progress line (frames, frames/s, ETA) when tqdm is absent."""

  def __init__(self, total: int | None):
    self.total, self.count = total, 0
    self.start = self.shown = time.monotonic()

  def update(self, n: int) -> None:
    self.count += n
    now = time.monotonic()
    if now - self.shown < 0.5 and self.count != self.total:
      return
    self.shown = now
    rate = self.count / max(now - self.start, 1e-9)
    line = f"{self.count}" + (f"/{self.total}" if self.total else "")
    line += f" frames, {rate:.1f} frames/s"
    if self.total and rate > 0:
      line += f", ETA {_mmss((self.total - self.count) / rate)}"
    print(f"\r{line}   ", end="", file=sys.stderr, flush=True)

  def write(self, text: str) -> None:
    print(f"\n{text}" if self.count else text, file=sys.stderr)

  def close(self) -> None:
    if self.count:
      print(file=sys.stderr)


def progress_bar(total: int | None):
  """A tqdm progress bar on stderr, or a plain line when tqdm is absent."""
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _Progress(total)
  return tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True,
              smoothing=0.1, leave=False)


def _mmss(seconds: float) -> str:
  # Imported when first needed, like the rest of the application.
  from mre_jax.analysis.table import mmss  # pylint: disable=g-import-not-at-top
  return mmss(seconds)


def select_device(device: str | None) -> None:
  """Points JAX at the CPU, or checks that it has a GPU (its default)."""
  if device is None:
    return
  import jax  # pylint: disable=g-import-not-at-top
  if device == "cpu":
    jax.config.update("jax_platforms", "cpu")
    return
  try:
    jax.devices("gpu")
  except RuntimeError as e:
    raise AnalysisError(f"--device=gpu: JAX finds no GPU "
                        f"({str(e).splitlines()[0]}); install JAX's CUDA "
                        "build or use --device=cpu") from None


def check_output(path: str) -> None:
  """Refuses an ``--output`` that is a file or cannot be written."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise AnalysisError(f"--output {path} is a file; give a folder")
  parent = os.path.abspath(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK):
    raise AnalysisError(f"--output {path}: {parent} is not writable")


class _LivePrinter:
  """One line per second of camera time with each face's emotion."""

  def __init__(self):
    self.next_s = 0.0

  def __call__(self, frame, rows) -> None:
    if frame.time_s < self.next_s:
      return
    self.next_s = math.floor(frame.time_s) + 1.0
    faces = "  ".join(f"face {r['face_id']}: {r['emotion']} "
                      f"{r['confidence']:.2f}" for r in rows) or "no face"
    print(f"{_mmss(frame.time_s)}  {faces}", flush=True)


def run(*, model: str | None, input_path: str, output: str,
        settings: dict[str, Any],
        device: str | None = None, events: str | None = None
        ) -> dict[str, Any]:
  """Analyses ``input_path`` with ``model`` into ``output``; the summary.

  ``events``: a CSV of the video's tasks (``--events``).
  """
  # pylint: disable=g-import-not-at-top
  from mre_jax.analysis import analyzer as analyzer_lib
  from mre_jax.analysis import events as events_lib
  from mre_jax.analysis import sources
  analysis_settings = analyzer_lib.Settings(**settings)
  check_output(output)
  tasks = events_lib.read_events(events) if events else None
  analyzer_lib.drawing_functions()  # Before any work: matplotlib is there.
  bar = None

  def warn(message: str) -> None:
    text = f"warning: {message}"
    if bar is not None:
      bar.write(text)
    else:
      print(text, file=sys.stderr)

  select_device(device)
  analyzer = analyzer_lib.Analyzer.from_model(model, **settings)
  source = sources.open_source(input_path,
                               sample_fps=analysis_settings.sample_fps,
                               duration_s=analysis_settings.duration_s,
                               warn=warn)
  tasks = analyzer.check(source, tasks)  # Before any work.
  if source.live:
    print(f"analysing {input_path}; press Ctrl-C to stop", flush=True)
    result = analyzer.analyze_source(source, on_rows=_LivePrinter())
  else:
    bar = progress_bar(source.expected)
    try:
      result = analyzer.analyze_source(source, progress=bar.update,
                                       events=tasks)
    finally:
      bar.close()
      bar = None
  paths = result.write(output)
  _report(result.summary, output, paths)
  return result.summary


def _report(summary: dict[str, Any], output: str, paths: dict[str, str]
            ) -> None:
  frames = summary["frames"]
  timing = summary["timing"]
  model = summary.get("model") or {}
  if model.get("dataset") and model.get("test_accuracy") is not None:
    print(f"model {model['name']}, trained on {model['dataset']} "
          f"({100 * model['test_accuracy']:.1f}% on its test split)")
  print(f"analysed {frames['analysed']} frames ({frames['with_face']} with a "
        f"face, {frames['unreadable_skipped']} unreadable skipped) in "
        f"{timing['wall_s']:.1f} s, {timing['frames_per_s'] or 0:.1f} "
        "frames/s")
  if not summary["faces"]:
    print("no face was found in any analysed frame")
  faces = list(summary["faces"].items())
  for face_id, face in faces[:_FACES_LISTED]:
    print(f"face {face_id}: mostly {face['dominant_emotion']} "
          f"({face['emotion_share'][face['dominant_emotion']]:.0%} of "
          f"{face['frames']} frames), {len(face['key_moments'])} key "
          "moment(s)")
  if len(faces) > _FACES_LISTED:
    print(f"... and {len(faces) - _FACES_LISTED} more faces (summary.json)")
  kept = summary.get("participant")
  if kept and kept["face_id"] is not None:
    print(f"kept face {kept['face_id']} as the participant (seen longest); "
          f"dropped {kept['other_faces_dropped']} other face(s)")
  for task in summary.get("tasks") or ():
    print(f"task {task['label']}: {task['seconds_with_face']:g} s with a "
          f"face, mostly {task['dominant_emotion'] or '-'}, mean valence "
          + ("-" if task["mean_valence"] is None
             else f"{task['mean_valence']:+.2f}"))
  names = sorted(os.path.basename(p) for p in paths.values())
  print(f"wrote {', '.join(names)} to {os.path.abspath(output)}")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: every argument is a "
          "flag such as --input=PATH; see --helpshort")
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_flags()
  try:
    run(model=FLAGS.model, input_path=FLAGS.input, output=FLAGS.output,
        settings=settings, device=FLAGS.device, events=FLAGS.events)
  except UserError as e:
    cli.fail(str(e))
  except KeyboardInterrupt:
    print("interrupted: nothing was written", file=sys.stderr)
    sys.exit(130)


def settings_from_flags() -> dict[str, Any]:
  """The analysis settings the flags give (a one-line error if bad)."""
  from mre_jax.analysis import detection  # pylint: disable=g-import-not-at-top
  try:
    haar = detection.HaarSettings(
        scale_factor=FLAGS.haar_scale_factor,
        min_neighbors=FLAGS.haar_min_neighbors)
  except UserError as e:
    cli.fail(str(e))
  return {"sample_fps": FLAGS.sample_fps, "detector": FLAGS.detector,
          "smoothing_s": FLAGS.smoothing_s, "batch_size": FLAGS.batch_size,
          "gradcam": FLAGS.gradcam, "duration_s": FLAGS.duration_s,
          "haar": haar, "faces": FLAGS.faces}


def define_flags() -> None:
  """The command's flags; defined when it runs, so that importing this
  module (e.g. for :func:`run`) never clashes with other programs' flags."""
  flags.DEFINE_string("input", None, "An image, a folder of images, a video "
                      "file or webcam:N (camera N).")
  flags.DEFINE_string("output", None, "Folder for emotions.csv, summary.json, "
                      "timeline.png and report.html (created if needed).")
  flags.DEFINE_string("events", None, "A CSV of the video's tasks: rows "
                      "label,start_s,end_s, or label,time_s markers each "
                      "starting a task that runs to the next.")
  define_analysis_flags()
  flags.mark_flags_as_required(["input", "output"])


def define_analysis_flags(faces_default: str = "all") -> None:
  """The model's and the analysis settings' flags, shared with
  ``python -m mre_jax.study``."""
  flags.DEFINE_string("model", None, "A shipped model's name (python -m "
                      "mre_jax.pretrained lists them), a training workdir "
                      "(with checkpoints/) or a file written by python -m "
                      "mre_jax.export; default: the shipped "
                      f"{shipped.DEFAULT}.")
  flags.DEFINE_float("sample_fps", 5.0, "Video frames analysed per second of "
                     "video (by frame index); 0: every frame.", lower_bound=0)
  flags.DEFINE_enum("detector", "haar", ["haar", "none"], "haar: find faces "
                    "with OpenCV's Haar cascade and follow them; none: each "
                    "image or frame is one face crop.")
  flags.DEFINE_float("smoothing_s", 0.5, "Time constant in seconds of the "
                     "per-face smoothing of the emotion label; 0: none.",
                     lower_bound=0)
  flags.DEFINE_integer("batch_size", 64, "Face crops per classifier call.",
                       lower_bound=1)
  flags.DEFINE_bool("gradcam", False, "Add Grad-CAM overlays of the key "
                    "moments to the report and to gradcam/.")
  flags.DEFINE_enum("device", None, ["cpu", "gpu"], "Where the model runs; "
                    "default: JAX's default device.")
  flags.DEFINE_float("duration_s", None, "Stop after this many seconds of "
                     "video or of camera time.")
  flags.DEFINE_float("haar_scale_factor", 1.08, "The face detector's scale "
                     "step: smaller finds more faces, more slowly.")
  flags.DEFINE_integer("haar_min_neighbors", 2, "Detections a face needs: "
                       "raise it if a cluttered background gives false faces.",
                       lower_bound=0)
  flags.DEFINE_enum("faces", faces_default, ["all", "main"], "all: every "
                    "face; main: only the face seen longest (the "
                    "participant), the summary saying how many others were "
                    "dropped.")


def entry_point() -> None:
  define_flags()
  app.run(main, flags_parser=cli.parse_or_fail)


if __name__ == "__main__":
  entry_point()
