"""report.html: one self-contained page summarising an emotion analysis.

Written for readers who know nothing of the model: what was analysed, what
the numbers mean, the timeline, a table per face, the key moments as face
thumbnails (with the Grad-CAM picture of what the model looked at) and the
settings; with an events file, a table per task and each task's key
moments. Images are embedded as base64 ``data:`` URIs and the CSS is inline,
so the single file can be mailed or archived and opens offline; there is no
script. Every string taken from the data (file names included) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime
import math
import os
from typing import Any, Iterable, Mapping, Sequence

from mre_jax.analysis import report_tasks
from mre_jax.analysis import report_text
from mre_jax.analysis import timeline as timeline_lib
from mre_jax.analysis.html_parts import bar_cell
from mre_jax.analysis.html_parts import e
from mre_jax.analysis.html_parts import fraction
from mre_jax.analysis.html_parts import moment_card
from mre_jax.analysis.html_parts import num
from mre_jax.analysis.html_parts import percentages
from mre_jax.analysis.html_parts import swatch
from mre_jax.analysis.html_parts import text
from mre_jax.analysis.html_parts import valence_cell
from mre_jax.config.labels import CLASS_NAMES

_GROUPED = {"frames_total": ("frames", "total"),
            "frames_analysed": ("frames", "analysed"),
            "frames_with_face": ("frames", "with_face"),
            "frames_unreadable": ("frames", "unreadable_skipped"),
            "wall_s": ("timing", "wall_s"),
            "frames_per_second": ("timing", "frames_per_s")}
_SHOWN = {"input", "faces", "model", "detector", "settings", "frames",
          "timing", "created", "date", "faces_found", "note", "tasks",
          "participant", *_GROUPED}
_SETTING_NAMES = {
    "sample_fps": "Sampling (frames analysed per second of video; 0: all)",
    "smoothing_s": "Smoothing window (seconds)",
    "moments_per_face": "Key moments kept per face",
    "merge_gap_s": "Gap joining two episodes of one emotion (seconds)",
    "duration_s": "Length analysed (seconds; not set: all)",
    "gradcam": "Grad-CAM pictures", "batch_size": "Faces per model call"}


def _field(summary: Mapping[str, Any], key: str) -> Any:
  """A top-level field of the summary, or where grouped summaries keep it.

  summary.json holds frame counts and timing at the top level
  (``frames_total``, ``wall_s``...) or grouped (``frames: {total, ...}``,
  ``timing: {wall_s, frames_per_s}``); both are read.
  """
  if summary.get(key) is not None:
    return summary[key]
  group, name = _GROUPED[key]
  values = summary.get(group)
  return values.get(name) if isinstance(values, Mapping) else None


def _input_name(source: Any) -> str:
  """The input as named by the user: a path, a folder, a camera."""
  if isinstance(source, Mapping):
    source = next((source[k] for k in ("input", "path", "source", "name")
                   if source.get(k)), "")
  if isinstance(source, (list, tuple)):
    return ", ".join(str(s) for s in source)
  return str(source)


def _input_details(source: Any) -> str:
  """A few words on the input's kind and length, escaped."""
  if not isinstance(source, Mapping):
    return ""
  words = [str(source["kind"])] if source.get("kind") else []
  if fraction(source.get("duration_s")) > 0:
    words.append(timeline_lib.mmss(source["duration_s"]) + " long")
  if source.get("images") is not None:
    words.append(f"{num(source['images'], 0)} images")
  return f" ({e(', '.join(words))})" if words else ""


def _class_names(faces: Mapping[str, Any]) -> list[str]:
  """The seven emotions in model order, then any other names in the data."""
  names = list(CLASS_NAMES)
  for face in faces.values():
    for key in ("share_of_time", "emotion_share", "mean_probabilities"):
      for name in (face.get(key) or {}):
        if name not in names:
          names.append(name)
  return names


