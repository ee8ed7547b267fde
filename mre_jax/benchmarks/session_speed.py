"""Benchmarks the analysis of long session recordings: time and memory.

    python -m mre_jax.benchmarks.session_speed [--minutes=60] \\
        [--sample_fps=5] [--model=NAME_WORKDIR_OR_EXPORT] [--videos=DIR] \\
        [--breakdown] [--json=results.json]

For each length in ``--minutes`` it generates a 1280x720, 30 frames/s mp4
of a webcam-like session (a drawn face that the face detector finds, about
300 pixels, drifting slowly over a noisy background, its expression changing
every few seconds; kept in
``--videos`` and reused), then analyses it as ``python -m mre_jax.analyze``
does at ``--sample_fps``, in a fresh process, writing every output. It
reports the wall time (the target: at most a tenth of the video's length,
6 minutes for an hour, on 2 CPU cores), the peak resident memory, and the
resident memory at each quarter of the video, which stays flat when memory
does not grow with the recording's length. ``--breakdown`` first times a
pass that only decodes the sampled frames, and times the classifier, so
that the rest is detection, tracking and bookkeeping.

``--model`` takes a shipped model's name, a workdir or an exported file;
without it an untrained student C (the size of the shipped ones) is used.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from absl import flags
import numpy as np

# Imported before OpenCV: the package quiets OpenCV's FFmpeg messages.
from mre_jax import analysis  # pylint: disable=unused-import
import cv2  # pylint: disable=g-bad-import-order,wrong-import-order
from mre_jax.benchmarks import cli
from mre_jax.runtime import host_memory

FLAGS = flags.FLAGS
SIZE = (1280, 720)
FPS = 30.0
FACE_PX = 300
TARGET_FRACTION = 0.1  # Wall time over video length: 6 minutes an hour.


def _faces(count: int, seed: int) -> list[np.ndarray]:
  """Drawn faces that the face detector finds, enlarged to FACE_PX, BGR:
  a participant facing the camera is found in nearly every frame."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.benchmarks import analysis as bench
  return [cv2.cvtColor(cv2.resize(f, (FACE_PX, FACE_PX),
                                  interpolation=cv2.INTER_LINEAR),
                       cv2.COLOR_RGB2BGR)
          for f in bench.detectable_faces(count, seed)]


def write_session(path: str, seconds: float, seed: int = 0) -> None:
  """Writes a webcam-like session video of ``seconds`` (mp4v, 30 fps)."""
  rng = np.random.default_rng(seed)
  width, height = SIZE
  small = rng.integers(40, 215, (4, 6, 3)).astype(np.uint8)
  background = cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC)
  noise = [rng.integers(0, 6, (height, width, 3), np.uint8)
           for _ in range(16)]
  faces = _faces(24, seed)
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
  if not writer.isOpened():
    raise RuntimeError(f"OpenCV cannot write {path}")
  try:
    for i in range(int(round(seconds * FPS))):
      t = i / FPS
      x = int(width / 2 - FACE_PX / 2 + 200 * np.sin(t / 7.0))
      y = int(height / 2 - FACE_PX / 2 + 60 * np.sin(t / 5.0))
      frame = background.copy()
      frame[y:y + FACE_PX, x:x + FACE_PX] = faces[int(t / 4) % len(faces)]
      writer.write(cv2.add(frame, noise[i % len(noise)]))
  finally:
    writer.release()


def _rss_mb() -> float:
  with open("/proc/self/statm", encoding="ascii") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _analyzer():
  # pylint: disable=g-import-not-at-top
  from mre_jax.analysis import analyzer as analyzer_lib
  from mre_jax.analysis import classifier as classifier_lib
  from mre_jax.benchmarks import analysis as bench
  settings = analyzer_lib.Settings(sample_fps=FLAGS.sample_fps,
                                   batch_size=FLAGS.batch_size)
  if FLAGS.model:
    classifier = classifier_lib.load(FLAGS.model, FLAGS.batch_size)
    info = classifier_lib.describe(classifier, FLAGS.model)
  else:
    # pylint: disable-next=protected-access
    classifier = bench._untrained_student_c()
    info = dict(classifier_lib.describe(classifier, None),
                name="student_c (untrained)")
  return analyzer_lib.Analyzer(classifier, settings, info)


class _TimedClassifier:
  """The classifier, with the time spent in it added up."""

  def __init__(self, classifier: Any):
    self._classifier = classifier
    self.seconds = 0.0

  def __getattr__(self, name: str) -> Any:
    return getattr(self._classifier, name)

  def probabilities(self, images):
    start = time.perf_counter()
    try:
      return self._classifier.probabilities(images)
    finally:
      self.seconds += time.perf_counter() - start


