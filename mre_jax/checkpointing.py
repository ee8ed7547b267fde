"""Orbax checkpoints of a workdir: latest and best, with run metadata.

A workdir's ``checkpoints/`` folder is an orbax ``CheckpointManager`` whose
steps are epochs. Each step holds three items:

* ``model``: ``{"params", "batch_stats"}``, all a teacher or evaluation needs;
* ``train``: optimiser and plateau state, RNG and step counter (absent from
  checkpoints imported with :mod:`mre_jax.convert`);
* ``meta``: JSON with the format tag, the model preset, the run's identity
  (dataset, image size ...) and the host-side loop state (epoch, best-so-far,
  early-stopping counter, whether training finished).

Preservation keeps the latest step and the best by validation accuracy (ties go
to the earlier epoch, matching the early-stopping rule).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from mre_jax.errors import CheckpointError

FORMAT = "mre_jax.checkpoint/1"
_ITEMS = ("model", "train", "meta")


def _best_key(metrics: dict[str, float]) -> tuple[float, int]:
  return (metrics["val_accuracy"], -metrics["epoch"])


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def open_manager(workdir: str, *, read_only: bool = False
                 ) -> ocp.CheckpointManager:
  """The workdir's CheckpointManager (keeps latest + best by val accuracy)."""
  policy = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=1),
      ocp.checkpoint_managers.BestN(get_metric_fn=_best_key, n=1,
                                    keep_checkpoints_without_metrics=False),
  ])
  # best_fn makes orbax store each step's metrics, so the policy still ranks
  # the steps saved before a restart.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=_best_key, create=not read_only,
      read_only=read_only, enable_async_checkpointing=False)
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
        f"({type(e).__name__}: {e}). Move it away or use another --workdir."
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

  Targets are pytrees of ``jax.ShapeDtypeStruct`` (with shardings) or arrays;
  a checkpoint whose shapes differ is reported as a CheckpointError.
  """
  meta = read_meta(manager, step)
  as_abstract = lambda t: jax.tree.map(ocp.utils.to_shape_dtype_struct, t)
  items = {"model": ocp.args.StandardRestore(as_abstract(model))}
  if train is not None:
    items["train"] = ocp.args.StandardRestore(as_abstract(train))
  where = os.path.join(str(manager.directory), str(step))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # orbax raises many types for mismatched trees.
    raise CheckpointError(
        f"checkpoint {where} does not match the configured model "
        f"{meta.get('model')} ({type(e).__name__}: {e}). Use the config it was "
        "trained with, or another --workdir.") from e
  return {"model": restored["model"],
          "train": restored["train"] if train is not None else None,
          "meta": meta}
