"""The shipped models beside the paper's students and other tools, in Markdown.

Every number comes from a model card (:mod:`mre_jax.models.shipped`), the
paper (:mod:`mre_jax.config.paper`) or
:data:`mre_jax.models.shipped.REFERENCES`; the results report and the
README's headline print these tables.
"""

from __future__ import annotations

from mre_jax.config import paper
from mre_jax.models import shipped

_pct = lambda x: "-" if x is None else f"{100 * x:.2f}"


def paper_best(model: str, dataset: str) -> tuple[str, float] | None:
  """The paper's best experiment of ``model`` on ``dataset`` (Table IV) and
  its test accuracy (%), or None where the paper has none."""
  runs = [(run, accuracy) for run, accuracy in
          paper.TEST_ACCURACY.get(dataset, {}).items()
          if paper.EXPERIMENTS.get(run, ("teacher",))[0] == model]
  return max(runs, key=lambda r: r[1]) if runs else None


def shipped_table(folder: str = shipped.FOLDER) -> str:
  """One row per shipped model: its accuracies and the paper's student."""
  lines = ["| model | dataset | parameters | weights | val acc (%) | "
           "test acc (%) | mean class acc (%) | test acc, flip TTA (%) | "
           "epochs | paper (Table IV) test acc (%) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name in shipped.names(folder):
    card = shipped.card(name, folder)
    acc = card["accuracy"]
    best = paper_best(card["model"]["name"], card["dataset"]["name"])
    weights = card["weights"]
    lines.append(
        f"| `{name}` | {card['dataset']['name']} | "
        f"{card['model']['num_params']:,} | "
        f"{weights['bytes'] / 2**20:.1f} MiB ({weights['dtype']}) | "
        f"{_pct(acc['validation']['accuracy'])} | "
        f"{_pct(acc['test']['accuracy'])} | "
        f"{_pct(acc['test']['mean_class_accuracy'])} | "
        f"{_pct(acc['test_flip']['accuracy'])} | "
        f"{card['training']['epochs']} | "
        f"{f'{best[1]:.2f} ({best[0]})' if best else '-'} |")
  return "\n".join(lines)


def references_table() -> str:
  """Other tools' accuracies on the same test splits."""
  lines = ["| dataset | tool | test acc (%) | mean class acc (%) |",
           "|---|---|---|---|"]
  for dataset, tools in shipped.REFERENCES.items():
    for tool, acc in tools.items():
      lines.append(f"| {dataset} | {tool} | {_pct(acc['accuracy'])} | "
                   f"{_pct(acc.get('mean_class_accuracy'))} |")
  return "\n".join(lines)