def _faces_section(faces: Mapping[str, Any], names: Sequence[str],
                   palette: Mapping[str, str]) -> str:
  if not faces:
    return ('<p class="note">No face was found in the analysed frames, so '
            "there is nothing to summarise. Faces that are small, turned "
            "away, dark or partly hidden may be missed; the detector used is "
            "listed under Settings.</p>")
  header = "".join(f"<th>{swatch(n, palette)}</th>" for n in names)
  rows, means = [], []
  for face_id in sorted(faces, key=timeline_lib.face_order):
    face = faces[face_id] or {}
    seconds = face.get("seconds_seen")
    dominant = str(face.get("dominant_emotion", ""))
    seen = (f"{num(seconds)} s ({timeline_lib.mmss(seconds)})"
            if math.isfinite(fraction(seconds)) else "-")
    shares = percentages(face.get("share_of_time")
                         or face.get("emotion_share"))
    cells = "".join(bar_cell(shares.get(n, float("nan")), palette[n],
                             n == dominant) for n in names)
    rows.append(f'<tr class="face"><td>Face {e(face_id)}</td>'
                f'<td class="num">{seen}</td>'
                f"<td>{swatch(dominant, palette)}</td>"
                f"{valence_cell(face.get('mean_valence'))}{cells}</tr>")
    probs = percentages(face.get("mean_probabilities"))
    cells = "".join(bar_cell(probs.get(n, float("nan")), palette[n], False)
                    for n in names)
    means.append(f"<tr><td>Face {e(face_id)}</td>{cells}</tr>")
  return (
      "<p>Share of the time each face was seen during which each emotion was "
      "the (smoothed) label. The dominant emotion is the one with the "
      "largest share.</p>"
      f"<table><tr><th>Face</th><th>Seen for</th><th>Dominant emotion</th>"
      f"<th>Mean valence</th>{header}</tr>{''.join(rows)}</table>"
      "<details><summary>Average probabilities per face</summary>"
      "<p class=\"small\">The model's probability for each emotion, averaged "
      "over every frame in which the face was seen.</p>"
      f"<table><tr><th>Face</th>{header}</tr>{''.join(means)}</table>"
      "</details>")


def _moments_section(moments: Sequence[Mapping[str, Any]],
                     palette: Mapping[str, str]) -> str:
  if not moments:
    return "<p>No key moments to show.</p>"
  ordered = sorted(moments, key=lambda m: (
      timeline_lib.face_order(m.get("face_id", "")),
      fraction(m.get("time_s", 0))))
  cards = "".join(moment_card(m, palette) for m in ordered)
  return ("<p>The frames where each face showed an emotion most clearly, "
          "with the time in the video (mm:ss).</p>"
          f'<div class="cards">{cards}</div>')


def _model_title(model: Mapping[str, Any]) -> str:
  """The model's name, with its dataset and test accuracy when known (a
  shipped model)."""
  title = model.get("name") or "?"
  if model.get("dataset") and model.get("test_accuracy") is not None:
    title += (f" (trained on {model['dataset']}: "
              f"{100 * model['test_accuracy']:.1f}% on its test split)")
  return title


