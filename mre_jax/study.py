"""Command line: a usability study, from its recordings to one comparison.

    python -m mre_jax.study --sessions=FOLDER_OR_CSV --output=DIR \\
        [--model=SHIPPED_NAME|WORKDIR|EXPORT] [--events_dir=DIR] \\
        [--jobs=1] [--faces=main|all] [analyze's flags: --sample_fps=5 ...]

``--sessions`` is a folder of recordings (participant = file name; tasks
from ``<events_dir>/<participant>.csv``, beside the videos by default) or a
CSV ``participant,video,events`` (:mod:`mre_jax.analysis.study_sessions`).
Every session is analysed with the same model (default: the shipped
:data:`mre_jax.models.shipped.DEFAULT`) and settings into
``DIR/sessions/<participant>/``, exactly as ``python -m mre_jax.analyze``
writes a folder; then ``DIR/study.csv`` (one row per participant and task)
and ``DIR/study.html`` (tasks compared across participants, with links to
every session's report) are written. ``--faces`` defaults to ``main``: the
participant, the face seen longest.

It prints a line per session with the time left. Events files are all
checked before any work (a mistake is one ``error:`` line, status 2). A
session that cannot be read is reported and skipped. Ctrl-C stops with
status 130 and keeps the sessions already finished; running the same
command again skips the sessions already analysed with the same model,
settings and input (checked, not assumed) and redoes unfinished ones.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging

from mre_jax import analyze
from mre_jax import cli
from mre_jax.errors import UserError
from mre_jax.models import shipped

FLAGS = flags.FLAGS


@dataclasses.dataclass
class Eta:
  """Time left, from the wall time per second of video analysed so far."""
  remaining: dict[str, float | None]  # Video length of sessions to do.
  wall_s: float = 0.0
  video_s: float = 0.0

  def finished(self, outcome: Any) -> None:
    self.remaining.pop(outcome.participant, None)
    if outcome.status == "analysed":
      self.wall_s += outcome.wall_s
      self.video_s += outcome.video_s

  def text(self) -> str:
    # pylint: disable-next=g-import-not-at-top
    from mre_jax.analysis.table import mmss
    left = len(self.remaining)
    if not left:
      return "all sessions done"
    if not self.video_s:
      return f"{left} session(s) left"
    known = [s for s in self.remaining.values() if s]
    mean = sum(known) / len(known) if known else self.video_s
    seconds = sum(s or mean for s in self.remaining.values())
    return (f"about {mmss(seconds * self.wall_s / self.video_s)} left for "
            f"{left} session(s)")


def _outcome_line(outcome: Any) -> str:
  from mre_jax.analysis.table import mmss  # pylint: disable=g-import-not-at-top
  if outcome.status == "unreadable":
    return f"cannot be read, skipped: {outcome.problem}"
  if outcome.status == "already done":
    return "already analysed with the same model, settings and input; kept"
  dropped = ("" if outcome.faces_dropped is None else
             f", {outcome.faces_dropped} other face(s) dropped")
  return (f"done in {mmss(outcome.wall_s)} ({mmss(outcome.video_s)} of "
          f"video, {outcome.tasks} task(s){dropped})")


def run_study(*, sessions: str, output: str, settings: Any, model_key: str,
              analyzer: Any = None, load: Callable[[], Any] | None = None,
              events_dir: str | None = None, jobs: int = 1,
              out: Callable[[str], None] = print) -> dict[str, Any]:
  """Analyses a study; returns the outcomes and the study files' paths.

  ``settings`` are the analysis :class:`~mre_jax.analysis.analyzer.Settings`,
  ``model_key`` a digest of the model (sessions analysed with another are
  redone). ``analyzer`` runs the sessions here; with ``jobs > 1``, ``load``
  (picklable) makes each worker process's analyzer.
  """
  # pylint: disable=g-import-not-at-top
  from mre_jax.analysis import study_outputs
  from mre_jax.analysis import study_runner
  from mre_jax.analysis import study_sessions
  analyze.check_output(output)
  planned = study_sessions.plan(study_sessions.list_sessions(sessions,
                                                             events_dir))
  done = {p.session.participant for p in planned
          if study_runner.is_done(settings, p, output, model_key)}
  unreadable = [p for p in planned if p.problem]
  todo = len(planned) - len(done) - len(unreadable)
  out(f"study: {len(planned)} session(s): {len(done)} already analysed, "
      f"{len(unreadable)} cannot be read, {todo} to analyse at "
      f"{settings.sample_fps:g} frames/s, faces={settings.faces}"
      + (f", in {jobs} processes" if jobs > 1 and todo > 1 else ""))
  eta = Eta({p.session.participant: p.length_s for p in planned
             if p.session.participant not in done and not p.problem})
  outcomes = []
  count = len(planned)
  try:
    if jobs > 1 and todo > 1:
      results = study_runner.run_parallel(load, planned, output, model_key,
                                          jobs)
    else:
      results = _serial(_once(analyzer, load), settings, planned, output,
                        model_key, out, count)
    for outcome in results:
      outcomes.append(outcome)
      eta.finished(outcome)
      out(f"[{len(outcomes)}/{count}] {outcome.participant}: "
          f"{_outcome_line(outcome)}; {eta.text()}")
  except KeyboardInterrupt:
    finished = sum(o.status != "unreadable" for o in outcomes)
    out(f"interrupted: the {finished} session(s) finished are kept in "
        f"{os.path.join(output, study_runner.SESSIONS)}; run the same "
        "command again to analyse the rest")
    raise
  problems = {o.participant: o.problem for o in outcomes
              if o.status == "unreadable"}
  paths = study_outputs.write(output, planned, problems,
                              dataclasses.asdict(settings))
  skipped = f"; skipped {', '.join(problems)}" if problems else ""
  out(f"wrote {study_outputs.CSV} and {study_outputs.HTML} to "
      f"{os.path.abspath(output)}: {count - len(problems)} participant(s)"
      f"{skipped}")
  return {"outcomes": outcomes, "paths": paths}


def _once(analyzer: Any, load: Callable[[], Any] | None
          ) -> Callable[[], Any]:
  """A function giving ``analyzer``, or the one ``load()`` makes when first
  asked (never, when every session is already done)."""
  made = [analyzer]

  def get() -> Any:
    if made[0] is None:
      made[0] = load()
    return made[0]
  return get


def _serial(get_analyzer: Callable[[], Any], settings: Any,
            planned: list[Any], output: str, model_key: str,
            out: Callable[[str], None], count: int):
  """The outcomes of the sessions analysed here, one by one, with a
  progress bar per session."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.analysis import study_runner
  for number, plan in enumerate(planned, start=1):
    bar = None

    def opened(source, plan=plan, number=number):
      nonlocal bar
      tasks = len(plan.events.tasks) if plan.events else 0
      out(f"[{number}/{count}] {plan.session.participant}: analysing "
          f"{os.path.basename(plan.session.video)} ({tasks} task(s))")
      bar = analyze.progress_bar(source.expected)

    try:
      yield study_runner.analyse_session(
          get_analyzer, settings, plan, output, model_key,
          progress=lambda n: bar.update(n), on_open=opened)
    finally:
      if bar is not None:
        bar.close()


