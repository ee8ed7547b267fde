"""The speed benchmark's record: its entries and how to look them up.

The record is plain JSON (``--json_out``): per model, per framework
(``jax``, ``torch_eager``, ``torch_compile``), ``train`` and ``inference``
entries keyed by batch size as a string.
"""

from __future__ import annotations

from typing import Any

from mre_jax.benchmarks import device
from mre_jax.benchmarks import timing


def train_result(measured: timing.Timing, batch: int,
                 steps: int) -> dict[str, Any]:
  """Throughput of ``steps`` training steps of ``batch`` images per call."""
  seconds = measured.median_s
  return {"images_per_second": steps * batch / seconds,
          "ms_per_step": 1e3 * seconds / steps, "steps_per_call": steps,
          **measured.asdict()}


def inference_result(measured: timing.Timing, batch: int) -> dict[str, Any]:
  """Latency and throughput of one forward call on ``batch`` images."""
  seconds = measured.median_s
  return {"images_per_second": batch / seconds,
          "ms_per_image": 1e3 * seconds / batch, **measured.asdict()}


def with_flops(result: dict[str, Any], flops_per_image: float,
               peak_flops: float | None) -> dict[str, Any]:
  """Adds achieved FLOP/s and its share of the measured peak."""
  achieved = result["images_per_second"] * flops_per_image
  return {**result, "flops_per_second": achieved,
          "peak_fraction": achieved / peak_flops if peak_flops else None}


def model_size_mb(num_params: int) -> dict[str, float]:
  """Parameter bytes on disk, in MiB (as the paper's Table V)."""
  return {"float32": num_params * 4 / device.MIB,
          "bfloat16": num_params * 2 / device.MIB}


def lookup(record: Any, *path: str) -> Any:
  """``record[path[0]][path[1]]...``, or None where a key is missing."""
  for key in path:
    if not isinstance(record, dict) or key not in record:
      return None
    record = record[key]
  return record
