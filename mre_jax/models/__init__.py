"""ResEmoteNet and its width-scaled Mini-ResEmoteNet students, in Flax.

One module family reproduces the published ResEmoteNet (Roy et al., 2024) with
the base width ``w`` as a parameter:

* stem: three stages conv3x3 -> BatchNorm -> ReLU -> maxpool 2x2 with widths
  w, 2w, 4w; dropout 0.2 after the first two pooled stages;
* squeeze-and-excitation on the 4w channels (hidden width 4w / se_reduction);
* three stride-2 residual blocks with 1x1 projection shortcuts, widths 8w, 16w,
  32w;
* global average pool and an MLP head 16w -> 8w -> 4w -> num_classes with
  dropout 0.5.

Layers are NHWC, initialised like PyTorch's ``Conv2d``/``Linear`` defaults and
normalised with a BatchNorm that follows ``torch.nn.BatchNorm2d`` (eps 1e-5,
momentum 0.1, unbiased running variance), so the paper's SGD settings carry
over. Module names follow the official PyTorch state-dict keys (``conv1``,
``bn1``, ``se``, ``res_block1`` ...), which keeps :mod:`mre_jax.convert` a
plain renaming.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mre_jax.config import paper
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.models import batch_norm
from mre_jax.models import conv
from mre_jax.models import dropout
from mre_jax.models import pooling

Dtype = Any

# The activation exposed by ResEmoteNet._tap: the last stem stage's ReLU output
# (after conv3 and bn3, before pooling), for Grad-CAM.
GRADCAM_LAYER = "conv3_features"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A named preset: base width and SE reduction (Table II of the paper)."""
  width: int
  se_reduction: int
  num_params: int  # Table II total, checked by the tests.


# The presets of Table II.
MODEL_SPECS: dict[str, ModelSpec] = {
    name: ModelSpec(**spec) for name, spec in paper.TABLE_II.items()}


