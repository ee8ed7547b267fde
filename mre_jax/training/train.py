"""The training step: state, optimizer, loss and the jitted multi-step call.

Teachers train with class-weighted CE, students with CE + T^2 * KL against
precomputed teacher logits. The data of a split lives on the devices (sharded
on the mesh's data axis); on accelerators one jitted call runs many SGD steps
with ``lax.scan``, each drawing its batch from an on-device epoch permutation,
so batch-16 training is not bound by Python dispatch (on CPU, one step per
call is faster). Parameters are replicated, the batch is sharded, and
BatchNorm statistics are reduced over the global batch. The epoch loop around
it is :mod:`mre_jax.training.trainer`.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict
import optax

from mre_jax import models
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.data import augment
from mre_jax.data import input_pipeline
from mre_jax.datasets import common
from mre_jax.errors import ConfigError
from mre_jax.runtime import distributed
from mre_jax.training import losses


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, checkpointed every epoch."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  plateau_state: Any
  rng: jax.Array
  # The exponential moving average of params and batch_stats (config
  # ema_decay > 0), or None. Where present, it is what is evaluated,
  # checkpointed as the model and shipped.
  ema: Any = None

  def variables(self) -> dict[str, Any]:
    """The variables to evaluate: the average where there is one."""
    if self.ema is not None:
      return self.ema
    return {"params": self.params, "batch_stats": self.batch_stats}

  def with_variables(self, variables: dict[str, Any]) -> "TrainState":
    """The state with :meth:`variables` replaced (as restored)."""
    if self.ema is not None:
      return self.replace(ema=variables)
    return self.replace(**variables)

  def training_items(self) -> dict[str, Any]:
    """What resuming needs beside :meth:`variables`: the optimizer's state,
    and the trained variables themselves when the model is their average."""
    items = {"step": self.step, "opt_state": self.opt_state,
             "plateau_state": self.plateau_state, "rng": self.rng}
    if self.ema is not None:
      items.update(params=self.params, batch_stats=self.batch_stats)
    return items


def build_model(config: config_dict.ConfigDict,
                num_classes: int = NUM_CLASSES) -> models.ResEmoteNet:
  """The configured preset, width and compute dtype."""
  dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
  return models.get_model(config.model, num_classes=num_classes, dtype=dtype,
                          width=config.model_width or None)


def global_batch_size(config: config_dict.ConfigDict,
                      mesh: jax.sharding.Mesh) -> int:
  """The configured batch, times the device count if so configured."""
  num_devices = mesh.shape[input_pipeline.DATA_AXIS]
  batch = config.batch_size * (num_devices if config.scale_batch_with_devices
                               else 1)
  if batch % num_devices:
    raise ConfigError(
        f"config.batch_size={config.batch_size} does not split over "
        f"{num_devices} devices; use a multiple of {num_devices} or set "
        "config.scale_batch_with_devices=True (per-device batch_size).")
  return batch


def learning_rate(config: config_dict.ConfigDict, global_batch: int) -> float:
  """The paper's lr, scaled linearly with the batch if configured."""
  if config.linear_lr_scaling:
    return config.learning_rate * global_batch / config.batch_size
  return config.learning_rate


def lr_schedule(config: config_dict.ConfigDict, lr: float,
                steps_per_epoch: int) -> optax.ScalarOrSchedule:
  """The lr of each step: ``lr`` itself for the paper's plateau schedule
  (the plateau scales the updates), or a linear warm-up from 0 over
  ``warmup_epochs`` then a cosine decay to 0 at ``num_epochs``."""
  if config.lr_schedule == "plateau":
    return lr
  total = max(steps_per_epoch * config.num_epochs, 1)
  # At least one cosine step: optax refuses a decay of none.
  warmup = min(steps_per_epoch * config.warmup_epochs, total - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=lr, warmup_steps=warmup, decay_steps=total,
      end_value=0.0)


def make_optimizer(config: config_dict.ConfigDict,
                   lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  """torch.optim.SGD: decay added to gradients, then heavy-ball momentum.

  ``lr`` is a number or a schedule of the step (:func:`lr_schedule`).
  """
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(lr, momentum=config.momentum or None))


def current_lr(schedule: optax.ScalarOrSchedule, state: TrainState) -> float:
  """The lr of the state's next step: the schedule's, times the plateau's
  scale."""
  step = int(distributed.to_host(state.step))
  lr = schedule(step) if callable(schedule) else schedule
  return float(lr) * float(distributed.to_host(state.plateau_state.scale))


def make_plateau(config: config_dict.ConfigDict
                 ) -> optax.GradientTransformationExtraArgs:
  """ReduceLROnPlateau as in PyTorch, via optax's reduce_on_plateau.

  PyTorch reduces once more than ``patience`` epochs failed to improve; optax
  reduces when ``patience`` have, hence the ``+ 1``.
  """
  return optax.contrib.reduce_on_plateau(
      factor=config.plateau.factor, patience=config.plateau.patience + 1,
      rtol=config.plateau.rtol, atol=0.0, cooldown=config.plateau.cooldown)


