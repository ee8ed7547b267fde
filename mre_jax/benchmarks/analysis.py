"""Benchmarks the recording analysis on a video of real faces.

    python -m mre_jax.benchmarks.analysis [--model=NAME_WORKDIR_OR_EXPORT] \\
        [--data=../shared/data] [--datasets=raf_db,fer2013] [--faces=60] \\
        [--frames_per_face=8] [--blank_frames=2] [--json=results.json]

Builds a 640x480, 30 frames/s mp4 colour video from test faces of RAF-DB and
FER2013 (its PrivateTest; read from the downloaded archives in ``rafdb/``
and ``fer2013/`` under ``--data``), shared evenly, each pasted at 150-250
pixels into a noisy background and drifting for ``--frames_per_face``
frames, with ``--blank_frames`` empty frames between faces. It then reports:

* detection recall: the share of frames with a face in which the analysis
  found it (a box with IoU >= 0.3 with the pasted face), the rows on blank
  frames and the stray rows (boxes on no face) of frames with a face;
* end-to-end frames per second of the analysis that ``python -m
  mre_jax.analyze`` runs, on every frame (``--sample_fps=0``): decode, detect
  and track, classify, smooth, and write every output; compilation is done
  beforehand, on a short clip, and not counted;
* face crops per second classified in batches of ``--batch_size``;
* with a trained ``--model`` (a shipped model's name too), its accuracy on
  the analysed faces and on the same faces' original crops, per dataset.

Without ``--model`` an untrained student C (same size and speed) is used.
Targets: recall >= 90%, >= 30 frames/s end to end and >= 500 crops/s on a
2-core CPU with student C.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
import time
from typing import Any, Iterator, Sequence

from absl import flags
import numpy as np

# Imported before OpenCV: the package quiets OpenCV's FFmpeg messages.
from mre_jax import analysis  # pylint: disable=unused-import
from mre_jax.models import shipped
import cv2  # pylint: disable=g-bad-import-order,wrong-import-order
from mre_jax.benchmarks import cli
from mre_jax.benchmarks import test_faces
from mre_jax.errors import UserError

FLAGS = flags.FLAGS
FRAME_SIZE = (640, 480)
FPS = 30.0
TARGETS = {"recall": 0.90, "frames_per_s": 30.0, "crops_per_s": 500.0}


@dataclasses.dataclass(frozen=True)
class TestVideo:
  """A composed video: where each frame's face is (None: blank frame)."""
  path: str
  truth: list[tuple[int, int, int, int] | None]  # x, y, w, h per frame.
  face_of_frame: list[int | None]  # Index into the faces, per frame.
  fps: float


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
  """A smooth random colour field, like an out-of-focus room."""
  small = rng.integers(30, 225, (4, 5, 3)).astype(np.uint8)
  return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def compose_frames(faces: Sequence[np.ndarray], rng: np.random.Generator, *,
                   size: tuple[int, int] = FRAME_SIZE,
                   face_px: tuple[int, int] = (150, 250),
                   frames_per_face: int = 8, blank_frames: int = 2,
                   noise: float = 6.0, lead_in: int = 1
                   ) -> Iterator[tuple[np.ndarray, Any, int | None]]:
  """Yields ``(RGB frame, (x, y, w, h) or None, face index or None)``.

  ``lead_in`` blank frames come first, then each face in turn: pasted at a
  random size in ``face_px`` and place, drifting by a pixel or two and
  growing or shrinking by up to 1% per frame, with fresh noise each frame,
  followed by ``blank_frames`` frames of background only.
  """
  width, height = size
  background = _background(rng, size)

  def noisy(image: np.ndarray) -> np.ndarray:
    jitter = rng.normal(0.0, noise, image.shape)
    return np.clip(image + jitter, 0, 255).astype(np.uint8)

  for _ in range(lead_in):
    yield noisy(background), None, None
  for index, face in enumerate(faces):
    face = face if face.ndim == 3 and face.shape[-1] == 3 else np.repeat(
        face.reshape(face.shape[0], face.shape[1], 1), 3, axis=-1)
    background = _background(rng, size)
    side = float(rng.integers(face_px[0], face_px[1] + 1))
    x = float(rng.integers(0, width - int(side * 1.1)))
    y = float(rng.integers(0, height - int(side * 1.1)))
    vx, vy = rng.uniform(-2, 2, 2)
    growth = rng.uniform(-0.01, 0.01)
    for _ in range(frames_per_face):
      s = int(round(side))
      x = min(max(x + vx, 0.0), width - s)
      y = min(max(y + vy, 0.0), height - s)
      frame = background.copy()
      left, top = int(round(x)), int(round(y))
      frame[top:top + s, left:left + s] = cv2.resize(
          face, (s, s), interpolation=cv2.INTER_AREA if s < face.shape[0]
          else cv2.INTER_LINEAR)
      yield noisy(frame), (left, top, s, s), index
      side = min(max(side * (1 + growth), face_px[0] * 0.9),
                 min(width, height) * 0.9)
    for _ in range(blank_frames):
      yield noisy(background), None, None


