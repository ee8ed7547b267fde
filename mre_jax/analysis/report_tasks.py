"""The Tasks section of report.html: one row per task of the events file,
then each task's key moments.

A task's row gives when it ran, how long, for how much of it a face was
seen, its mean valence, its dominant emotion and the share of the face's
time per emotion; the mean probabilities are folded away below.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mre_jax.analysis.html_parts import bar_cell
from mre_jax.analysis.html_parts import e
from mre_jax.analysis.html_parts import fraction
from mre_jax.analysis.html_parts import moment_card
from mre_jax.analysis.html_parts import num
from mre_jax.analysis.html_parts import percentages
from mre_jax.analysis.html_parts import swatch
from mre_jax.analysis.html_parts import valence_cell
from mre_jax.analysis.table import mmss


def _span(task: Mapping[str, Any]) -> str:
  end = task.get("end_s")
  return (f"{mmss(fraction(task.get('start_s')))}&ndash;"
          f"{mmss(fraction(end)) if end is not None else 'end'}")


def _share_cells(values: Any, names: Sequence[str],
                 palette: Mapping[str, str], top: str | None) -> str:
  shares = percentages(values or {})
  return "".join(bar_cell(shares.get(n, float("nan")), palette[n], n == top)
                 for n in names)


def _row(task: Mapping[str, Any], names: Sequence[str],
         palette: Mapping[str, str]) -> str:
  dominant = task.get("dominant_emotion")
  duration = task.get("duration_s")
  length = "-" if duration is None else f"{num(duration)} s"
  return (f'<tr class="task"><td>{e(task.get("label", ""))}</td>'
          f'<td>{_span(task)}</td><td class="num">{length}</td>'
          f'<td class="num">{num(task.get("seconds_with_face"))} s</td>'
          f"{valence_cell(task.get('mean_valence'))}"
          f"<td>{swatch(dominant, palette) if dominant else '-'}</td>"
          f"{_share_cells(task.get('emotion_share'), names, palette, dominant)}"
          "</tr>")


def _moments(task: Mapping[str, Any], moments: Sequence[Mapping[str, Any]],
             palette: Mapping[str, str]) -> str:
  mine = [m for m in moments if m.get("task") == task.get("label")]
  if not mine:
    return ""
  cards = "".join(moment_card(m, palette) for m in mine)
  return (f"<h4>{e(task.get('label', ''))}</h4>"
          f'<div class="cards">{cards}</div>')


def section(tasks: Sequence[Mapping[str, Any]],
            moments: Sequence[Mapping[str, Any]], names: Sequence[str],
            palette: Mapping[str, str]) -> str:
  """The section's HTML; ``moments`` are the tasks' key moments, with
  their crops."""
  header = "".join(f"<th>{swatch(n, palette)}</th>" for n in names)
  rows = "".join(_row(t, names, palette) for t in tasks)
  means = "".join(
      f"<tr><td>{e(t.get('label', ''))}</td>"
      f"{_share_cells(t.get('mean_probabilities'), names, palette, None)}"
      "</tr>" for t in tasks)
  cards = "".join(_moments(t, moments, palette) for t in tasks)
  return (
      "<p>The tasks of the events file. <i>With a face</i>: the time in the "
      "task during which the face was seen; the shares are of that time. "
      "A task in which no face was seen has no shares.</p>"
      "<table><tr><th>Task</th><th>Time</th><th>Duration</th>"
      "<th>With a face</th><th>Mean valence</th><th>Dominant emotion</th>"
      f"{header}</tr>{rows}</table>"
      "<details><summary>Average probabilities per task</summary>"
      f"<table><tr><th>Task</th>{header}</tr>{means}</table></details>"
      + (f"<h3>Key moments per task</h3>{cards}" if cards else
         "<p>No key moments in the tasks.</p>"))
