"""The models' convolution, computed the way fast on the backend.

:class:`Conv` replaces ``flax.linen.Conv`` in :mod:`mre_jax.models` with the
same parameters (``kernel`` (k, k, in, out) and ``bias``, float32, with the
initialisers it is given), padding ``k // 2`` on every side, and a compute
``dtype``. Only how the products are computed differs:

* ``"lax"``: ``lax.conv_general_dilated``, as ``nn.Conv`` does.
* ``"dot"``: one matrix product. Per kernel tap, the strided view of the
  zero-padded input that the tap multiplies; the views, concatenated on the
  channel axis, times the kernel as a (k * k * in, out) matrix. The border's
  products with padding zeros are computed too: reading the whole kernel
  once is cheaper than copying, per border region, the rows of it that
  region needs (at batch 1 those copies took most of a forward pass). A 1x1
  input meets only the kernel's centre: one product with it. Its kernel
  gradient is one product too (:func:`kernel_grad_dot`): the views as a
  (positions, k * k * in) matrix, transposed, times the cotangent.
* ``"taps"``, for few input and output channels: per kernel tap and input
  channel, the tap's view of that channel times the kernel's row, all summed
  in one element-wise fusion, written once
  (:mod:`mre_jax.models.written_once`, so that the sum is not computed again
  in each of its consumers). A forward
  form only: its gradients come from JAX's autodiff or another form.
* ``"chunked"``, for the kernel's gradient only: XLA's, summed over chunks
  of the batch (:func:`chunk_size`).

``"dot"`` and ``"taps"`` compute the same sums as ``"lax"`` plus products
with zeros, so the benchmarks count FLOPs on the ``"lax"`` form
(:mod:`mre_jax.benchmarks`).

``"auto"`` takes ``"lax"`` on GPU and TPU (cuDNN and the TPU's convolution
units are fast everywhere). On the CPU it picks the forward pass, the input's
gradient and the kernel's gradient separately, per shape (:func:`choose`):
XLA's CPU convolution and its input gradient are fast on large maps and few
channels, but pathological on small maps with many channels, and its kernel
gradient falls off a cliff once the input outgrows the core's cache. Measured
on a 2-core Zen 4, float32, batch 64, ms for the forward pass / the input's
gradient / the kernel's gradient:

=========================  ==================  ==================
input -> output, 3x3       lax                 dot
=========================  ==================  ==================
64x64x3 -> 32               39 /  53 /  76      51 /  15 /  73
32x32x16 -> 32              12 /  13 / 186      59 /  33 /  71
32x32x32 -> 64              36 /  40 / 562     104 /  66 / 130
16x16x64 -> 128             35 /  35 /  97      62 /  29 /  74
8x8x128 -> 256, stride 2   7.8 / 7.1 /  11     7.8 / 4.5 / 6.2
4x4x128 -> 256, stride 2   2.0 /  41 / 3.1     2.3 / 1.9 / 1.4
2x2x512 -> 512             782 / 803 /  11      11 /  11 /  11
1x1x1024 -> 1024           272 / 281 /  43     2.7 / 2.9 /  23
=========================  ==================  ==================

and ms for the kernel's gradient alone (``"chunked"`` with the rule's chunk):

==============================  ======  =====  =======  =====
batch, input -> output, 3x3     lax     dot    chunked  chunk
==============================  ======  =====  =======  =====
64, 64x64x3 -> 8                 32.1    47.1     4.9      8
64, 32x32x8 -> 16                10.4    30.5     3.5     16
64, 16x16x16 -> 32                7.3     5.0     6.4     32
64, 32x32x32 -> 64              542.7   131.3    82.1      4
16, 64x64x3 -> 8                  1.9     3.9     1.2      8
16, 64x64x3 -> 32                 5.3     7.9     3.6      2
16, 32x32x64 -> 128              69.9    67.0    55.8      2
==============================  ======  =====  =======  =====

Below 32 input channels the dot form is no faster (second row of the first
table; on maps of at most 8x8 either form takes tenths of a millisecond at
batch 16) and it takes longer to compile. XLA's kernel gradient is fast as
long as one convolution's input and output fit in the cache (a few MiB), and
many times slower beyond. So the rule, on the CPU, is: ``"dot"`` for the
input's gradient when the input has at least 32 channels, and for the
forward pass when it also has at most 8x8 pixels, ``"lax"`` otherwise; the
kernel's gradient is ``"dot"`` from 16 input channels on, otherwise
``"chunked"`` when the batch has more than one chunk and ``"lax"`` when
not. The "dot" kernel gradient, written as one two-dimensional product,
beat the chunks from 16 channels on (batch 16, ms: 32x32x16 -> 32 4.0
against 7.8; 32x32x32 -> 64 12.4 against 29.9; 32x32x64 -> 128 32.5
against 60.1) and is slower below, on the RGB and 8-channel layers. On
32x32 maps XLA's input gradient is the faster (third row); the rule does
not use that yet. An RGB
input is the exception: XLA's convolution of 3 channels to a few is slow at
any size, and the forward pass of at most 4 input and 16 output channels
is ``"taps"`` (64x64x3 -> 8, ms at batch 64 / 16 / 1: lax 15.5 / 4.3 /
0.74, taps 3.0 / 1.0 / 0.19; from 32 outputs on, neither is faster at
every batch size). When the forms differ, a ``jax.custom_vjp`` joins them
(so such a layer has no forward-mode derivative).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from mre_jax.models import written_once

Dtype = Any
IMPLEMENTATIONS = ("auto", "lax", "dot", "taps")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# The CPU rule (module doc): the fewest input channels that take "dot", the
# largest map (pixels) whose forward pass does, the most input and output
# channels whose forward pass takes "taps", and the most values of one
# kernel-gradient convolution's input and output.
DOT_MIN_CHANNELS = 32
KERNEL_DOT_MIN_CHANNELS = 16
DOT_FORWARD_MAX_PIXELS = 64
TAPS_MAX_IN_CHANNELS = 4
TAPS_MAX_OUT_CHANNELS = 16
CHUNK_VALUES = 2**19


def output_size(size: int, kernel: int, stride: int) -> int:
  """Output length of one axis, padded by ``kernel // 2`` on both sides."""
  return (size + 2 * (kernel // 2) - kernel) // stride + 1


def conv_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's convolution, NHWC x HWIO, padding ``k // 2``, as ``nn.Conv``."""
  pads = tuple((k // 2, k // 2) for k in kernel.shape[:2])
  return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                  dimension_numbers=_DIMENSIONS)


def _concat(arrays: list[jax.Array], axis: int) -> jax.Array:
  return arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays, axis)


def _padded_views(x: jax.Array, kernel_shape: tuple[int, ...], stride: int
                  ) -> list[jax.Array]:
  """Per kernel tap, in (row, column) order, the strided view of the
  zero-padded input that the tap multiplies: (N, OH, OW, C) each."""
  kh, kw = kernel_shape[:2]
  n, h, w, c = x.shape
  oh, ow = output_size(h, kh, stride), output_size(w, kw, stride)
  xp = jnp.pad(x, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
  return [lax.slice(xp, (0, i, j, 0), (n, i + (oh - 1) * stride + 1,
                                       j + (ow - 1) * stride + 1, c),
                    (1, stride, stride, 1))
          for i in range(kh) for j in range(kw)]


def conv_dot(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The convolution as one matrix product (module doc)."""
  kh, kw, _, features = kernel.shape
  contract = (((3,), (0,)), ((), ()))
  if x.shape[1] == x.shape[2] == 1:  # Only the centre tap sees the input.
    return lax.dot_general(x, kernel[kh // 2, kw // 2], contract)
  patches = _concat(_padded_views(x, kernel.shape, stride), -1)
  return lax.dot_general(patches, kernel.reshape(-1, features), contract)


def conv_taps(x: jax.Array, kernel: jax.Array, stride: int,
              bias: jax.Array | None = None) -> jax.Array:
  """The convolution as a sum of broadcast products (module doc), plus
  ``bias`` if given, added in the same fusion (a pass of its own over the
  output made student C's train step about 2% slower)."""
  kh, kw, channels, _ = kernel.shape

  def taps(x):
    views = _padded_views(x, kernel.shape, stride)
    terms = [views[t][..., c:c + 1] * kernel[t // kw, t % kw, c]
             for t in range(kh * kw) for c in range(channels)]
    total = functools.reduce(operator.add, terms)
    return total if bias is None else total + bias

  return written_once.once(taps, x, token=x)


def kernel_grad_chunked(x: jax.Array, cotangent: jax.Array,
                        kernel_shape: tuple[int, ...],
                        stride: int) -> jax.Array:
  """The kernel's gradient, summed over batch chunks (module doc)."""
  chunk = chunk_size(x.shape, cotangent.shape)
  kernel = jax.ShapeDtypeStruct(kernel_shape, x.dtype)
  grads = [jax.linear_transpose(
      lambda k, i=i: conv_lax(x[i:i + chunk], k, stride), kernel)(
          cotangent[i:i + chunk])[0] for i in range(0, x.shape[0], chunk)]
  return functools.reduce(operator.add, grads)


def kernel_grad_dot(x: jax.Array, cotangent: jax.Array,
                    kernel_shape: tuple[int, ...], stride: int) -> jax.Array:
  """The kernel's gradient as one matrix product: the patches of
  :func:`conv_dot` as a (positions, k * k * in) matrix, transposed, times the
  cotangent as a (positions, out) matrix (module doc)."""
  kh, kw, channels, features = kernel_shape
  contract = (((0,), (0,)), ((), ()))
  dy = cotangent.reshape(-1, features)
  if x.shape[1] == x.shape[2] == 1:  # Only the centre tap sees the input.
    centre = lax.dot_general(x.reshape(-1, channels), dy, contract)
    return jnp.zeros(kernel_shape, centre.dtype).at[kh // 2, kw // 2].set(
        centre)
  patches = _concat(_padded_views(x, kernel_shape, stride), -1)
  return lax.dot_general(patches.reshape(-1, kh * kw * channels), dy,
                         contract).reshape(kernel_shape)


_FUNCTIONS = {"lax": conv_lax, "dot": conv_dot, "taps": conv_taps}


def _biased(form: str, x: jax.Array, kernel: jax.Array, stride: int,
            bias: jax.Array | None) -> jax.Array:
  """The convolution computed by ``form``, plus ``bias`` if given."""
  if form == "taps":
    return conv_taps(x, kernel, stride, bias)
  y = _FUNCTIONS[form](x, kernel, stride)
  return y if bias is None else y + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def conv_split(x: jax.Array, kernel: jax.Array, bias: jax.Array | None,
               stride: int, forward: str, input_gradient: str,
               kernel_gradient: str) -> jax.Array:
  """The convolution (plus ``bias`` if given) computed by ``forward``, its
  gradients by the others."""
  return _biased(forward, x, kernel, stride, bias)


def _split_fwd(x, kernel, bias, stride, forward, input_gradient,
               kernel_gradient):
  y = conv_split(x, kernel, bias, stride, forward, input_gradient,
                 kernel_gradient)
  return y, (x, kernel, bias)


def _split_bwd(stride, forward, input_gradient, kernel_gradient, residuals,
               cotangent):
  """Transposes of the two linear maps: no primal product is recomputed."""
  del forward
  if "taps" in (input_gradient, kernel_gradient):
    raise ValueError('"taps" is a forward form only; its gradients are '
                     'computed by "lax" or "dot"')
  x, kernel, bias = residuals
  fn = _FUNCTIONS[input_gradient]
  (dx,) = jax.linear_transpose(lambda x: fn(x, kernel, stride), x)(cotangent)
  if kernel_gradient == "chunked":
    dk = kernel_grad_chunked(x, cotangent, kernel.shape, stride)
  elif kernel_gradient == "dot":
    dk = kernel_grad_dot(x, cotangent, kernel.shape, stride)
  else:
    fn = _FUNCTIONS[kernel_gradient]
    (dk,) = jax.linear_transpose(lambda k: fn(x, k, stride), kernel)(cotangent)
  db = None if bias is None else jnp.sum(cotangent, axis=(0, 1, 2))
  return dx, dk.astype(kernel.dtype), db


conv_split.defvjp(_split_fwd, _split_bwd)


def chunk_size(input_shape: tuple[int, ...],
               output_shape: tuple[int, ...]) -> int:
  """Examples per chunk of ``"chunked"``: the largest power of two whose
  input and output values stay within :data:`CHUNK_VALUES` (at least 1)."""
  per_example = math.prod(input_shape[1:]) + math.prod(output_shape[1:])
  return 1 << max(0, (CHUNK_VALUES // per_example).bit_length() - 1)


def choose(input_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
           stride: int, backend: str | None = None) -> tuple[str, str, str]:
  """``(forward, input gradient, kernel gradient)`` that ``"auto"`` means.

  ``backend`` defaults to JAX's default backend. See the module doc.
  """
  if (backend or jax.default_backend()) != "cpu":
    return "lax", "lax", "lax"
  n, h, w, c = input_shape
  kh, kw, _, features = kernel_shape
  if c < DOT_MIN_CHANNELS:
    forward = gradient = "lax"
    if c <= TAPS_MAX_IN_CHANNELS and features <= TAPS_MAX_OUT_CHANNELS:
      forward = "taps"
  else:
    forward = "dot" if h * w <= DOT_FORWARD_MAX_PIXELS else "lax"
    gradient = "dot"
  if not all(isinstance(d, int) for d in input_shape):
    return forward, gradient, gradient  # Symbolic sizes (jax.export).
  if c >= KERNEL_DOT_MIN_CHANNELS:
    return forward, gradient, "dot"
  output_shape = (n, output_size(h, kh, stride), output_size(w, kw, stride),
                  features)
  chunked = chunk_size(input_shape, output_shape) < n
  return forward, gradient, "chunked" if chunked else gradient


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1,
           impl: str = "auto", bias: jax.Array | None = None) -> jax.Array:
  """NHWC x HWIO convolution padded by ``k // 2``, computed by ``impl``,
  plus ``bias`` (features,) if given."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"impl={impl!r}; expected one of {IMPLEMENTATIONS}")
  plan = (choose(x.shape, kernel.shape, stride) if impl == "auto"
          else (impl,) * 3)
  # One form throughout: JAX's derivative of it is the plan, except for
  # "dot", whose kernel gradient is the product of kernel_grad_dot.
  if len(set(plan)) == 1 and plan[0] != "dot":
    return _biased(plan[0], x, kernel, stride, bias)
  return conv_split(x, kernel, bias, stride, *plan)


class Conv(nn.Module):
  """``nn.Conv`` with a square kernel, padding ``k // 2`` and a bias.

  ``impl`` (one of :data:`IMPLEMENTATIONS`) is a static attribute: it
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
    return conv2d(x, kernel, self.stride, self.impl, bias)
