"""Results table and figures from finished workdirs.

    python -m mre_jax.report --workdirs=runs/fer2013/teacher,runs/fer2013/E1 \\
        --output=docs

reads each workdir's ``config.json``, ``run_info.json``, ``metrics.jsonl`` and
``eval_*.json`` and writes ``results.md`` (a table in the layout of the
paper's Table IV, next to its test accuracies from :mod:`mre_jax.paper`),
``results.json`` (one record per run) and PNG figures: a confusion matrix per
run and validation accuracy per epoch for all runs.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
from ml_collections import config_dict
import numpy as np

from mre_jax import config_lib
from mre_jax import paper
from mre_jax.evaluation import metrics
from mre_jax.errors import UserError


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


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
  experiment = "teacher" if is_teacher else (
      distill.experiment or ("baseline" if kd_weight == 0 else "-"))
  if experiment == "baseline":
    experiment = f"baseline_{config.model}"
  return {
      "workdir": os.path.abspath(workdir),
      "dataset": config.dataset.name,
      "model": config.model,
      "experiment": experiment,
      "T": None if is_teacher else distill.temperature,
      "alpha": None if is_teacher else distill.alpha,
      "kd_weight": kd_weight,
      "val_acc": val.get("accuracy"),
      "test_acc": test["accuracy"],
      "mean_class_acc": test["mean_class_accuracy"],
      "epochs": history[-1]["epoch"] if history else None,
      "best_epoch": test.get("checkpoint_step"),
      "wall_s": round(sum(h.get("epoch_seconds", 0) for h in history), 1),
      "device": (info.get("devices") or ["?"])[0],
      "commit": info.get("commit", "unknown"),
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


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
  """Table IV's layout plus our columns, one row per run."""
  pct = lambda x: "-" if x is None else f"{100 * x:.2f}"
  lines = ["| dataset | run | model | T | alpha | kd_weight | val acc (%) | "
           "test acc (%) | paper test acc (%) | mean class acc (%) | epochs | "
           "wall (s) | device |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in records:
    ref = paper.TEST_ACCURACY.get(r["dataset"], {}).get(r["experiment"])
    lines.append(
        f"| {r['dataset']} | {r['experiment']} | {r['model']} | "
        f"{r['T'] or '-'} | {r['alpha'] if r['alpha'] is not None else '-'} | "
        f"{r['kd_weight']} | {pct(r['val_acc'])} | {pct(r['test_acc'])} | "
        f"{'-' if ref is None else f'{ref:.2f}'} | {pct(r['mean_class_acc'])} "
        f"| {r['epochs']} | {r['wall_s']} | {r['device']} |")
  return "\n".join(lines)


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
      ax.plot(epochs, 100 * np.asarray(acc),
              label=f"{r['dataset']} {r['experiment']}")
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy (%)")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def write_report(workdirs: Sequence[str], output: str) -> str:
  """Writes results.md, results.json and figures into ``output``."""
  records = [load_run(w) for w in workdirs]
  os.makedirs(os.path.join(output, "figures"), exist_ok=True)
  figures = []
  for r in records:
    run = f"{r['dataset']} {r['experiment']}"
    name = f"confusion_{run.replace(' ', '_')}.png"
    if metrics.plot_confusion(np.asarray(r["confusion_matrix"]),
                               r["class_names"],
                               os.path.join(output, "figures", name),
                               title=f"{run} (test)"):
      figures.append(name)
  curves = plot_curves(records, os.path.join(output, "figures", "curves.png"))
  lines = ["# Results", "", markdown_table(records), ""]
  if curves:
    lines += ["![validation accuracy per epoch](figures/curves.png)", ""]
  lines += [f"![{f}](figures/{f})" for f in figures]
  path = os.path.join(output, "results.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  keys = ("dataset", "model", "experiment", "T", "alpha", "kd_weight",
          "val_acc", "test_acc", "mean_class_acc", "epochs", "wall_s",
          "device", "commit")
  with open(os.path.join(output, "results.json"), "w") as f:
    json.dump([{k: r[k] for k in keys} for r in records], f, indent=2)
  return path


FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "Finished workdirs (globs allowed).")
flags.DEFINE_string("output", "docs", "Where results.md/json and figures go.")


def main(argv) -> None:
  del argv
  workdirs = sorted({p for pattern in FLAGS.workdirs
                     for p in (glob.glob(pattern) or [pattern])})
  if not workdirs:
    sys.exit("error: --workdirs names no run")
  try:
    print(f"wrote {write_report(workdirs, FLAGS.output)}")
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
