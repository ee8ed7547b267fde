"""Writing a study's own files from its sessions' folders.

``study.csv`` (:mod:`~mre_jax.analysis.study_table`) and ``study.html``
(:mod:`~mre_jax.analysis.study_report`) are built from each analysed
session's ``summary.json`` as it lies on disk, whether it was written in
this run or an earlier one, and written with one atomic rename each.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from mre_jax.analysis import study_report
from mre_jax.analysis import study_table
from mre_jax.analysis.study_runner import session_folder
from mre_jax.analysis.study_sessions import Planned
from mre_jax.analysis.timeline import write_atomically

CSV = "study.csv"
HTML = "study.html"


def _summary(folder: str) -> dict[str, Any] | None:
  try:
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def entries(output: str, planned: Sequence[Planned],
            problems: dict[str, str]) -> list[study_report.SessionEntry]:
  """Every session with its summary, or why it has none."""
  out = []
  for plan in planned:
    participant = plan.session.participant
    folder = session_folder(output, participant)
    summary = None if participant in problems else _summary(folder)
    problem = problems.get(participant) or (
        None if summary else "no summary.json was written")
    report = os.path.relpath(os.path.join(folder, "report.html"), output)
    out.append(study_report.SessionEntry(
        participant, os.path.basename(plan.session.video),
        report.replace(os.sep, "/") if summary else None, summary, problem))
  return out


def write(output: str, planned: Sequence[Planned], problems: dict[str, str],
          settings: dict[str, Any]) -> dict[str, str]:
  """Writes study.csv and study.html; returns their paths by name.

  ``problems``: why each session that could not be read was skipped.
  """
  listed = entries(output, planned, problems)
  summaries = [s.summary for s in listed if s.summary is not None]
  names = study_table.class_names(summaries)
  rows = [row for s in listed if s.summary is not None
          for row in study_table.session_rows(s.participant, s.summary, names)]
  model = (summaries[0].get("model") if summaries else None) or {}
  page = study_report.render(listed, rows, names, model, settings)
  paths = {CSV: os.path.join(output, CSV), HTML: os.path.join(output, HTML)}
  write_atomically(paths[CSV], study_table.to_csv(rows, names).encode())
  write_atomically(paths[HTML], page.encode("utf-8"))
  return paths
