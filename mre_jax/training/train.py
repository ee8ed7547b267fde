"""Training: teachers with class-weighted CE, students with CE + T^2 * KL.

The data of a split lives on the devices (sharded on the mesh's data axis);
on accelerators one jitted call runs many SGD steps with ``lax.scan``, each
drawing its batch from an on-device epoch permutation, so batch-16 training is
not bound by Python dispatch (on CPU, one step per call is faster). Parameters are replicated, the batch is sharded,
and BatchNorm statistics are reduced over the global batch. The loop around it
(evaluation, plateau schedule, early stopping, checkpoints, logs) runs once per
epoch on the host and resumes exactly from the latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from typing import Any

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
from ml_collections import config_dict
import numpy as np
import optax

from mre_jax import checkpointing
from mre_jax import config_lib
from mre_jax import datasets
from mre_jax import distributed
from mre_jax.evaluation import predict
from mre_jax.evaluation import metrics
from mre_jax import input_pipeline
from mre_jax.training import losses
from mre_jax import models
from mre_jax.training import teacher_logits
from mre_jax.errors import CheckpointError, ConfigError, DatasetError


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, checkpointed every epoch."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  plateau_state: Any
  rng: jax.Array

  def variables(self) -> dict[str, Any]:
    return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass
class LoopState:
  """Host-side loop state, saved in the checkpoint's ``meta`` item."""
  epoch: int = 0  # Epochs completed.
  best_epoch: int = 0
  best_val_accuracy: float = -1.0
  epochs_without_improvement: int = 0
  finished: bool = False


@dataclasses.dataclass(frozen=True)
class RunData:
  """The splits of a run, on the host and on the devices."""
  splits: dict[str, datasets.SplitData]
  device: dict[str, input_pipeline.DeviceData]
  class_weights: np.ndarray | None


def build_model(config: config_dict.ConfigDict, num_classes: int):
  dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
  return models.get_model(config.model, num_classes=num_classes, dtype=dtype,
                          width=config.model_width or None)


def model_meta(model: models.ResEmoteNet, name: str) -> dict[str, Any]:
  return {"name": name, "width": model.width,
          "se_reduction": model.se_reduction, "num_classes": model.num_classes}


def run_identity(config: config_dict.ConfigDict,
                 global_batch: int) -> dict[str, Any]:
  """What must not change when a run resumes in the same workdir."""
  return {"dataset": config.dataset.name,
          "builder_config": config.dataset.builder_config,
          "validation": config.dataset.validation,
          "image_size": config.image_size, "global_batch": global_batch,
          "seed": config.seed}


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


def make_optimizer(config: config_dict.ConfigDict,
                   lr: float) -> optax.GradientTransformation:
  """torch.optim.SGD: decay added to gradients, then heavy-ball momentum."""
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(lr, momentum=config.momentum or None))


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
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables["batch_stats"],
                      opt_state=tx.init(params),
                      plateau_state=plateau.init(params), rng=train_rng)

  return jax.jit(init, out_shardings=distributed.replicated(mesh))()


def make_loss_fn(model, temperature: float, ce_weight: float,
                 kd_weight: float):
  """``(params, batch_stats, images, labels, teacher, weights, rng)`` ->
  ``(loss, (logits, new_batch_stats))`` in training mode."""

  def loss_fn(params, batch_stats, images, labels, teacher, class_weights,
              dropout_rng):
    logits, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, images, train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    loss, _ = losses.distillation_loss(
        logits, labels, teacher, temperature=temperature,
        ce_weight=ce_weight, kd_weight=kd_weight, class_weights=class_weights)
    return loss, (logits, updates["batch_stats"])

  return loss_fn


def make_train_chunk(model, tx, config, mesh, global_batch: int,
                     ce_weight: float, kd_weight: float):
  """Jitted ``(state, data, perm, class_weights, first) -> (state, sums)``.

  Runs ``num_steps`` (static) training steps, with ``lax.scan`` when more than
  one (see :func:`steps_per_dispatch`). Each step takes
  the batch ``perm[step * B:(step + 1) * B]``, flips each example with
  probability 1/2, and, when distilling, uses the teacher logits of the view
  the student sees. Returns the summed loss/accuracy counts of the chunk.
  """
  loss_fn = make_loss_fn(model, config.distill.temperature, ce_weight,
                         kd_weight)

  def train_step(state: TrainState, data, perm, class_weights, step_in_epoch):
    step_rng = jax.random.fold_in(state.rng, state.step)
    flip_rng, dropout_rng = jax.random.split(step_rng)
    batch = input_pipeline.train_batch(
        data, flip_rng, perm, step_in_epoch, batch_size=global_batch,
        image_size=config.image_size, mesh=mesh,
        augment_flip=config.augment_flip)
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


