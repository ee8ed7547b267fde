"""Results table and figures from finished workdirs.

    python -m mre_jax.report --workdirs=runs/fer2013/teacher,runs/fer2013/E1 \\
        --output=docs

reads each workdir's ``config.json``, ``run_info.json``, ``metrics.jsonl`` and
``eval_*.json`` and writes ``results.md`` (the paper's Table IV from
:mod:`mre_jax.paper`, ours in its layout with per-class accuracies, each
distilled run compared with its baseline, an optional ``--notes`` discussion
and every run's command), ``results.json`` (one record per run: dataset,
model, experiment, recipe, teacher, T, alpha, kd_weight, accuracies, epochs,
wall time, device, commit, command) and PNG figures: a confusion matrix per
run and validation accuracy per epoch per dataset. Nothing is typed by hand.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Sequence

from absl import app
from absl import flags
from ml_collections import config_dict
import numpy as np

from mre_jax import cli
from mre_jax import config_lib
from mre_jax import paper
from mre_jax import pretrained
from mre_jax.pretrained import tables
from mre_jax.evaluation import metrics
from mre_jax.training import published_logits
from mre_jax.errors import TeacherLogitsError, UserError


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
  path = os.path.join(distill.teacher_workdir, "config.json")
  if not os.path.isfile(path):
    return f"workdir {distill.teacher_workdir}"
  teacher = config_dict.ConfigDict(_read_json(path))
  _, kd_weight = config_lib.distill_weights(teacher)
  how = "distilled" if teacher.model != "teacher" and kd_weight else "trained"
  return (f"{teacher.model} ({how} on {teacher.dataset.name}, workdir "
          f"{os.path.basename(os.path.normpath(distill.teacher_workdir))})")


def _logits_teacher(path: str) -> str:
  """A logits file's teacher, from its metadata; named as the published
  logits of its dataset when it holds the same teacher's."""
  try:
    teacher = published_logits.read_meta(path)["teacher"]
  except (TeacherLogitsError, KeyError):
    return f"logits file {path}"
  model = teacher.get("model", {}).get("name", "teacher")
  name = f"{model} at epoch {teacher.get('checkpoint_epoch')}"
  for dataset in published_logits.published():
    info = published_logits.provenance(published_logits.path(dataset))
    if info.get("logits_meta", {}).get("teacher", {}).get(
        "params_fingerprint") == teacher.get("params_fingerprint"):
      return (f"{name}, the published {dataset} logits ({info['device']}, "
              f"test {_pct(info['accuracy']['test'])}%)")
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
    teacher_model = "teacher"
    path = os.path.join(config.distill.teacher_workdir, "config.json")
    if config.distill.teacher_workdir and os.path.isfile(path):
      teacher_model = _read_json(path).get("model", "teacher")
    name = f"kd-from-{teacher_model}"
  recipe = config.get("recipe", "paper")
  return name if recipe == "paper" else f"{recipe}+{name}"


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
      "command": info.get("command") or " ".join(info.get("argv", [])) or None,
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


_pct = lambda x: "-" if x is None else f"{100 * x:.2f}"
_DATASETS = {"fer2013": "FER2013", "raf_db": "RAF-DB"}


