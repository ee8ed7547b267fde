"""Exact FLOP counts of convolutions, products, loops and the models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from mre_jax import models
from mre_jax.benchmarks import flops
from mre_jax.benchmarks import jax_speed


def test_conv_flops_exact():
  x = jnp.ones((4, 16, 16, 8))
  w = jnp.ones((3, 3, 8, 32))

  def conv(x, w, stride):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  # Stride 1, "SAME": per axis 16 x 3 taps, of which 2 fall on padding.
  assert flops.function_flops(lambda x, w: conv(x, w, 1), x, w) == (
      2 * 4 * 32 * 8 * 46**2)
  # Stride 2: 8 outputs x 3 taps per axis, the last on the padding.
  forward = 2 * 4 * 32 * 8 * 23**2
  assert flops.function_flops(lambda x, w: conv(x, w, 2), x, w) == forward
  # Gradients for input and kernel repeat the forward pass's products, also
  # for the strided convolution whose input gradient dilates its argument.
  grads = jax.grad(lambda x, w: conv(x, w, 2).sum(), argnums=(0, 1))
  assert flops.function_flops(grads, x, w) == 3 * forward
  dense = flops.function_flops(lambda a, b: a @ b, jnp.ones((5, 7)),
                               jnp.ones((7, 3)))
  assert dense == 2 * 5 * 7 * 3


def test_scan_flops_scale_with_length():
  def body(c, _):
    return c @ c, None

  def loop(x, n):
    return jax.lax.scan(body, x, None, length=n)[0]

  x = jnp.ones((8, 8))
  one = flops.function_flops(lambda x: loop(x, 1), x)
  assert one == 2 * 8**3
  assert flops.function_flops(lambda x: loop(x, 5), x) == 5 * one


def test_cond_counts_its_costliest_branch():
  def branchy(p, x):
    return jax.lax.cond(p, lambda y: y @ y @ y, lambda y: y @ y, x)

  x = jnp.ones((4, 4))
  assert flops.function_flops(branchy, True, x) == 2 * (2 * 4**3)


def test_model_flops_plausible():
  def per_image(width: int) -> float:
    return jax_speed.forward_flops_per_image(
        models.get_model("student_b", width=width), 64)

  # Convolutions and products grow with width squared, except the first
  # convolution (3 input channels), hence a little under 4x.
  ratio = per_image(16) / per_image(8)
  assert 3.5 < ratio < 4.0
  # The published teacher: about 0.48 GFLOP per 64x64 image (0.67 if the
  # taps on padding counted).
  teacher = jax_speed.forward_flops_per_image(models.get_model("teacher"), 64)
  assert 0.45e9 < teacher < 0.52e9


def test_model_flops_near_xla_estimate():
  # Both on XLA's convolutions, the form FLOPs are counted on: the CPU's
  # other forms also multiply padding zeros (mre_jax.models.conv).
  model = models.get_model("student_c").clone(conv_impl="lax")
  counted = jax_speed.forward_flops_per_image(model, 32, batch=2)
  variables = models.abstract_variables(model, 32)
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8)
  forward = jax_speed.make_predictor(model, variables, 32).forward
  xla = flops.xla_flops(forward.lower(variables, images).compile())
  if xla is None:
    pytest.skip("this backend gives no FLOP estimate")
  # XLA's estimate adds the element-wise work.
  assert 0.8 < counted / (xla / 2) <= 1.0
