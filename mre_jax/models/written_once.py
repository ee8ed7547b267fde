"""A value computed once and written to memory, not fused into its users.

XLA on the CPU fuses a cheap element-wise producer into each of its
consumers and computes it again in each: a convolution written as
element-wise products (:func:`mre_jax.models.conv.conv_taps`), a dropout mask's
random bits (:mod:`mre_jax.models.dropout`) or the max pool's first maxima
(:mod:`mre_jax.models.pooling`) would be recomputed by the batch statistics, the
activation and every gradient that reads them. JAX's
optimisation barrier is no help there (the CPU compiler removes it).

A conditional's result is written once, and its branches are not fused into
the conditional's users. So :func:`once` is ``lax.cond`` with ``fn`` as both
branches: whichever the predicate picks, the value is ``fn(*operands)``. The
predicate reads ``token`` at run time only so that XLA cannot remove the
conditional: a predicate read from a constant (such as a kernel compiled
into an inference program) is folded, and the conditional with it. Before,
a loop over chunks of the batch (``lax.map``) did the same, but it first
filled its output with zeros and then wrote it chunk by chunk, and at batch
1 XLA inlined it. On a 2-core Zen 4 the conditional made student C's train
step about 2% faster for each of its two users, and its inference 15%
(batch 64) and 33% (batch 1) faster (``docs/performance.md``, part 8).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp


def once(fn: Callable[..., Any], *operands: Any, token: jax.Array) -> Any:
  """``fn(*operands)``, computed once and written to memory (module doc).

  ``token`` is any array computed at run time. Its value does not change
  the result, but a predicate read from it must not be traced as linear:
  under ``jax.linear_transpose`` it must not depend on the transposed input.
  """
  first = jnp.ravel(token)[0]
  return lax.cond(first != jnp.zeros((), first.dtype), fn, fn, *operands)
