"""Normalisation by batch statistics, with its gradient written out.

:func:`normalize` computes what ``TorchBatchNorm`` computes in training (the
batch mean, the biased batch variance, and the normalised, scaled and
shifted input) in the same operations. Its gradient is the textbook one,

  dx = scale * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)),

two sums over the input and the cotangent and one element-wise pass.
JAX's derivative of the forward operations takes several reductions and
element-wise passes over the full-size maps instead, and on the CPU a
training step of the small students is bound by such passes over their
first stage's maps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  return mean, jnp.mean(jnp.square(x - mean), axes)


def affine(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array,
           bias: jax.Array, epsilon: float) -> jax.Array:
  """``x`` normalised by ``mean`` and ``var``, times ``scale`` plus ``bias``:
  the formula of training (batch statistics) and evaluation (running
  averages) alike."""
  return (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize(x: jax.Array, scale: jax.Array, bias: jax.Array,
              epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(y, mean, var)``: ``x`` (..., C) normalised by its statistics over
  every axis but the last, times ``scale`` plus ``bias`` (C,); the batch
  mean and biased variance (C,)."""
  mean, var = _stats(x)
  return affine(x, mean, var, scale, bias, epsilon), mean, var


def _normalize_fwd(x, scale, bias, epsilon):
  y, mean, var = normalize(x, scale, bias, epsilon)
  return (y, mean, var), (x, scale, mean, jax.lax.rsqrt(var + epsilon))


def _normalize_bwd(epsilon, residuals, cotangents):
  del epsilon
  x, scale, mean, rstd = residuals
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  centred = x - mean
  dbias = jnp.sum(dy, axes)
  dscale = jnp.sum(dy * centred, axes) * rstd
  # Through y (the textbook formula), and through the mean and variance
  # returned (zero in training: only the running averages read them).
  dx = (scale * rstd) * (dy - dbias / count
                         - centred * (rstd * dscale / count))
  dx = dx + dmean / count + centred * (2 * dvar / count)
  return dx, dscale, dbias


normalize.defvjp(_normalize_fwd, _normalize_bwd)