def detectable_faces(count: int, seed: int = 0) -> np.ndarray:
  """Drawn ``synthetic_faces`` faces (RGB, 48x48) that the Haar cascade
  finds when pasted 110 pixels wide into a 320x240 frame."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.analysis import detection
  from mre_jax.datasets import synthetic_faces
  detector = detection.HaarDetector()
  faces = synthetic_faces.render_faces(
      np.arange(8 * count) % 7, np.random.default_rng(seed))
  kept = []
  for face in faces:
    big = cv2.resize(face[..., 0], (110, 110), interpolation=cv2.INTER_LINEAR)
    frame = np.full((240, 320), 128, np.uint8)
    frame[60:170, 100:210] = big
    if len(detector.detect(frame)) == 1:
      kept.append(np.repeat(face, 3, axis=-1))
    if len(kept) == count:
      return np.stack(kept)
  raise UserError(f"fewer than {count} of {len(faces)} drawn faces were "
                  "found by the face detector; ask for fewer")


def write_video(path: str, frames: Iterator[tuple[np.ndarray, Any, Any]],
                fps: float = FPS) -> TestVideo:
  """Writes composed frames with OpenCV (mp4v for .mp4, MJPG otherwise)."""
  codec = "mp4v" if path.lower().endswith(".mp4") else "MJPG"
  writer, truth, which = None, [], []
  try:
    for frame, box, face in frames:
      if writer is None:
        height, width = frame.shape[:2]
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps,
                                 (width, height))
        if not writer.isOpened():
          raise RuntimeError(f"OpenCV cannot write {path} with {codec}")
      writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
      truth.append(box)
      which.append(face)
  finally:
    if writer is not None:
      writer.release()
  return TestVideo(path, truth, which, fps)


def recall(video: TestVideo, rows: Sequence[dict[str, Any]],
           min_iou: float = 0.3) -> dict[str, Any]:
  """Detection recall and false alarms of an analysis's rows."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.analysis.detection import Box
  by_frame: dict[int, list[dict[str, Any]]] = {}
  for row in rows:
    by_frame.setdefault(int(row["frame"]), []).append(row)
  with_face = found = blank_rows = stray_rows = 0
  matched: dict[int, dict[str, Any]] = {}
  for frame, box in enumerate(video.truth):
    frame_rows = by_frame.get(frame, [])
    if box is None:
      blank_rows += len(frame_rows)
      continue
    with_face += 1
    truth = Box(*box)
    hits = [r for r in frame_rows
            if truth.iou(Box(r["x"], r["y"], r["w"], r["h"])) >= min_iou]
    stray_rows += len(frame_rows) - len(hits)
    if hits:
      found += 1
      matched[frame] = hits[0]
  return {"recall": found / max(with_face, 1), "frames_with_face": with_face,
          "frames_found": found, "rows_on_blank_frames": blank_rows,
          "stray_rows": stray_rows, "matched": matched}


