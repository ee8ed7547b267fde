"""Temporal smoothing of each face's probabilities.

Per-frame predictions flicker: a blink or motion blur can flip one frame's
label. Each face's probabilities are therefore followed by an exponential
moving average with time constant ``smoothing_s`` seconds,

    s <- s + (1 - exp(-dt / smoothing_s)) * (p - s),

where ``dt`` is the time since the face's previous analysed frame. Using
``dt`` makes the smoothing the same at any sampling rate and lets a face that
was out of view for a while start afresh. ``smoothing_s = 0`` turns it off.
"""

from __future__ import annotations

import math
from typing import Hashable

import numpy as np


class Smoother:
  """Exponential moving average of probabilities, one per face key."""

  def __init__(self, smoothing_s: float):
    if smoothing_s < 0:
      raise ValueError(f"smoothing_s must be >= 0, got {smoothing_s}")
    self.smoothing_s = float(smoothing_s)
    self._state: dict[Hashable, tuple[float, np.ndarray]] = {}

  def __call__(self, key: Hashable, time_s: float,
               probs: np.ndarray) -> np.ndarray:
    """The smoothed probabilities of face ``key`` at ``time_s``."""
    probs = np.asarray(probs, np.float64)
    previous = self._state.get(key)
    if previous is None or self.smoothing_s == 0 or time_s < previous[0]:
      smoothed = probs
    else:
      last_time, last = previous
      weight = 1.0 - math.exp(-(time_s - last_time) / self.smoothing_s)
      smoothed = last + weight * (probs - last)
    self._state[key] = (time_s, smoothed)
    return smoothed
