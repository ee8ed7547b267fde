"""How the steps of :mod:`mre_jax.reproduce` run, each bounded in time.

The benchmark runs ``python -m mre_jax.benchmarks.speed`` once per model,
merging the records into ``OUTDIR/bench/bench.json`` as they come. A training
step runs in a process of its own::

    python -m mre_jax.reproduce.steps --run_step=teacher_fer \\
        --deadline=UNIX_TIME [the flags of mre_jax.reproduce]

which trains the step's config in a fresh ``<workdirs>/<step>`` with the trainer
of ``python -m mre_jax.main``, stopping at an epoch boundary when the next
epoch would end within the step's reserve of its deadline, then evaluates the
best checkpoint and, for a teacher, exports the train split's logits through
the student's data path. ``OUTDIR/<step>/run.json`` says what happened so far
(phase, status, epochs, the config and the equivalent ``mre_jax.main``
command) and is rewritten after each phase; ``eval.json`` and
``teacher_logits.npz`` (float16) follow as soon as they exist.
"""

from __future__ import annotations

import importlib.util
import json
import logging as std_logging
import os
import shlex
import shutil
import signal
import sys
import tarfile
import threading
import time
from typing import Any

from absl import flags
from absl import logging

from mre_jax.errors import Interrupted
from mre_jax.reproduce import common

FLAGS = flags.FLAGS

# Each model's share of the benchmark's budget: the teacher first, with
# twice a student's time (its torch.compile is the slowest).
BENCH_MODELS = (("teacher", 2), ("student_a", 1), ("student_b", 1),
                ("student_c", 1))
TINY_BENCH = ["--models=student_c", "--width=4", "--image_size=16",
              "--batch_sizes=4", "--inference_batch=4", "--repeats=1",
              "--warmup_seconds=0", "--max_seconds_per_measurement=0.1",
              "--peak_matmul_size=64", "--steps_per_call=1", "--torch=eager"]
# Per folder and file-name prefix (split) of an archive; RAF-DB's holdout
# validation takes every 10th image of a class.
TINY_IMAGES = 10
# One width for all models, so that they share compiled programs. Tiny runs
# train exactly their epochs (or until their budget): on random pixels,
# early stopping would end them at a time that depends on the machine.
TINY = {"model_width": 4, "image_size": 16, "batch_size": 8,
        "eval_batch_size": 64, "early_stopping_patience": 10**9}
_PACKAGE_DIR = os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))) + os.sep


# ----------------------------------------------------------------------------
# In the driver's process: each step's processes, bounded by its deadline.