def _untrained_student_c(image_size: int = 64):
  """A student C with random weights: the speed of the real one."""
  # pylint: disable=g-import-not-at-top
  import jax
  from mre_jax import models
  from mre_jax.inference.predictor import Predictor
  from mre_jax.config.labels import CLASS_NAMES
  model = models.get_model("student_c")
  variables = models.init_variables(model, jax.random.PRNGKey(0), image_size)
  return Predictor(model=model, variables=variables, image_size=image_size,
                   class_names=CLASS_NAMES, batch_size=FLAGS.batch_size,
                   channels=3)


def _crops_per_second(analyzer, seconds: float = 5.0) -> float:
  size = int(analyzer.classifier.image_size)
  batch = analyzer.settings.batch_size
  crops = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3),
                                            np.uint8)
  analyzer.classify(crops)  # Compiles.
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    analyzer.classify(crops)
    count += batch
  return count / (time.perf_counter() - start)


def benchmark() -> dict[str, Any]:
  """Runs the measurements; returns them as a JSON-able dict."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.analysis import analyzer as analyzer_lib
  from mre_jax.analysis import classifier as classifier_lib
  settings = analyzer_lib.Settings(sample_fps=0, batch_size=FLAGS.batch_size,
                                   detector="haar")
  if FLAGS.model:
    classifier = classifier_lib.load(FLAGS.model, FLAGS.batch_size)
    info = classifier_lib.describe(
        classifier, None if shipped.is_name(FLAGS.model) else FLAGS.model)
  else:
    classifier = _untrained_student_c()
    info = dict(classifier_lib.describe(classifier, None),
                name="student_c (untrained)")
  analyzer = analyzer_lib.Analyzer(classifier, settings, info)
  faces, labels, datasets = test_faces.test_faces(
      FLAGS.data, tuple(FLAGS.datasets), FLAGS.faces, FLAGS.seed)
  rng = np.random.default_rng(FLAGS.seed)
  load = os.getloadavg()
  with tempfile.TemporaryDirectory() as tmp:
    warm = write_video(os.path.join(tmp, "warm.mp4"), compose_frames(
        faces[:2], rng, frames_per_face=4))
    analyzer.analyze(warm.path).write(os.path.join(tmp, "warm_out"))
    video = write_video(os.path.join(tmp, "faces.mp4"), compose_frames(
        faces, rng, frames_per_face=FLAGS.frames_per_face,
        blank_frames=FLAGS.blank_frames))
    start = time.perf_counter()
    result = analyzer.analyze(video.path)
    result.write(os.path.join(tmp, "out"))
    wall = time.perf_counter() - start
  found = recall(video, result.rows)
  out = {
      "video": {"frames": len(video.truth), "size": list(FRAME_SIZE),
                "faces": FLAGS.faces, "datasets": list(FLAGS.datasets),
                "frames_per_face": FLAGS.frames_per_face,
                "blank_frames": FLAGS.blank_frames},
      "model": {k: info.get(k) for k in ("name", "params", "path", "shipped",
                                         "dataset", "test_accuracy")},
      "detector": result.summary["detector"],
      "recall": round(found["recall"], 4),
      "frames_with_face": found["frames_with_face"],
      "rows_on_blank_frames": found["rows_on_blank_frames"],
      "stray_rows": found["stray_rows"],
      "end_to_end_frames_per_s": round(len(video.truth) / wall, 2),
      "crops_per_s": round(_crops_per_second(analyzer), 1),
      "host": {"cpus": os.cpu_count(), "load_average_before": list(load),
               "load_average_after": list(os.getloadavg())},
  }
  if FLAGS.model:
    out["accuracy"] = _accuracy(analyzer, video, found["matched"], faces,
                                labels, datasets)
  return out


def _accuracy(analyzer, video: TestVideo, matched: dict[int, dict[str, Any]],
              faces: Sequence[np.ndarray], labels: np.ndarray,
              datasets: Sequence[str]) -> dict[str, dict[str, Any]]:
  """The model's accuracy on the analysed faces and on the same faces'
  original crops, per dataset and over all faces."""
  names = analyzer.class_names
  hit = {frame: np.argmax([row[n] for n in names]) ==
         labels[video.face_of_frame[frame]] for frame, row in matched.items()}
  original = analyzer.classify(list(faces)).argmax(-1) == labels
  out = {}
  for dataset in ("all", *sorted(set(datasets))):
    keep = lambda i: dataset in ("all", datasets[i])  # pylint: disable=cell-var-from-loop
    hits = [h for f, h in hit.items() if keep(video.face_of_frame[f])]
    crops = [o for i, o in enumerate(original) if keep(i)]
    out[dataset] = {
        "analysed_faces": round(float(np.mean(hits)), 4) if hits else None,
        "analysed_frames": len(hits),
        "original_crops": round(float(np.mean(crops)), 4),
        "faces": len(crops)}
  return out


def _print(results: dict[str, Any]) -> None:
  load = results["host"]["load_average_before"]
  print(f"model: {results['model']['name']} "
        f"({results['model']['params']:,} parameters)")
  print(f"video: {results['video']['frames']} frames of "
        f"{results['video']['size'][0]}x{results['video']['size'][1]}, "
        f"{results['frames_with_face']} with a face")
  checks = [("recall", results["recall"], "{:.1%}"),
            ("frames_per_s", results["end_to_end_frames_per_s"], "{:.1f}"),
            ("crops_per_s", results["crops_per_s"], "{:.0f}")]
  for name, value, fmt in checks:
    verdict = "ok" if value >= TARGETS[name] else "below target"
    print(f"{name:14s} {fmt.format(value):>8s}  (target "
          f"{fmt.format(TARGETS[name])}: {verdict})")
  print(f"rows on blank frames: {results['rows_on_blank_frames']}, stray "
        f"rows: {results['stray_rows']}")
  for dataset, acc in results.get("accuracy", {}).items():
    print(f"accuracy on {dataset} faces ({acc['faces']}): analysed "
          f"{acc['analysed_faces']} over {acc['analysed_frames']} frames, "
          f"original crops {acc['original_crops']}")
  print(f"host: {results['host']['cpus']} CPUs, load average "
        f"{load[0]:.2f} before, "
        f"{results['host']['load_average_after'][0]:.2f} after")


def _main() -> None:
  data = pathlib.Path(FLAGS.data)
  folders = {"raf_db": "rafdb", "fer2013": "fer2013"}
  for dataset in FLAGS.datasets:
    if dataset not in folders:
      cli.fail(f"--datasets: unknown {dataset!r}; expected some of "
               f"{', '.join(test_faces.DATASETS)}")
    if not (data / folders[dataset]).is_dir():
      cli.fail(f"no {folders[dataset]}/ folder in {data}: give --data=DIR "
               f"holding {folders[dataset]}/ with the downloaded archive")
  results = benchmark()
  _print(results)
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


def _define_flags() -> None:
  default_data = os.environ.get(
      "MRE_JAX_DATA",
      str(pathlib.Path(__file__).resolve().parents[2].parent / "shared"
          / "data"))
  flags.DEFINE_string("model", None, "A shipped model's name, a workdir or "
                      "an exported file; default: an untrained student C.")
  flags.DEFINE_string("data", default_data, "Folder holding rafdb/ and "
                      "fer2013/.")
  flags.DEFINE_list("datasets", list(test_faces.DATASETS), "Whose test faces "
                    "the video shows, shared evenly.")
  flags.DEFINE_integer("faces", 60, "Test faces in the video.",
                       lower_bound=1)
  flags.DEFINE_integer("frames_per_face", 8, "Frames each face stays.",
                       lower_bound=1)
  flags.DEFINE_integer("blank_frames", 2, "Empty frames after each face.",
                       lower_bound=0)
  flags.DEFINE_integer("batch_size", 64, "Face crops per classifier call.",
                       lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Seed of the faces and the video.")
  flags.DEFINE_string("json", None, "Also write the results to this file.")


if __name__ == "__main__":
  cli.run(_main, _define_flags)
