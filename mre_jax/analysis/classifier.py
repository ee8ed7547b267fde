"""The emotion classifier of an analysis: a shipped model, a workdir or an
exported file.

:func:`load` is the one place that turns ``--model`` into a classifier
(:func:`mre_jax.inference.load_classifier`: a ``Predictor`` for a shipped
model or a training workdir, an ``ExportedModel`` for a file written by
``python -m mre_jax.export``); :func:`describe` says which model it is for
the summary.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax

from mre_jax import inference
from mre_jax.errors import AnalysisError
from mre_jax.errors import UserError
from mre_jax.models import shipped


def load(path: str | None, batch_size: int = 64):
  """The classifier at ``path`` (None: :data:`mre_jax.models.shipped.DEFAULT`);
  a clear UserError if there is none."""
  path = path or shipped.DEFAULT
  if not os.path.exists(path) and not shipped.is_name(path):
    raise AnalysisError(
        f"--model {path} does not exist: give a shipped model's name (python "
        "-m mre_jax.pretrained lists them), a training workdir (with "
        "checkpoints/) or a file written by python -m mre_jax.export")
  return inference.load_classifier(path, batch_size=batch_size)


def _workdir_meta(path: str) -> dict[str, Any]:
  """Name and epoch of the best checkpoint of a workdir, if readable."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.workdir import checkpointing
  manager = checkpointing.open_manager(path, read_only=True)
  try:
    step = checkpointing.resolve_step(manager, "best")
    meta = checkpointing.read_meta(manager, step)
  finally:
    manager.close()
  return {"name": meta["model"]["name"], "epoch": step}


def describe(classifier: Any, path: str | None) -> dict[str, Any]:
  """Name, parameter count, checkpoint and input of the model."""
  info: dict[str, Any] = {"path": os.path.abspath(path) if path else None,
                          "class_names": list(classifier.class_names),
                          "image_size": int(classifier.image_size),
                          "channels": getattr(classifier, "channels", None)}
  card = getattr(classifier, "card", None)
  if isinstance(card, dict):  # A shipped model.
    info.update(kind="shipped", name=card["name"],
                architecture=card["model"]["name"],
                params=card["model"]["num_params"],
                dataset=card["dataset"]["name"],
                test_accuracy=card["accuracy"]["test"]["accuracy"],
                checkpoint={"commit": card["training"]["commit"],
                            "epoch": card["training"]["best_epoch"]})
    return info
  metadata = getattr(classifier, "metadata", None)
  if isinstance(metadata, dict):  # An exported file.
    model = metadata.get("model", {})
    source = metadata.get("source", {})
    info.update(kind="export", name=model.get("name"),
                params=model.get("num_params"),
                checkpoint={"workdir": source.get("workdir"),
                            "epoch": source.get("step"),
                            "fingerprint": metadata.get("fingerprint")})
    return info
  variables = getattr(classifier, "variables", None)
  params = None
  if variables is not None:
    params = sum(math.prod(x.shape)
                 for x in jax.tree_util.tree_leaves(variables["params"]))
  info.update(kind="workdir" if path else "in memory", params=params)
  if not path:
    return info
  try:
    meta = _workdir_meta(path)
  except (UserError, OSError, KeyError, ValueError):
    meta = {}  # The classifier loaded; its description is only for show.
  info.update(name=meta.get("name"),
              checkpoint={"workdir": os.path.abspath(path),
                          "epoch": meta.get("epoch")})
  return info
