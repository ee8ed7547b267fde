"""The benchmarks' shared timer, on a fake clock that calls advance."""

from __future__ import annotations

import pathlib

import pytest

from mre_jax.benchmarks import timing
from mre_jax.errors import ConfigError


class FakeClock:
  """``perf_counter`` that only moves when a call or a sync says so."""

  def __init__(self):
    self.now = 0.0
    self.events = []

  def __call__(self) -> float:
    self.events.append("clock")
    return self.now


@pytest.fixture
def clock(monkeypatch):
  fake = FakeClock()
  monkeypatch.setattr(timing.time, "perf_counter", fake)
  monkeypatch.setattr(timing, "stolen_cpu_seconds", lambda: None)
  return fake


def _calls(clock, durations, sync_seconds=0.0):
  """``call(i)`` taking ``durations[i]`` s, and a sync taking more."""
  calls = []

  def call(i):
    calls.append(i)
    clock.now += durations[i]
    return i

  def sync(i):
    clock.events.append(f"sync {i}")
    clock.now += sync_seconds

  return call, sync, calls


def test_median_of_timed_calls_after_warmup(clock):
  call, sync, calls = _calls(clock, [100.0, 5.0, 1.0, 3.0])
  measured = timing.time_calls(call, timing.Budget(repeats=3, warmup=1),
                               sync)
  assert calls == [0, 1, 2, 3]  # The slow first call is not timed.
  assert measured == timing.Timing(median_s=3.0, min_s=1.0, max_s=5.0,
                                   repeats=3)


def test_device_work_is_waited_for_before_the_clock_is_read(clock):
  call, sync, _ = _calls(clock, [1.0, 1.0, 1.0], sync_seconds=2.0)
  measured = timing.time_calls(call, timing.Budget(repeats=2, warmup=1),
                               sync)
  assert measured.median_s == 3.0  # The call and the work it started.
  after_sync = [clock.events[i + 1] for i, event in enumerate(clock.events)
                if event.startswith("sync")]
  assert after_sync == ["clock"] * 3


def test_time_budget_stops_timing(clock):
  call, sync, calls = _calls(clock, [1.0] * 100)
  measured = timing.time_calls(
      call, timing.Budget(repeats=50, max_seconds=4.0, warmup=0), sync)
  # A fifth call would take the timed total past 4 s.
  assert measured.repeats == 4 and calls == [0, 1, 2, 3]


def test_short_calls_are_timed_until_min_seconds(clock):
  call, sync, calls = _calls(clock, [0.5] * 100)
  measured = timing.time_calls(
      call, timing.Budget(repeats=2, min_seconds=3.0, warmup=0), sync)
  assert measured.repeats == 6 and calls == list(range(6))
  # Within the time budget, which still stops timing first.
  call, sync, calls = _calls(clock, [0.5] * 100)
  measured = timing.time_calls(call, timing.Budget(
      repeats=2, min_seconds=3.0, max_seconds=2.0, warmup=0), sync)
  assert measured.repeats == 4
  # Long calls: ``repeats`` of them, as without it.
  call, sync, calls = _calls(clock, [5.0] * 100)
  measured = timing.time_calls(
      call, timing.Budget(repeats=2, min_seconds=3.0, warmup=0), sync)
  assert measured.repeats == 2


def test_at_least_one_call_is_timed(clock):
  call, sync, calls = _calls(clock, [10.0, 10.0, 10.0])
  measured = timing.time_calls(
      call, timing.Budget(repeats=5, max_seconds=0.0, warmup=2), sync)
  assert measured.repeats == 1 and calls == [0, 1, 2]


def test_warmup_runs_for_warmup_seconds(clock):
  call, sync, calls = _calls(clock, [1.0] * 10)
  timing.time_calls(call, timing.Budget(repeats=1, warmup=1,
                                        warmup_seconds=3.0), sync)
  # The warm-up continues until 3 s after the first call ended.
  assert calls == [0, 1, 2, 3, 4]


def test_time_result_times_one_off_work_once(clock):
  call, _, calls = _calls(clock, [7.0, 7.0])
  result, measured = timing.time_result(lambda: call(len(calls)))
  assert (result, calls) == (0, [0])
  assert measured.median_s == 7.0 and measured.repeats == 1


def test_time_result_returns_the_last_result(clock):
  call, _, calls = _calls(clock, [1.0] * 5)
  result, measured = timing.time_result(lambda: call(len(calls)),
                                        timing.Budget(repeats=3, warmup=1))
  assert result == 3 and measured.repeats == 3


def test_jax_results_are_waited_for():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  measured = timing.time_calls(lambda i: jnp.full((4,), i) * 2,
                               timing.Budget(repeats=2, warmup=1))
  assert measured.repeats == 2 and measured.min_s <= measured.median_s


@pytest.mark.parametrize("bad", [{"repeats": 0}, {"warmup": -1},
                                 {"max_seconds": -1.0}, {"min_seconds": -1.0}])
def test_budget_rejects_bad_values(bad):
  with pytest.raises(ConfigError, match="--repeats"):
    timing.Budget(**bad)


def test_stolen_share_of_the_cpus_time_is_recorded(clock, monkeypatch):
  stolen = iter([10.0, 13.0])  # Before and after the timed calls.
  monkeypatch.setattr(timing, "stolen_cpu_seconds", lambda: next(stolen))
  monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
  call, sync, _ = _calls(clock, [1.0] * 10)
  measured = timing.time_calls(call, timing.Budget(repeats=5, warmup=1),
                               sync)
  # 3 CPU seconds stolen while 2 CPUs ran 5 s of timed calls.
  assert measured.stolen_fraction == pytest.approx(0.3)
  assert measured.asdict()["stolen_fraction"] == pytest.approx(0.3)


def test_steal_time_is_read_from_linux_or_is_none():
  stolen = timing.stolen_cpu_seconds()
  if pathlib.Path("/proc/stat").exists():
    assert stolen is not None and stolen >= 0
    assert timing.stolen_cpu_seconds() >= stolen
  else:
    assert stolen is None

