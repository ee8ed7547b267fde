"""Ships a finished run as a named model: its weights and its model card.

    python -m mre_jax.pretrained --publish=WORKDIR --name=student_c-raf_db \\
        --manual_dir=DATA/rafdb

restores the run's best checkpoint, adjusts its logits for the classes'
imbalance as far as its validation split says (:mod:`.adjust`), keeps its
variables in float16 when that moves test accuracy by less than
:data:`FLOAT16_TOLERANCE`, measures the shipped weights on the run's own
validation and test splits
(:mod:`.measure`) and how its training faces are framed relative to the face
detector's box (:mod:`mre_jax.analysis.framing`; the analysis crops with
it), and writes ``<name>.npz`` and ``<name>.json`` into the package,
replacing an earlier model of that name only once both are complete.
The card's provenance comes from the run's own files
(:func:`mre_jax.training.run_record.load_run`).

    python -m mre_jax.pretrained --readjust=student_b-fer2013 \\
        --manual_dir=DATA/fer2013

re-chooses a shipped model's adjustment after the rule of :mod:`.adjust`
has changed, from the shipped weights, and rewrites its weights and card.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
from typing import Any

import jax
import numpy as np

from mre_jax.datasets import common
from mre_jax.errors import UserError
from mre_jax.inference.predictor import Predictor
from mre_jax.models import shipped
from mre_jax.pretrained import adjust
from mre_jax.pretrained import measure
from mre_jax.training import run_record
from mre_jax.workdir import checkpointing

# Shipped in float16 when test accuracy moves by less than this (a fraction).
FLOAT16_TOLERANCE = 0.001
# Train faces whose framing is measured: its median moves by about 0.01.
FRAMING_FACES = 400


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  if isinstance(tree, dict) or hasattr(tree, "items"):
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat
  return {prefix[:-1]: np.asarray(tree)}


def _predictor(template: Any, variables: Any) -> Predictor:
  """A predictor of ``template``'s network and preprocessing (a loaded
  checkpoint or a predictor) with ``variables``."""
  return Predictor(model=template.model, variables=variables,
                   image_size=template.image_size,
                   class_names=tuple(template.class_names),
                   channels=template.channels)


def _as_float16(variables: Any) -> Any:
  """The variables rounded to float16, held as float32 as loading does."""
  return jax.tree.map(
      lambda x: np.asarray(x, np.float16).astype(np.float32), variables)


def _run_config(workdir: str) -> dict[str, Any]:
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f)


def _write_together(files: dict[str, bytes]) -> None:
  """Writes every file beside its target first, then moves each in place,
  so an interrupted publication leaves the earlier model whole."""
  for path, data in files.items():
    with open(path + ".partial", "wb") as f:
      f.write(data)
  for path in files:
    os.replace(path + ".partial", path)


def crop_framing(train: Any, seed: int = 0) -> dict[str, Any]:
  """The training crops' framing relative to the face detector's box
  (:mod:`mre_jax.analysis.framing`), on :data:`FRAMING_FACES` train faces."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.analysis import framing
  count = min(FRAMING_FACES, len(train.images))
  chosen = np.random.default_rng(seed).choice(len(train.images), count,
                                              replace=False)
  return framing.measure(train.images[np.sort(chosen)]).as_dict()


def _today() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def build_card(name: str, loaded: checkpointing.LoadedModel,
               run: dict[str, Any], config: dict[str, Any],
               accuracy: dict[str, Any], weights: dict[str, Any],
               float16_change: float, crop: dict[str, Any]) -> dict[str, Any]:
  """The model card (see :mod:`mre_jax.pretrained`)."""
  spec = loaded.meta["model"]
  num_params = sum(int(np.prod(x.shape))
                   for x in jax.tree.leaves(loaded.variables["params"]))
  dataset = config["dataset"]
  return {
      "format": shipped.CARD_FORMAT,
      "name": name,
      "model": {"name": spec["name"], "width": spec["width"],
                "se_reduction": spec["se_reduction"],
                "num_classes": spec["num_classes"],
                "class_names": list(spec["class_names"]),
                "num_params": num_params},
      "preprocessing": {"image_size": loaded.image_size,
                        "channels": loaded.channels, "crop": crop},
      "weights": weights,
      "dataset": {"name": dataset["name"],
                  "builder_config": dataset.get("builder_config", ""),
                  "validation": dataset.get("validation", "auto"),
                  "terms": shipped.TERMS.get(dataset["name"], "")},
      "accuracy": accuracy,
      "training": {
          "recipe": run["recipe"], "experiment": run["experiment"],
          "teacher": run["teacher"], "epochs": run["epochs"],
          "best_epoch": loaded.step, "wall_s": run["wall_s"],
          "machine": run["device"], "commit": run["commit"],
          "command": run["command"],
          "workdir": os.path.basename(os.path.normpath(run["workdir"])),
          "float16_test_accuracy_change": float16_change,
      },
      "published": _today(),
  }


