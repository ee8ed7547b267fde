"""The training loop of one run in a workdir: resume, train, checkpoint.

Once per epoch, on the host: the jitted steps of :mod:`.train`, evaluation of
the validation split, the plateau schedule, early stopping, checkpoints (latest
and best) and logs. A rerun of the same command resumes exactly from the
latest checkpoint. A run holds its workdir's lock
(:mod:`mre_jax.workdir.workdir_lock`) and stops cleanly on SIGINT or SIGTERM
(:mod:`.interrupts`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_dict
import numpy as np

from mre_jax import models
from mre_jax.config import config_lib
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.errors import CheckpointError, ConfigError
from mre_jax.evaluation import evaluator
from mre_jax.evaluation import predict
from mre_jax.runtime import distributed
from mre_jax.training import interrupts
from mre_jax.training import teacher_logits
from mre_jax.training.metric_writer import MetricWriter
from mre_jax.workdir import checkpointing
from mre_jax.workdir import workdir_lock
from mre_jax.workdir.run_info import write_run_info
from mre_jax.training.train import (build_model, current_lr,
                                    global_batch_size, init_state,
                                    learning_rate, lr_schedule,
                                    make_optimizer, make_plateau,
                                    logit_offsets, make_train_chunk,
                                    steps_per_dispatch, TrainState)


@dataclasses.dataclass
class LoopState:
  """Host-side loop state, saved in the checkpoint's ``meta`` item."""
  epoch: int = 0  # Epochs completed.
  best_epoch: int = 0
  best_val_accuracy: float = -1.0
  epochs_without_improvement: int = 0
  finished: bool = False
  stopped_early: bool = False  # Finished by early stopping.


def run_identity(config: config_dict.ConfigDict,
                 global_batch: int) -> dict[str, Any]:
  """What must not change when a run resumes in the same workdir."""
  return {"dataset": config.dataset.name,
          "builder_config": config.dataset.builder_config,
          "validation": config.dataset.validation,
          "image_size": config.image_size, "global_batch": global_batch,
          "seed": config.seed,
          "class_weighted_loss": bool(config.class_weighted_loss),
          # Only where set: runs from before the field resume as they were.
          **({"ema_decay": config.ema_decay}
             if config.get("ema_decay", 0.0) else {})}


@dataclasses.dataclass
class _Epoch:
  """What one epoch's loop needs, built once per ``train()``."""
  train_chunk: Any
  predict_fn: Any
  plateau_update: Any
  permutation: Any
  add_sums: Any
  class_weights: jax.Array
  train_split: input_pipeline.DeviceData
  steps: int
  per_dispatch: int
  schedule: Any  # The lr, or a schedule of the step (train.lr_schedule).


