"""A finished run's record, read from its workdir's own files.

:func:`load_run` reads ``config.json``, ``run_info.json``, ``metrics.jsonl``
and ``eval_*.json`` into one record (dataset, model, experiment, recipe,
teacher, T, alpha, kd_weight, accuracies, epochs, wall time, device, commit,
command, history, confusion matrix), which the results report, publishing a
teacher's logits and publishing a shipped model all start from.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ml_collections import config_dict

from mre_jax.config import config_lib
from mre_jax.errors import TeacherLogitsError, UserError
from mre_jax.training import logits_catalog
from mre_jax.training import teachers
from mre_jax.workdir import run_info


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({e}): the run's files are "
                    "damaged; rerun its evaluation (--mode=evaluate) or "
                    "leave it out.") from e


def _teacher(config: config_dict.ConfigDict) -> str | None:
  """What a distilled run's teacher was, from the teacher's own workdir."""
  distill = config.distill
  if not distill.teacher_workdir:
    return _logits_teacher(distill.teacher_logits) if (
        distill.teacher_logits) else None
  named = [_one_teacher(ref) for ref in teachers.refs(distill.teacher_workdir)]
  return named[0] if len(named) == 1 else "ensemble of " + "; ".join(named)


def _one_teacher(ref: str) -> str:
  """One teacher in a sentence: a shipped model, or a run from its config."""
  path = os.path.join(ref, "config.json")
  if teachers.is_shipped(ref) or not os.path.isfile(path):
    return teachers.describe(ref)
  teacher = config_dict.ConfigDict(_read_json(path))
  _, kd_weight = config_lib.distill_weights(teacher)
  how = "distilled" if teacher.model != "teacher" and kd_weight else "trained"
  return (f"{teacher.model} ({how} on {teacher.dataset.name}, workdir "
          f"{os.path.basename(os.path.normpath(ref))})")


def _logits_teacher(path: str) -> str:
  """A logits file's teacher, from its metadata; named as the published
  logits of its dataset when it holds the same teacher's."""
  try:
    teacher = logits_catalog.read_meta(path)["teacher"]
  except (TeacherLogitsError, KeyError):
    return f"logits file {path}"
  model = teacher.get("model", {}).get("name", "teacher")
  name = f"{model} at epoch {teacher.get('checkpoint_epoch')}"
  for dataset in logits_catalog.published():
    info = logits_catalog.provenance(logits_catalog.path(dataset))
    if info.get("logits_meta", {}).get("teacher", {}).get(
        "params_fingerprint") == teacher.get("params_fingerprint"):
      test = info.get("accuracy", {}).get("test")
      return (f"{name}, the published {dataset} logits ({info['device']}" +
              (f", test {_pct(test)}%)" if test is not None else ")"))
  return (f"{name} (params {teacher.get('params_fingerprint')}, logits file "
          f"{os.path.basename(path)})")


def experiment_name(config: config_dict.ConfigDict) -> str:
  """``teacher``, a paper experiment (E1..E6), ``baseline`` or
  ``kd-from-<teacher model>``; prefixed by the recipe when it is not the
  paper's (e.g. ``improved+baseline``)."""
  _, kd_weight = config_lib.distill_weights(config)
  if config.model == "teacher":
    name = "teacher"
  elif kd_weight == 0:
    name = "baseline"
  elif config.distill.experiment:
    name = config.distill.experiment
  else:
    name = f"kd-from-{_teacher_model(config.distill.teacher_workdir)}"
  recipe = config.get("recipe", "paper")
  return name if recipe == "paper" else f"{recipe}+{name}"


def _teacher_model(teacher_workdir: str) -> str:
  """The teacher's model for :func:`experiment_name`: a run's model, a
  shipped model's name, or ``ensemble``."""
  named = teachers.refs(teacher_workdir)
  if len(named) > 1:
    return "ensemble"
  if named and teachers.is_shipped(named[0]):
    return named[0]
  path = os.path.join(named[0], "config.json") if named else ""
  return _read_json(path).get("model", "teacher") if (
      path and os.path.isfile(path)) else "teacher"


def _device(info: dict[str, Any]) -> str:
  """The run's hardware in words, e.g. ``AMD EPYC (CPU, 2 cores)``."""
  machine = info.get("machine")
  if not machine:
    return (info.get("devices") or ["?"])[0]
  if machine["platform"] == "cpu":
    return f"{machine['cpu']} (CPU, {machine['cpu_count']} cores)"
  return f"{machine['device_count']}x {machine['device_kind']}"


def load_run(workdir: str) -> dict[str, Any]:
  """One results record (see the module docstring) from a finished run."""
  if not os.path.isdir(workdir):
    raise UserError(f"{workdir} is not a workdir: no such directory")
  needed = [os.path.join(workdir, n) for n in ("config.json", "eval_test.json")]
  missing = [p for p in needed if not os.path.isfile(p)]
  if missing:
    raise UserError(f"{workdir} is not a finished, evaluated run: missing "
                    f"{', '.join(missing)}. Train it, or run --mode=evaluate "
                    "on it.")
  config = config_dict.ConfigDict(_read_json(needed[0]))
  test = _read_json(needed[1])
  val_path = os.path.join(workdir, "eval_validation.json")
  val = _read_json(val_path) if os.path.isfile(val_path) else {}
  info_path = os.path.join(workdir, "run_info.json")
  info = _read_json(info_path) if os.path.isfile(info_path) else {}
  history = read_history(workdir)
  distill = config.distill
  is_teacher = config.model == "teacher"
  _, kd_weight = config_lib.distill_weights(config)
  return {
      "workdir": os.path.abspath(workdir),
      "dataset": config.dataset.name,
      "model": config.model,
      "experiment": experiment_name(config),
      "recipe": config.get("recipe", "paper"),
      "teacher": None if kd_weight == 0 else _teacher(config),
      "T": None if is_teacher or not kd_weight else distill.temperature,
      "alpha": None if is_teacher or not kd_weight else distill.alpha,
      "kd_weight": kd_weight,
      "val_acc": val.get("accuracy"),
      "test_acc": test["accuracy"],
      "mean_class_acc": test["mean_class_accuracy"],
      "per_class_acc": test["per_class_accuracy"],
      "epochs": history[-1]["epoch"] if history else None,
      "best_epoch": test.get("checkpoint_step"),
      "wall_s": round(sum(h.get("epoch_seconds", 0) for h in history), 1),
      "device": _device(info),
      "commit": info.get("commit", "unknown"),
      "command": run_info.portable(info.get("command") or " ".join(
          info.get("argv", []))) or None,
      "history": [(h["epoch"], h["val_accuracy"]) for h in history],
      "confusion_matrix": test["confusion_matrix"],
      "class_names": list(test["per_class_accuracy"]),
  }


def read_history(workdir: str) -> list[dict[str, Any]]:
  """Per-epoch metrics; a resumed run's repeated epochs keep the last line."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  by_epoch = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        by_epoch[record["epoch"]] = record
  return [by_epoch[e] for e in sorted(by_epoch)]


def _pct(x: float | None) -> str:
  return "-" if x is None else f"{100 * x:.2f}"
