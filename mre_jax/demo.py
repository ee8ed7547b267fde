"""The offline demo: teacher, logits, student, a comparison table, and an
analysis of a synthetic session video with the distilled student."""

from __future__ import annotations

import importlib.util
import os

from ml_collections import config_dict

from mre_jax import models
from mre_jax.datasets import demo_session
from mre_jax.evaluation import evaluator
from mre_jax.runtime import distributed
from mre_jax.training import teacher_logits
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing


def _size_mb(num_params: int) -> float:
  return num_params * 4 / 2**20


def run(config: config_dict.ConfigDict, workdir: str, mode: str) -> None:
  """Trains (or resumes) both runs, then evaluates them from checkpoints."""
  workdir = os.path.abspath(workdir)
  teacher_dir = os.path.join(workdir, "teacher")
  student_dir = os.path.join(workdir, "student")
  if distributed.is_main_process():
    print(start_note(config, teacher_dir, student_dir, mode), flush=True)
  student_config = config.student
  with student_config.unlocked():
    student_config.distill.teacher_workdir = teacher_dir
  rows = []
  for name, run_config, run_dir in (("teacher", config.teacher, teacher_dir),
                                    ("student", student_config, student_dir)):
    if mode == "train":
      trainer.Trainer(run_config, run_dir).train()
    elif mode == "export_logits" and name == "student":
      teacher_logits.export_command(run_config, run_dir)
      continue
    results = evaluator.evaluate_config(run_config, run_dir)
    loaded = checkpointing.load_model(run_dir)
    rows.append((name, loaded.name, loaded.model.width,
                 models.count_params(loaded.variables["params"]),
                 results.get("validation", {}).get("accuracy"),
                 results.get("test", {}).get("accuracy")))
  if rows and distributed.is_main_process():
    print(format_table(rows), flush=True)
    print(end_note(workdir, teacher_dir, student_dir), flush=True)
    print(analyse_session(workdir, student_dir), flush=True)


def analyse_session(workdir: str, student_dir: str) -> str:
  """Analyses the synthetic session video with the student; what to open."""
  if importlib.util.find_spec("cv2") is None:
    return ("demo: install the application (pip install -e '.[app]') to "
            "also analyse a session video with the student.")
  from mre_jax.analysis import Analyzer  # pylint: disable=g-import-not-at-top
  session = os.path.join(workdir, "session")
  video = os.path.join(session, "session.avi")
  labels = demo_session.write_session_video(video)
  analyzer = Analyzer.from_model(student_dir, detector="none",
                                 sample_fps=demo_session.FPS)
  result = analyzer.analyze_video(video)
  paths = result.write(os.path.join(session, "analysis"))
  share = demo_session.agreement(result.rows, labels)
  schedule = ", ".join(f"{name} {seconds:g} s"
                       for name, seconds in demo_session.SCHEDULE)
  lines = [f"demo: analysed {video} ({len(labels)} frames of a drawn face "
           f"whose expression follows: {schedule}) with the student; its "
           f"timeline follows the schedule in {share:.0%} of the frames."]
  lines += [f"  {name}: {path}" for name, path in sorted(paths.items())]
  lines.append("  again, or on your own video: python -m mre_jax.analyze "
               f"--model={student_dir} --input={video} "
               "--output=DIR --detector=none")
  return "\n".join(lines)


def start_note(config: config_dict.ConfigDict, teacher_dir: str,
               student_dir: str, mode: str) -> str:
  """Where the demo's runs and its generated dataset go."""
  data_dirs = sorted({os.path.expanduser(c.dataset.data_dir)
                      for c in (config.teacher, config.student)})
  what = {"train": "training (or resuming)", "evaluate": "evaluating",
          "export_logits": "exporting the teacher's logits for"}[mode]
  return (f"demo: {what} the teacher in {teacher_dir} and the student in "
          f"{student_dir}.\n"
          "demo: the synthetic_faces dataset is generated on this machine (no "
          f"download) into {' and '.join(data_dirs)} the first time, then "
          "reused; --config.teacher.dataset.data_dir and "
          "--config.student.dataset.data_dir move it.")


def end_note(workdir: str, teacher_dir: str, student_dir: str) -> str:
  """Where the table's runs are, and the commands that use them."""
  return (
      f"demo: the runs are ordinary workdirs: {teacher_dir} and "
      f"{student_dir}.\n"
      "  evaluate them again: python -m mre_jax.main "
      f"--config={_demo_config()} --workdir={workdir} --mode=evaluate "
      "(with your --config.*.dataset.* flags, if any)\n"
      "  report them:         python -m mre_jax.report "
      f"--workdirs={teacher_dir},{student_dir} "
      f"--output={os.path.join(workdir, 'report')}")


def _demo_config() -> str:
  """configs/demo.py of this checkout, relative to here when inside it."""
  path = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "configs", "demo.py")
  if not os.path.isfile(path):
    return "configs/demo.py"
  relative = os.path.relpath(path)
  return path if relative.startswith(os.pardir) else relative


def format_table(rows) -> str:
  lines = ["| run | model | width | params | size (MB) | val acc | test acc |",
           "|---|---|---|---|---|---|---|"]
  fmt = lambda a: "-" if a is None else f"{100 * a:.2f}%"
  for name, model, width, params, val, test in rows:
    lines.append(f"| {name} | {model} | {width} | {params:,} | "
                 f"{_size_mb(params):.2f} | {fmt(val)} | {fmt(test)} |")
  return "\n".join(lines)