class Trainer:
  """One training run in a workdir: build, resume, train.

  Evaluation of the finished run goes through
  :func:`mre_jax.evaluation.evaluator.evaluate_workdir`, like any workdir's.
  """

  def __init__(self, config: config_dict.ConfigDict, workdir: str,
               mesh: jax.sharding.Mesh | None = None):
    self.workdir = os.path.abspath(workdir)
    teacher_logits.default_to_published(config, self.workdir)
    config_lib.validate(config)
    self.config = config
    self.mesh = mesh or input_pipeline.make_mesh()
    self.global_batch = global_batch_size(config, self.mesh)
    self.ce_weight, self.kd_weight = config_lib.distill_weights(config)

  @functools.cached_property
  def model(self) -> models.ResEmoteNet:
    return build_model(self.config)

  def meta(self, loop: LoopState, channels: int | None = None
           ) -> dict[str, Any]:
    return {"model": checkpointing.model_meta(self.config.model, self.model),
            "preprocessing": checkpointing.preprocessing_meta(
                self.config.image_size, channels),
            "run": run_identity(self.config, self.global_batch),
            **dataclasses.asdict(loop)}

  def check_identity(self, meta: dict[str, Any]) -> None:
    """Refuses to resume a workdir holding a different run."""
    expected = self.meta(LoopState())
    wrong = [f"{key}: checkpoint has {meta.get(key)}, config has "
             f"{expected[key]}" for key in ("model", "run")
             if meta.get(key) != expected[key]]
    if wrong:
      raise CheckpointError(
          f"workdir {self.workdir} holds checkpoints of another run:\n  " +
          "\n  ".join(wrong) + "\nUse a new --workdir, or the config that "
          "trained it. Nothing was overwritten.")

  def load_data(self) -> loading.RunData:
    """The run's splits; the train split with teacher logits for students."""
    config, mesh = self.config, self.mesh
    data = loading.load_run_data(loading.DataSpec.from_config(config.dataset),
                                 mesh, config.class_weighted_loss)
    if self.kd_weight <= 0:
      return data
    train = data.device["train"]
    logits = teacher_logits.ensure(config, self.workdir, data.splits["train"],
                                   train, mesh)
    on_mesh = input_pipeline.put_on_mesh({"teacher_logits": logits}, mesh)
    train = train.replace(arrays={**train.arrays, **on_mesh.arrays})
    return dataclasses.replace(data, device={**data.device, "train": train})

  def _resume_point(self, manager) -> tuple[int | None, LoopState]:
    latest = manager.latest_step()
    if latest is None:
      return None, LoopState()
    meta = checkpointing.read_meta(manager, latest)
    self.check_identity(meta)
    loop = LoopState(**{f.name: meta.get(f.name, f.default)
                        for f in dataclasses.fields(LoopState)})
    if "stopped_early" not in meta:  # Saved before the field existed.
      loop.stopped_early = loop.finished and (
          loop.epochs_without_improvement >=
          self.config.early_stopping_patience)
    return latest, loop

  def _continues(self, epochs_done: int) -> bool:
    """Whether a finished run of ``epochs_done`` epochs trains on."""
    return (self.config.continue_finished and
            epochs_done < self.config.num_epochs)

  def _finished_message(self, loop: LoopState) -> str:
    how = (f"by early stopping at epoch {loop.epoch}" if loop.stopped_early
           else f"after its {loop.epoch} epochs")
    more = (f"to train it on to --config.num_epochs={self.config.num_epochs}"
            ", add --config.continue_finished=True"
            if self.config.num_epochs > loop.epoch else
            "to train it further, rerun with a larger --config.num_epochs "
            "and --config.continue_finished=True")
    return (f"{self.workdir} finished {how} (best epoch {loop.best_epoch}, "
            f"validation accuracy {100 * loop.best_val_accuracy:.2f}%); "
            f"nothing to do. --mode=evaluate reports it; {more}.")

  def _steps_per_epoch(self, data: loading.RunData) -> int:
    num_examples = data.device["train"].num_examples
    steps = input_pipeline.steps_per_epoch(num_examples, self.global_batch)
    if steps == 0:
      raise ConfigError(
          f"config.batch_size: global batch {self.global_batch} exceeds the "
          f"{num_examples} training examples")
    return steps

  def _epoch_parts(self, tx, plateau, data: loading.RunData,
                   schedule) -> _Epoch:
    config, mesh = self.config, self.mesh
    train_split = data.device["train"]
    steps = self._steps_per_epoch(data)
    weights = (data.class_weights if data.class_weights is not None
               else np.ones(NUM_CLASSES, np.float32))
    offsets = logit_offsets(config, data.splits["train"].labels)
    return _Epoch(
        train_chunk=make_train_chunk(self.model, tx, config, mesh,
                                     self.global_batch, self.ce_weight,
                                     self.kd_weight, offsets),
        predict_fn=predict.make_predict_fn(self.model, mesh,
                                           config.image_size),
        plateau_update=jax.jit(lambda s, value: plateau.update(
            s.params, s.plateau_state, s.params, value=value)[1]),
        permutation=jax.jit(input_pipeline.epoch_permutation,
                            static_argnums=1,
                            out_shardings=distributed.replicated(mesh)),
        add_sums=jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b)),
        class_weights=jax.device_put(jnp.asarray(weights),
                                     distributed.replicated(mesh)),
        train_split=train_split, steps=steps,
        per_dispatch=steps_per_dispatch(config.steps_per_dispatch),
        schedule=schedule)

  def _train_epoch(self, parts: _Epoch, state: TrainState, epoch: int,
                   perm_rng: jax.Array, stop: interrupts.StopOnSignal
                   ) -> tuple[TrainState, dict[str, Any]]:
    """Runs one epoch's steps; returns the state and summed train metrics.

    Stops with Interrupted between dispatches if a signal asked to.
    """
    start = last_print = time.time()
    perm = parts.permutation(jax.random.fold_in(perm_rng, epoch),
                             parts.train_split.num_examples)
    totals = None  # Summed on device: no host sync per dispatch.
    for first in range(0, parts.steps, parts.per_dispatch):
      num = min(parts.per_dispatch, parts.steps - first)
      stop.check()
      state, sums = parts.train_chunk(state, parts.train_split, perm,
                                      parts.class_weights, first,
                                      num_steps=num)
      stop.epoch = epoch  # Under way.
      totals = sums if totals is None else parts.add_sums(totals, sums)
      if time.time() - last_print > self.config.progress_every_seconds:
        distributed.to_host(totals["count"])  # Waits for the work so far.
        last_print = time.time()
        done = first + num
        rate = done * self.global_batch / (last_print - start)
        eta = (parts.steps - done) * self.global_batch / rate
        logging.info("epoch %d: step %d/%d, %.0f img/s, epoch ETA %s",
                     epoch, done, parts.steps, rate, _duration(eta))
    totals = distributed.to_host(totals)
    totals["seconds"] = time.time() - start
    return state, totals

  def train(self) -> LoopState:
    """Trains until ``num_epochs`` or early stopping; resumes if possible.

    Holds the workdir's lock throughout. SIGINT and SIGTERM end it with
    :class:`~mre_jax.errors.Interrupted` once the step or checkpoint under way
    is complete; rerunning the same command resumes.
    """
    stop = interrupts.StopOnSignal(self.workdir, self.config.num_epochs)
    with stop, workdir_lock.hold(self.workdir):
      try:
        manager = checkpointing.open_manager(self.workdir)
        latest, loop = self._resume_point(manager)
        if loop.finished and not self._continues(loop.epoch):
          logging.info("%s", self._finished_message(loop))
          return loop
        stop.saved_epoch = stop.epoch = loop.epoch
        return self._run(manager, latest, loop, stop)
      except interrupts.StopNow:
        raise stop.interrupted() from None

  def _run(self, manager, latest: int | None, loop: LoopState,
           stop: interrupts.StopOnSignal) -> LoopState:
    config, mesh = self.config, self.mesh
    if loop.finished:
      logging.info("Continuing %s, finished at epoch %d, to epoch %d "
                   "(continue_finished).", self.workdir, loop.epoch,
                   config.num_epochs)
      loop = dataclasses.replace(loop, finished=False, stopped_early=False,
                                 epochs_without_improvement=0)
    with stop.protect():
      write_run_info(config, self.workdir)
    data = self.load_data()
    channels = int(data.splits["train"].images.shape[-1])
    lr = learning_rate(config, self.global_batch)
    schedule = lr_schedule(config, lr, self._steps_per_epoch(data))
    tx, plateau = make_optimizer(config, schedule), make_plateau(config)
    state = init_state(self.model, config, tx, plateau, mesh)
    if latest is not None:
      restored = checkpointing.restore(
          manager, latest, model=state.variables(),
          train=state.training_items())
      state = state.with_variables(restored["model"]).replace(
          **restored["train"])
      logging.info("Resumed %s from epoch %d.", self.workdir, loop.epoch)
    parts = self._epoch_parts(tx, plateau, data, schedule)
    logging.info(
        "Training %s (%s params) on %s: %d examples, global batch %d over %d "
        "devices, %d steps/epoch, lr %g, ce_weight %g, kd_weight %g.",
        config.model, f"{models.count_params(state.params):,}",
        config.dataset.name, parts.train_split.num_examples,
        self.global_batch, mesh.size, parts.steps, lr, self.ce_weight,
        self.kd_weight)
    # Epoch permutations use a stream of their own; steps fold in state.step.
    perm_rng = jax.random.fold_in(state.rng, 2**31 - 1)
    run_start, first_epoch = time.time(), loop.epoch
    writer = MetricWriter(self.workdir, loop.epoch)
    try:
      while not loop.finished:
        epoch, epoch_start = loop.epoch + 1, time.time()
        state, totals = self._train_epoch(parts, state, epoch, perm_rng,
                                          stop)
        val = evaluator.evaluate_split(parts.predict_fn, state.variables(),
                                       data, "validation", mesh,
                                       config.eval_batch_size)
        if config.lr_schedule == "plateau":
          metric = (val["loss"] if config.plateau.metric == "val_loss"
                    else -val["accuracy"])
          state = state.replace(plateau_state=parts.plateau_update(
              state, jnp.asarray(metric, jnp.float32)))
        loop = _advance(loop, epoch, val["accuracy"], config)
        lr_now = current_lr(parts.schedule, state)
        scalars = _epoch_scalars(totals, val, lr_now,
                                 time.time() - epoch_start)
        with stop.protect():  # A signal now waits for the save to complete.
          writer.write(epoch, scalars)
          checkpointing.save(manager, epoch, model=state.variables(),
                             train=state.training_items(),
                             meta=self.meta(loop, channels),
                             val_accuracy=val["accuracy"])
        stop.saved_epoch, stop.finished = epoch, loop.finished
        per_epoch = (time.time() - run_start) / (epoch - first_epoch)
        logging.info(
            "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc "
            "%.2f%% | lr %.2g | %.0f img/s | best %.2f%% (epoch %d) | ETA %s",
            epoch, config.num_epochs, scalars["train_loss"],
            100 * scalars["train_accuracy"], val["loss"],
            100 * val["accuracy"], scalars["learning_rate"],
            scalars["images_per_second"],
            100 * loop.best_val_accuracy, loop.best_epoch,
            _duration(per_epoch * (config.num_epochs - epoch)))
        stop.check(epoch_end=True)
    finally:
      writer.close()
    if loop.stopped_early:
      logging.info("Early stopping after epoch %d: no validation-accuracy gain "
                   "for %d epochs.", loop.epoch,
                   config.early_stopping_patience)
    return loop

  def finished(self) -> bool:
    """Whether the workdir holds a finished run that ``continue_finished``
    does not train on."""
    # Process 0 may already be creating the folder when another looks.
    if not distributed.main_process_value(
        os.path.isdir(checkpointing.checkpoint_dir(self.workdir))):
      return False
    manager = checkpointing.open_manager(self.workdir, read_only=True)
    latest = manager.latest_step()
    if latest is None:
      return False
    meta = checkpointing.read_meta(manager, latest)
    return bool(meta.get("finished")) and not self._continues(meta["epoch"])


