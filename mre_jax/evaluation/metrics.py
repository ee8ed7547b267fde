"""Evaluation metrics from host logits, and the files they are written to.

The metrics are computed on the host from the logits of
:func:`mre_jax.evaluation.predict.predict`: accuracy, mean and per-class
accuracy, the training criterion's loss and the confusion matrix.
"""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any, Sequence

import numpy as np

def metrics_from_logits(logits: np.ndarray, labels: np.ndarray,
                        class_weights: np.ndarray | None,
                        class_names: Sequence[str]) -> dict[str, Any]:
  """Accuracy, mean/per-class accuracy, (weighted) CE loss, confusion matrix.

  The loss uses the training criterion: cross-entropy weighted by the train
  split's class weights (PyTorch's weighted mean) when those are given.
  """
  num_classes = len(class_names)
  logits = logits.astype(np.float64)
  predictions = logits.argmax(-1)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, predictions), 1)
  support = confusion.sum(1)
  per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1),
                       np.nan)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  nll = -log_probs[np.arange(len(labels)), labels]
  weights = (np.ones_like(nll) if class_weights is None
             else np.asarray(class_weights, np.float64)[labels])
  return {
      "accuracy": float(np.mean(predictions == labels)),
      "mean_class_accuracy": float(np.nanmean(per_class)),
      "per_class_accuracy": {name: (None if np.isnan(a) else float(a))
                             for name, a in zip(class_names, per_class)},
      "loss": float(np.sum(weights * nll) / max(np.sum(weights), 1e-12)),
      "confusion_matrix": confusion.tolist(),
      "num_examples": int(len(labels)),
  }


def write_report(workdir: str, name: str, metrics: dict[str, Any],
                 class_names: Sequence[str]) -> str:
  """Writes ``eval_<name>.json`` (and a confusion-matrix PNG if possible).

  ``name`` is the split, prefixed with the dataset when it is not the run's
  own (``fer2013_test``), so that no evaluation overwrites another's files.
  """
  path = os.path.join(workdir, f"eval_{name}.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(metrics, f, indent=2)
  os.replace(tmp, path)
  plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names,
                 os.path.join(workdir, f"confusion_{name}.png"),
                 title=f"{name}: accuracy {metrics['accuracy']:.2%}")
  return path


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str],
                   path: str, title: str = "") -> bool:
  """Row-normalised confusion matrix as PNG; False if matplotlib is missing."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(6, 5))
  ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
  k = len(class_names)
  ax.set_xticks(range(k), class_names, rotation=45, ha="right")
  ax.set_yticks(range(k), class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  for i in range(k):
    for j in range(k):
      ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=7,
              color="white" if rows[i, j] > 0.5 else "black")
  # Long run names wrap instead of running off the figure.
  ax.set_title("\n".join(textwrap.wrap(title, 48, break_on_hyphens=False)))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def format_summary(split: str, metrics: dict[str, Any], step: int) -> str:
  return (f"{split} (epoch {step}): accuracy {metrics['accuracy']:.2%}, "
          f"mean class accuracy {metrics['mean_class_accuracy']:.2%}, "
          f"loss {metrics['loss']:.4f} over {metrics['num_examples']} examples")
