"""A batch-wise function computed by a loop over chunks of the batch.

XLA on the CPU fuses a cheap element-wise producer into each of its
consumers and computes it again in each: a convolution written as
element-wise products (:func:`mre_jax.conv.conv_taps`) or a dropout mask's
random bits (:mod:`mre_jax.dropout`) would be recomputed by the batch
statistics, the activation and every gradient that reads them. A loop's
output is written to memory once, and JAX's optimisation barrier is no help
there (the CPU compiler removes it), so these are computed by
:func:`map_chunks`.
"""

from __future__ import annotations

from typing import Callable

import jax
from jax import lax


def chunk_rows(n: int, per_row: int, limit: int) -> int:
  """Rows per chunk: the largest divisor of ``n`` below ``n`` whose rows hold
  at most ``limit`` values (at least 1; ``n`` for ``n = 1``).

  A single chunk would be no loop at all (XLA inlines it), hence at least
  two chunks for ``n >= 2``.
  """
  fitting = [d for d in range(2, n) if n % d == 0 and d * per_row <= limit]
  return max(fitting, default=1)


def map_chunks(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
               per_row: int, limit: int) -> jax.Array:
  """``fn(x)`` for a row-wise ``fn`` whose output has ``per_row`` values per
  row of ``x``, computed over chunks of :func:`chunk_rows` rows."""
  n = x.shape[0]
  if not isinstance(n, int):  # Symbolic batch (jax.export): one piece.
    return fn(x)
  rows = chunk_rows(n, per_row, limit)
  out = lax.map(fn, x.reshape((n // rows, rows) + x.shape[1:]))
  return out.reshape((n,) + out.shape[2:])
