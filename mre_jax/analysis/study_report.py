"""study.html: one self-contained page comparing tasks across participants.

It shows the most negative task of each participant, a chart of mean
valence per task across participants, a chart and a table per task (share
of time per emotion, valence, time with a face), the sessions with links to
their own ``report.html`` (relative links, so the study folder can be moved
or zipped whole) and the sessions that could not be read. Charts are
embedded PNGs and the style sheet is inline; there is no script.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from typing import Any, Mapping, Sequence

from mre_jax.analysis import report_text
from mre_jax.analysis import study_charts
from mre_jax.analysis import study_table
from mre_jax.analysis import timeline
from mre_jax.analysis.html_parts import bar_cell
from mre_jax.analysis.html_parts import e
from mre_jax.analysis.html_parts import num
from mre_jax.analysis.html_parts import percentages
from mre_jax.analysis.html_parts import swatch
from mre_jax.analysis.html_parts import text
from mre_jax.analysis.html_parts import valence_cell
from mre_jax.analysis.table import mmss


@dataclasses.dataclass(frozen=True)
class SessionEntry:
  """A session as the study page lists it."""
  participant: str
  video: str
  report: str | None  # Relative link to its report.html; None: skipped.
  summary: Mapping[str, Any] | None
  problem: str | None = None


def _img(png: bytes, alt: str) -> str:
  return (f'<img class="chart" alt="{e(alt)}" '
          f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _link(entry: SessionEntry | None, label: str) -> str:
  if entry is None or not entry.report:
    return e(label)
  return f'<a href="{e(entry.report)}">{e(label)}</a>'


def _negative_section(rows, entries: Mapping[str, SessionEntry]) -> str:
  worst = study_table.most_negative(rows)
  if not worst:
    return ("<p>No participant has two or more tasks with a face, so "
            "there is nothing to compare.</p>")
  value = {(r["participant"], r["task"]): r["mean_valence"] for r in rows}
  lines = "".join(
      f'<tr class="negative"><td>{_link(entries.get(p), p)}</td>'
      f'<td class="task">{e(task)}</td>{valence_cell(value[(p, task)])}</tr>'
      for p, task in worst.items())
  return ("<p>For each participant, the task with the lowest mean valence: "
          "where the expression was least positive.</p><table><tr>"
          "<th>Participant</th><th>Most negative task</th><th>Mean valence"
          f"</th></tr>{lines}</table>")


def _task_table(rows, task: str, names: Sequence[str],
                entries: Mapping[str, SessionEntry]) -> str:
  palette = timeline.colours(names)
  header = "".join(f"<th>{swatch(n, palette)}</th>" for n in names)
  lines = []
  for row in (r for r in rows if r["task"] == task):
    shares = percentages(row.get("shares") or {})
    top = row.get("dominant_emotion")
    cells = "".join(bar_cell(shares.get(n, float("nan")), palette[n],
                             n == top) for n in names)
    lines.append(
        f'<tr><td>{_link(entries.get(row["participant"]), row["participant"])}'
        f'</td><td class="num">{num(row.get("seconds_with_face"))} s</td>'
        f"{valence_cell(row.get('mean_valence'))}{cells}</tr>")
  return ("<table><tr><th>Participant</th><th>With a face</th><th>Mean "
          f"valence</th>{header}</tr>{''.join(lines)}</table>")


def _sessions_section(entries: Sequence[SessionEntry]) -> str:
  lines = []
  for entry in entries:
    if entry.summary is None:
      lines.append(f'<tr class="skipped"><td>{e(entry.participant)}</td>'
                   f"<td>{e(entry.video)}</td><td colspan=3>not analysed: "
                   f"{e(entry.problem)}</td></tr>")
      continue
    source = entry.summary.get("input") or {}
    kept = entry.summary.get("participant") or {}
    dropped = kept.get("other_faces_dropped")
    lines.append(
        f'<tr class="session"><td>{e(entry.participant)}</td>'
        f"<td>{e(entry.video)}</td>"
        f"<td>{mmss(source.get('duration_s') or 0)}</td>"
        f"<td>{len(entry.summary.get('tasks') or [])} tasks"
        + (f"; {e(dropped)} other face(s) dropped" if dropped else "")
        + f"</td><td>{_link(entry, 'report')}</td></tr>")
  return ("<table><tr><th>Participant</th><th>Recording</th><th>Length</th>"
          f"<th>Analysis</th><th>Report</th></tr>{''.join(lines)}</table>")


def render(entries: Sequence[SessionEntry], rows: Sequence[Mapping[str, Any]],
           names: Sequence[str], model: Mapping[str, Any],
           settings: Mapping[str, Any]) -> str:
  """The study page as a string."""
  by_name = {s.participant: s for s in entries}
  participants = [s.participant for s in entries if s.summary is not None]
  tasks = study_table.task_order(rows)
  charts = ""
  if rows:
    charts = _img(study_charts.valence_chart(rows, tasks, participants),
                  "mean valence per task and participant")
  per_task = "".join(
      f"<h3>{e(task)}</h3>"
      + _img(study_charts.shares_chart(rows, task, participants, names),
             f"share of time per emotion in {task}")
      + _task_table(rows, task, names, by_name) for task in tasks)
  skipped = len(entries) - len(participants)
  unread = f", {skipped} session(s) could not be read" if skipped else ""
  date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Emotion study: {len(participants)} participants</title>
<style>{report_text.CSS}.chart{{max-width:100%}}</style></head><body>
<h1>Emotion study</h1>
<p class="meta"><b>Participants:</b> {len(participants)} analysed{unread}
<br><b>Tasks:</b> {e(", ".join(tasks)) or "none"}
<br><b>Date:</b> {e(date)}<br><b>Model:</b> {e(model.get("name") or "?")}
<br><b>Settings:</b> {text(settings)}</p>
<p>Each session was analysed on its own with the same model and settings;
its report (linked below) has the timeline and key moments. <b>Valence</b>
(-1 to +1) is the probability of happy minus that of the strongest negative
emotion (angry, disgust, fear, sad), averaged over the frames with the
participant's face. <b>Shares</b> are of the time the face was seen.</p>
<h2>Most negative task</h2>{_negative_section(rows, by_name)}
<h2>Valence per task</h2>{charts or "<p>No session was analysed.</p>"}
<h2>Tasks</h2>{per_task or "<p>No task to show.</p>"}
<h2>Sessions</h2>{_sessions_section(entries)}
</body></html>
"""
