"""The teachers a student distils from: a run, a shipped model, or several.

``config.distill.teacher_workdir`` names one teacher or an ensemble of them,
separated by commas. Each is a training workdir (or one imported with
``python -m mre_jax.convert``) or the name of a shipped model
(``python -m mre_jax.pretrained`` lists them), so a student can learn from
the package's own models without their runs. An ensemble's logits are the
mean of its members' log-probabilities, view by view: the normalised
geometric mean of their predictions, which no member's logit scale
dominates. One teacher's logits are its own, unchanged.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mre_jax import models
from mre_jax.errors import CheckpointError
from mre_jax.models import shipped
from mre_jax.runtime import distributed
from mre_jax.workdir import checkpointing

COMBINATION = "mean log-softmax"


def refs(value: str) -> list[str]:
  """The teachers named by ``value`` (comma-separated), in order."""
  return [part.strip() for part in value.split(",") if part.strip()]


def is_shipped(ref: str) -> bool:
  """Whether ``ref`` names a shipped model rather than a workdir."""
  return not os.path.isdir(ref) and shipped.is_name(ref)


def params_fingerprint(params: Any) -> str:
  """A short hash of every parameter value, in tree order."""
  digest = hashlib.sha256()
  params = jax.tree.map(jnp.asarray, params)  # Host arrays too.
  for leaf in jax.tree.leaves(distributed.to_host(params)):
    digest.update(np.ascontiguousarray(leaf, np.float32).tobytes())
  return digest.hexdigest()[:16]


def load(ref: str, checkpoint: str | int,
         mesh: jax.sharding.Mesh) -> checkpointing.LoadedModel:
  """Teacher ``ref``: checkpoint ``checkpoint`` of a workdir, or a shipped
  model (whose one set of weights ignores ``checkpoint``)."""
  if is_shipped(ref):
    return _load_shipped(ref, mesh)
  if not os.path.isdir(ref) and os.sep not in ref:
    raise CheckpointError(
        f"teacher {ref!r} is neither a workdir nor a shipped model (those "
        f"are: {', '.join(shipped.names()) or 'none'}): name a training "
        "workdir, a shipped model, or several separated by commas.")
  return checkpointing.load_model(ref, checkpoint, mesh=mesh)


def _load_shipped(name: str, mesh: jax.sharding.Mesh
                  ) -> checkpointing.LoadedModel:
  card = shipped.card(name)
  spec = card["model"]
  model = models.from_description(spec)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  variables = jax.device_put(shipped.variables(name), replicated)
  meta = {"model": spec, "preprocessing": card["preprocessing"],
          "run": {"dataset": card["dataset"]["name"]}, "shipped": name}
  return checkpointing.LoadedModel(
      model=model, variables=variables, meta=meta,
      step=int(card.get("training", {}).get("best_epoch") or 0),
      workdir=name)


def member_meta(teacher: checkpointing.LoadedModel) -> dict[str, Any]:
  """What a logits file records of one teacher."""
  where = ({"shipped": teacher.meta["shipped"]} if "shipped" in teacher.meta
           else {"workdir": os.path.abspath(teacher.workdir)})
  return {**where, "checkpoint_epoch": int(teacher.step),
          "params_fingerprint": params_fingerprint(
              teacher.variables["params"]),
          "model": teacher.meta["model"]}


def combined_meta(members: list[dict[str, Any]]) -> dict[str, Any]:
  """The ``teacher`` metadata of a logits file from ``members``' metas: the
  one member's own, or the ensemble's with every member's."""
  if len(members) == 1:
    return members[0]
  fingerprint = hashlib.sha256("".join(
      m["params_fingerprint"] for m in members).encode()).hexdigest()[:16]
  return {"members": members, "combination": COMBINATION,
          "params_fingerprint": fingerprint,
          "model": {"name": "ensemble of " + ", ".join(
              m["model"]["name"] for m in members)}}


def combine(logits: list[np.ndarray]) -> np.ndarray:
  """One teacher's logits as they are; an ensemble's mean log-softmax."""
  if len(logits) == 1:
    return logits[0]
  log_probs = [np.asarray(jax.nn.log_softmax(x, axis=-1)) for x in logits]
  return np.mean(log_probs, axis=0).astype(np.float32)


def describe(ref: str) -> str:
  """``ref`` in a sentence: the shipped model, or the workdir's name."""
  if is_shipped(ref):
    return f"{ref} (shipped)"
  return f"workdir {os.path.basename(os.path.normpath(ref))}"