def git_commit() -> str:
  """The commit of the mre_jax source tree, or "unknown"."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"],
                         capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"],
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  if out.returncode:
    return "unknown"
  return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_run_info(config: config_dict.ConfigDict, workdir: str) -> None:
  """Saves the resolved config and the code version into the workdir."""
  if not distributed.is_main_process():
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  info = {"commit": git_commit(), "argv": sys.argv,
          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
          "process_count": jax.process_count(),
          "time": time.strftime("%Y-%m-%d %H:%M:%S")}
  with open(os.path.join(workdir, "run_info.json"), "w") as f:
    json.dump(info, f, indent=2)


class MetricWriter:
  """Per-epoch metrics as JSON lines and TensorBoard events (process 0).

  A run resumed from epoch ``resumed_epoch`` first drops the JSON lines of
  later epochs, written before an interruption that lost their checkpoint.
  """

  def __init__(self, workdir: str, resumed_epoch: int = 0):
    self._active = distributed.is_main_process()
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self._active and os.path.exists(self._path):
      with open(self._path) as f:
        lines = f.read().splitlines()
      kept = [l + "\n" for l in lines if _logged_by(l, resumed_epoch)]
      if len(kept) < len(lines):
        with open(self._path, "w") as f:
          f.writelines(kept)
    if self._active:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:
        logging.warning("tensorboardX not installed: no TensorBoard events.")

  def write(self, epoch: int, scalars: dict[str, float]) -> None:
    if not self._active:
      return
    with open(self._path, "a") as f:
      f.write(json.dumps({"epoch": epoch, **scalars}) + "\n")
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, value, epoch)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _logged_by(line: str, epoch: int) -> bool:
  """Whether a metrics.jsonl line is intact and of ``epoch`` or earlier."""
  try:
    return int(json.loads(line)["epoch"]) <= epoch
  except (ValueError, KeyError, TypeError):
    return False  # Cut short by a crash.


def load_data(config: config_dict.ConfigDict,
              mesh: jax.sharding.Mesh) -> dict[str, datasets.SplitData]:
  """Prepares (process 0 first) and loads the run's train/validation/test."""
  kwargs = dict(data_dir=os.path.expanduser(config.dataset.data_dir),
                manual_dir=config.dataset.manual_dir or None,
                config=config.dataset.builder_config or None,
                validation=config.dataset.validation)
  if jax.process_count() > 1:
    error = None
    if distributed.is_main_process():
      try:
        datasets.prepare(config.dataset.name, data_dir=kwargs["data_dir"],
                         manual_dir=kwargs["manual_dir"],
                         config=kwargs["config"])
      except DatasetError as e:
        error = e
    # The others wait for process 0, and stop with it if it failed.
    if not distributed.main_process_value(error is None):
      raise error or DatasetError(
          f"process 0 could not prepare dataset {config.dataset.name!r}; "
          "its log says why.")
  del mesh
  return datasets.load_splits(config.dataset.name, **kwargs)


def logits_path(config: config_dict.ConfigDict, workdir: str) -> str:
  return config.distill.teacher_logits or os.path.join(
      workdir, teacher_logits.LOGITS_FILENAME)


def ensure_teacher_logits(config, workdir, split: datasets.SplitData,
                          data: input_pipeline.DeviceData, mesh) -> np.ndarray:
  """Loads the student's teacher logits, exporting them first if missing."""
  path = logits_path(config, workdir)
  if not os.path.exists(path):
    if not config.distill.teacher_workdir:
      raise ConfigError(
          f"config.distill.teacher_logits={path!r} does not exist and "
          "config.distill.teacher_workdir is empty: name a teacher run to "
          "export the logits from.")
    teacher_logits.export(
        teacher_workdir=config.distill.teacher_workdir,
        teacher_checkpoint=config.distill.teacher_checkpoint, split=split,
        data=data, mesh=mesh, image_size=config.image_size,
        batch_size=config.eval_batch_size, path=path, log=logging.info)
  return teacher_logits.load(path, split, config.image_size)