def init_state(model, config, tx, plateau, mesh) -> TrainState:
  """A fresh, replicated TrainState from ``config.seed``."""
  rng = jax.random.PRNGKey(config.seed)
  init_rng, train_rng = jax.random.split(rng)

  def init():
    variables = models.init_variables(model, init_rng, config.image_size)
    params = variables["params"]
    ema = (jax.tree.map(jnp.copy, {"params": params,
                                   "batch_stats": variables["batch_stats"]})
           if config.get("ema_decay", 0.0) else None)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables["batch_stats"],
                      opt_state=tx.init(params),
                      plateau_state=plateau.init(params), rng=train_rng,
                      ema=ema)

  return jax.jit(init, out_shardings=distributed.replicated(mesh))()


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
  """The average's decay after ``step`` updates: ``decay``, but at most
  ``(1 + step) / (10 + step)``, so that the first steps' weights, still
  near their random start, fade out quickly (as in TensorFlow's
  ExponentialMovingAverage with ``num_updates``)."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(state: TrainState, decay: float) -> TrainState:
  """The state with its average moved towards its current variables."""
  if state.ema is None:
    return state
  rate = 1.0 - ema_decay_at(decay, state.step)
  current = {"params": state.params, "batch_stats": state.batch_stats}
  return state.replace(
      ema=optax.incremental_update(current, state.ema, rate))


def make_loss_fn(model, temperature: float, ce_weight: float,
                 kd_weight: float, label_smoothing: float = 0.0,
                 logit_offsets: np.ndarray | None = None):
  """``(params, batch_stats, images, labels, teacher, weights, rng)`` ->
  ``(loss, (logits, new_batch_stats))`` in training mode; ``logit_offsets``
  (see :func:`mre_jax.training.losses.distillation_loss`) are constants of
  the program."""

  def loss_fn(params, batch_stats, images, labels, teacher, class_weights,
              dropout_rng):
    logits, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, images, train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss, _ = losses.distillation_loss(
        logits, labels, teacher, temperature=temperature,
        ce_weight=ce_weight, kd_weight=kd_weight, class_weights=class_weights,
        label_smoothing=label_smoothing, logit_offsets=logit_offsets)
    return loss, (logits, updates["batch_stats"])

  return loss_fn


def logit_offsets(config: config_dict.ConfigDict,
                  train_labels: np.ndarray) -> np.ndarray | None:
  """``logit_adjustment * log(class prior)`` of the train split, the offsets
  of the logit-adjusted loss, or None when the run does not adjust."""
  tau = config.get("logit_adjustment", 0.0)
  if not tau:
    return None
  prior = common.class_prior(train_labels, NUM_CLASSES)
  return (tau * np.log(prior)).astype(np.float32)


def make_train_chunk(model, tx, config, mesh, global_batch: int,
                     ce_weight: float, kd_weight: float,
                     logit_offsets: np.ndarray | None = None):
  """Jitted ``(state, data, perm, class_weights, first) -> (state, sums)``.

  Runs ``num_steps`` (static) training steps, with ``lax.scan`` when more than
  one (see :func:`steps_per_dispatch`). Each step takes
  the batch ``perm[step * B:(step + 1) * B]``, flips each example with
  probability 1/2, applies the configured augmentations
  (:mod:`mre_jax.data.augment`) and, when distilling, uses the teacher logits of
  the view the student sees. Returns the summed loss/accuracy counts of the
  chunk.
  """
  loss_fn = make_loss_fn(model, config.distill.temperature, ce_weight,
                         kd_weight, config.label_smoothing, logit_offsets)
  augmentation = augment.Augmentation.from_config(config)
  ema_decay = config.get("ema_decay", 0.0)

  def train_step(state: TrainState, data, perm, class_weights, step_in_epoch):
    step_rng = jax.random.fold_in(state.rng, state.step)
    flip_rng, dropout_rng = jax.random.split(step_rng)
    batch = input_pipeline.train_batch(
        data, flip_rng, perm, step_in_epoch, batch_size=global_batch,
        image_size=config.image_size, mesh=mesh,
        augment_flip=config.augment_flip,
        augmentation=augmentation)
    images, labels = batch["image"], batch["label"]
    teacher = (input_pipeline.teacher_view(batch["teacher_logits"],
                                           batch["flip"])
               if kd_weight > 0 else None)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, images, labels, teacher,
        class_weights, dropout_rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    scale = state.plateau_state.scale
    updates = jax.tree.map(lambda u: u * scale, updates)
    state = state.replace(step=state.step + 1,
                          params=optax.apply_updates(state.params, updates),
                          batch_stats=batch_stats, opt_state=opt_state)
    state = update_ema(state, ema_decay)
    sums = {"loss": loss * global_batch,
            "correct": jnp.sum(jnp.argmax(logits, -1) == labels),
            "count": jnp.asarray(global_batch, jnp.int32)}
    return state, sums

  def chunk(state, data, perm, class_weights, first_step, num_steps):
    if num_steps == 1:
      return train_step(state, data, perm, class_weights, first_step)
    def body(state, i):
      return train_step(state, data, perm, class_weights, first_step + i)
    state, sums = jax.lax.scan(body, state, jnp.arange(num_steps))
    return state, jax.tree.map(jnp.sum, sums)

  replicated = distributed.replicated(mesh)
  return jax.jit(chunk, static_argnames=("num_steps",), donate_argnums=(0,),
                 out_shardings=(replicated, replicated))


def steps_per_dispatch(configured: int = 0) -> int:
  """Train steps per jitted call: ``configured``, or 1 on CPU and 64 elsewhere.

  Accelerators need many steps per call so that small batches are not bound
  by Python dispatch. XLA's CPU backend runs convolutions inside ``lax.scan``
  several times slower than in a plain step, and a CPU step is long enough
  that dispatch does not matter.
  """
  if configured:
    return configured
  return 1 if jax.default_backend() == "cpu" else 64
