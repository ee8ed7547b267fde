"""Results table and figures from finished workdirs.

    python -m mre_jax.report --workdirs=runs/fer2013/teacher,runs/fer2013/E1 \\
        --output=docs

reads each workdir's ``config.json``, ``run_info.json``, ``metrics.jsonl`` and
``eval_*.json`` and writes ``results.md`` (the paper's Table IV from
:mod:`mre_jax.config.paper`, ours in its layout with per-class accuracies, each
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
import numpy as np

from mre_jax import cli
from mre_jax.config import paper
from mre_jax.errors import UserError
from mre_jax.evaluation import metrics
from mre_jax.models import shipped
from mre_jax.pretrained import tables
from mre_jax.training import run_record
from mre_jax.workdir import run_info


_pct = lambda x: "-" if x is None else f"{100 * x:.2f}"
_DATASETS = {"fer2013": "FER2013", "raf_db": "RAF-DB"}


def paper_table() -> str:
  """The paper's Table IV test accuracies (:mod:`mre_jax.config.paper`)."""
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
  if not shipped.names():
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
  records = [run_record.load_run(w) for w in workdirs]
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
  lines += ["## Commands", "", run_info.PLACEHOLDERS_NOTE, ""]
  lines += _commands(records)
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