def run_bench(opts: common.Options, deadline: float, out: str,
              env: dict[str, str]) -> dict[str, Any]:
  """The speed benchmark, one process per model within its share of the
  budget, so that ``bench.json`` keeps the models measured before a cut or a
  failure."""
  groups = [(TINY_BENCH, 1)] if opts.tiny else [
      ([f"--models={m}"], weight) for m, weight in BENCH_MODELS]
  merged, cut, failed = {}, [], []
  # PyTorch shares the GPU with JAX in the benchmark: JAX takes what it uses.
  env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **env}
  for i, (flags_, weight) in enumerate(groups):
    share = (deadline - time.time()) * weight / sum(w for _, w in groups[i:])
    name = flags_[0].split("=")[1]
    path = os.path.join(opts.workdirs, "bench", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
      os.remove(path)
    sizes = [] if opts.tiny else [
        "--repeats=10", "--warmup_seconds=0.5",
        "--max_seconds_per_measurement=1",
        f"--torch_compile_timeout={max(share / 2, 10):.0f}",
        f"--deadline={time.time() + share:.0f}"]
    status, error = common.run_bounded(
        [sys.executable, "-m", "mre_jax.benchmarks.speed", *flags_, *sizes,
         f"--dtype={opts.dtype}", f"--json_out={path}"],
        os.path.join(out, "log.txt"), time.time() + share, env)
    # Written at the end: a process killed after it is complete anyway.
    record = common.read_json(path) if status in (0, None) else None
    if record is None:
      (cut if status is None else failed).append(
          f"{name}: " + (f"cut off after {share:.0f} s" if status is None
                         else error))
      continue
    merged = {**(merged or record),
              "models": {**merged.get("models", {}), **record["models"]},
              "targets": merged.get("targets", []) + record.get("targets", [])}
    common.write_json(os.path.join(out, "bench.json"), merged)
  return {"status": "failed" if failed else "cut_off" if cut else "done",
          "error": "; ".join(failed) or None, "note": "; ".join(cut) or None,
          "device": merged.get("jax_device")}


def run_training(step: common.Step, opts: common.Options,
                 deadline: float, out: str,
                 env: dict[str, str]) -> dict[str, Any]:
  """A training step in its own process; its ``run.json`` says how it went."""
  argv = [sys.executable, "-m", "mre_jax.reproduce.steps",
          f"--run_step={step.name}", f"--deadline={deadline:.3f}",
          *opts.argv(step.name)]
  status, error = common.run_bounded(argv, os.path.join(out, "log.txt"),
                                       deadline, env)
  result = common.read_json(os.path.join(out, "run.json")) or {}
  if result.get("phase") == "finished":  # Even if killed while exiting.
    return result
  if status is None:
    return {**result, "status": "cut_off", "note": "killed at the end of its "
            f"{opts.budgets[step.name]:g} s budget, during "
            f"{result.get('phase', 'start-up')}"}
  if status != 0 or result.get("status") not in ("done", "cut_off"):
    return {**result, "status": "failed", "error": error}
  return result


# ----------------------------------------------------------------------------
# In a training step's own process.


class EpochBudget:
  """While active, stops this process's training (SIGINT, which the trainer
  turns into a clean stop after the step under way) once an epoch is saved
  and the next one would end after ``deadline``."""

  def __init__(self, workdir: str, deadline: float):
    self.metrics = os.path.join(workdir, "metrics.jsonl")
    self.deadline = deadline
    self.stopped = False
    self._active = threading.Event()
    self._lock = threading.Lock()

  def __enter__(self) -> EpochBudget:
    self._active.set()
    threading.Thread(target=self._watch, daemon=True).start()
    return self

  def __exit__(self, *exc) -> None:
    with self._lock:
      self._active.clear()

  def _watch(self) -> None:
    while self._active.is_set():
      time.sleep(0.2)
      seconds = [e.get("epoch_seconds", 0.0) for e in history(self.metrics)]
      # The first epoch's time includes compiling: trust later ones.
      estimate = max(seconds[1:][-3:] or seconds or [0.0])
      with self._lock:
        if (self._active.is_set() and seconds and
            time.time() + estimate > self.deadline):
          self.stopped = True
          os.kill(os.getpid(), signal.SIGINT)
          return


def history(metrics_path: str) -> list[dict[str, Any]]:
  """The intact per-epoch lines of a run's ``metrics.jsonl``."""
  try:
    with open(metrics_path) as f:
      lines = f.read().splitlines()
  except OSError:
    return []
  epochs = []
  for line in lines:
    try:
      epochs.append(json.loads(line))
    except ValueError:
      pass  # A line being written.
  return epochs


def tiny_source(folder: str, scratch: str) -> str:
  """An uncompressed tar of the first :data:`TINY_IMAGES` images of each
  folder and file-name prefix (the split) of the archive in ``folder``, or
  ``folder`` itself when it holds no archive of images in folders."""
  from mre_jax.datasets import sources  # pylint: disable=g-import-not-at-top
  archives = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                    if sources.is_archive(f))
  if not archives:
    return folder
  target = os.path.join(scratch, os.path.basename(folder) + "_tiny.tar")
  if (os.path.exists(target) and
      os.path.getmtime(target) >= os.path.getmtime(archives[0])):
    return target  # Unchanged, so a prepared dataset stays valid.
  os.makedirs(scratch, exist_ok=True)
  counts = {}
  with tarfile.open(archives[0], "r|*") as source, tarfile.open(
      target + ".tmp", "w", format=tarfile.PAX_FORMAT) as tiny:
    for member in source:
      parent, _, name = member.name.rpartition("/")
      key = (parent, name.split("_")[0])
      if (member.isfile() and sources.is_image_name(name) and
          counts.get(key, 0) < TINY_IMAGES):
        counts[key] = counts.get(key, 0) + 1
        tiny.addfile(member, source.extractfile(member))
  if not counts:
    os.remove(target + ".tmp")
    return folder
  os.replace(target + ".tmp", target)
  return target


def load_config(filename: str, arg: str, overrides: dict[str, Any]):
  """``configs/<filename>:<arg>`` with ``overrides`` (dotted field names)."""
  spec = importlib.util.spec_from_file_location(
      "mre_jax_reproduce_config", os.path.join(common.REPO, "configs",
                                               filename))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  for field, value in overrides.items():
    *parents, name = field.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


