"""Analysing a study's sessions, one by one or in parallel processes.

:func:`analyse_session` analyses one planned session into
``<output>/sessions/<participant>/``, exactly as ``python -m
mre_jax.analyze`` writes a folder, unless that folder already holds the
same analysis (:mod:`~mre_jax.analysis.study_state`). A session that cannot
be read comes back as ``unreadable`` with the reason; the study goes on.

:func:`run_parallel` gives the sessions to ``jobs`` worker processes, each
loading the model once; the workers ignore Ctrl-C, which the main process
handles by stopping them (sessions already written are kept).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from mre_jax.analysis import sources
from mre_jax.analysis import study_state
from mre_jax.analysis.study_sessions import Planned
from mre_jax.errors import AnalysisError
from mre_jax.errors import UserError

SESSIONS = "sessions"


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What became of one session."""
  participant: str
  status: str  # "analysed", "already done" or "unreadable".
  wall_s: float = 0.0
  video_s: float = 0.0  # Length of video analysed (for the ETA).
  problem: str | None = None
  faces_dropped: int | None = None
  tasks: int = 0


def print_warning(message: str) -> None:
  """A skipped frame or file, as ``analyze`` reports it."""
  print(f"warning: {message}", file=sys.stderr)


def session_folder(output: str, participant: str) -> str:
  return os.path.join(output, SESSIONS, participant)


def session_key(settings: Any, planned: Planned, model_key: str) -> str:
  """The key of a session's analysis with these settings (every field of
  :class:`~mre_jax.analysis.analyzer.Settings`) and this model."""
  return study_state.session_key(
      model=model_key, settings=dataclasses.asdict(settings),
      video=planned.session.video, events=planned.session.events)


def is_done(settings: Any, planned: Planned, output: str,
            model_key: str) -> bool:
  """Whether the session's folder already holds this very analysis."""
  if planned.problem:
    return False
  try:
    key = session_key(settings, planned, model_key)
  except OSError:
    return False
  return study_state.is_done(
      session_folder(output, planned.session.participant), key)


def analyse_session(get_analyzer: Callable[[], Any], settings: Any,
                    planned: Planned, output: str, model_key: str,
                    progress: Callable[[int], None] | None = None,
                    warn: Callable[[str], None] = print_warning,
                    on_open: Callable[[Any], None] | None = None) -> Outcome:
  """Analyses one session unless it is already done; never raises for an
  unreadable video. ``get_analyzer()`` (whose settings are ``settings``) is
  called only when the session is to be analysed."""
  participant = planned.session.participant
  if planned.problem:
    return Outcome(participant, "unreadable", problem=planned.problem)
  folder = session_folder(output, participant)
  try:
    key = session_key(settings, planned, model_key)
  except OSError as e:
    return Outcome(participant, "unreadable", problem=str(e))
  if study_state.is_done(folder, key):
    return Outcome(participant, "already done")
  analyzer = get_analyzer()  # A bad model stops the study.
  start = time.perf_counter()
  study_state.start_redo(folder)
  try:
    source = sources.open_source(
        planned.session.video, sample_fps=analyzer.settings.sample_fps,
        duration_s=analyzer.settings.duration_s, warn=warn)
    if on_open is not None:
      on_open(source)
    result = analyzer.analyze_source(source, progress=progress,
                                     events=planned.events)
  except (AnalysisError, OSError) as e:
    return Outcome(participant, "unreadable", problem=str(e))
  paths = result.write(folder)
  study_state.mark_done(folder, key,
                        sorted(os.path.basename(p) for p in paths.values()))
  summary = result.summary
  kept = summary.get("participant") or {}
  return Outcome(participant, "analysed", time.perf_counter() - start,
                 video_s=planned.length_s or summary["frames"]["analysed"]
                 * source.seconds_per_frame(),
                 faces_dropped=kept.get("other_faces_dropped"),
                 tasks=len(summary.get("tasks") or ()))


_WORKER: dict[str, Any] = {}


def _worker_start(load: Callable[[], Any]) -> None:
  """Loads the worker's analyzer; a failure is kept, to be raised by the
  first session (a pool would otherwise restart the worker forever)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # The main process stops us.
  try:
    _WORKER["analyzer"] = load()
  except UserError as e:
    _WORKER["error"] = str(e)


def _worker_run(job: tuple[Planned, str, str]) -> Outcome:
  if "error" in _WORKER:
    raise AnalysisError(_WORKER["error"])
  planned, output, model_key = job
  analyzer = _WORKER["analyzer"]
  return analyse_session(lambda: analyzer, analyzer.settings, planned,
                         output, model_key)


def run_parallel(load: Callable[[], Any], planned: Sequence[Planned],
                 output: str, model_key: str, jobs: int) -> Iterator[Outcome]:
  """The sessions' outcomes as they finish, from ``jobs`` processes.

  ``load()`` makes a worker's analyzer; it must be picklable (a module-level
  function or a ``functools.partial`` of one).
  """
  context = multiprocessing.get_context("spawn")
  pool = context.Pool(jobs, initializer=_worker_start, initargs=(load,))
  try:
    yield from pool.imap_unordered(
        _worker_run, [(p, output, model_key) for p in planned])
    pool.close()
  except BaseException:
    pool.terminate()
    raise
  finally:
    pool.join()
