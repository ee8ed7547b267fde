"""report.html: one self-contained page summarising an emotion analysis.

Written for readers who know nothing of the model: what was analysed, what
the numbers mean, the timeline, a table per face, the key moments as face
thumbnails (with the Grad-CAM picture of what the model looked at) and the
settings. Images are embedded as base64 ``data:`` URIs and the CSS is inline,
so the single file can be mailed or archived and opens offline; there is no
script. Every string taken from the data (file names included) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from mre_jax.analysis import report_text
from mre_jax.analysis import timeline as timeline_lib
from mre_jax.labels import CLASS_NAMES

THUMB_PX = 160
_GROUPED = {"frames_total": ("frames", "total"),
            "frames_analysed": ("frames", "analysed"),
            "frames_with_face": ("frames", "with_face"),
            "frames_unreadable": ("frames", "unreadable_skipped"),
            "wall_s": ("timing", "wall_s"),
            "frames_per_second": ("timing", "frames_per_s")}
_SHOWN = {"input", "faces", "model", "detector", "settings", "frames",
          "timing", "created", "date", "faces_found", "note", *_GROUPED}
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


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 1) -> str:
  try:
    number = float(value)
  except (TypeError, ValueError):
    return _e(value)
  if not math.isfinite(number):
    return "-"
  if number == int(number) and abs(number) >= 1000:
    return f"{int(number):,}"
  return f"{number:,.{digits}f}"


def _text(value: Any) -> str:
  """A setting as escaped text: dicts as ``key: value``, lists joined."""
  if isinstance(value, Mapping):
    return "; ".join(f"{_e(k)}: {_text(v)}" for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return ", ".join(_text(v) for v in value)
  if isinstance(value, bool):
    return "yes" if value else "no"
  if value is None:
    return "not set"
  if isinstance(value, float):
    return _e(f"{value:g}")
  return _e(value)


def _png_uri(image: Any, max_side: int | None = None) -> str:
  """uint8 (H, W[, C]) array -> ``data:image/png;base64,...``."""
  array = np.asarray(image)
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  picture = Image.fromarray(array.astype(np.uint8))
  if max_side:
    scale = max_side / max(picture.size)
    size = (max(1, round(picture.width * scale)),
            max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.LANCZOS if scale < 1
                             else Image.BICUBIC)
  buffer = io.BytesIO()
  picture.save(buffer, format="PNG", optimize=True)
  return "data:image/png;base64," + base64.b64encode(
      buffer.getvalue()).decode("ascii")


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
  if _fraction(source.get("duration_s")) > 0:
    words.append(timeline_lib.mmss(source["duration_s"]) + " long")
  if source.get("images") is not None:
    words.append(f"{_num(source['images'], 0)} images")
  return f" ({_e(', '.join(words))})" if words else ""


def _class_names(faces: Mapping[str, Any]) -> list[str]:
  """The seven emotions in model order, then any other names in the data."""
  names = list(CLASS_NAMES)
  for face in faces.values():
    for key in ("share_of_time", "emotion_share", "mean_probabilities"):
      for name in (face.get(key) or {}):
        if name not in names:
          names.append(name)
  return names


def _swatch(name: str, palette: Mapping[str, str]) -> str:
  return (f'<span class="swatch" style="background:'
          f'{_e(palette.get(name, "#999"))}"></span>{_e(name)}')


def _fraction(value: Any) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return float("nan")


def _percentages(values: Mapping[str, Any]) -> dict[str, float]:
  """Shares as percentages, accepting fractions (sum ~1) or percentages."""
  numbers = {k: _fraction(v) for k, v in (values or {}).items()}
  finite = [v for v in numbers.values() if math.isfinite(v)]
  scale = 1.0 if finite and sum(finite) > 1.5 else 100.0
  return {k: v * scale for k, v in numbers.items()}


def _bar_cell(percent: float, colour: str, top: bool) -> str:
  if not math.isfinite(percent):
    return '<td class="num">-</td>'
  width = min(max(percent, 0.0), 100.0)
  style = (f"background:linear-gradient(90deg,{colour}55 {width:.1f}%,"
           f"transparent {width:.1f}%)")
  cls = "num top" if top else "num"
  return f'<td class="{cls}" style="{_e(style)}">{percent:.0f}&nbsp;%</td>'


def _faces_section(faces: Mapping[str, Any], names: Sequence[str],
                   palette: Mapping[str, str]) -> str:
  if not faces:
    return ('<p class="note">No face was found in the analysed frames, so '
            "there is nothing to summarise. Faces that are small, turned "
            "away, dark or partly hidden may be missed; the detector used is "
            "listed under Settings.</p>")
  header = "".join(f"<th>{_swatch(n, palette)}</th>" for n in names)
  rows, means = [], []
  for face_id in sorted(faces, key=timeline_lib.face_order):
    face = faces[face_id] or {}
    seconds = face.get("seconds_seen")
    dominant = str(face.get("dominant_emotion", ""))
    seen = (f"{_num(seconds)} s ({timeline_lib.mmss(seconds)})"
            if math.isfinite(_fraction(seconds)) else "-")
    shares = _percentages(face.get("share_of_time")
                          or face.get("emotion_share"))
    cells = "".join(_bar_cell(shares.get(n, float("nan")), palette[n],
                              n == dominant) for n in names)
    rows.append(f'<tr class="face"><td>Face {_e(face_id)}</td>'
                f'<td class="num">{seen}</td>'
                f"<td>{_swatch(dominant, palette)}</td>{cells}</tr>")
    probs = _percentages(face.get("mean_probabilities"))
    cells = "".join(_bar_cell(probs.get(n, float("nan")), palette[n], False)
                    for n in names)
    means.append(f"<tr><td>Face {_e(face_id)}</td>{cells}</tr>")
  return (
      "<p>Share of the time each face was seen during which each emotion was "
      "the (smoothed) label. The dominant emotion is the one with the "
      "largest share.</p>"
      f"<table><tr><th>Face</th><th>Seen for</th><th>Dominant emotion</th>"
      f"{header}</tr>{''.join(rows)}</table>"
      "<details><summary>Average probabilities per face</summary>"
      "<p class=\"small\">The model's probability for each emotion, averaged "
      "over every frame in which the face was seen.</p>"
      f"<table><tr><th>Face</th>{header}</tr>{''.join(means)}</table>"
      "</details>")


def _moment_card(moment: Mapping[str, Any],
                 palette: Mapping[str, str]) -> str:
  emotion = str(moment.get("emotion", ""))
  when = timeline_lib.mmss(_fraction(moment.get("time_s")) or 0)
  confidence = _fraction(moment.get("confidence"))
  sure = (f", confidence {confidence * 100:.0f}&nbsp;%"
          if math.isfinite(confidence) else "")
  face = _e(moment.get("face_id", ""))
  images = []
  if moment.get("crop") is not None:
    images.append(f'<img src="{_png_uri(moment["crop"], THUMB_PX)}" '
                  f'alt="face {face} at {when}">')
  explain = ""
  if moment.get("overlay") is not None:
    images.append(f'<img src="{_png_uri(moment["overlay"], THUMB_PX)}" '
                  f'alt="what made the model answer {_e(emotion)}">')
    explain = ("<div class=\"small\">Right (Grad-CAM): the areas of the face "
               "that pushed the model most towards "
               f"&ldquo;{_e(emotion)}&rdquo; are red and yellow; blue areas "
               "mattered little.</div>")
  start, end = _fraction(moment.get("start_s")), _fraction(moment.get("end_s"))
  where = f"frame {_e(moment.get('frame', '?'))}"
  source = os.path.basename(str(moment.get("source") or ""))
  if source:
    where += f" of {_e(source)}"
  if math.isfinite(start) and math.isfinite(end) and end > start:
    where += (f"; {_e(emotion)} from {timeline_lib.mmss(start)} to "
              f"{timeline_lib.mmss(end)}")
  return (f'<div class="card moment">{"".join(images)}'
          f'<div class="caption"><b>{when}</b> &middot; Face {face} &middot; '
          f"{_swatch(emotion, palette)}{sure}</div>"
          f'<div class="small">{where}</div>{explain}</div>')


def _moments_section(moments: Sequence[Mapping[str, Any]],
                     palette: Mapping[str, str]) -> str:
  if not moments:
    return "<p>No key moments to show.</p>"
  ordered = sorted(moments, key=lambda m: (
      timeline_lib.face_order(m.get("face_id", "")),
      _fraction(m.get("time_s", 0))))
  cards = "".join(_moment_card(m, palette) for m in ordered)
  return ("<p>The frames where each face showed an emotion most clearly, "
          "with the time in the video (mm:ss).</p>"
          f'<div class="cards">{cards}</div>')


def _settings_rows(summary: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
  """(escaped label, escaped value) rows of the Settings table."""
  model = summary.get("model") or {}
  if isinstance(model, Mapping):
    params = model.get("params")
    yield "Model", (_e(model.get("name") or "?")
                    + (f" ({_num(params, 0)} parameters)"
                       if params is not None else ""))
    if model.get("checkpoint"):
      yield "Model checkpoint", _text(model["checkpoint"])
    rest = {k: v for k, v in model.items()
            if k not in ("name", "params", "checkpoint", "class_names")}
    if rest:
      yield "Model details", _text(rest)
  else:
    yield "Model", _text(model)
  if summary.get("detector") is not None:
    yield "Face detector", _text(summary["detector"])
  settings = summary.get("settings")
  if isinstance(settings, Mapping):
    for key, value in settings.items():
      yield _e(_SETTING_NAMES.get(key, key)), _text(value)
  elif settings is not None:
    yield "Settings", _text(settings)
  labels = {"frames_total": "Frames in the input",
            "frames_analysed": "Frames analysed",
            "frames_with_face": "Frames with a face",
            "frames_unreadable": "Frames that could not be read (skipped)"}
  for key, label in labels.items():
    if _field(summary, key) is not None:
      yield label, _num(_field(summary, key), 0)
  if _field(summary, "wall_s") is not None:
    yield "Processing time", f"{_num(_field(summary, 'wall_s'))} s"
  if _field(summary, "frames_per_second") is not None:
    yield "Speed", (f"{_num(_field(summary, 'frames_per_second'))} frames "
                    "per second")
  for group in ("frames", "timing"):
    values = summary.get(group)
    for key, value in (values.items() if isinstance(values, Mapping) else ()):
      if (group, key) not in _GROUPED.values():
        yield _e(f"{group.capitalize()}: {key.replace('_', ' ')}"), _text(
            value)
  if isinstance(summary.get("input"), Mapping):
    yield "Input details", _text(summary["input"])
  for key, value in summary.items():
    if key not in _SHOWN:
      yield _e(key.replace("_", " ").capitalize()), _text(value)


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


def render(summary: Mapping[str, Any], timeline_png: Any,
           moments: Sequence[Mapping[str, Any]]) -> str:
  """The report page as a string (see :func:`write_report`)."""
  faces = {str(k): v or {} for k, v in (summary.get("faces") or {}).items()}
  names = _class_names(faces)
  palette = timeline_lib.colours(names)
  date = summary.get("created") or summary.get("date") or (
      datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
  source = summary.get("input", "")
  model = summary.get("model") or {}
  model_name = (model.get("name") or "?") if isinstance(model, Mapping) \
      else model
  count = len(faces)
  found = f"{count} face{'s' if count != 1 else ''} found" if count else \
      "no face found"
  analysed = _field(summary, "frames_analysed")
  if analysed is not None:
    found += f" in {_num(analysed, 0)} analysed frame" + (
        "s" if analysed != 1 else "")
  settings = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>"
                     for k, v in _settings_rows(summary))
  explanation = report_text.EXPLANATION.format(n=len(names), names=_e(", ".join(names)))
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Emotion analysis: {_e(os.path.basename(_input_name(source)))}</title>
<style>{report_text.CSS}</style></head><body>
<h1>Emotion analysis</h1>
<p class="meta"><b>Input:</b> {_e(_input_name(source))}{_input_details(source)}
<br><b>Date:</b> {_e(date)}<br><b>Model:</b> {_e(model_name)}<br>
<b>Result:</b> {found}.</p>
<h2>How to read this report</h2>{explanation}
<h2>Timeline</h2>{_timeline_section(timeline_png)}
<h2>Faces</h2>{_faces_section(faces, names, palette)}
<h2>Key moments</h2>{_moments_section(moments, palette)}
<h2>Settings</h2><table>{settings}</table>
</body></html>
"""


def write_report(path: str | os.PathLike, summary: Mapping[str, Any],
                 timeline_png: str | os.PathLike | bytes | None,
                 moments: Sequence[Mapping[str, Any]]) -> None:
  """Writes the report page of an analysis to ``path``, atomically.

  ``summary`` is the summary.json dict, ``timeline_png`` the timeline file
  (or its bytes; None: no picture), ``moments`` the key moments to show, each
  with the summary's key-moment fields plus ``crop`` (uint8 RGB face) and
  ``overlay`` (its uint8 RGB Grad-CAM picture, or None).
  """
  if isinstance(timeline_png, os.PathLike):
    timeline_png = os.fspath(timeline_png)
  page = render(summary, timeline_png, moments)
  timeline_lib.write_atomically(path, page.encode("utf-8"))
