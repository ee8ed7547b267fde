"""The offline demo: teacher, logits, student and a comparison table."""

from __future__ import annotations

import os

from ml_collections import config_dict

from mre_jax import checkpointing
from mre_jax import distributed
from mre_jax import models
from mre_jax.evaluation import evaluator
from mre_jax.training import teacher_logits
from mre_jax.training import trainer


def _size_mb(num_params: int) -> float:
  return num_params * 4 / 2**20


def run(config: config_dict.ConfigDict, workdir: str, mode: str) -> None:
  """Trains (or resumes) both runs, then evaluates them from checkpoints."""
  teacher_dir = os.path.join(workdir, "teacher")
  student_dir = os.path.join(workdir, "student")
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


def format_table(rows) -> str:
  lines = ["| run | model | width | params | size (MB) | val acc | test acc |",
           "|---|---|---|---|---|---|---|"]
  fmt = lambda a: "-" if a is None else f"{100 * a:.2f}%"
  for name, model, width, params, val, test in rows:
    lines.append(f"| {name} | {model} | {width} | {params:,} | "
                 f"{_size_mb(params):.2f} | {fmt(val)} | {fmt(test)} |")
  return "\n".join(lines)