def torch_weight_init(scale: float = 1.0) -> Callable[..., jax.Array]:
  """PyTorch's default kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))."""
  return nn.initializers.variance_scaling(scale / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
  """PyTorch's default bias init: U(+-1/sqrt(fan_in)) of the layer's weight."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class TorchBatchNorm(nn.Module):
  """BatchNorm with ``torch.nn.BatchNorm2d`` semantics.

  Normalises with the biased batch variance, but, like PyTorch, updates the
  running variance with the unbiased one. Statistics are reduced over every
  axis but the last; under ``jax.jit`` with a batch sharded over a mesh this is
  the global batch. Computed in float32 whatever the compute dtype; in
  training, with the gradient written out in :mod:`mre_jax.models.batch_norm`.
  """
  momentum: float = 0.1  # PyTorch convention: weight of the new batch.
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean",
                            lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var",
                           lambda: jnp.ones((features,), jnp.float32))
    x32 = x.astype(jnp.float32)
    if train:
      y, mean, var = batch_norm.normalize(x32, scale, bias, self.epsilon)
      if not self.is_initializing():
        n = math.prod(x.shape[:-1])
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * mean
        ra_var.value = (1 - m) * ra_var.value + m * unbiased
    else:
      y = batch_norm.affine(x32, ra_mean.value, ra_var.value, scale, bias,
                            self.epsilon)
    return y.astype(self.dtype)


def _conv(features: int, kernel: int, stride: int, in_features: int,
          dtype: Dtype, impl: str, name: str) -> conv.Conv:
  return conv.Conv(
      features, kernel, stride, dtype=dtype, kernel_init=torch_weight_init(),
      bias_init=torch_bias_init(in_features * kernel * kernel), impl=impl,
      name=name)


def _dense(features: int, in_features: int, dtype: Dtype, name: str,
           use_bias: bool = True) -> nn.Dense:
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=torch_weight_init(), bias_init=torch_bias_init(in_features),
      name=name)


class SqueezeExcite(nn.Module):
  """Channel attention: scale channels by sigmoid(MLP(global mean))."""
  reduction: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    hidden = channels // self.reduction
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(_dense(hidden, channels, self.dtype, "fc_0", use_bias=False)(s))
    s = nn.sigmoid(_dense(channels, hidden, self.dtype, "fc_2", use_bias=False)(s))
    return x * s[:, None, None, :]


class ResidualBlock(nn.Module):
  """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus 1x1 conv+BN shortcut."""
  features: int
  stride: int = 2
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    in_features = x.shape[-1]
    bn = lambda name: TorchBatchNorm(dtype=self.dtype, name=name)
    conv_ = lambda kernel, stride, fan_in, name: _conv(
        self.features, kernel, stride, fan_in, self.dtype, self.conv_impl,
        name)
    y = conv_(3, self.stride, in_features, "conv1")(x)
    y = nn.relu(bn("bn1")(y, train))
    y = conv_(3, 1, self.features, "conv2")(y)
    y = bn("bn2")(y, train)
    shortcut = x
    if self.stride != 1 or in_features != self.features:
      shortcut = conv_(1, self.stride, in_features, "shortcut_conv")(x)
      shortcut = bn("shortcut_bn")(shortcut, train)
    return nn.relu(y + shortcut)


class ResEmoteNet(nn.Module):
  """ResEmoteNet with base width ``width`` (64 for the published teacher).

  Input: float images (N, H, W, 3), NHWC, already normalised. Output: float32
  logits (N, num_classes). ``dtype`` is the compute dtype (e.g. bfloat16);
  parameters and BatchNorm statistics stay float32. ``conv_impl`` picks how
  convolutions and pooling are computed (:mod:`mre_jax.models.conv`,
  :mod:`mre_jax.models.pooling`), never what.
  The last stem stage's output is exposed for Grad-CAM (:meth:`_tap`).
  """
  width: int = 64
  se_reduction: int = 16
  num_classes: int = NUM_CLASSES
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"

  def _tap(self, name: str, x: jax.Array) -> jax.Array:
    """Exposes the activation ``x`` for explanations, leaving it unchanged.

    It is sown into ``intermediates`` when that collection is mutable, and
    a zero ``perturbations[name]`` passed to ``apply`` is added to it, so
    ``jax.grad`` with respect to that perturbation is the gradient with
    respect to the activation. Both are no-ops otherwise, and nothing is
    created by ``init``: the variables stay ``params`` and ``batch_stats``.
    """
    self.sow("intermediates", name, x)
    if self.is_initializing():
      return x
    return self.perturb(name, x)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    w = self.width
    x = x.astype(self.dtype)
    in_features = x.shape[-1]
    for i, features in enumerate((w, 2 * w, 4 * w), start=1):
      x = _conv(features, 3, 1, in_features, self.dtype, self.conv_impl,
                f"conv{i}")(x)
      x = nn.relu(TorchBatchNorm(dtype=self.dtype, name=f"bn{i}")(x, train))
      if i == 3:
        x = self._tap(GRADCAM_LAYER, x)
      x = pooling.max_pool_2x2(x, self.conv_impl)
      if i < 3:
        x = dropout.Dropout(0.2, deterministic=not train)(x)
      in_features = features
    x = SqueezeExcite(self.se_reduction, dtype=self.dtype, name="se")(x)
    for i, features in enumerate((8 * w, 16 * w, 32 * w), start=1):
      x = ResidualBlock(features, stride=2, dtype=self.dtype,
                        conv_impl=self.conv_impl,
                        name=f"res_block{i}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    in_features = x.shape[-1]
    for i, features in enumerate((16 * w, 8 * w, 4 * w), start=1):
      x = nn.relu(_dense(features, in_features, self.dtype, f"fc{i}")(x))
      x = dropout.Dropout(0.5, deterministic=not train)(x)
      in_features = features
    x = _dense(self.num_classes, in_features, self.dtype, "fc4")(x)
    return x.astype(jnp.float32)


def get_model(name: str, num_classes: int = NUM_CLASSES,
              dtype: Dtype = jnp.float32,
              width: int | None = None) -> ResEmoteNet:
  """Returns the preset ``teacher | student_a | student_b | student_c``.

  ``width`` overrides the preset's base width (tiny models for tests and
  demos); the SE reduction stays the preset's.
  """
  if name not in MODEL_SPECS:
    from mre_jax.errors import ConfigError
    raise ConfigError(f"unknown model {name!r}; expected one of "
                      f"{', '.join(MODEL_SPECS)}")
  spec = MODEL_SPECS[name]
  return ResEmoteNet(width=width or spec.width, se_reduction=spec.se_reduction,
                     num_classes=num_classes, dtype=dtype)


def from_description(description: dict[str, Any],
                     dtype: Dtype = jnp.float32) -> ResEmoteNet:
  """The network a checkpoint's or a model card's ``model`` entry describes
  (``width``, ``se_reduction``, ``num_classes``)."""
  return ResEmoteNet(width=description["width"],
                     se_reduction=description["se_reduction"],
                     num_classes=description["num_classes"], dtype=dtype)


def init_variables(model: ResEmoteNet, rng: jax.Array,
                   image_size: int = 64) -> dict[str, Any]:
  """Initialises ``{"params", "batch_stats"}`` for (1, S, S, 3) inputs.

  Jitted: run op by op, the initialisers and forward pass take several times
  longer than one compile.
  """
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  init = jax.jit(functools.partial(model.init, train=False))
  return dict(init({"params": rng}, x))


def abstract_variables(model: ResEmoteNet,
                       image_size: int = 64) -> dict[str, Any]:
  """Shapes and dtypes of :func:`init_variables`, allocating nothing."""
  return jax.eval_shape(
      lambda: init_variables(model, jax.random.PRNGKey(0), image_size))


def count_params(params: Any) -> int:
  """Number of trainable parameters in a params pytree."""
  return sum(int(math.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
