"""Valence: how positive or negative an expression is, in [-1, 1].

FaceReader's definition: the probability of ``happy`` minus the strongest of
the negative emotions ``angry``, ``disgust``, ``fear`` and ``sad``. Surprise
and neutral do not count. It is computed from each frame's raw
probabilities, so that averages of valence and of probabilities agree.
A model without some of these classes uses those it has (a missing
``happy`` counts as 0, and so does a model without any negative class).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

POSITIVE = "happy"
NEGATIVE = ("angry", "disgust", "fear", "sad")


def valences(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
  """float64 (N,) valence of each row of (N, K) probabilities."""
  probs = np.asarray(probs, np.float64).reshape(-1, len(class_names))
  names = list(class_names)
  positive = (probs[:, names.index(POSITIVE)] if POSITIVE in names
              else np.zeros(len(probs)))
  negative_ids = [names.index(n) for n in NEGATIVE if n in names]
  negative = (probs[:, negative_ids].max(axis=1) if negative_ids
              else np.zeros(len(probs)))
  return np.clip(positive - negative, -1.0, 1.0)


def valence(probs: np.ndarray, class_names: Sequence[str]) -> float:
  """The valence of one frame's probabilities."""
  return float(valences(probs, class_names)[0])
