"""The speed targets the models are meant to meet on a GPU, with pass/fail.

Inference latency: the paper's per-image times (Table V, FER2013, on a Tesla
P100) of the teacher and the students its experiments distil. Training: JAX
at the recipe's batch at least ``EAGER_SPEEDUP`` times the PyTorch reference
in eager mode and faster than ``torch.compile``, and the teacher's large-batch
training at least ``PEAK_SHARE`` of the device's bf16 matmul peak.
"""

from __future__ import annotations

from typing import Any, Callable

from mre_jax.benchmarks import results
from mre_jax.config import paper

EAGER_SPEEDUP = 3.0
PEAK_SHARE = 0.40
PEAK_SHARE_BATCH = 256


def paper_latency_ms() -> dict[str, float]:
  """Model preset -> the paper's inference time per image (ms)."""
  table = paper.TABLE_V["inference_ms"]["fer2013"]
  return {("teacher" if run == "teacher" else paper.EXPERIMENTS[run][0]): ms
          for run, ms in table.items()}


def speedup(model: dict[str, Any], other: str, kind: str,
            batch: int) -> float | None:
  """How many times faster JAX is than ``other`` (>1: JAX is faster)."""
  jax_ips = results.lookup(model, "jax", kind, str(batch), "images_per_second")
  other_ips = results.lookup(model, other, kind, str(batch),
                             "images_per_second")
  if not jax_ips or not other_ips:
    return None
  return jax_ips / other_ips


def _target(name: str, measured: float | None, required: str,
            passed: Callable[[float], bool], unit: str) -> dict[str, Any]:
  return {"target": name, "required": required, "measured": measured,
          "unit": unit,
          "passed": None if measured is None else bool(passed(measured))}


def _torch_targets(record: dict[str, Any], name: str,
                   model: dict[str, Any]) -> list[dict[str, Any]]:
  batch = record["recipe_batch_size"]
  wanted = {"eager": ("torch eager", f">= {EAGER_SPEEDUP:g}x",
                      lambda x: x >= EAGER_SPEEDUP),
            "compile": ("torch.compile", "> 1x", lambda x: x > 1)}
  found = []
  for mode in record["torch_modes"]:
    label, required, passed = wanted[mode]
    found.append(_target(
        f"{name}: JAX train img/s at batch {batch} / {label}",
        speedup(model, f"torch_{mode}", "train", batch), required, passed,
        "x"))
  return found


def _preset_targets(name: str, model: dict[str, Any]) -> list[dict[str, Any]]:
  found = []
  latency = paper_latency_ms().get(name)
  if latency:
    found.append(_target(
        f"{name}: JAX inference latency at batch 1 (paper)",
        results.lookup(model, "jax", "inference", "1", "ms_per_image"),
        f"< {latency:g} ms/img", lambda x: x < latency, "ms/img"))
  if name == "teacher":
    share = results.lookup(model, "jax", "train", str(PEAK_SHARE_BATCH),
                           "peak_fraction")
    found.append(_target(
        f"teacher: JAX training FLOP/s at batch {PEAK_SHARE_BATCH} / bf16 "
        "peak", None if share is None else 100 * share,
        f">= {100 * PEAK_SHARE:g} %", lambda x: x >= 100 * PEAK_SHARE, "%"))
  return found


def evaluate(record: dict[str, Any]) -> list[dict[str, Any]]:
  """The targets that apply to this run, with pass/fail.

  Latency and peak-share targets refer to the presets and are left out under
  a width override; a target whose measurement this run did not make reads
  ``measured: None``.
  """
  found = []
  for name, model in record["models"].items():
    found += _torch_targets(record, name, model)
    if not record["width_override"]:
      found += _preset_targets(name, model)
  return found
