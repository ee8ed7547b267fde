"""timeline.png: each face's emotion probabilities over time.

One panel per face, stacked, sharing the time axis (mm:ss). Each emotion has
a fixed colour (:data:`EMOTION_COLOURS`), in the lines and in the legend, so
panels and reports read alike. Lines show the raw per-frame probabilities; the
band along the top of each panel shows the label kept after smoothing, which
is what the summary counts. A black line shows the valence (right-hand
axis, -1 to 1; :mod:`~mre_jax.analysis.valence`), and the tasks of an events
file are shaded, labelled bands. Breaks where a face was not seen are left
blank rather than bridged. A face seen at a single instant (a photo) gets a bar
chart instead; with no face at all the picture says so.

Drawn with matplotlib's Agg canvas directly, so no display and no global
backend change are needed.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from matplotlib.ticker import MultipleLocator
from PIL import Image

from mre_jax.analysis.table import mmss
from mre_jax.analysis.valence import valences


EMOTION_COLOURS = {
    "angry": "#d62728", "disgust": "#2ca02c", "fear": "#9467bd",
    "happy": "#f2b400", "sad": "#1f77b4", "surprise": "#ff7f0e",
    "neutral": "#7f7f7f",
}
_SPARE_COLOURS = ("#17becf", "#e377c2", "#bcbd22", "#8c564b", "#393b79")
WIDTH_PX = 1000
PANEL_PX = 240
HEADER_PX = 120
BOTTOM_PX = 50
DPI = 100
MAX_PANELS = 6
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_POINTS = 400  # Per face and emotion; longer series are binned.
VALENCE_COLOUR = "#000000"
TASK_COLOURS = ("#dfe8f5", "#f3eadb")  # Alternate tasks' bands.


def colours(class_names: Sequence[str]) -> dict[str, str]:
  """The colour of each class: fixed for the seven emotions, then spares."""
  spare = iter(_SPARE_COLOURS * (1 + len(class_names) // len(_SPARE_COLOURS)))
  return {name: EMOTION_COLOURS.get(name) or next(spare)
          for name in class_names}


def image_size(num_faces: int) -> tuple[int, int]:
  """(width, height) in pixels of the timeline of ``num_faces`` faces."""
  panels = min(max(num_faces, 1), MAX_PANELS)
  return WIDTH_PX, HEADER_PX + PANEL_PX * panels


def face_order(face_id: Any) -> tuple[int, Any]:
  """Sort key of face ids: numbers in numeric order, then names."""
  text = str(face_id)
  return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def faces_of(rows: Sequence[Mapping[str, Any]],
             class_names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
  """Rows grouped by face id (in id order): times, probabilities, labels
  and valences (computed from the probabilities).

  Rows without a face id or with non-finite probabilities (frames where no
  face was found or read) are skipped.
  """
  grouped: dict[Any, list[Mapping[str, Any]]] = {}
  for row in rows:
    face = row.get("face_id")
    if face is None or str(face) == "":
      continue
    try:
      probs = [float(row[name]) for name in class_names]
      time_s = float(row["time_s"])
    except (KeyError, TypeError, ValueError):
      continue
    if not all(math.isfinite(p) for p in probs + [time_s]):
      continue
    grouped.setdefault(str(face), []).append(row)
  faces = {}
  for face in sorted(grouped, key=face_order):
    face_rows = sorted(grouped[face], key=lambda r: float(r["time_s"]))
    probs = np.array([[float(r[n]) for n in class_names]
                      for r in face_rows])
    faces[face] = {
        "time": np.array([float(r["time_s"]) for r in face_rows]),
        "probs": probs, "valence": valences(probs, class_names),
        "label": np.array([str(r.get("emotion", "")) for r in face_rows]),
    }
  return faces


def _with_gaps(time: np.ndarray, probs: np.ndarray):
  """Inserts NaN rows where the face was unseen for > 3 sampling steps."""
  steps = np.diff(time)
  positive = steps[steps > 0]
  if not len(positive):
    return time, probs
  gaps = np.nonzero(steps > 3 * np.median(positive))[0]
  nan = np.full((len(gaps), probs.shape[1]), np.nan)
  return (np.insert(time, gaps + 1, time[gaps] + steps[gaps] / 2),
          np.insert(probs, gaps + 1, nan, axis=0))


def _binned(time: np.ndarray, probs: np.ndarray, labels: np.ndarray,
            bins: int):
  """Long series -> means over ``bins`` equal time bins (empty ones dropped).

  Keeps drawing fast and the PNG small: a panel has fewer pixels than a long
  video has frames. Each bin's label is its most frequent one.
  """
  if len(time) <= bins:
    return time, probs, labels
  edges = np.linspace(time[0], time[-1], bins + 1)
  index = np.clip(np.searchsorted(edges, time, side="right") - 1, 0, bins - 1)
  counts = np.bincount(index, minlength=bins)
  sums = np.zeros((bins, probs.shape[1]))
  np.add.at(sums, index, probs)
  keep = counts > 0
  starts = np.searchsorted(index, np.nonzero(keep)[0])
  modes = [_dominant(part) for part in np.split(labels, starts[1:])]
  return ((edges[:-1] + edges[1:])[keep] / 2, sums[keep] / counts[keep, None],
          np.array(modes))


def _label_band(ax, time: np.ndarray, labels: np.ndarray,
                palette: Mapping[str, str]) -> None:
  """The smoothed label as coloured segments along y in [1.05, 1.15]."""
  steps = np.diff(time)
  positive = steps[steps > 0]
  step = float(np.median(positive)) if len(positive) else 1.0
  ends = np.minimum(np.append(time[1:], time[-1] + step), time + 3 * step)
  segments: dict[str, list[tuple[float, float]]] = {}
  start = 0
  for i in range(1, len(time) + 1):
    if i == len(time) or labels[i] != labels[start] or ends[i - 1] < time[i]:
      segments.setdefault(palette.get(labels[start], "white"), []).append(
          (time[start], ends[i - 1] - time[start]))
      start = i
  for colour, spans in segments.items():
    ax.broken_barh(spans, (1.05, 0.1), facecolors=colour, edgecolors="none",
                   zorder=3)


def _dominant(labels: np.ndarray) -> str:
  names, counts = np.unique(labels[labels != ""], return_counts=True)
  return str(names[np.argmax(counts)]) if len(names) else ""


def _task_bands(ax, tasks: Sequence[Mapping[str, Any]], end_s: float) -> None:
  """Each task as a shaded band across the panel, its label at the top."""
  for i, task in enumerate(tasks):
    start = float(task["start_s"])
    end = float(task["end_s"]) if task.get("end_s") is not None else end_s
    ax.axvspan(start, end, color=TASK_COLOURS[i % len(TASK_COLOURS)],
               zorder=0, linewidth=0)
    ax.text(start, 0.83, f" {task['label']}", ha="left", va="top",
            fontsize=8, color="#222222", clip_on=True, zorder=4,
            transform=ax.get_xaxis_transform(),
            bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0,
                  "pad": 1})


def _valence_axis(ax, t: np.ndarray, valence: np.ndarray) -> None:
  """Valence on a right-hand axis whose -1 and 1 face probabilities 0, 1."""
  low, high = ax.get_ylim()
  right = ax.twinx()
  right.set_ylim(2 * low - 1, 2 * high - 1)
  right.set_yticks([-1, 0, 1])
  right.set_ylabel("valence")
  right.axhline(0, color=VALENCE_COLOUR, linewidth=0.6, alpha=0.3,
                linestyle="--")
  right.plot(t, valence, color=VALENCE_COLOUR, linewidth=1.1, alpha=0.85)


def _draw_face(ax, face: str, data: Mapping[str, np.ndarray],
               class_names: Sequence[str], palette: Mapping[str, str],
               tasks: Sequence[Mapping[str, Any]] = ()) -> None:
  time, labels = data["time"], data["label"]
  probs = data["probs"]
  dominant = _dominant(labels)
  if np.ptp(time) == 0:
    mostly = f": {dominant}" if dominant else ""
    mean = probs.mean(axis=0)
    ax.bar(range(len(class_names)), mean,
           color=[palette[n] for n in class_names])
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    frames = f"{len(time)} detections" if len(time) > 1 else "one frame"
    ax.set_title(f"Face {face}{mostly} (at {mmss(time[0])}, {frames})",
                 loc="left", fontsize=11)
    return
  mostly = f": mostly {dominant}" if dominant else ""
  series = np.column_stack([probs, data["valence"]])
  bin_time, bin_series, bin_labels = _binned(time, series, labels,
                                             MAX_POINTS)
  t, p = _with_gaps(bin_time, bin_series)
  marker = "o" if len(time) <= 40 else None
  for k, name in enumerate(class_names):
    ax.plot(t, p[:, k], color=palette[name], linewidth=1.4, marker=marker,
            markersize=3)
  _label_band(ax, bin_time, bin_labels, palette)
  ax.set_ylim(-0.02, 1.17)
  _task_bands(ax, tasks, float(time[-1]))
  _valence_axis(ax, t, p[:, -1])
  ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0, 1.1],
                ["0", "0.25", "0.5", "0.75", "1", "label"])
  ax.set_ylabel("probability")
  ax.grid(axis="y", alpha=0.3)
  ax.set_title(f"Face {face}{mostly} (seen {mmss(time[0])} - "
               f"{mmss(time[-1])}, {len(time)} frames)", loc="left",
               fontsize=11)


def write_timeline(rows: Sequence[Mapping[str, Any]],
                   class_names: Sequence[str], path: str | os.PathLike,
                   tasks: Sequence[Mapping[str, Any]] | None = None) -> None:
  """Draws the per-face probability timeline of ``rows`` into PNG ``path``.

  ``rows`` are the per-frame rows of the analysis (``time_s``, ``face_id``,
  one probability per class name, ``emotion``); ``tasks`` the summary's
  tasks (``label``, ``start_s``, ``end_s``), drawn as bands. At most
  :data:`MAX_PANELS` faces are drawn, those seen in the most frames; the
  title says so when some are left out.
  """
  class_names = list(class_names)
  palette = colours(class_names)
  faces = faces_of(rows, class_names)
  shown = sorted(faces, key=lambda f: -len(faces[f]["time"]))[:MAX_PANELS]
  shown = [f for f in faces if f in shown]
  width, height = image_size(len(shown))
  fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
  fig.subplots_adjust(left=0.08, right=0.93, top=1 - HEADER_PX / height,
                      bottom=BOTTOM_PX / height, hspace=0.6)
  timed = [f for f in shown if np.ptp(faces[f]["time"]) > 0]
  title = "Emotion probabilities" + (" over time" if timed else "")
  if len(faces) > len(shown):
    title += f" (the {len(shown)} most seen of {len(faces)} faces)"
  fig.suptitle(title, fontsize=14, y=1 - 12 / height, va="top")
  if not shown:
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.text(0.5, 0.5, "No face found in the analysed frames", ha="center",
            va="center", fontsize=20, color="#555555",
            transform=ax.transAxes)
  else:
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    sharex = [a for a, f in zip(axes, shown) if f in timed]
    for a in sharex[1:]:
      a.sharex(sharex[0])
    for ax, face in zip(axes, shown):
      _draw_face(ax, face, faces[face], class_names, palette, tasks or ())
    if sharex:
      span = (max(faces[f]["time"][-1] for f in timed)
              - min(faces[f]["time"][0] for f in timed))
      step = next((s for s in _TICK_STEPS if span / s <= 8), span / 8)
      sharex[0].xaxis.set_major_locator(MultipleLocator(step))
    for a in sharex:
      a.xaxis.set_major_formatter(FuncFormatter(lambda x, _: mmss(x)))
    if sharex:
      sharex[-1].set_xlabel("time in the video (mm:ss)")
  handles = [Patch(color=palette[n], label=n) for n in class_names]
  if timed:
    handles.append(Line2D([], [], color=VALENCE_COLOUR, label="valence"))
  fig.legend(handles=handles, loc="upper center", ncol=len(handles),
             frameon=False, fontsize=10, bbox_to_anchor=(0.5, 1 - 40 / height))
  if timed:
    bands = "; shaded: the tasks" if tasks else ""
    fig.text(0.5, 1 - 78 / height, "Lines: each emotion's probability per "
             "analysed frame; black: valence (right axis); band 'label': "
             f"the emotion kept after smoothing{bands}.", ha="center",
             va="top", fontsize=9, color="#444444")
  _save(fig, path)


def png_bytes(fig: Figure) -> bytes:
  """``fig`` as a 256-colour PNG: small, with no visible change."""
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
  buffer = io.BytesIO()
  rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(
      buffer, format="PNG", optimize=True)
  return buffer.getvalue()


def _save(fig: Figure, path: str | os.PathLike) -> None:
  write_atomically(path, png_bytes(fig))


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file and one rename.

  Readers see the old file or the new one, never half of it; the file gets
  the usual permissions (0666 less the umask).
  """
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