def measure(path: str) -> dict[str, Any]:
  """Analyses ``path`` here; the wall time, memory and (optionally) where
  the time went."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.analysis import sources
  host_memory.restore_malloc_defaults()  # As python -m mre_jax.analyze runs.
  analyzer = _analyzer()
  timed = _TimedClassifier(analyzer.classifier)
  analyzer.classifier = timed
  with tempfile.TemporaryDirectory() as tmp:
    warm = os.path.join(tmp, "warm.mp4")
    write_session(warm, 4.0, seed=1)
    analyzer.analyze(warm).write(os.path.join(tmp, "warm_out"))
    out: dict[str, Any] = {}
    if FLAGS.breakdown:
      start = time.perf_counter()
      source = sources.open_source(path, sample_fps=FLAGS.sample_fps)
      for _ in source.frames():
        pass
      out["decode_s"] = round(time.perf_counter() - start, 2)
    timed.seconds = 0.0
    source = sources.open_source(path, sample_fps=FLAGS.sample_fps)
    quarters = [int(source.expected * q / 4) for q in (1, 2, 3)]
    rss, count = [], 0

    def progress(n: int) -> None:
      nonlocal count
      count += n
      if count in quarters:
        rss.append(round(_rss_mb()))

    start = time.perf_counter()
    result = analyzer.analyze_source(source, progress=progress)
    result.write(os.path.join(tmp, "out"))
    wall = time.perf_counter() - start
  rss.append(round(_rss_mb()))
  out.update(
      wall_s=round(wall, 2), frames_analysed=result.summary["frames"][
          "analysed"], frames_with_face=result.summary["frames"]["with_face"],
      classify_s=round(timed.seconds, 2), rss_mb_by_quarter=rss,
      peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                        / 1024))
  return out


def _video(minutes: float) -> str:
  folder = FLAGS.videos or os.path.join(tempfile.gettempdir(),
                                        "mre_jax_session_speed")
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"session_{minutes:g}min_1280x720_30fps.mp4")
  capture = cv2.VideoCapture(path)
  frames = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0
  capture.release()
  if frames != round(minutes * 60 * FPS):
    start = time.perf_counter()
    print(f"writing {path} ...", flush=True)
    write_session(path + ".tmp.mp4", minutes * 60)
    os.replace(path + ".tmp.mp4", path)
    print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)
  return path


def _child(path: str) -> dict[str, Any]:
  """Measures ``path`` in a fresh process, so that its memory is its own."""
  args = [sys.executable, "-m", "mre_jax.benchmarks.session_speed",
          f"--measure={path}", f"--sample_fps={FLAGS.sample_fps}",
          f"--batch_size={FLAGS.batch_size}",
          f"--breakdown={FLAGS.breakdown}"]
  if FLAGS.model:
    args.append(f"--model={FLAGS.model}")
  done = subprocess.run(args, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f"the measurement of {path} failed:\n{done.stderr}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _report(minutes: float, result: dict[str, Any]) -> str:
  target = minutes * 60 * TARGET_FRACTION
  verdict = "ok" if result["wall_s"] <= target else "over target"
  lines = [f"{minutes:g} min of 1280x720 video at {FLAGS.sample_fps:g} "
           f"frames/s: {result['wall_s']:.0f} s ({verdict}: target "
           f"{target:.0f} s), {result['frames_analysed']} frames analysed, "
           f"{result['frames_with_face']} with a face",
           f"  memory: peak {result['peak_rss_mb']} MB; resident at each "
           f"quarter {result['rss_mb_by_quarter']} MB",
           f"  classifier: {result['classify_s']:.0f} s"]
  if "decode_s" in result:
    rest = result["wall_s"] - result["decode_s"] - result["classify_s"]
    lines.append(f"  decoding the sampled frames alone: "
                 f"{result['decode_s']:.0f} s; detection, tracking and the "
                 f"rest: {rest:.0f} s")
  return "\n".join(lines)


def _main() -> None:
  if FLAGS.measure:
    print(json.dumps(measure(FLAGS.measure)))
    return
  try:
    lengths = [float(m) for m in FLAGS.minutes]
  except ValueError:
    cli.fail(f"--minutes={','.join(FLAGS.minutes)}: give numbers of "
             "minutes, e.g. 10,60")
  if not all(0 < m <= 24 * 60 for m in lengths):
    cli.fail("--minutes: each length must lie in (0, 1440]")
  results = {"host": {"cpus": os.cpu_count(),
                      "load_average_before": list(os.getloadavg())},
             "runs": {}}
  for minutes in lengths:
    result = _child(_video(minutes))
    results["runs"][f"{minutes:g}"] = result
    print(_report(minutes, result), flush=True)
  results["host"]["load_average_after"] = list(os.getloadavg())
  print(f"host: {results['host']['cpus']} CPUs, load average "
        f"{results['host']['load_average_before'][0]:.2f} before, "
        f"{results['host']['load_average_after'][0]:.2f} after")
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


def _define_flags() -> None:
  flags.DEFINE_list("minutes", ["60"], "Video lengths to measure, in "
                    "minutes, e.g. 10,60.")
  flags.DEFINE_float("sample_fps", 5.0, "Frames analysed per second of "
                     "video.", lower_bound=0)
  flags.DEFINE_string("model", None, "A shipped model's name, a workdir or "
                      "an exported file; default: an untrained student C.")
  flags.DEFINE_integer("batch_size", 64, "Face crops per classifier call.",
                       lower_bound=1)
  flags.DEFINE_string("videos", None, "Folder for the generated videos "
                      "(reused when there); default: a temporary folder.")
  flags.DEFINE_bool("breakdown", False, "Also time a decode-only pass.")
  flags.DEFINE_string("json", None, "Also write the results to this file.")
  flags.DEFINE_string("measure", None, "(Internal) measure this video here "
                      "and print the result as JSON.")


if __name__ == "__main__":
  cli.run(_main, _define_flags)
