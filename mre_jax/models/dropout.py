"""``flax.linen.Dropout`` with the mask's random bits computed in one fusion.

:class:`Dropout` returns exactly what ``nn.Dropout`` returns for the same
``dropout`` rng: the same threefry2x32 bits, the same ``bernoulli`` threshold
on them, the same scaling. Only how the bits are computed differs, on the CPU.

JAX lowers threefry2x32 on the CPU as a loop of five iterations (to compile
faster), so every round's counters and state go through memory: in student
C's batch-64 train step the two stem masks took about 19 of 114 ms (2-core
Zen 4). Here the same hash (Salmon et al., "Parallel random numbers: as easy
as 1, 2, 3", 2011) is written out round by round in ``jax.numpy``, which XLA
compiles into one fusion, written once (:mod:`mre_jax.models.written_once`, so
that the mask is not drawn again in each of its users): 1.1 ms against
JAX's 3.1 ms for one 64x32x32x8 mask alone.

It applies when the key is a threefry2x32 key, JAX's
``jax_threefry_partitionable`` is on (the default) and 64-bit mode off. Then
the bits of element ``i`` (row-major) are the two words of
``threefry2x32(key, (0, i))`` xor-ed together, so they do not depend on how
the batch is sharded. Otherwise, and on GPU and TPU, where JAX's lowering is
already unrolled, ``jax.random.bernoulli`` draws the mask.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from mre_jax.models import written_once

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(key: jax.Array, x1: jax.Array, x2: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """The threefry2x32 block function (20 rounds) of counters ``(x1, x2)``
  under ``key`` (uint32[2]), element-wise."""
  ks = (key[0], key[1], key[0] ^ key[1] ^ _PARITY)
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r)))
    x1 = x1 + ks[(i + 1) % 3]
    x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``jax.random.bits(key, shape)`` (uint32) for a threefry2x32 ``key`` (raw
  uint32[2]) under partitionable threefry, for fewer than 2^32 elements."""
  strides = np.cumprod((1,) + tuple(shape[:0:-1]), dtype=np.int64)[::-1]
  index = jnp.zeros(shape, jnp.uint32)
  for axis, stride in enumerate(strides):
    index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(
        stride)
  b1, b2 = threefry2x32(key, jnp.zeros(shape, jnp.uint32), index)
  return b1 ^ b2


def _below(bits: jax.Array, p: float) -> jax.Array:
  """``jax.random.uniform``'s float of ``bits``, compared with ``p``."""
  one = np.array(1.0, np.float32).view(np.uint32)
  uniform = lax.bitcast_convert_type(
      (bits >> np.uint32(32 - 23)) | one, jnp.float32) - np.float32(1.0)
  return uniform < p


def _bits_key(rng: jax.Array) -> jax.Array | None:
  """The raw uint32[2] threefry key of ``rng``, or None if it is another
  generator's key."""
  typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
  impl = (jax.random.key_impl(rng) if typed
          else jax.config.jax_default_prng_impl)
  if "threefry2x32" not in str(impl):
    return None
  return jax.random.key_data(rng) if typed else rng


def bernoulli(rng: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
  """``jax.random.bernoulli(rng, p, shape)``, computed fused where it can
  be (module doc)."""
  key = _bits_key(rng)
  if (key is None or jax.default_backend() != "cpu"
      or not jax.config.jax_threefry_partitionable
      or jax.config.jax_enable_x64 or math.prod(shape) >= 2**32):
    return jax.random.bernoulli(rng, p, shape)
  return written_once.once(lambda: _below(random_bits(key, shape), p),
                          token=key)


class Dropout(nn.Dropout):
  """``nn.Dropout`` (a subclass, with its fields and arguments) whose mask is
  drawn by :func:`bernoulli`: the same values, masks and rngs."""

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool | None = None,
               rng: jax.Array | None = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic,
                                   deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    shape = list(inputs.shape)
    for dim in self.broadcast_dims:
      shape[dim] = 1
    mask = jnp.broadcast_to(bernoulli(rng, keep_prob, tuple(shape)),
                            inputs.shape)
    return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
