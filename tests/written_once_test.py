"""A value written once: the same value and gradient as the function's."""

import jax
import jax.numpy as jnp
import numpy as np

from mre_jax.models import written_once


def _fn(x, w):
  return jnp.sin(x) * w + x * x


def test_value_and_gradient_equal_the_function():
  x = jax.random.normal(jax.random.key(0), (4, 5))
  w = jax.random.normal(jax.random.key(1), (5,))
  for token in (x, jnp.zeros(3), jnp.full(2, jnp.nan)):  # Either branch.
    once = lambda x, w: written_once.once(_fn, x, w, token=token)
    np.testing.assert_array_equal(jax.jit(once)(x, w), jax.jit(_fn)(x, w))
    grads = jax.grad(lambda x, w: once(x, w).sum(), argnums=(0, 1))(x, w)
    expected = jax.grad(lambda x, w: _fn(x, w).sum(), argnums=(0, 1))(x, w)
    for got, want in zip(grads, expected):
      np.testing.assert_allclose(got, want, rtol=1e-6)


def test_conditional_is_kept_for_a_run_time_token():
  x = jnp.ones((8, 8))
  text = jax.jit(lambda x: written_once.once(_fn, x, 2.0, token=x) + 1.0
                 ).lower(x).compile().as_text()
  assert "conditional(" in text