@dataclasses.dataclass(frozen=True)
class Shipment:
  """Weights ready to ship, their logit adjustment and accuracies."""
  data: bytes  # The .npz file.
  weights: dict[str, Any]  # The card's "weights" section.
  accuracy: dict[str, Any]
  float16_change: float  # Test accuracy moved by rounding to float16.
  adjustment: dict[str, Any]  # The card's training.logit_adjustment.


def prepare(name: str, template: Any, variables: Any,
            splits: dict[str, common.SplitData]) -> Shipment:
  """``variables`` (of ``template``'s network) adjusted as
  :mod:`.adjust` chooses on validation, in float16 where that costs less
  than :data:`FLOAT16_TOLERANCE` of test accuracy, and measured."""
  prior = common.class_prior(splits["train"].labels,
                             len(template.class_names))
  choice = adjust.choose(
      _predictor(template, variables).logits(splits["validation"].images),
      splits["validation"].labels, prior, template.class_names)
  offsets = -choice.tau * np.log(prior)
  adjusted = adjust.apply(variables, offsets)
  full = measure.split_metrics(_predictor(template, adjusted),
                               splits["test"])["accuracy"]
  half_variables = _as_float16(adjusted)
  half = measure.split_metrics(_predictor(template, half_variables),
                               splits["test"])["accuracy"]
  use_half = abs(half - full) < FLOAT16_TOLERANCE
  final = half_variables if use_half else adjusted
  dtype = np.float16 if use_half else np.float32
  flat = {k: v.astype(dtype) for k, v in _flatten(final).items()}
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **flat)
  data = buffer.getvalue()
  return Shipment(
      data=data,
      weights={"file": name + ".npz", "dtype": np.dtype(dtype).name,
               "bytes": len(data),
               "sha256": hashlib.sha256(data).hexdigest()},
      accuracy=measure.measure(_predictor(template, final), splits),
      float16_change=float(half - full),
      adjustment={**choice.as_dict(),
                  "offsets": [round(float(o), 6) for o in offsets]})


def _check_name(name: str) -> None:
  if not name or os.sep in name or name.startswith("."):
    raise UserError(f"--name={name!r} is invalid: expected a plain name "
                    "such as student_c-raf_db")


def _write(folder: str, name: str, shipment: Shipment,
           card: dict[str, Any]) -> None:
  os.makedirs(folder, exist_ok=True)
  _write_together({
      os.path.join(folder, name + ".npz"): shipment.data,
      os.path.join(folder, name + ".json"):
          (json.dumps(card, indent=1) + "\n").encode()})


def publish(workdir: str, name: str, data_dir: str, manual_dir: str,
            folder: str = shipped.FOLDER) -> dict[str, Any]:
  """Writes shipped model ``name`` from ``workdir``'s best checkpoint;
  returns its card."""
  _check_name(name)
  run = run_record.load_run(workdir)
  config = _run_config(workdir)
  loaded = checkpointing.load_model(workdir, "best")
  splits = measure.load_splits(config["dataset"], data_dir, manual_dir)
  shipment = prepare(name, loaded, loaded.variables, splits)
  card = build_card(name, loaded, run, config, shipment.accuracy,
                    shipment.weights, shipment.float16_change,
                    crop_framing(splits["train"]))
  card["training"]["logit_adjustment"] = shipment.adjustment
  _write(folder, name, shipment, card)
  return card


def readjust(name: str, data_dir: str, manual_dir: str,
             folder: str = shipped.FOLDER) -> dict[str, Any]:
  """Re-chooses shipped model ``name``'s logit adjustment by the current
  rule of :mod:`.adjust`, from its weights without their earlier offsets,
  re-measures it and rewrites its weights and card (training provenance
  kept); returns the card. For a rule that changed after publication."""
  classifier = Predictor.from_shipped(name, folder=folder)
  card = classifier.card
  earlier = card["training"].get("logit_adjustment", {})
  unadjusted = adjust.apply(
      classifier.variables, -np.asarray(earlier.get("offsets", 0.0)) *
      np.ones(len(classifier.class_names)))
  splits = measure.load_splits(card["dataset"], data_dir, manual_dir)
  shipment = prepare(name, classifier, unadjusted, splits)
  card = {**card, "weights": shipment.weights, "accuracy": shipment.accuracy,
          "published": _today()}
  # float16_test_accuracy_change stays the publication's (against the run's
  # float32 weights, which are not at hand here); rounding the new bias
  # moves test accuracy by what "readjusted" records.
  card["training"] = {**card["training"], "logit_adjustment": {
      **shipment.adjustment,
      "readjusted": {"date": _today(), "float16_test_accuracy_change":
                     shipment.float16_change}}}
  _write(folder, name, shipment, card)
  return card
