"""A classifier's accuracy on a dataset's splits, as its model card states it.

The same function writes a card's numbers (:mod:`.publish`) and re-measures
them on a user's copy of the dataset (``python -m mre_jax.pretrained
--verify``), through the classifier's own preprocessing, so the two agree
exactly on the same data and weights. Test-time augmentation (the mean of
the probabilities of each face and its mirror image) is reported separately,
as ``test_flip``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mre_jax.datasets import common
from mre_jax.datasets import loading
from mre_jax.evaluation import metrics

KEYS = ("accuracy", "mean_class_accuracy", "per_class_accuracy",
        "num_examples", "confusion_matrix")
# Card and re-measurement agree when no accuracy differs by more than this
# (a fraction): float summation order may move a face near a tie.
TOLERANCE = 0.001


def load_splits(dataset: dict[str, Any], data_dir: str, manual_dir: str
                ) -> dict[str, common.SplitData]:
  """The train, validation and test splits of a card's or a run config's
  ``dataset`` section (name, builder_config, validation), prepared from
  ``manual_dir`` into ``data_dir`` if needed."""
  return loading.load_splits(loading.DataSpec(
      name=dataset["name"], data_dir=data_dir, manual_dir=manual_dir,
      builder_config=dataset.get("builder_config", ""),
      validation=dataset.get("validation", "auto")))


def split_metrics(classifier: Any, split: common.SplitData,
                  flip: bool = False) -> dict[str, Any]:
  """Accuracy, mean and per-class accuracy and the confusion matrix."""
  probs = classifier.probabilities(split.images)
  if flip:
    mirrored = np.ascontiguousarray(split.images[:, :, ::-1])
    probs = (probs + classifier.probabilities(mirrored)) / 2
  log_probs = np.log(np.maximum(probs, 1e-30))
  result = metrics.metrics_from_logits(log_probs, split.labels, None,
                                       split.class_names)
  return {k: result[k] for k in KEYS}


def measure(classifier: Any, splits: Mapping[str, common.SplitData]
            ) -> dict[str, dict[str, Any]]:
  """``validation``, ``test`` and ``test_flip`` metrics of ``classifier``."""
  return {"validation": split_metrics(classifier, splits["validation"]),
          "test": split_metrics(classifier, splits["test"]),
          "test_flip": split_metrics(classifier, splits["test"], flip=True)}


def differences(card: Mapping[str, Any], measured: Mapping[str, Any]
                ) -> list[tuple[str, str, float, float]]:
  """``(split, metric, card, measured)`` for every accuracy of the card,
  overall, mean per class and per class."""
  rows = []
  for split, stated in card.items():
    got = measured.get(split)
    if got is None:
      continue
    rows.append((split, "accuracy", stated["accuracy"], got["accuracy"]))
    rows.append((split, "mean class accuracy", stated["mean_class_accuracy"],
                 got["mean_class_accuracy"]))
    for name, value in stated["per_class_accuracy"].items():
      rows.append((split, name, value,
                   got["per_class_accuracy"].get(name, float("nan"))))
  return rows


def agree(rows: list[tuple[str, str, float, float]]) -> bool:
  """Whether every measured accuracy is within :data:`TOLERANCE`."""
  return all(stated is None and got is None or (
      stated is not None and got is not None and
      abs(stated - got) <= TOLERANCE) for _, _, stated, got in rows)
