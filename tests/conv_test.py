"""The convolution layer: its dot and taps forms equal XLA's convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax import models
from mre_jax.models import conv

# (size, in, out, kernel, stride): maps smaller than the kernel (1, 2), odd
# sizes with and without an interior (3, 5), both strides, 1x1 kernels and an
# RGB-like input. Inputs are one pixel wider than high.
SHAPES = [(1, 6, 8, 3, 1), (2, 6, 8, 3, 1), (2, 6, 8, 3, 2), (3, 6, 8, 3, 2),
          (5, 6, 8, 3, 1), (5, 6, 8, 3, 2), (8, 3, 4, 3, 1), (3, 6, 8, 1, 2),
          (2, 6, 8, 1, 1)]


def _inputs(size, cin, cout, k, batch=3, dtype=jnp.float32):
  x = jax.random.normal(jax.random.key(0), (batch, size, size + 1, cin))
  w = jax.random.normal(jax.random.key(1), (k, k, cin, cout))
  return x.astype(dtype), w.astype(dtype)


# (forward, input gradient, kernel gradient) forms besides all-"lax".
PLANS = [("dot", "dot", "dot"), ("lax", "dot", "dot"), ("dot", "lax", "lax"),
         ("lax", "lax", "chunked"), ("dot", "dot", "chunked"),
         ("taps", "lax", "lax"), ("taps", "dot", "chunked")]


@pytest.mark.parametrize("size,cin,cout,k,stride", SHAPES)
def test_dot_form_equals_lax_and_its_gradients(size, cin, cout, k, stride):
  x, w = _inputs(size, cin, cout, k)
  ct = jax.random.normal(jax.random.key(2), conv.conv_lax(x, w, stride).shape)

  @jax.jit
  def value_and_grads(x, w):
    outs = {}
    for plan in [("lax", "lax", "lax")] + PLANS:
      fn = lambda x, w: conv.conv_split(x, w, None, stride, *plan)
      y, vjp = jax.vjp(fn, x, w)
      outs[plan] = (y, *vjp(ct))
    return outs

  outs = value_and_grads(x, w)
  expected = outs["lax", "lax", "lax"]
  assert expected[0].shape == (3, conv.output_size(size, k, stride),
                               conv.output_size(size + 1, k, stride), cout)
  for plan in PLANS:
    for a, b in zip(outs[plan], expected):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=plan)


def test_bfloat16_dot_form_close_to_lax():
  x, w = _inputs(4, 16, 8, 3, dtype=jnp.bfloat16)
  y_lax, y_dot = (conv.conv2d(x, w, 2, i) for i in ("lax", "dot"))
  assert y_dot.dtype == jnp.bfloat16
  np.testing.assert_allclose(y_dot.astype(np.float32),
                             y_lax.astype(np.float32), rtol=0.05, atol=0.1)


@pytest.mark.parametrize("k,stride", [(1, 2), (3, 1), (3, 2)])
def test_layer_has_nn_conv_parameters_and_output(k, stride):
  pad = k // 2
  reference = nn.Conv(5, (k, k), strides=(stride, stride),
                      padding=((pad, pad), (pad, pad)),
                      kernel_init=models.torch_weight_init(),
                      bias_init=models.torch_bias_init(4 * k * k))
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 4))
  expected = reference.init(jax.random.key(3), x)
  for impl in conv.IMPLEMENTATIONS:
    layer = conv.Conv(5, k, stride, kernel_init=models.torch_weight_init(),
                      bias_init=models.torch_bias_init(4 * k * k), impl=impl)
    variables = layer.init(jax.random.key(3), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == (
        jax.tree.map(lambda a: (a.shape, a.dtype), expected))
    jax.tree.map(np.testing.assert_array_equal, variables, expected)
    np.testing.assert_allclose(layer.apply(variables, x),
                               reference.apply(expected, x),
                               rtol=1e-5, atol=1e-5)


def test_bfloat16_layer_keeps_float32_parameters():
  layer = conv.Conv(4, 3, 2, dtype=jnp.bfloat16, impl="dot")
  variables = layer.init(jax.random.key(0), jnp.ones((1, 4, 4, 3)))
  assert {a.dtype for a in jax.tree.leaves(variables)} == {
      jnp.dtype(jnp.float32)}
  assert layer.apply(variables, jnp.ones((1, 4, 4, 3))).dtype == jnp.bfloat16


@pytest.mark.parametrize("size", [1, 2, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("channels", [3, 16, 64, 1024])
def test_auto_is_lax_off_the_cpu(size, channels):
  for stride in (1, 2):
    shape = (64, size, size, channels)
    for backend in ("gpu", "tpu"):
      assert conv.choose(shape, (3, 3, channels, 64), stride,
                         backend=backend) == ("lax",) * 3


@pytest.mark.parametrize("batch,size,channels,expected", [
    (2, 64, 3, ("taps", "lax", "lax")), (2, 32, 8, ("lax", "lax", "lax")),
    (2, 32, 16, ("lax", "lax", "dot")), (2, 2, 16, ("lax", "lax", "dot")),
    (2, 32, 32, ("lax", "dot", "dot")), (2, 16, 64, ("lax", "dot", "dot")),
    (2, 8, 32, ("dot", "dot", "dot")), (2, 2, 512, ("dot", "dot", "dot")),
    (32, 64, 3, ("taps", "lax", "chunked")),
    (64, 32, 8, ("lax", "lax", "chunked")),
    (64, 16, 32, ("lax", "dot", "dot"))])
def test_auto_follows_the_rule_on_the_cpu(batch, size, channels, expected):
  x = jnp.ones((batch, size, size, channels))
  w = jnp.ones((3, 3, channels, 8))
  assert conv.choose(x.shape, w.shape, 1, backend="cpu") == expected
  fn = lambda x, w: conv.conv2d(x, w, 1)
  forward = jax.jit(fn).lower(x, w).as_text()
  gradient = jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), (0, 1))
                     ).lower(x, w).as_text()
  # "lax" is one convolution, "chunked" one per chunk, "dot" none.
  chunks = -(-batch // conv.chunk_size(x.shape, (batch, size, size, 8)))
  assert forward.count("convolution(") == (expected[0] == "lax")
  assert gradient.count("convolution(") == (
      (expected[0] == "lax") + (expected[1] == "lax") +
      {"lax": 1, "dot": 0, "chunked": chunks}[expected[2]])


@pytest.mark.parametrize("channels,features,forward", [
    (3, 16, "taps"), (4, 8, "taps"), (3, 32, "lax"), (8, 8, "lax")])
def test_taps_only_for_few_channels(channels, features, forward):
  plan = conv.choose((64, 64, 64, channels), (3, 3, channels, features), 1,
                     backend="cpu")
  assert plan[0] == forward


@pytest.mark.parametrize("batch", [1, 4])
def test_taps_form_is_written_once_with_its_bias(batch):
  x, w = _inputs(8, 3, 8, 3, batch=batch)
  b = jax.random.normal(jax.random.key(3), (8,))
  # The kernel and bias as constants, as the Predictor compiles them in.
  compiled = jax.jit(lambda x: conv.conv_taps(x, w, 1, b)).lower(
      x).compile().as_text()
  assert "conditional(" in compiled and "convolution" not in compiled
  np.testing.assert_allclose(conv.conv_taps(x, w, 1, b),
                             conv.conv_lax(x, w, 1) + b, rtol=1e-5, atol=1e-5)


def test_bias_and_its_gradient_in_every_plan():
  x, w = _inputs(5, 3, 8, 3)
  b = jax.random.normal(jax.random.key(3), (8,))
  ct = jax.random.normal(jax.random.key(2), conv.conv_lax(x, w, 2).shape)

  @jax.jit
  def value_and_grads(x, w, b):
    outs = {}
    for plan in [("lax", "lax", "lax")] + PLANS:
      fn = lambda x, w, b: conv.conv_split(x, w, b, 2, *plan)
      y, vjp = jax.vjp(fn, x, w, b)
      outs[plan] = (y, *vjp(ct))
    return outs

  outs = value_and_grads(x, w, b)
  y_lax = conv.conv_lax(x, w, 2)
  np.testing.assert_allclose(outs["lax", "lax", "lax"][0], y_lax + b,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(outs["lax", "lax", "lax"][3],
                             ct.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-4)
  for plan in PLANS:
    for got, want in zip(outs[plan], outs["lax", "lax", "lax"]):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4,
                                 err_msg=plan)


def test_taps_is_refused_as_a_gradient_form():
  x, w = _inputs(4, 3, 8, 3)
  fn = lambda x: conv.conv_split(x, w, None, 1, "lax", "taps", "lax")
  with pytest.raises(ValueError, match="forward form only"):
    jax.grad(lambda x: fn(x).sum())(x)


def test_chunked_kernel_gradient_sums_every_chunk(monkeypatch):
  # Room for 2 examples per chunk: chunks of 2, 2, 2 and a last one of 1.
  x, w = _inputs(5, 6, 8, 3, batch=7)
  ct = jax.random.normal(jax.random.key(2), conv.conv_lax(x, w, 2).shape)
  per_example = x[0].size + ct[0].size
  monkeypatch.setattr(conv, "CHUNK_VALUES", 3 * per_example)
  assert conv.chunk_size(x.shape, ct.shape) == 2
  (expected,) = jax.linear_transpose(lambda k: conv.conv_lax(x, k, 2), w)(ct)
  got = conv.kernel_grad_chunked(x, ct, w.shape, 2)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
  # Leaving out any chunk changes the result.
  partial = conv.kernel_grad_chunked(x[:6], ct[:6], w.shape, 2)
  assert not np.allclose(partial, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size,stride", [(1, 1), (1, 2), (5, 2)])
def test_dot_kernel_gradient_equals_lax(size, stride):
  x = jax.random.normal(jax.random.key(0), (3, size, size, 6))
  w = jnp.zeros((3, 3, 6, 4))
  ct = jax.random.normal(jax.random.key(2), conv.conv_lax(x, w, stride).shape)
  (expected,) = jax.linear_transpose(lambda k: conv.conv_lax(x, k, stride),
                                     w)(ct)
  got = conv.kernel_grad_dot(x, ct, w.shape, stride)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
  assert np.abs(np.asarray(got)).sum() > 0


def test_chunks_are_the_largest_power_of_two_within_the_limit():
  # 64x64x3 in, 64x64x8 out: 45,056 values per example.
  assert conv.chunk_size((64, 64, 64, 3), (64, 64, 64, 8)) == 8
  assert conv.chunk_size((1, 512, 512, 3), (1, 512, 512, 8)) == 1
  assert conv.chunk_size((64, 2, 2, 8), (64, 2, 2, 8)) == 2**13


def test_unknown_implementation_is_rejected():
  x, w = _inputs(2, 3, 4, 1)
  with pytest.raises(ValueError, match="lax"):
    conv.conv2d(x, w, 1, "fft")


@pytest.mark.parametrize("name", sorted(models.MODEL_SPECS))
@pytest.mark.parametrize("train", [False, True])
def test_model_logits_and_gradients_equal_lax(name, train):
  # 32x32 inputs reach the map sizes that choose either form on the CPU,
  # down to the 1x1 of the last blocks.
  model = models.get_model(name, width=4)
  variables = models.init_variables(model, jax.random.key(0), 32)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))

  def loss(impl):
    def fn(params):
      logits, _ = model.clone(conv_impl=impl).apply(
          {**variables, "params": params}, x, train=train,
          rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
      return jnp.sum(logits * jnp.arange(1, 8)), logits
    return jax.jit(jax.grad(fn, has_aux=True))

  (g_lax, y_lax), (g_dot, y_dot) = loss("lax")(variables["params"]), loss(
      "dot")(variables["params"])
  np.testing.assert_allclose(y_dot, y_lax, rtol=1e-4, atol=1e-5)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_lax))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-3, atol=1e-4 * scale), g_dot, g_lax)
