"""HTML pieces shared by report.html and study.html: escaping, numbers,
colour swatches, share bars, embedded PNGs and key-moment cards.

Every string taken from the data is escaped here (:func:`e`); pictures are
embedded as ``data:`` URIs, so the pages stay single, self-contained files.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from typing import Any, Mapping

import numpy as np
from PIL import Image

from mre_jax.analysis.table import mmss

THUMB_PX = 160


def e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 1) -> str:
  try:
    number = float(value)
  except (TypeError, ValueError):
    return e(value)
  if not math.isfinite(number):
    return "-"
  if number == int(number) and abs(number) >= 1000:
    return f"{int(number):,}"
  return f"{number:,.{digits}f}"


def text(value: Any) -> str:
  """A setting as escaped text: dicts as ``key: value``, lists joined."""
  if isinstance(value, Mapping):
    return "; ".join(f"{e(k)}: {text(v)}" for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return ", ".join(text(v) for v in value)
  if isinstance(value, bool):
    return "yes" if value else "no"
  if value is None:
    return "not set"
  if isinstance(value, float):
    return e(f"{value:g}")
  return e(value)


def png_uri(image: Any, max_side: int | None = None) -> str:
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


def swatch(name: str, palette: Mapping[str, str]) -> str:
  return (f'<span class="swatch" style="background:'
          f'{e(palette.get(name, "#999"))}"></span>{e(name)}')


def fraction(value: Any) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return float("nan")


def percentages(values: Mapping[str, Any]) -> dict[str, float]:
  """Shares as percentages, accepting fractions (sum ~1) or percentages."""
  numbers = {k: fraction(v) for k, v in (values or {}).items()}
  finite = [v for v in numbers.values() if math.isfinite(v)]
  scale = 1.0 if finite and sum(finite) > 1.5 else 100.0
  return {k: v * scale for k, v in numbers.items()}


def bar_cell(percent: float, colour: str, top: bool) -> str:
  if not math.isfinite(percent):
    return '<td class="num">-</td>'
  width = min(max(percent, 0.0), 100.0)
  style = (f"background:linear-gradient(90deg,{colour}55 {width:.1f}%,"
           f"transparent {width:.1f}%)")
  cls = "num top" if top else "num"
  return f'<td class="{cls}" style="{e(style)}">{percent:.0f}&nbsp;%</td>'


def valence_cell(value: Any) -> str:
  """A mean valence as a signed number, green above 0 and red below."""
  number = fraction(value)
  if not math.isfinite(number):
    return '<td class="num">-</td>'
  colour = "#1a7f37" if number > 0.05 else "#b42318" if number < -0.05 \
      else "#555"
  return (f'<td class="num valence" style="color:{colour}">'
          f"{number:+.2f}</td>")


def moment_card(moment: Mapping[str, Any],
                 palette: Mapping[str, str]) -> str:
  emotion = str(moment.get("emotion", ""))
  when = mmss(fraction(moment.get("time_s")) or 0)
  confidence = fraction(moment.get("confidence"))
  sure = (f", confidence {confidence * 100:.0f}&nbsp;%"
          if math.isfinite(confidence) else "")
  face = e(moment.get("face_id", ""))
  images = []
  if moment.get("crop") is not None:
    images.append(f'<img src="{png_uri(moment["crop"], THUMB_PX)}" '
                  f'alt="face {face} at {when}">')
  explain = ""
  if moment.get("overlay") is not None:
    images.append(f'<img src="{png_uri(moment["overlay"], THUMB_PX)}" '
                  f'alt="what made the model answer {e(emotion)}">')
    explain = ("<div class=\"small\">Right (Grad-CAM): the areas of the face "
               "that pushed the model most towards "
               f"&ldquo;{e(emotion)}&rdquo; are red and yellow; blue areas "
               "mattered little.</div>")
  start, end = fraction(moment.get("start_s")), fraction(moment.get("end_s"))
  where = f"frame {e(moment.get('frame', '?'))}"
  source = os.path.basename(str(moment.get("source") or ""))
  if source:
    where += f" of {e(source)}"
  if math.isfinite(start) and math.isfinite(end) and end > start:
    where += (f"; {e(emotion)} from {mmss(start)} to "
              f"{mmss(end)}")
  return (f'<div class="card moment">{"".join(images)}'
          f'<div class="caption"><b>{when}</b> &middot; Face {face} &middot; '
          f"{swatch(emotion, palette)}{sure}</div>"
          f'<div class="small">{where}</div>{explain}</div>')
