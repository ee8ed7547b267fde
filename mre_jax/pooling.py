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
  return _max_pool(x), x


def _max_pool_bwd(x, cotangent):
  """Each window's cotangent to its first maximum, assembled in one pass."""
  views = _window_views(x)
  y = _window_max(views)
  taken, grads = jnp.zeros(y.shape, bool), []
  for view in views:
    first = (view == y) & ~taken
    taken |= first
    grads.append(jnp.where(first, cotangent, jnp.zeros((), cotangent.dtype)))
  n, oh, ow, c = y.shape
  grad = jnp.stack(grads, 3).reshape(n, oh, ow, 2, 2, c)
  grad = grad.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * oh, 2 * ow, c)
  return (jnp.pad(grad, ((0, 0), (0, x.shape[1] - 2 * oh),
                         (0, x.shape[2] - 2 * ow), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str = "auto") -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` (module doc)."""
  if impl == "lax" or (impl == "auto" and jax.default_backend() != "cpu"):
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _max_pool(x)
