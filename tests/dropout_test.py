"""Dropout draws exactly flax's masks, with JAX's own random bits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax.models import dropout


@pytest.mark.parametrize("shape,make_key,rate", [
    ((64, 32, 32, 8), jax.random.PRNGKey, 0.2),
    ((64, 32, 32, 8), jax.random.key, 0.2), ((6, 5, 7), jax.random.key, 0.5),
    ((4, 128), jax.random.PRNGKey, 0.5), ((3,), jax.random.key, 0.2),
    ((7, 2, 2, 2), jax.random.PRNGKey, 0.5)])
def test_same_output_and_gradient_as_flax(shape, make_key, rate):
  x = jax.random.normal(jax.random.key(1), shape)
  key = make_key(7)

  def run(layer):
    fn = lambda x: layer.apply({}, x, deterministic=False,
                               rngs={"dropout": key})
    return jax.jit(lambda x: jax.vjp(fn, x)[1](jnp.cos(x))[0])(x), jax.jit(
        fn)(x)

  (grad, y), (grad_ref, y_ref) = run(dropout.Dropout(rate)), run(
      nn.Dropout(rate))
  np.testing.assert_array_equal(y, y_ref)
  np.testing.assert_array_equal(grad, grad_ref)
  dropped = float(jnp.mean(y == 0))
  assert abs(dropped - rate) <= 4 * np.sqrt(rate * (1 - rate) / x.size)


@pytest.mark.parametrize("shape", [(6, 5, 4), (3,), (2, 1, 7, 3)])
def test_bits_equal_jax_random_bits(shape):
  key = jax.random.PRNGKey(3)
  np.testing.assert_array_equal(dropout.random_bits(key, shape),
                                jax.random.bits(key, shape))


def test_mask_is_drawn_once_under_a_conditional():
  key = jax.random.PRNGKey(0)
  shape = (64, 32, 32, 8)
  compiled = jax.jit(lambda k: dropout.bernoulli(k, 0.8, shape)).lower(
      key).compile().as_text()
  assert "conditional(" in compiled
  np.testing.assert_array_equal(dropout.bernoulli(key, 0.8, shape),
                                jax.random.bernoulli(key, 0.8, shape))


def test_other_generators_use_jax_bernoulli():
  key = jax.random.key(5, impl="rbg")
  got = dropout.bernoulli(key, 0.8, (4, 16))
  np.testing.assert_array_equal(got,
                                jax.random.bernoulli(key, 0.8, (4, 16)))


def test_is_a_flax_dropout_with_its_options():
  layer = dropout.Dropout(0.5, broadcast_dims=(1,), rng_collection="noise")
  assert isinstance(layer, nn.Dropout)
  x = jnp.ones((8, 16))
  key = jax.random.key(4)
  got = layer.apply({}, x, deterministic=False, rngs={"noise": key})
  expected = nn.Dropout(0.5, broadcast_dims=(1,), rng_collection="noise"
                        ).apply({}, x, deterministic=False, rngs={"noise": key})
  np.testing.assert_array_equal(got, expected)
  # Whole rows are kept (x 2) or dropped, and this key does both.
  assert set(np.unique(np.asarray(got).std(axis=1))) == {0.0}
  assert set(np.unique(np.asarray(got)[:, 0])) == {0.0, 2.0}
  np.testing.assert_array_equal(
      dropout.Dropout(0.5).apply({}, x, deterministic=False, rng=key),
      nn.Dropout(0.5).apply({}, x, deterministic=False, rng=key))


def test_deterministic_and_edge_rates():
  x = jnp.arange(1.0, 7.0).reshape(2, 3)
  rngs = {"dropout": jax.random.key(0)}
  for rate, expected in ((0.0, x), (1.0, jnp.zeros_like(x))):
    np.testing.assert_array_equal(dropout.Dropout(rate).apply(
        {}, x, deterministic=False, rngs=rngs), expected)
  np.testing.assert_array_equal(dropout.Dropout(0.5).apply(
      {}, x, deterministic=True), x)
