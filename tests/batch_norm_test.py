"""The batch normalisation's written-out gradient equals JAX's derivative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax.models import batch_norm

EPS = 1e-5


def _plain(x, scale, bias):
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  var = jnp.mean(jnp.square(x - mean), axes)
  return (x - mean) * (jax.lax.rsqrt(var + EPS) * scale) + bias, mean, var


def _inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(1.5, 2.0, shape), jnp.float32)
  scale = jnp.asarray(rng.uniform(0.5, 2.0, shape[-1]), jnp.float32)
  bias = jnp.asarray(rng.normal(size=shape[-1]), jnp.float32)
  return x, scale, bias


@pytest.mark.parametrize("shape", [(4, 6, 6, 3), (8, 5), (2, 3, 3, 16)])
def test_values_equal_the_plain_formula(shape):
  args = _inputs(shape)
  for got, want in zip(batch_norm.normalize(*args, EPS), _plain(*args)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weights", ["y only", "all outputs"])
def test_gradients_equal_jax_derivative(weights):
  x, scale, bias = _inputs((4, 6, 6, 3), seed=1)
  rng = np.random.default_rng(2)
  wy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  wm, wv = (jnp.asarray(rng.normal(size=3), jnp.float32)
            * (weights == "all outputs") for _ in range(2))

  def loss(fn):
    def f(x, scale, bias):
      y, mean, var = fn(x, scale, bias)
      return (jnp.sum(jnp.sin(y) * wy) + jnp.sum(mean * wm)
              + jnp.sum(var * wv))
    return jax.jit(jax.grad(f, argnums=(0, 1, 2)))

  got = loss(lambda *a: batch_norm.normalize(*a, EPS))(x, scale, bias)
  want = loss(_plain)(x, scale, bias)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
  # The input's gradient of a normalisation sums to zero per channel when
  # only y is used: a check that does not rest on the reference.
  if weights == "y only":
    np.testing.assert_allclose(jnp.sum(got[0], (0, 1, 2)), 0, atol=1e-4)