def prepare_run(config: config_dict.ConfigDict, workdir: str,
                mesh: jax.sharding.Mesh, with_teacher: bool) -> RunData:
  """Loads the splits, class weights and (for students) teacher logits."""
  splits = load_data(config, mesh)
  train = splits["train"]
  weights = (datasets.class_weights(train.labels, train.num_classes)
             if config.class_weighted_loss else None)
  device = {name: input_pipeline.put_on_mesh(
      {"image": s.images, "label": s.labels.astype(np.int32)}, mesh)
            for name, s in splits.items()}
  if with_teacher:
    train_data = device["train"]
    logits = ensure_teacher_logits(config, workdir, train, train_data, mesh)
    on_mesh = input_pipeline.put_on_mesh({"teacher_logits": logits}, mesh)
    device["train"] = train_data.replace(
        arrays={**train_data.arrays, **on_mesh.arrays})
  return RunData(splits=splits, device=device, class_weights=weights)


class Trainer:
  """One training run in a workdir: build, resume, train, evaluate."""

  def __init__(self, config: config_dict.ConfigDict, workdir: str,
               mesh: jax.sharding.Mesh | None = None):
    config_lib.validate(config)
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.mesh = mesh or input_pipeline.make_mesh()
    self.global_batch = global_batch_size(config, self.mesh)
    self.ce_weight, self.kd_weight = config_lib.distill_weights(config)
    if config.model == "teacher":
      self.kd_weight = 0.0
    self._data: RunData | None = None

  @property
  def data(self) -> RunData:
    """The run's data; with teacher logits when training a student."""
    if self._data is None:
      self._data = prepare_run(self.config, self.workdir, self.mesh,
                               with_teacher=self.kd_weight > 0)
    return self._data

  def eval_data(self) -> RunData:
    """The run's data for evaluation, which never needs the teacher."""
    if self._data is None:
      self._data = prepare_run(self.config, self.workdir, self.mesh,
                               with_teacher=False)
    return self._data

  @functools.cached_property
  def model(self) -> models.ResEmoteNet:
    return build_model(self.config, len(datasets.CLASS_NAMES))

  def meta(self, loop: LoopState) -> dict[str, Any]:
    return {"model": model_meta(self.model, self.config.model),
            "run": run_identity(self.config, self.global_batch),
            **dataclasses.asdict(loop)}

  def check_identity(self, meta: dict[str, Any],
                     keys: tuple[str, ...] = ("model", "run")) -> None:
    """Refuses to resume (or evaluate) a workdir holding a different run."""
    expected = self.meta(LoopState())
    wrong = [f"{key}: checkpoint has {meta.get(key)}, config has "
             f"{expected[key]}" for key in keys
             if meta.get(key) != expected[key]]
    if wrong:
      raise CheckpointError(
          f"workdir {self.workdir} holds checkpoints of another run:\n  " +
          "\n  ".join(wrong) + "\nUse a new --workdir, or the config that "
          "trained it. Nothing was overwritten.")

  def train(self) -> LoopState:
    """Trains until ``num_epochs`` or early stopping; resumes if possible."""
    config, mesh = self.config, self.mesh
    manager = checkpointing.open_manager(self.workdir)
    loop = LoopState()
    lr = learning_rate(config, self.global_batch)
    tx, plateau = make_optimizer(config, lr), make_plateau(config)
    latest = manager.latest_step()
    if latest is not None:
      meta = checkpointing.read_meta(manager, latest)
      self.check_identity(meta)
      loop = LoopState(**{f.name: meta[f.name]
                          for f in dataclasses.fields(LoopState)})
      if loop.finished:
        logging.info("%s already finished after %d epochs (best epoch %d, "
                     "validation accuracy %.2f%%); nothing to do. Use "
                     "--mode=evaluate to report it.", self.workdir,
                     loop.epoch, loop.best_epoch,
                     100 * loop.best_val_accuracy)
        return loop
    write_run_info(config, self.workdir)
    data = self.data
    state = init_state(self.model, config, tx, plateau, mesh)
    if latest is not None:
      restored = checkpointing.restore(
          manager, latest, model=state.variables(),
          train=self._train_item(state))
      state = state.replace(**restored["model"], **restored["train"])
      logging.info("Resumed %s from epoch %d.", self.workdir, loop.epoch)
    train_chunk = make_train_chunk(self.model, tx, config, mesh,
                                   self.global_batch, self.ce_weight,
                                   self.kd_weight)
    predict_fn = predict.make_predict_fn(self.model, mesh, config.image_size)
    weights = jnp.asarray(data.class_weights if data.class_weights is not None
                          else np.ones(len(datasets.CLASS_NAMES), np.float32))
    weights = jax.device_put(weights, distributed.replicated(mesh))
    plateau_update = jax.jit(
        lambda s, value: plateau.update(s.params, s.plateau_state, s.params,
                                        value=value)[1])
    writer = MetricWriter(self.workdir, loop.epoch)
    train_split = data.device["train"]
    steps = input_pipeline.steps_per_epoch(train_split.num_examples,
                                           self.global_batch)
    if steps == 0:
      raise ConfigError(
          f"config.batch_size: global batch {self.global_batch} exceeds the "
          f"{train_split.num_examples} training examples")
    logging.info(
        "Training %s (%s params) on %s: %d examples, global batch %d over %d "
        "devices, %d steps/epoch, lr %g, ce_weight %g, kd_weight %g.",
        config.model, f"{models.count_params(state.params):,}",
        config.dataset.name, train_split.num_examples, self.global_batch,
        mesh.size, steps, lr, self.ce_weight, self.kd_weight)
    per_dispatch = steps_per_dispatch(config.steps_per_dispatch)
    add_sums = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))
    permutation = jax.jit(input_pipeline.epoch_permutation, static_argnums=1,
                          out_shardings=distributed.replicated(mesh))
    # Epoch permutations use a stream of their own; steps fold in state.step.
    perm_rng = jax.random.fold_in(state.rng, 2**31 - 1)
    run_start = time.time()
    first_epoch = loop.epoch
    while not loop.finished:
      epoch = loop.epoch + 1
      epoch_start = time.time()
      perm = permutation(jax.random.fold_in(perm_rng, epoch),
                         train_split.num_examples)
      totals = None  # Summed on device: no host sync per dispatch.
      last_print = time.time()
      for first in range(0, steps, per_dispatch):
        num = min(per_dispatch, steps - first)
        state, sums = train_chunk(state, train_split, perm, weights, first,
                                  num_steps=num)
        totals = sums if totals is None else add_sums(totals, sums)
        if time.time() - last_print > config.progress_every_seconds:
          distributed.to_host(totals["count"])  # Waits for the work so far.
          last_print = time.time()
          done = first + num
          rate = done * self.global_batch / (last_print - epoch_start)
          eta = (steps - done) * self.global_batch / rate
          logging.info("epoch %d: step %d/%d, %.0f img/s, epoch ETA %s",
                       epoch, done, steps, rate, _duration(eta))
      totals = distributed.to_host(totals)
      train_time = time.time() - epoch_start
      val = self.evaluate_split(predict_fn, state.variables(), "validation")
      metric = (val["loss"] if config.plateau.metric == "val_loss"
                else -val["accuracy"])
      state = state.replace(plateau_state=plateau_update(
          state, jnp.asarray(metric, jnp.float32)))
      loop = _advance(loop, epoch, val["accuracy"], config)
      scalars = {
          "train_loss": totals["loss"] / max(totals["count"], 1),
          "train_accuracy": totals["correct"] / max(totals["count"], 1),
          "val_loss": val["loss"], "val_accuracy": val["accuracy"],
          "val_mean_class_accuracy": val["mean_class_accuracy"],
          "learning_rate": lr * float(distributed.to_host(
              state.plateau_state.scale)),
          "images_per_second": totals["count"] / train_time,
          "epoch_seconds": time.time() - epoch_start,
      }
      writer.write(epoch, scalars)
      checkpointing.save(manager, epoch, model=state.variables(),
                         train=self._train_item(state), meta=self.meta(loop),
                         val_accuracy=val["accuracy"])
      per_epoch = (time.time() - run_start) / (epoch - first_epoch)
      logging.info(
          "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% "
          "| lr %.2g | %.0f img/s | best %.2f%% (epoch %d) | ETA %s", epoch,
          config.num_epochs, scalars["train_loss"],
          100 * scalars["train_accuracy"], val["loss"], 100 * val["accuracy"],
          scalars["learning_rate"], scalars["images_per_second"],
          100 * loop.best_val_accuracy, loop.best_epoch,
          _duration(per_epoch * (config.num_epochs - epoch)))
    writer.close()
    if loop.epoch < config.num_epochs:
      logging.info("Early stopping after epoch %d: no validation-accuracy gain "
                   "for %d epochs.", loop.epoch,
                   config.early_stopping_patience)
    return loop

  def finished(self) -> bool:
    """Whether the workdir holds a run that already finished training."""
    # Process 0 may already be creating the folder when another looks.
    if not distributed.main_process_value(
        os.path.isdir(checkpointing.checkpoint_dir(self.workdir))):
      return False
    manager = checkpointing.open_manager(self.workdir, read_only=True)
    latest = manager.latest_step()
    return latest is not None and bool(
        checkpointing.read_meta(manager, latest).get("finished"))

  @staticmethod
  def _train_item(state: TrainState) -> dict[str, Any]:
    return {"step": state.step, "opt_state": state.opt_state,
            "plateau_state": state.plateau_state, "rng": state.rng}

  def evaluate_split(self, predict_fn, variables, split: str
                     ) -> dict[str, Any]:
    data = self.eval_data()
    logits = predict.predict(predict_fn, variables, data.device[split],
                              self.mesh, self.config.eval_batch_size)
    return metrics.metrics_from_logits(
        logits, data.splits[split].labels, data.class_weights,
        data.splits[split].class_names)

  def evaluate(self, which: str | int | None = None) -> dict[str, Any]:
    """Restores a checkpoint, evaluates ``config.eval.splits``, writes JSON."""
    which = self.config.eval.checkpoint if which is None else which
    manager = checkpointing.open_manager(self.workdir, read_only=True)
    step = checkpointing.resolve_step(manager, which)
    self.check_identity(checkpointing.read_meta(manager, step), ("model",))
    abstract = models.abstract_variables(self.model, self.config.image_size)
    variables = checkpointing.restore(
        manager, step,
        model=distributed.abstract_replicated(abstract, self.mesh))["model"]
    predict_fn = predict.make_predict_fn(self.model, self.mesh,
                                          self.config.image_size)
    results = {}
    for split in (s.strip() for s in self.config.eval.splits.split(",")):
      if not split:
        continue
      result = self.evaluate_split(predict_fn, variables, split)
      result["checkpoint_step"] = int(step)
      results[split] = result
      if distributed.is_main_process():
        metrics.write_report(self.workdir, split, result,
                              self.eval_data().splits[split].class_names)
      logging.info(metrics.format_summary(split, result, step))
    return results

  def export_logits(self) -> dict[str, Any]:
    """Writes the teacher logits for this (student) run's training split."""
    config = self.config
    if not config.distill.teacher_workdir:
      raise ConfigError("config.distill.teacher_workdir is empty: name the "
                        "teacher run whose logits to export.")
    data = self.eval_data()
    return teacher_logits.export(
        teacher_workdir=config.distill.teacher_workdir,
        teacher_checkpoint=config.distill.teacher_checkpoint,
        split=data.splits["train"], data=data.device["train"], mesh=self.mesh,
        image_size=config.image_size, batch_size=config.eval_batch_size,
        path=logits_path(config, self.workdir), log=logging.info)


def _advance(loop: LoopState, epoch: int, val_accuracy: float,
             config: config_dict.ConfigDict) -> LoopState:
  """Best-so-far and early-stopping bookkeeping after ``epoch``."""
  if val_accuracy > loop.best_val_accuracy:
    best_epoch, best, waited = epoch, val_accuracy, 0
  else:
    best_epoch, best = loop.best_epoch, loop.best_val_accuracy
    waited = loop.epochs_without_improvement + 1
  finished = (epoch >= config.num_epochs or
              waited >= config.early_stopping_patience)
  return LoopState(epoch=epoch, best_epoch=best_epoch,
                   best_val_accuracy=float(best),
                   epochs_without_improvement=waited, finished=finished)


def _duration(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_and_evaluate(config: config_dict.ConfigDict, workdir: str,
                       mesh: jax.sharding.Mesh | None = None
                       ) -> dict[str, Any]:
  """Trains (or resumes) and evaluates the best checkpoint; returns metrics."""
  trainer = Trainer(config, workdir, mesh)
  if trainer.finished():
    trainer.train()  # Says so.
    return {}
  trainer.train()
  return trainer.evaluate()