def _settings_rows(summary: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
  """(escaped label, escaped value) rows of the Settings table."""
  model = summary.get("model") or {}
  if isinstance(model, Mapping):
    params = model.get("params")
    yield "Model", (e(model.get("name") or "?")
                    + (f" ({num(params, 0)} parameters)"
                       if params is not None else ""))
    if model.get("checkpoint"):
      yield "Model checkpoint", text(model["checkpoint"])
    rest = {k: v for k, v in model.items()
            if k not in ("name", "params", "checkpoint", "class_names")}
    if rest:
      yield "Model details", text(rest)
  else:
    yield "Model", text(model)
  if summary.get("detector") is not None:
    yield "Face detector", text(summary["detector"])
  settings = summary.get("settings")
  if isinstance(settings, Mapping):
    for key, value in settings.items():
      yield e(_SETTING_NAMES.get(key, key)), text(value)
  elif settings is not None:
    yield "Settings", text(settings)
  labels = {"frames_total": "Frames in the input",
            "frames_analysed": "Frames analysed",
            "frames_with_face": "Frames with a face",
            "frames_unreadable": "Frames that could not be read (skipped)"}
  for key, label in labels.items():
    if _field(summary, key) is not None:
      yield label, num(_field(summary, key), 0)
  if _field(summary, "wall_s") is not None:
    yield "Processing time", f"{num(_field(summary, 'wall_s'))} s"
  if _field(summary, "frames_per_second") is not None:
    yield "Speed", (f"{num(_field(summary, 'frames_per_second'))} frames "
                    "per second")
  for group in ("frames", "timing"):
    values = summary.get(group)
    for key, value in (values.items() if isinstance(values, Mapping) else ()):
      if (group, key) not in _GROUPED.values():
        yield e(f"{group.capitalize()}: {key.replace('_', ' ')}"), text(
            value)
  if isinstance(summary.get("input"), Mapping):
    yield "Input details", text(summary["input"])
  for key, value in summary.items():
    if key not in _SHOWN:
      yield e(key.replace("_", " ").capitalize()), text(value)


def _timeline_section(timeline_png: Any) -> str:
  data = None
  if isinstance(timeline_png, (bytes, bytearray)):
    data = bytes(timeline_png)
  elif timeline_png and os.path.exists(timeline_png):
    with open(timeline_png, "rb") as f:
      data = f.read()
  if not data:
    return "<p>No timeline picture was made.</p>"
  return ('<img class="timeline" alt="emotion probabilities over time" '
          f'src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def _participant_note(summary: Mapping[str, Any]) -> str:
  """Which face was kept as the participant, and how many were dropped."""
  kept = summary.get("participant")
  if not isinstance(kept, Mapping) or kept.get("face_id") is None:
    return ""
  dropped = int(kept.get("other_faces_dropped") or 0)
  return (f"<br><b>Participant:</b> face {e(kept['face_id'])}, the face seen "
          f"longest; {dropped} other face{'s' if dropped != 1 else ''} "
          "dropped")


def render(summary: Mapping[str, Any], timeline_png: Any,
           moments: Sequence[Mapping[str, Any]],
           task_moments: Sequence[Mapping[str, Any]] = ()) -> str:
  """The report page as a string (see :func:`write_report`)."""
  faces = {str(k): v or {} for k, v in (summary.get("faces") or {}).items()}
  names = _class_names(faces)
  palette = timeline_lib.colours(names)
  date = summary.get("created") or summary.get("date") or (
      datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
  source = summary.get("input", "")
  model = summary.get("model") or {}
  model_name = _model_title(model) if isinstance(model, Mapping) else model
  count = len(faces)
  found = f"{count} face{'s' if count != 1 else ''} found" if count else \
      "no face found"
  analysed = _field(summary, "frames_analysed")
  if analysed is not None:
    found += f" in {num(analysed, 0)} analysed frame" + (
        "s" if analysed != 1 else "")
  settings = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>"
                     for k, v in _settings_rows(summary))
  explanation = report_text.EXPLANATION.format(n=len(names),
                                               names=e(", ".join(names)))
  tasks = summary.get("tasks")
  tasks_html = (f"<h2>Tasks</h2>"
                f"{report_tasks.section(tasks, task_moments, names, palette)}"
                if tasks else "")
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Emotion analysis: {e(os.path.basename(_input_name(source)))}</title>
<style>{report_text.CSS}</style></head><body>
<h1>Emotion analysis</h1>
<p class="meta"><b>Input:</b> {e(_input_name(source))}{_input_details(source)}
<br><b>Date:</b> {e(date)}<br><b>Model:</b> {e(model_name)}<br>
<b>Result:</b> {found}.{_participant_note(summary)}</p>
<h2>How to read this report</h2>{explanation}
<h2>Timeline</h2>{_timeline_section(timeline_png)}
<h2>Faces</h2>{_faces_section(faces, names, palette)}{tasks_html}
<h2>Key moments</h2>{_moments_section(moments, palette)}
<h2>Settings</h2><table>{settings}</table>
</body></html>
"""


def write_report(path: str | os.PathLike, summary: Mapping[str, Any],
                 timeline_png: str | os.PathLike | bytes | None,
                 moments: Sequence[Mapping[str, Any]],
                 task_moments: Sequence[Mapping[str, Any]] = ()) -> None:
  """Writes the report page of an analysis to ``path``, atomically.

  ``summary`` is the summary.json dict, ``timeline_png`` the timeline file
  (or its bytes; None: no picture), ``moments`` the key moments to show, each
  with the summary's key-moment fields plus ``crop`` (uint8 RGB face) and
  ``overlay`` (its uint8 RGB Grad-CAM picture, or None); ``task_moments``
  the same for the tasks' key moments (each with its ``task``).
  """
  if isinstance(timeline_png, os.PathLike):
    timeline_png = os.fspath(timeline_png)
  page = render(summary, timeline_png, moments, task_moments)
  timeline_lib.write_atomically(path, page.encode("utf-8"))
