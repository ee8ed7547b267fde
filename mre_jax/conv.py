"""The models' convolution and max pool, computed the way fast on the backend.

:class:`Conv` replaces ``flax.linen.Conv`` in :mod:`mre_jax.models` with the
same parameters (``kernel`` (k, k, in, out) and ``bias``, float32, with the
initialisers it is given), padding ``k // 2`` on every side, and a compute
``dtype``. Only how the products are computed differs:

* ``"lax"``: ``lax.conv_general_dilated``, as ``nn.Conv`` does.
* ``"dot"``: matrix products. Output positions that see the same kernel taps
  (the interior, and each border strip and corner) form a region; per region
  the strided input slices its taps read are concatenated on the channel axis
  and multiplied, in one ``dot``, with those taps' rows of the kernel. No tap
  ever reads padding, so the products (and the FLOPs counted by
  :mod:`mre_jax.benchmarks.flops`) are exactly the convolution's; a 3x3
  convolution of a 1x1 map is one product with the kernel's centre.

``"auto"`` takes ``"lax"`` on GPU and TPU (cuDNN and the TPU's convolution
units are fast everywhere). On the CPU it picks the forward pass and the
gradient separately, per shape (:func:`choose`): XLA's CPU convolution is
fast on large maps and few channels, but pathological on small maps with many
channels, and its gradient is slow even on large maps once there are a few
dozen input channels. Measured on a 2-core Zen 4, float32, batch 64, ms for
the forward pass / the gradient (input and kernel, without the forward):

=========================  ===============  ==============
input -> output, 3x3       lax              dot
=========================  ===============  ==============
64x64x3 -> 32               37 / 75         64 / 75
32x32x16 -> 32               9 / 42         36 / 74
32x32x32 -> 64              40 / 866       119 / 223
16x16x64 -> 128             44 / 266       120 / 206
8x8x128 -> 256, stride 2    14 / 29         10 / 28
4x4x128 -> 256, stride 2     3 / 43          1 / 3
2x2x512 -> 512            1544 / 1644       11 / 18
1x1x1024 -> 1024           410 / 512         3 / 32
=========================  ===============  ==============

Below 32 input channels the dot form is no faster (second row; on maps of at
most 8x8 either form takes tenths of a millisecond at batch 16) and it takes
longer to compile. So the rule, on the CPU, is: ``"dot"`` for the gradient
when the input has at least 32 channels, and for the forward pass when it
also has at most 8x8 pixels; ``"lax"`` otherwise. When the two differ, a
``jax.custom_vjp`` joins them (so such a layer has no forward-mode
derivative).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Dtype = Any
IMPLEMENTATIONS = ("auto", "lax", "dot")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# The CPU rule (module doc): the fewest input channels that take "dot", and
# the largest map (pixels) whose forward pass does.
DOT_MIN_CHANNELS = 32
DOT_FORWARD_MAX_PIXELS = 64


def output_size(size: int, kernel: int, stride: int) -> int:
  """Output length of one axis, padded by ``kernel // 2`` on both sides."""
  return (size + 2 * (kernel // 2) - kernel) // stride + 1


def conv_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's convolution, NHWC x HWIO, padding ``k // 2``, as ``nn.Conv``."""
  pads = tuple((k // 2, k // 2) for k in kernel.shape[:2])
  return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                  dimension_numbers=_DIMENSIONS)


def _regions(size: int, kernel: int, stride: int):
  """Runs of outputs of one axis that see the same taps.

  Yields ``(first output, end output, first tap, end tap)``.
  """
  pad, run = kernel // 2, None
  for o in range(output_size(size, kernel, stride)):
    taps = (max(0, pad - o * stride), min(kernel, size + pad - o * stride))
    if run and run[2:] == taps:
      run = (run[0], o + 1, *taps)
    else:
      if run:
        yield run
      run = (o, o + 1, *taps)
  yield run


def _concat(arrays: list[jax.Array], axis: int) -> jax.Array:
  return arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays, axis)


def conv_dot(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The convolution as one ``dot`` per region of equal taps (module doc)."""
  n, h, w, c = x.shape
  features = kernel.shape[-1]
  rows = []
  for r0, r1, i0, i1 in _regions(h, kernel.shape[0], stride):
    row = []
    for c0, c1, j0, j1 in _regions(w, kernel.shape[1], stride):
      starts = [(r0 * stride + i - kernel.shape[0] // 2,
                 c0 * stride + j - kernel.shape[1] // 2)
                for i in range(i0, i1) for j in range(j0, j1)]
      patches = _concat([
          lax.slice(x, (0, a, b, 0),
                    (n, a + (r1 - r0 - 1) * stride + 1,
                     b + (c1 - c0 - 1) * stride + 1, c),
                    (1, stride, stride, 1)) for a, b in starts], -1)
      taps = kernel[i0:i1, j0:j1].reshape(-1, features)
      row.append(lax.dot_general(patches, taps, (((3,), (0,)), ((), ()))))
    rows.append(_concat(row, 2))
  return _concat(rows, 1)


_FUNCTIONS = {"lax": conv_lax, "dot": conv_dot}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_split(x: jax.Array, kernel: jax.Array, stride: int, forward: str,
               gradient: str) -> jax.Array:
  """The convolution computed by ``forward``, its gradient by ``gradient``."""
  return _FUNCTIONS[forward](x, kernel, stride)


def _split_fwd(x, kernel, stride, forward, gradient):
  return conv_split(x, kernel, stride, forward, gradient), (x, kernel)


def _split_bwd(stride, forward, gradient, residuals, cotangent):
  """Transposes of the two linear maps: no primal product is recomputed."""
  del forward
  x, kernel = residuals
  fn = _FUNCTIONS[gradient]
  (dx,) = jax.linear_transpose(lambda x: fn(x, kernel, stride), x)(cotangent)
  (dk,) = jax.linear_transpose(lambda k: fn(x, k, stride), kernel)(cotangent)
  return dx, dk


conv_split.defvjp(_split_fwd, _split_bwd)


def choose(input_shape: tuple[int, ...], stride: int,
           backend: str | None = None) -> tuple[str, str]:
  """``(forward, gradient)`` implementations that ``"auto"`` means.

  ``backend`` defaults to JAX's default backend. See the module doc.
  """
  del stride
  if (backend or jax.default_backend()) != "cpu":
    return "lax", "lax"
  _, h, w, c = input_shape
  if c < DOT_MIN_CHANNELS:
    return "lax", "lax"
  return ("dot" if h * w <= DOT_FORWARD_MAX_PIXELS else "lax"), "dot"


def _window_views(x: jax.Array) -> list[jax.Array]:
  """The four elements of each 2x2 window, in row-major window order."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  return [x[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]


@jax.custom_vjp
def _max_pool_2x2(x: jax.Array) -> jax.Array:
  a, b, c, d = _window_views(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _pool_fwd(x):
  return _max_pool_2x2(x), x


def _pool_bwd(x, cotangent):
  views = _window_views(x)
  y = jnp.maximum(jnp.maximum(views[0], views[1]),
                  jnp.maximum(views[2], views[3]))
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


_max_pool_2x2.defvjp(_pool_fwd, _pool_bwd)


def max_pool_2x2(x: jax.Array, impl: str = "auto") -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))``, gradient included.

  The gradient goes, as XLA's select-and-scatter sends it, to the first
  maximum of each window in row-major order. On the CPU (or with
  ``impl="dot"``) it is computed with element-wise selects: XLA's CPU
  gradient of ``reduce_window`` took 25 of the 42 ms of student C's batch-16
  train step.
  """
  if impl == "lax" or (impl == "auto" and jax.default_backend() != "cpu"):
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _max_pool_2x2(x)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1,
           impl: str = "auto") -> jax.Array:
  """NHWC x HWIO convolution padded by ``k // 2``, computed by ``impl``."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"impl={impl!r}; expected one of {IMPLEMENTATIONS}")
  forward, gradient = (choose(x.shape, stride) if impl == "auto"
                       else (impl, impl))
  if forward == gradient:
    return _FUNCTIONS[forward](x, kernel, stride)
  return conv_split(x, kernel, stride, forward, gradient)


class Conv(nn.Module):
  """``nn.Conv`` with a square kernel, padding ``k // 2`` and a bias.

  ``impl`` (``"auto"``, ``"lax"`` or ``"dot"``) is a static attribute: it
  changes how the products are computed, never the parameters.
  """
  features: int
  kernel_size: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    return conv2d(x, kernel, self.stride, self.impl) + bias
