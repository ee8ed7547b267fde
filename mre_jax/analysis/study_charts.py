"""The charts of study.html, as PNG bytes.

* :func:`valence_chart`: mean valence per task, a bar per participant in
  each task's group, with the mean over participants as a black tick;
* :func:`shares_chart`: one task's share of time per emotion, a stacked
  horizontal bar per participant, in the timeline's emotion colours.

Drawn with matplotlib's Agg canvas, like the timeline, and saved as small
256-colour PNGs.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mre_jax.analysis import timeline

DPI = 100
WIDTH_PX = 960
_PARTICIPANT_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52",
                        "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                        "#ccb974", "#64b5cd")


def participant_colour(index: int) -> str:
  return _PARTICIPANT_COLOURS[index % len(_PARTICIPANT_COLOURS)]


def valence_chart(rows: Sequence[Mapping[str, Any]], tasks: Sequence[str],
                  participants: Sequence[str]) -> bytes:
  """Grouped bars of mean valence: tasks along x, participants within."""
  value = {(r["participant"], r["task"]): r["mean_valence"] for r in rows}
  height = 360
  fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI)
  ax = fig.add_axes((0.09, 0.2, 0.72, 0.68))
  width = 0.8 / max(len(participants), 1)
  for k, participant in enumerate(participants):
    xs, ys = [], []
    for i, task in enumerate(tasks):
      v = value.get((participant, task))
      if v is not None:
        xs.append(i - 0.4 + width * (k + 0.5))
        ys.append(v)
    ax.bar(xs, ys, width=width * 0.9, color=participant_colour(k),
           label=participant)
  for i, task in enumerate(tasks):
    values = [value[(p, task)] for p in participants
              if value.get((p, task)) is not None]
    if values:
      ax.plot([i - 0.42, i + 0.42], [np.mean(values)] * 2, color="black",
              linewidth=2, label="mean" if i == 0 else None)
  ax.axhline(0, color="#444444", linewidth=0.8)
  ax.set_ylim(-1, 1)
  ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
  ax.set_ylabel("mean valence")
  ax.grid(axis="y", alpha=0.3)
  ax.set_title("Mean valence per task (above 0: more positive)", loc="left",
               fontsize=11)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
            fontsize=9)
  return timeline.png_bytes(fig)


def shares_chart(rows: Sequence[Mapping[str, Any]], task: str,
                 participants: Sequence[str],
                 class_names: Sequence[str]) -> bytes:
  """Stacked bars of one task's share of time per emotion, per
  participant (a participant without a face in the task: an empty bar)."""
  shares = {r["participant"]: r.get("shares") for r in rows
            if r["task"] == task}
  shown = [p for p in participants if p in shares]
  palette = timeline.colours(class_names)
  height = 110 + 26 * max(len(shown), 1)
  fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI)
  ax = fig.add_axes((0.12, 42 / height, 0.84, 1 - 100 / height))
  for k, participant in enumerate(shown):
    left = 0.0
    for name in class_names:
      share = (shares[participant] or {}).get(name) or 0.0
      if share > 0:
        ax.barh(k, share * 100, left=left, color=palette[name],
                height=0.75)
        left += share * 100
  ax.set_yticks(range(len(shown)), shown)
  ax.invert_yaxis()
  ax.set_xlim(0, 100)
  ax.set_xlabel("share of the time with a face (%)")
  ax.set_title(f"{task}: share of time per emotion", loc="left",
               fontsize=11)
  fig.legend(handles=[Patch(color=palette[n], label=n) for n in class_names],
             loc="upper center", ncol=len(class_names), frameon=False,
             fontsize=9, bbox_to_anchor=(0.54, 1.0))
  return timeline.png_bytes(fig)
