"""The device: its measured matmul peak, and the memory programs take.

Speeds are reported as a share of the peak, measured here rather than taken
from a data sheet, so the share means the same on any device.
"""

from __future__ import annotations

import math
import os
import platform
from typing import Any

import jax
import jax.numpy as jnp

from mre_jax.benchmarks import timing

MIB = 2**20


def on_cpu() -> bool:
  """Whether JAX runs on the host's CPU (smaller peak measurement)."""
  return jax.default_backend() == "cpu"


def describe() -> dict[str, Any]:
  """The first JAX device and the host, for the record."""
  device = jax.devices()[0]
  return {"jax_version": jax.__version__,
          "jax_device": f"{device.platform}: {device.device_kind}",
          "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                   "load_average": list(os.getloadavg())}}


def measure_matmul_peak(budget: timing.Budget, size: int = 0,
                        seed: int = 0) -> dict[str, Any]:
  """The device's achieved bf16 matmul FLOP/s on large square products.

  Each call chains ``iterations`` products ``x <- x @ b`` in one program
  (``b`` scaled to keep ``x`` in range), so dispatch is amortised and no
  product can be skipped. ``size`` 0: 8192 on accelerators, 2048 on CPU.
  """
  size = size or (2048 if on_cpu() else 8192)
  iterations = 4 if on_cpu() else 20
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  b = (jax.random.normal(keys[0], (size, size), jnp.float32) /
       math.sqrt(size)).astype(jnp.bfloat16)
  xs = [jax.random.normal(k, (size, size), jnp.bfloat16) for k in keys[1:]]

  @jax.jit
  def chain(x, b):
    return jax.lax.fori_loop(0, iterations, lambda _, y: jnp.dot(y, b), x)

  compiled = chain.lower(xs[0], b).compile()
  measured = timing.time_calls(lambda i: compiled(xs[i % len(xs)], b),
                               budget)
  flops = 2.0 * size**3 * iterations
  return {"flops_per_second": flops / measured.median_s, "size": size,
          "iterations": iterations, **measured.asdict()}


def compiled_memory_mb(compiled) -> float | None:
  """Device memory XLA reserves for a program: arguments, outputs, temps."""
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  used = (stats.argument_size_in_bytes + stats.output_size_in_bytes -
          stats.alias_size_in_bytes + stats.temp_size_in_bytes)
  return used / MIB


def peak_memory_mb() -> float | None:
  """Peak bytes in use on the first JAX device so far; None if unknown.

  The process's peak, which cannot be reset; CPU devices keep no statistics.
  """
  stats = jax.devices()[0].memory_stats()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / MIB
