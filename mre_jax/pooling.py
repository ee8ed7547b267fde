"""The models' 2x2 max pool, computed the way fast on the backend.

:func:`max_pool_2x2` is ``nn.max_pool(x, (2, 2), strides=(2, 2))``, values
and gradient included: the gradient goes, as XLA's select-and-scatter sends
it, to the first maximum of each window in row-major order. On GPU and TPU
(``impl="lax"``, or ``"auto"`` there) it is that flax call. On the CPU it is
element-wise selects instead: XLA's CPU gradient of ``reduce_window`` took 25
of the 42 ms of student C's batch-16 train step.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _window_views(x: jax.Array) -> list[jax.Array]:
  """The four elements of each 2x2 window, in row-major window order."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  return [x[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]


def _window_max(views: list[jax.Array]) -> jax.Array:
  return jnp.maximum(jnp.maximum(views[0], views[1]),
                     jnp.maximum(views[2], views[3]))


@jax.custom_vjp
def _max_pool(x: jax.Array) -> jax.Array:
  return _window_max(_window_views(x))


def _max_pool_fwd(x):
  y = _max_pool(x)
  return y, (x, y)


def _max_pool_bwd(residuals, cotangent):
  """Each window's cotangent to its first maximum, written in place.

  The first maximum is the lowest row-major window index among the maxima.
  Comparing each element's index with it at full resolution gives the
  gradient in the input's own layout, with no stack or transpose to fuse.
  """
  x, y = residuals
  n, h, w, c = x.shape
  oh, ow = h // 2, w // 2
  x = x[:, :2 * oh, :2 * ow].reshape(n, oh, 2, ow, 2, c)
  y = y[:, :, None, :, None, :]
  index = jnp.arange(4, dtype=jnp.int32).reshape(1, 1, 2, 1, 2, 1)
  first = jnp.min(jnp.where(x == y, index, 4), axis=(2, 4), keepdims=True)
  grad = jnp.where(index == first, cotangent[:, :, None, :, None, :],
                   jnp.zeros((), cotangent.dtype))
  grad = grad.reshape(n, 2 * oh, 2 * ow, c)
  return (jnp.pad(grad, ((0, 0), (0, h - 2 * oh), (0, w - 2 * ow), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str = "auto") -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (module doc)."""
  if impl == "lax" or (impl == "auto" and jax.default_backend() != "cpu"):
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _max_pool(x)