def paper_table() -> str:
  """The paper's Table IV test accuracies (:mod:`mre_jax.paper`)."""
  lines = ["| dataset | run | model | T | alpha | test acc (%) |",
           "|---|---|---|---|---|---|"]
  for dataset, runs in paper.TEST_ACCURACY.items():
    for run, accuracy in runs.items():
      model, t, alpha = paper.EXPERIMENTS.get(run, ("teacher", None, None))
      lines.append(f"| {_DATASETS.get(dataset, dataset)} | {run} | {model} | "
                   f"{t or '-'} | {alpha or '-'} | {accuracy:.2f} |")
  return "\n".join(lines)


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
  """Table IV's layout plus our columns, one row per run."""
  lines = ["| dataset | run | model | teacher | T | alpha | kd_weight | "
           "val acc (%) | test acc (%) | paper test acc (%) | "
           "mean class acc (%) | epochs | best epoch | wall (s) | device |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in records:
    ref = paper.TEST_ACCURACY.get(r["dataset"], {}).get(r["experiment"])
    lines.append(
        f"| {r['dataset']} | {r['experiment']} | {r['model']} | "
        f"{r['teacher'] or '-'} | {r['T'] or '-'} | "
        f"{r['alpha'] if r['alpha'] is not None else '-'} | "
        f"{r['kd_weight']} | {_pct(r['val_acc'])} | {_pct(r['test_acc'])} | "
        f"{'-' if ref is None else f'{ref:.2f}'} | {_pct(r['mean_class_acc'])} "
        f"| {r['epochs']} | {r['best_epoch']} | {r['wall_s']} | "
        f"{r['device']} |")
  return "\n".join(lines)


def per_class_table(records: Sequence[dict[str, Any]]) -> str:
  """Test accuracy per class, one row per run."""
  names = records[0]["class_names"]
  lines = ["| dataset | run | model | epochs | " + " | ".join(names) + " |",
           "|---|---|---|---|" + "---|" * len(names)]
  for r in records:
    cells = " | ".join(_pct(r["per_class_acc"].get(n)) for n in names)
    lines.append(f"| {r['dataset']} | {r['experiment']} | {r['model']} | "
                 f"{r['epochs']} | {cells} |")
  return "\n".join(lines)


def comparisons(records: Sequence[dict[str, Any]]) -> list[str]:
  """Sentences comparing each distilled run with the baseline of the same
  model, dataset and recipe, and each run with the paper's number."""
  sentences = []
  for r in records:
    if r["kd_weight"] and r["model"] != "teacher":
      base = f"{r['recipe']}+baseline" if r["recipe"] != "paper" else "baseline"
      bases = [b for b in records if (b["experiment"], b["dataset"],
                                      b["model"]) == (base, r["dataset"],
                                                      r["model"])]
      # A baseline of as many epochs, when there is one, is the fair one.
      for b in [b for b in bases if b["epochs"] == r["epochs"]] or bases:
        delta = 100 * (r["test_acc"] - b["test_acc"])
        mean_delta = 100 * (r["mean_class_acc"] - b["mean_class_acc"])
        verdict = "helped" if delta > 0 else "did not help"
        epochs = ("" if b["epochs"] == r["epochs"] else
                  f"; {r['epochs']} epochs against {b['epochs']}")
        sentences.append(
            f"- {r['dataset']}, {r['model']}: distillation from "
            f"{r['teacher']} {verdict}: test accuracy {_pct(r['test_acc'])}%"
            f" against {_pct(b['test_acc'])}% without a teacher "
            f"({delta:+.2f} points; mean class accuracy {mean_delta:+.2f}"
            f"{epochs}).")
    ref = paper.TEST_ACCURACY.get(r["dataset"], {}).get(r["experiment"])
    if ref is not None:
      sentences.append(
          f"- {r['dataset']} {r['experiment']} ({r['model']}): "
          f"{_pct(r['test_acc'])}% against the paper's {ref:.2f}% "
          f"({100 * r['test_acc'] - ref:+.2f} points).")
  return sentences


def _figure_name(kind: str, record: dict[str, Any], taken: set[str]) -> str:
  base = os.path.basename(os.path.normpath(record["workdir"]))
  name, i = f"{kind}_{base}.png", 1
  while name in taken:
    i += 1
    name = f"{kind}_{base}_{i}.png"
  taken.add(name)
  return name


def run_name(record: dict[str, Any]) -> str:
  """A run in words for legends, titles and commands, e.g. ``fer2013
  student_c baseline, 40 epochs``: the epochs tell apart runs of one
  experiment."""
  what = (record["experiment"] if record["experiment"] == record["model"]
          else f"{record['model']} {record['experiment']}")
  return f"{record['dataset']} {what}, {record['epochs']} epochs"


def plot_curves(records: Sequence[dict[str, Any]], path: str) -> bool:
  """Validation accuracy per epoch, one line per run."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in records:
    if r["history"]:
      epochs, acc = zip(*r["history"])
      ax.plot(epochs, 100 * np.asarray(acc), label=run_name(r))
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy (%)")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def _commands(records: Sequence[dict[str, Any]]) -> list[str]:
  lines = []
  for r in records:
    lines += [f"- {run_name(r)} (commit {r['commit']}):", "", "  ```bash",
              f"  {r['command'] or '(not recorded)'}", "  ```", ""]
  return lines


def _shipped_section() -> list[str]:
  """The models that come with the package and other tools' accuracies."""
  if not pretrained.names():
    return []
  return ["## Shipped models", "", "Measured by their model cards "
          "(`python -m mre_jax.pretrained --verify=NAME` re-measures one).",
          "", tables.shipped_table(), "", "Other tools on the same test "
          "splits:", "", tables.references_table(), ""]


def write_report(workdirs: Sequence[str], output: str,
                 notes: str | None = None) -> str:
  """Writes results.md, results.json and figures into ``output``.

  ``notes``: a Markdown file whose text goes in, as written, under
  "Discussion" (words only: every number on the page comes from the runs).
  """
  records = [load_run(w) for w in workdirs]
  notes_text = None
  if notes:
    if not os.path.isfile(notes):
      raise UserError(f"--notes={notes}: no such file; expected a Markdown "
                      "file with the discussion, or no --notes.")
    with open(notes) as f:
      notes_text = f.read().strip()
  os.makedirs(os.path.join(output, "figures"), exist_ok=True)
  figures, taken = [], set()
  for r in records:
    name = _figure_name("confusion", r, taken)
    if metrics.plot_confusion(np.asarray(r["confusion_matrix"]),
                               r["class_names"],
                               os.path.join(output, "figures", name),
                               title=f"{run_name(r)} (test)"):
      figures.append(name)
  curves = []
  for dataset in dict.fromkeys(r["dataset"] for r in records):
    name = f"curves_{dataset}.png"
    if plot_curves([r for r in records if r["dataset"] == dataset],
                   os.path.join(output, "figures", name)):
      curves.append(name)
  lines = ["# Results", "",
           "Generated by `python -m mre_jax.report` from the runs' own files.",
           "", "## The paper (Table IV)", "", paper_table(), "",
           "## Our runs", "", markdown_table(records), "",
           *_shipped_section(),
           "### Test accuracy per class (%)", "", per_class_table(records),
           ""]
  sentences = comparisons(records)
  if sentences or notes_text:
    lines += ["## Discussion", ""] + sentences + [""]
    if notes_text:
      lines += [notes_text, ""]
  if curves or figures:
    lines += ["## Learning curves and confusion matrices", ""]
    lines += [f"![validation accuracy per epoch](figures/{c})" for c in curves]
    lines += [""] + [f"![{f}](figures/{f})" for f in figures] + [""]
  lines += ["## Commands", ""] + _commands(records)
  path = os.path.join(output, "results.md")
  with open(path, "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  keys = ("dataset", "model", "experiment", "recipe", "teacher", "T", "alpha",
          "kd_weight", "val_acc", "test_acc", "mean_class_acc",
          "per_class_acc", "epochs", "best_epoch", "wall_s", "device",
          "commit", "command")
  with open(os.path.join(output, "results.json"), "w") as f:
    json.dump([{k: r[k] for k in keys} for r in records], f, indent=2)
  return path


FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "Finished workdirs (globs allowed).")
flags.DEFINE_string("output", "docs", "Where results.md/json and figures go.")
flags.DEFINE_string("notes", None, "Optional Markdown file: the discussion, "
                    "in words, put under the tables.")


def main(argv) -> None:
  del argv
  workdirs = sorted({p for pattern in FLAGS.workdirs
                     for p in (glob.glob(pattern) or [pattern])})
  if not workdirs:
    cli.fail("--workdirs names no run")
  try:
    print(f"wrote {write_report(workdirs, FLAGS.output, FLAGS.notes)}")
  except UserError as e:
    cli.fail(str(e))


if __name__ == "__main__":
  app.run(main)