def _epoch_scalars(totals: dict[str, Any], val: dict[str, Any], lr: float,
                   seconds: float) -> dict[str, float]:
  count = max(totals["count"], 1)
  return {"train_loss": totals["loss"] / count,
          "train_accuracy": totals["correct"] / count,
          "val_loss": val["loss"], "val_accuracy": val["accuracy"],
          "val_mean_class_accuracy": val["mean_class_accuracy"],
          "learning_rate": lr,
          "images_per_second": totals["count"] / totals["seconds"],
          "epoch_seconds": seconds}


def _advance(loop: LoopState, epoch: int, val_accuracy: float,
             config: config_dict.ConfigDict) -> LoopState:
  """Best-so-far and early-stopping bookkeeping after ``epoch``."""
  if val_accuracy > loop.best_val_accuracy:
    best_epoch, best, waited = epoch, val_accuracy, 0
  else:
    best_epoch, best = loop.best_epoch, loop.best_val_accuracy
    waited = loop.epochs_without_improvement + 1
  stopped_early = (epoch < config.num_epochs and
                   waited >= config.early_stopping_patience)
  return LoopState(epoch=epoch, best_epoch=best_epoch,
                   best_val_accuracy=float(best),
                   epochs_without_improvement=waited,
                   finished=epoch >= config.num_epochs or stopped_early,
                   stopped_early=stopped_early)


def _duration(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_and_evaluate(config: config_dict.ConfigDict, workdir: str,
                       mesh: jax.sharding.Mesh | None = None
                       ) -> dict[str, Any]:
  """Trains (or resumes), then evaluates the chosen checkpoint; returns its
  metrics, or ``{}`` when the run had already finished."""
  trainer = Trainer(config, workdir, mesh)
  with workdir_lock.hold(trainer.workdir):  # Until its evaluation is written.
    if trainer.finished():
      trainer.train()  # Says so.
      return {}
    trainer.train()
    return evaluator.evaluate_config(config, trainer.workdir, trainer.mesh)