def _load(model: str, settings: dict[str, Any], device: str | None):
  """A worker's analyzer (module level, so that it can be pickled)."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.analysis import analyzer as analyzer_lib
  analyze.select_device(device)
  return analyzer_lib.Analyzer.from_model(model, **settings)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}: every argument "
             "is a flag such as --sessions=DIR; see --helpshort")
  logging.set_verbosity(logging.WARNING)
  settings = analyze.settings_from_flags()
  model = FLAGS.model or shipped.DEFAULT
  is_shipped = not os.path.exists(model) and shipped.is_name(model)
  if not is_shipped and not os.path.exists(model):
    cli.fail(f"--model {model} does not exist: give a shipped model's name "
             "(python -m mre_jax.pretrained lists them), a training workdir "
             "(with checkpoints/) or a file written by python -m "
             "mre_jax.export")
  load = functools.partial(_load, model, settings, FLAGS.device)
  # A shipped model is its weights and its card (which holds its framing).
  model_files = ([os.path.join(shipped.FOLDER, model + ext)
                  for ext in (".npz", ".json")] if is_shipped else [model])
  try:
    # pylint: disable=g-import-not-at-top
    from mre_jax.analysis import analyzer as analyzer_lib
    from mre_jax.analysis import study_state
    analysis_settings = analyzer_lib.Settings(**settings)
    run_study(sessions=FLAGS.sessions, output=FLAGS.output,
              settings=analysis_settings,
              model_key="+".join(study_state.model_digest(f)
                                 for f in model_files), load=load,
              events_dir=FLAGS.events_dir, jobs=FLAGS.jobs,
              out=lambda line: print(line, flush=True))
  except UserError as e:
    cli.fail(str(e))
  except KeyboardInterrupt:
    sys.exit(130)


def define_flags() -> None:
  """The command's flags: its own and ``analyze``'s model and settings."""
  flags.DEFINE_string("sessions", None, "A folder of recordings (one per "
                      "participant, named after them) or a CSV with the "
                      "columns participant,video,events.")
  flags.DEFINE_string("output", None, "Folder for sessions/, study.csv and "
                      "study.html (created if needed).")
  flags.DEFINE_string("events_dir", None, "Folder of <participant>.csv "
                      "events files; default: beside the recordings.")
  flags.DEFINE_integer("jobs", 1, "Sessions analysed at once, each in its "
                       "own process.", lower_bound=1)
  analyze.define_analysis_flags(faces_default="main")
  flags.adopt_module_key_flags(analyze)  # Listed by --helpshort too.
  flags.mark_flags_as_required(["sessions", "output"])


def entry_point() -> None:
  define_flags()
  app.run(main, flags_parser=cli.parse_or_fail)


if __name__ == "__main__":
  entry_point()
