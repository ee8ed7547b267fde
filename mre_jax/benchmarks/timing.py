"""The one timer of every benchmark: median wall time of repeated calls.

Warm-up calls (compilation, autotuning, clocks ramping up) are not timed, the
device is synchronised before each clock read, and a measurement stops once
its time budget is spent, so slow settings (large models on CPU) stay bounded.
On a virtual machine, each measurement also records the share of the CPUs'
time that the hypervisor gave to other guests meanwhile (Linux's steal
time): on a shared machine that, not the code, is what often makes two runs
of one measurement differ.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any, Callable

import jax

from mre_jax.errors import ConfigError

# Distinct inputs that successive timed calls cycle through, so that no call
# gets the inputs of the one before.
INPUT_POOL = 4


@dataclasses.dataclass(frozen=True)
class Budget:
  """How many calls to warm up with and to time, and for how long.

  Attributes:
    repeats: timed calls, at most.
    max_seconds: no further call is timed once the timed calls so far plus
      the last one's duration would exceed this (at least one call is timed).
    warmup: untimed calls first (0 for one-off work, such as preparing a
      dataset, that a second call would not repeat).
    warmup_seconds: more untimed calls until this long after the first one
      ended.
    min_seconds: more timed calls than ``repeats`` until the timed calls add
      up to this long (within ``max_seconds``): the median of short calls,
      such as inference at batch 1, is then over hundreds of them, not a
      few that the machine's noise can shift.
  """
  repeats: int = 10
  max_seconds: float = 30.0
  warmup: int = 1
  warmup_seconds: float = 0.0
  min_seconds: float = 0.0

  def __post_init__(self):
    if (self.repeats < 1 or self.warmup < 0
        or min(self.max_seconds, self.warmup_seconds, self.min_seconds) < 0):
      raise ConfigError(
          f"--repeats={self.repeats} must be positive, and "
          f"--max_seconds_per_measurement={self.max_seconds:g}, "
          f"--min_seconds_per_measurement={self.min_seconds:g} and "
          f"--warmup_seconds={self.warmup_seconds:g} not negative.")


@dataclasses.dataclass(frozen=True)
class Timing:
  """Wall seconds of the timed calls of one measurement, and the share of
  the CPUs' time stolen by the hypervisor while they ran (None where the
  system does not report it)."""
  median_s: float
  min_s: float
  max_s: float
  repeats: int
  stolen_fraction: float | None = None

  def asdict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


def time_calls(call: Callable[[int], Any], budget: Budget,
               sync: Callable[[Any], Any] = jax.block_until_ready) -> Timing:
  """Times ``call(i)``, each call with its own index ``i`` (0, 1, 2 ...).

  ``sync`` receives each call's result and waits for the device work behind
  it before the clock is read (the default waits for JAX arrays and returns
  anything else at once).
  """
  index = _warm_up(call, budget, sync)
  times, total = [], 0.0
  stolen_before = stolen_cpu_seconds()
  while (len(times) < budget.repeats or total < budget.min_seconds) and (
      not times or total + times[-1] <= budget.max_seconds):
    start = time.perf_counter()
    sync(call(index))
    times.append(time.perf_counter() - start)
    total += times[-1]
    index += 1
  return Timing(median_s=statistics.median(times), min_s=min(times),
                max_s=max(times), repeats=len(times),
                stolen_fraction=_stolen_fraction(stolen_before, total))


def stolen_cpu_seconds() -> float | None:
  """CPU seconds that the hypervisor has given to other guests since boot,
  summed over this machine's CPUs (Linux's steal time), or None where the
  system does not report it."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return None


def _stolen_fraction(stolen_before: float | None,
                     seconds: float) -> float | None:
  """Stolen CPU time since ``stolen_before``, as a share of ``seconds`` of
  all CPUs' time."""
  stolen_after = stolen_cpu_seconds()
  if stolen_before is None or stolen_after is None or seconds <= 0:
    return None
  return (stolen_after - stolen_before) / (seconds * (os.cpu_count() or 1))


def _warm_up(call: Callable[[int], Any], budget: Budget,
             sync: Callable[[Any], Any]) -> int:
  """Runs the untimed calls; returns the index of the first timed one."""
  if budget.warmup < 1:
    return 0
  sync(call(0))
  index, warm_from = 1, time.perf_counter()
  while (index < budget.warmup
         or time.perf_counter() - warm_from < budget.warmup_seconds):
    sync(call(index))
    index += 1
  return index


def time_result(fn: Callable[[], Any],
                budget: Budget = Budget(repeats=1, warmup=0)
                ) -> tuple[Any, Timing]:
  """``fn()``'s last result and the timing of its calls.

  The default budget times one call and warms up with none: for one-off
  work, such as preparing a dataset, that a second call would not repeat.
  """
  results = []

  def call(_):
    results.append(fn())
    return results[-1]

  measured = time_calls(call, budget)
  return results[-1], measured
