"""The CPU max pool equals flax's, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax.models import pooling


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 4), (1, 2, 3, 1)])
def test_max_pool_and_its_gradient_equal_nn_max_pool(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  # Rounded values and ReLU zeros: many windows with tied maxima.
  ties = jax.random.bernoulli(jax.random.key(1), 0.5, shape)
  x = jnp.where(ties, jnp.maximum(jnp.round(x), 0), x)
  ct = jax.random.normal(jax.random.key(2), (shape[0], shape[1] // 2,
                                             shape[2] // 2, shape[3]))
  outs = {}
  for impl in ("lax", "dot"):
    y, vjp = jax.vjp(lambda x: pooling.max_pool_2x2(x, impl), x)
    outs[impl] = (y, *vjp(ct))
  expected = nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(outs["lax"][0], expected)
  for a, b in zip(outs["dot"], outs["lax"]):
    np.testing.assert_array_equal(a, b)


def test_first_maxima_are_written_once_in_the_forward_pass():
  # The residual (one byte per window) is a conditional's result, not fused
  # into, and computed again in, the gradient's full-size select.
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  grad = jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool_2x2(x, "dot")
                                            ** 2)))
  compiled = grad.lower(x).compile().as_text()
  assert "conditional(" in compiled and "s8[2,4,4,3]" in compiled
