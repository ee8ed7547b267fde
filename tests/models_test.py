"""Tests for the ResEmoteNet model family."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax import models
from mre_jax.errors import ConfigError


@pytest.mark.parametrize("name", sorted(models.MODEL_SPECS))
def test_parameter_counts_match_table_ii(name):
  model = models.get_model(name)
  variables = models.abstract_variables(model)
  assert models.count_params(variables["params"]) == (
      models.MODEL_SPECS[name].num_params)


@pytest.mark.parametrize("size", [48, 64])
def test_output_shape(size):
  model = models.get_model("student_c")
  variables = models.init_variables(model, jax.random.key(0), size)
  x = jax.random.normal(jax.random.key(1), (3, size, size, 3))
  assert jax.jit(model.apply)(variables, x).shape == (3, 7)


def test_bf16_compute_close_to_float32():
  model32 = models.get_model("student_c")
  model16 = models.get_model("student_c", dtype=jnp.bfloat16)
  variables = models.init_variables(model32, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (8, 64, 64, 3))
  y32 = jax.jit(model32.apply)(variables, x)
  y16 = jax.jit(model16.apply)(variables, x)
  assert y16.dtype == jnp.float32
  assert jax.tree.map(lambda p: p.dtype, variables) == jax.tree.map(
      lambda p: jnp.dtype(jnp.float32), variables)
  rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
  assert rel < 1e-2, rel


def test_init_follows_pytorch_defaults():
  model = models.get_model("student_c")
  params = models.init_variables(model, jax.random.key(0))["params"]
  flat = {"/".join(k.key for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  checked = 0
  for name, value in flat.items():
    layer = name.rsplit("/", 1)[0]
    if name.endswith("kernel"):
      fan_in = math.prod(value.shape[:-1])
      bound = 1 / math.sqrt(fan_in)
      assert np.abs(value).max() <= bound, name
      # Uniform over the whole range, not a narrower distribution.
      assert np.abs(value).max() > 0.9 * bound, name
      assert abs(value.std() - bound / math.sqrt(3)) < 0.2 * bound, name
      bias = flat.get(layer + "/bias")
      if bias is not None and "bn" not in layer:
        assert np.abs(bias).max() <= bound, name
        checked += 1
    elif "bn" in layer:
      expected = 1.0 if name.endswith("scale") else 0.0
      np.testing.assert_array_equal(value, expected)
  assert checked >= 10


def test_batchnorm_matches_pytorch_update_rule():
  bn = models.TorchBatchNorm()
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 5)) * 2 + 1
  variables = bn.init(jax.random.key(1), x, train=False)
  y, updated = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  xn = np.asarray(x).reshape(-1, 5)
  n = xn.shape[0]
  np.testing.assert_allclose(updated["batch_stats"]["mean"],
                             0.1 * xn.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updated["batch_stats"]["var"],
                             0.9 + 0.1 * xn.var(0) * n / (n - 1), rtol=1e-5)
  expected = (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), expected,
                             rtol=1e-4, atol=1e-5)
  y_eval = bn.apply({**variables, **updated}, x, train=False)
  np.testing.assert_allclose(
      np.asarray(y_eval).reshape(-1, 5),
      (xn - updated["batch_stats"]["mean"]) /
      np.sqrt(updated["batch_stats"]["var"] + 1e-5), rtol=1e-4, atol=1e-5)


def test_train_flag_switches_dropout_and_batch_stats():
  model = models.get_model("student_c", width=4)
  variables = models.init_variables(model, jax.random.key(0), 32)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  run = lambda seed: model.apply(
      variables, x, train=True, rngs={"dropout": jax.random.key(seed)},
      mutable=["batch_stats"])
  (a, stats), (b, _) = run(0), run(1)
  assert not np.allclose(a, b)
  assert not np.allclose(stats["batch_stats"]["bn1"]["mean"],
                         variables["batch_stats"]["bn1"]["mean"])
  np.testing.assert_array_equal(model.apply(variables, x),
                                model.apply(variables, x))


def test_width_override_and_unknown_name():
  assert models.get_model("student_b", width=4).width == 4
  assert models.get_model("student_c").se_reduction == 1
  with pytest.raises(ConfigError, match="student_a"):
    models.get_model("student_d")
