"""The models' 2x2 max pool, computed the way fast on the backend.

:func:`max_pool_2x2` is ``nn.max_pool(x, (2, 2), strides=(2, 2))``, values
and gradient included: the gradient goes, as XLA's select-and-scatter sends
it, to the first maximum of each window in row-major order. On GPU and TPU
(``impl="lax"``, or ``"auto"`` there) it is that flax call. On the CPU it is
element-wise selects instead: XLA's CPU gradient of ``reduce_window`` took 25
of the 42 ms of student C's batch-16 train step.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mre_jax.models import written_once


def _window_views(x: jax.Array) -> list[jax.Array]:
  """The four elements of each 2x2 window, in row-major window order."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  return [x[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]


def _window_max(views: list[jax.Array]) -> jax.Array:
  return jnp.maximum(jnp.maximum(views[0], views[1]),
                     jnp.maximum(views[2], views[3]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, odd: tuple[int, int]) -> jax.Array:
  """The pool of ``x``, whose height and width leave ``odd`` rows and
  columns out of the windows."""
  del odd
  return _window_max(_window_views(x))


def _first_max(x: jax.Array) -> jax.Array:
  """Each window's first maximum: its row-major window index (int8)."""
  views = _window_views(x)
  y = _window_max(views)
  return jnp.where(views[0] == y, 0, jnp.where(
      views[1] == y, 1, jnp.where(views[2] == y, 2, 3))).astype(jnp.int8)


def _max_pool_fwd(x, odd):
  """The pool, and as residual each window's first maximum, found at the
  pool's resolution and written once (:mod:`mre_jax.models.written_once`): one
  byte per window kept instead of the input and output."""
  return _max_pool(x, odd), written_once.once(_first_max, x, token=x)


def _max_pool_bwd(odd, first, cotangent):
  """Each window's cotangent to its first maximum, written in place:
  comparing each element's window index with the first maximum's gives the
  gradient in the input's own layout, with no stack or transpose to fuse."""
  n, oh, ow, c = first.shape
  index = jnp.arange(4, dtype=first.dtype).reshape(1, 1, 2, 1, 2, 1)
  grad = jnp.where(index == first[:, :, None, :, None, :],
                   cotangent[:, :, None, :, None, :],
                   jnp.zeros((), cotangent.dtype))
  grad = grad.reshape(n, 2 * oh, 2 * ow, c)
  return (jnp.pad(grad, ((0, 0), (0, odd[0]), (0, odd[1]), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str = "auto") -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (module doc)."""
  if impl == "lax" or (impl == "auto" and jax.default_backend() != "cpu"):
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _max_pool(x, (x.shape[1] % 2, x.shape[2] % 2))
