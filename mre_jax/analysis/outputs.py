"""Writing an analysis's files into ``--output`` all at once.

Everything is first written into a hidden staging folder inside the output
folder (same file system), then each file is moved into place with an atomic
rename. So an error while writing leaves the output folder as it was: no half
written file, and earlier results that this analysis does not replace are
kept. Only the names below are replaced:

* ``emotions.csv``, ``summary.json``, ``timeline.png``, ``report.html``
  (which shows the :data:`REPORT_MOMENTS` strongest key moments; the summary
  lists them all);
* ``gradcam/`` (a key moment's crop with its Grad-CAM overlay, per moment,
  tasks' key moments included), when Grad-CAM ran.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from mre_jax.analysis import table
from mre_jax.analysis.moments import Moment

CSV = "emotions.csv"
SUMMARY = "summary.json"
TIMELINE = "timeline.png"
REPORT = "report.html"
GRADCAM = "gradcam"
REPORT_MOMENTS = 30  # The strongest key moments shown in the report.


def moment_name(moment: Moment) -> str:
  """The PNG name of a key moment, e.g. ``face0_12.40s_happy.png``."""
  stem = os.path.splitext(os.path.basename(moment.source))[0]
  where = f"{moment.time_s:.2f}s" if moment.time_s else stem
  return f"face{moment.face_id}_{where}_{moment.emotion}.png"


def _write_gradcam(folder: str, moments: Sequence[Moment]) -> None:
  os.makedirs(folder)
  for moment in moments:
    if moment.overlay is None or moment.crop is None:
      continue
    crop = moment.crop
    if crop.shape[-1] == 1:
      crop = np.repeat(crop, 3, axis=-1)
    overlay = moment.overlay
    if overlay.shape[:2] != crop.shape[:2]:
      overlay = np.asarray(Image.fromarray(overlay).resize(
          (crop.shape[1], crop.shape[0]), Image.Resampling.BILINEAR))
    side_by_side = np.concatenate([crop, overlay], axis=1)
    Image.fromarray(side_by_side).save(
        os.path.join(folder, moment_name(moment)))


def _with_pixels(moment: Moment) -> dict[str, Any]:
  """A moment's fields with its crop and overlay, as the report takes it."""
  return {**moment.fields(), "crop": moment.crop, "overlay": moment.overlay}


def _report_moments(moments: Sequence[Moment]) -> list[dict[str, Any]]:
  """The strongest :data:`REPORT_MOMENTS` moments, by face and time."""
  shown = sorted(moments, key=lambda m: -m.confidence)[:REPORT_MOMENTS]
  shown = sorted(shown, key=lambda m: (m.face_id, m.source, m.time_s))
  return [_with_pixels(m) for m in shown]


def write_all(output_dir: str, *, rows: Sequence[dict[str, Any]],
              class_names: Sequence[str], summary: dict[str, Any],
              moments: Sequence[Moment], with_gradcam: bool,
              timeline: Callable[..., None] | None,
              report: Callable[..., None] | None,
              task_moments: Sequence[Moment] = ()) -> dict[str, str]:
  """Writes the outputs; returns their final paths by name.

  ``timeline(rows, class_names, path, tasks=...)`` and ``report(path,
  summary, timeline_png, moments, task_moments=...)`` draw the picture and
  the page; either may be None (not installed), and its file is then not
  written.
  """
  output_dir = os.path.abspath(output_dir)
  created = not os.path.isdir(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".analysis-", dir=output_dir)
  written: list[str] = []
  try:
    with open(os.path.join(staging, CSV), "w", newline="",
              encoding="utf-8") as f:
      table.to_csv(rows, class_names, f)
    written.append(CSV)
    with open(os.path.join(staging, SUMMARY), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
      f.write("\n")
    written.append(SUMMARY)
    if timeline is not None:
      timeline(rows, class_names, os.path.join(staging, TIMELINE),
               tasks=summary.get("tasks"))
      written.append(TIMELINE)
    if with_gradcam:
      _write_gradcam(os.path.join(staging, GRADCAM),
                     [*moments, *task_moments])
      written.append(GRADCAM)
    if report is not None:
      report(os.path.join(staging, REPORT), summary,
             os.path.join(staging, TIMELINE) if timeline else None,
             _report_moments(moments),
             task_moments=[_with_pixels(m) for m in task_moments])
      written.append(REPORT)
    _commit(staging, output_dir, written)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    if created and not os.listdir(output_dir):
      os.rmdir(output_dir)
    raise
  shutil.rmtree(staging, ignore_errors=True)
  return {name: os.path.join(output_dir, name) for name in written}


def _commit(staging: str, output_dir: str, names: Sequence[str]) -> None:
  """Moves the staged outputs into place, each with one rename."""
  umask = os.umask(0)
  os.umask(umask)
  for name in names:
    source, target = os.path.join(staging, name), os.path.join(output_dir,
                                                               name)
    if os.path.isdir(source):
      os.chmod(source, 0o777 & ~umask)
      if os.path.lexists(target):
        os.replace(target, os.path.join(staging, f".old-{name}"))
    else:
      os.chmod(source, 0o666 & ~umask)
    os.replace(source, target)