def overrides(step: common.Step,
              opts: common.Options) -> dict[str, Any]:
  """The config fields the driver sets, as ``--config.<field>`` would."""
  fields = {"dtype": opts.dtype,
            "dataset.data_dir": os.path.join(opts.workdirs, "tfds"),
            "dataset.manual_dir": opts.data_folder(step)}
  if opts.tiny:
    fields.update(TINY)
    fields["dataset.data_dir"] += "_tiny"
    fields["dataset.manual_dir"] = tiny_source(
        opts.data_folder(step), os.path.join(opts.workdirs, "tiny_data"))
  if step.name in opts.epochs:
    fields["num_epochs"] = opts.epochs[step.name]
  if step.needs:
    fields["distill.teacher_logits"] = opts.logits_input(step)
  return fields


def run_step(step: common.Step, opts: common.Options,
             deadline: float) -> None:
  """Trains, evaluates and (teachers) exports logits into OUTDIR/<step>."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.config import config_lib
  from mre_jax.data import input_pipeline
  from mre_jax.evaluation import evaluator
  from mre_jax.training import logits_catalog
  from mre_jax.workdir import run_info
  from mre_jax.training import teacher_logits
  from mre_jax.training import trainer
  out = os.path.join(opts.outdir, step.name)
  workdir = os.path.join(opts.workdirs, step.name)
  shutil.rmtree(workdir, ignore_errors=True)
  fields = overrides(step, opts)
  config = load_config(step.config, step.arg, fields)
  machine = run_info.machine()
  result = {"step": step.name, "machine": machine,
            "device": f"{machine['device_count']}x {machine['device_kind']} "
                      f"({machine['platform']})",
            "command": run_info.portable(shlex.join(
                ["python", "-m", "mre_jax.main",
                 f"--config=configs/{step.config}:{step.arg}",
                 f"--workdir={workdir}",
                 *(f"--config.{k}={v}" for k, v in fields.items())])),
            "config": json.loads(config.to_json_best_effort())}

  def record(**changes) -> None:
    result.update(changes)
    common.write_json(os.path.join(out, "run.json"), result)

  record(status="running", phase="training")
  mesh = input_pipeline.make_mesh()
  reserve = min(step.reserve_s, 0.4 * opts.budgets[step.name])
  budget = EpochBudget(workdir, deadline - reserve)
  try:
    with budget:
      trainer.Trainer(config, workdir, mesh).train()
  except (Interrupted, KeyboardInterrupt):
    if not budget.stopped:
      raise
  epochs = history(os.path.join(workdir, "metrics.jsonl"))
  cut = budget.stopped and len(epochs) < config.num_epochs
  record(phase="evaluation", epochs=len(epochs), history=epochs,
         note=f"training stopped by the budget after epoch {len(epochs)} of "
         f"{config.num_epochs}" if cut else None)
  evals = evaluator.evaluate_config(config, workdir, mesh)
  common.write_json(os.path.join(out, "eval.json"), evals)
  accuracy = {split: e["accuracy"] for split, e in evals.items()}
  if step.config == "teacher.py":
    record(phase="teacher logits", accuracy=accuracy)
    # The logits a student of this dataset checks, along its own data path.
    student = load_config("studentA.py", f"{step.dataset},exp=E1", {
        **fields, "distill.teacher_workdir": workdir,
        "distill.teacher_logits": os.path.join(workdir, common.LOGITS)})
    config_lib.validate(student)
    teacher_logits.export_command(student, workdir, mesh)
    logits_catalog.save_float16(os.path.join(workdir, common.LOGITS),
                                  os.path.join(out, common.LOGITS))
  record(status="cut_off" if cut else "done", phase="finished",
         accuracy=accuracy,
         best_epoch=next(iter(evals.values()))["checkpoint_step"])


def _ours_or_warning(record) -> bool:
  """Keeps this package's INFO lines and every warning (libraries' INFO
  lines, e.g. each checkpoint's, drown the progress)."""
  return (record.levelno >= std_logging.WARNING or
          os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))


def define_flags() -> None:
  """The driver's flags and this command's own."""
  common.define_flags()
  flags.DEFINE_enum("run_step", None, [s.name for s in common.STEPS.values()
                                       if s.config], "The step to run.")
  flags.DEFINE_float("deadline", 0.0, "The step's end, Unix time; 0: its "
                     "budget from now.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise common.ReproduceError(
        f"unexpected argument(s) {' '.join(argv[1:])}")
  if not FLAGS.run_step:
    raise common.ReproduceError("--run_step is required: the step to run")
  opts = common.Options.from_flags()
  # The budget stops training with SIGINT, which a shell ignores in the jobs
  # it starts in the background (and their children inherit).
  signal.signal(signal.SIGINT, signal.default_int_handler)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_ours_or_warning)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  run_step(common.STEPS[FLAGS.run_step], opts, FLAGS.deadline or
           time.time() + opts.budgets[FLAGS.run_step])


if __name__ == "__main__":
  common.run(main, define_flags)
