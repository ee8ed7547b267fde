"""Orbax checkpoints of a workdir: latest and best, with run metadata.

A workdir's ``checkpoints/`` folder is an orbax ``CheckpointManager`` whose
steps are epochs. Each step holds three items:

* ``model``: ``{"params", "batch_stats"}``, all a teacher or evaluation needs;
* ``train``: optimiser and plateau state, RNG and step counter (absent from
  checkpoints imported with :mod:`mre_jax.convert`);
* ``meta``: JSON with the format tag, the model (:func:`model_meta`: preset,
  width, SE reduction, class names), the preprocessing its inputs need
  (:func:`preprocessing_meta`), the run's identity (dataset, image size ...)
  and the host-side loop state (epoch, best-so-far, early-stopping counter,
  whether training finished).

:func:`load_model` is the one way to rebuild a trained or imported model from
a workdir: evaluation, teacher-logit export, the predictor and the PyTorch
import all use it, and it needs nothing but the checkpoint.

Preservation keeps the latest step and the best by validation accuracy (ties go
to the earlier epoch, matching the early-stopping rule).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from mre_jax import models
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.data import input_pipeline
from mre_jax.errors import CheckpointError
from mre_jax.runtime import distributed
from mre_jax.workdir import checkpoint_integrity

FORMAT = "mre_jax.checkpoint/1"
_ITEMS = ("model", "train", "meta")


def _best_key(metrics: dict[str, float]) -> tuple[float, int]:
  return (metrics["val_accuracy"], -metrics["epoch"])


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def open_manager(workdir: str, *, read_only: bool = False
                 ) -> ocp.CheckpointManager:
  """The workdir's CheckpointManager (keeps latest + best by val accuracy).

  ``read_only`` opens an existing folder for restoring: nothing is created.
  """
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=1),
      ocp.checkpoint_managers.BestN(get_metric_fn=_best_key, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  # best_fn makes orbax store each step's metrics, so the policy still ranks
  # the steps saved before a restart. Orbax's own read_only option is not
  # used: it logs two warnings per manager ("Given directory is read only")
  # and does not stop forced saves anyway; with create=False and no root
  # metadata given, opening a manager writes nothing.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=_best_key, create=not read_only,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=_ITEMS,
                               options=options)


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """The ``meta`` item of ``step``; CheckpointError if it is not ours."""
  where = os.path.join(str(manager.directory), str(step))
  try:
    meta = manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  except Exception as e:  # orbax raises many types for unreadable data.
    raise CheckpointError(
        f"checkpoint {where} is unreadable or not an mre_jax checkpoint "
        f"({_first_line(e)}). Move it away or use another --workdir."
    ) from e
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise CheckpointError(
        f"checkpoint {where} was not written by mre_jax (expected format "
        f"{FORMAT!r}). Move it away or use another --workdir.")
  return meta


def save(manager: ocp.CheckpointManager, epoch: int, *, model: Any,
         meta: dict[str, Any], train: Any | None = None,
         val_accuracy: float | None = None) -> None:
  """Saves one epoch; ``val_accuracy`` ranks it for the best-checkpoint policy."""
  items = {"model": ocp.args.StandardSave(model),
           "meta": ocp.args.JsonSave(dict(meta, format=FORMAT))}
  if train is not None:
    items["train"] = ocp.args.StandardSave(train)
  metrics = None
  if val_accuracy is not None:
    metrics = {"val_accuracy": float(val_accuracy), "epoch": int(epoch)}
  manager.save(epoch, args=ocp.args.Composite(**items), metrics=metrics,
               force=True)
  manager.wait_until_finished()
  distributed.sync(f"checkpoint_{epoch}_saved")  # Every process's shards.
  if distributed.is_main_process():
    checkpoint_integrity.write_checksums(
        os.path.join(str(manager.directory), str(epoch)))
  distributed.sync(f"checkpoint_{epoch}_checksummed")


def resolve_step(manager: ocp.CheckpointManager, which: str | int) -> int:
  """``latest``, ``best`` or an epoch number -> a saved step."""
  steps = manager.all_steps()
  where = str(manager.directory)
  if not steps:
    raise CheckpointError(
        f"no checkpoint in {where}. Train first (--mode=train) or point "
        "--workdir at a trained or imported run.")
  latest = max(steps)
  if which == "latest":
    return latest
  if which == "best":
    best = read_meta(manager, latest).get("best_epoch")
    return best if best in steps else latest
  try:
    step = int(which)
  except (TypeError, ValueError):
    raise CheckpointError(
        f"unknown checkpoint {which!r}; expected 'latest', 'best' or one of "
        f"the saved epochs {sorted(steps)} in {where}") from None
  if step not in steps:
    raise CheckpointError(
        f"no checkpoint for epoch {step} in {where}; saved epochs: "
        f"{sorted(steps)} (only the latest and the best are kept)")
  return step


def restore(manager: ocp.CheckpointManager, step: int, *, model: Any,
            train: Any | None = None) -> dict[str, Any]:
  """Restores ``model`` (and ``train`` if given) onto abstract targets.

  Targets are pytrees of ``jax.ShapeDtypeStruct`` (with shardings) or arrays.
  The step's files are first checked against the checksums written when it
  was saved, and the restored values must be finite: a damaged step, or one
  whose shapes differ, is reported as one CheckpointError.
  """
  where = os.path.join(str(manager.directory), str(step))
  saved = manager.all_steps()
  checkpoint_integrity.verify(where, step, saved)
  meta = read_meta(manager, step)
  as_abstract = lambda t: jax.tree.map(ocp.utils.to_shape_dtype_struct, t)
  items = {"model": ocp.args.StandardRestore(as_abstract(model))}
  if train is not None:
    items["train"] = ocp.args.StandardRestore(as_abstract(train))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # orbax raises many types for unreadable data.
    raise CheckpointError(
        f"checkpoint step {step} in {where} cannot be restored as the model it "
        f"describes, {meta.get('model')}: it is damaged or from another "
        f"version ({_first_line(e)}).\nEvaluate another checkpoint with "
        "--config.eval.checkpoint=latest|<epoch>, or use another --workdir."
    ) from e
  checkpoint_integrity.check_finite(
      {"model": restored["model"],
       "train": restored["train"] if train is not None else None},
      step, where, saved)
  return {"model": restored["model"],
          "train": restored["train"] if train is not None else None,
          "meta": meta}


def _first_line(error: Exception, limit: int = 300) -> str:
  """A library error as one short line (TensorStore's run to pages)."""
  lines = str(error).strip().splitlines() or [""]
  text = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + " ..."
  return f"{type(error).__name__}: {text}"


def model_meta(name: str, model: models.ResEmoteNet,
               class_names: Sequence[str] = CLASS_NAMES) -> dict[str, Any]:
  """What rebuilds ``model``: preset name, width, SE reduction, classes."""
  if len(class_names) != model.num_classes:
    raise CheckpointError(
        f"{len(class_names)} class names for a model with {model.num_classes} "
        "outputs; give one name per output.")
  return {"name": name, "width": model.width,
          "se_reduction": model.se_reduction,
          "num_classes": model.num_classes, "class_names": list(class_names)}


def preprocessing_meta(image_size: int,
                       channels: int | None = None) -> dict[str, Any]:
  """What :func:`mre_jax.data.input_pipeline.preprocess` did to the inputs.

  ``channels`` is the channel count of the training images (1: grey, 3: RGB;
  None: unknown), so that applications can match it.
  """
  return {"image_size": int(image_size), "channels": channels,
          "normalization": {"mean": list(input_pipeline.IMAGENET_MEAN),
                            "std": list(input_pipeline.IMAGENET_STD)}}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model rebuilt from a checkpoint, with everything needed to apply it."""
  model: models.ResEmoteNet
  variables: Any  # {"params", "batch_stats"}.
  meta: dict[str, Any]  # The checkpoint's meta item.
  step: int  # The epoch restored (0 for imported weights).
  workdir: str

  @property
  def name(self) -> str:
    return self.meta["model"]["name"]

  @property
  def image_size(self) -> int:
    return int(self.meta["preprocessing"]["image_size"])

  @property
  def channels(self) -> int | None:
    return self.meta["preprocessing"].get("channels")

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.meta["model"]["class_names"])


def _spec_problem(meta: dict[str, Any]) -> str | None:
  model = meta.get("model")
  keys = ("name", "width", "se_reduction", "num_classes", "class_names")
  if not isinstance(model, dict) or any(k not in model for k in keys):
    return f"its model description {model!r} lacks one of {keys}"
  if "image_size" not in meta.get("preprocessing", {}):
    return "it does not record its preprocessing (image size)"
  return None


def load_model(workdir: str, which: str | int = "best", *,
               mesh: jax.sharding.Mesh | None = None,
               dtype: Any = jnp.float32) -> LoadedModel:
  """Rebuilds the model of ``workdir``'s checkpoint ``which`` and restores it.

  The architecture, classes and preprocessing come from the checkpoint's own
  metadata, so no config is needed. ``which`` is ``best``, ``latest`` or an
  epoch. With ``mesh`` the variables are replicated on it, otherwise they go
  to the default device. ``dtype`` is the compute dtype.
  """
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise CheckpointError(
        f"{workdir} holds no checkpoints/ folder: point at a workdir trained "
        "with python -m mre_jax.main or imported with python -m "
        "mre_jax.convert.")
  manager = open_manager(workdir, read_only=True)
  try:
    step = resolve_step(manager, which)
    meta = read_meta(manager, step)
    problem = _spec_problem(meta)
    if problem:
      raise CheckpointError(
          f"checkpoint {step} of {workdir} cannot be loaded: {problem}. It "
          "was written by an older mre_jax; retrain or re-import it.")
    model = models.from_description(meta["model"], dtype)
    target = models.abstract_variables(model)
    if mesh is not None:
      sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    else:
      sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        target)
    variables = restore(manager, step, model=target)["model"]
  finally:
    manager.close()
  return LoadedModel(model=model, variables=variables, meta=meta, step=step,
                     workdir=workdir)
