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
"""

from __future__ import annotations

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


def _predictor(loaded: checkpointing.LoadedModel, variables: Any) -> Predictor:
  return Predictor(model=loaded.model, variables=variables,
                   image_size=loaded.image_size,
                   class_names=loaded.class_names, channels=loaded.channels)


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
      "published": datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%d"),
  }


def publish(workdir: str, name: str, data_dir: str, manual_dir: str,
            folder: str = shipped.FOLDER) -> dict[str, Any]:
  """Writes shipped model ``name`` from ``workdir``'s best checkpoint;
  returns its card."""
  if not name or os.sep in name or name.startswith("."):
    raise UserError(f"--name={name!r} is invalid: expected a plain name "
                    "such as student_c-raf_db")
  run = run_record.load_run(workdir)
  config = _run_config(workdir)
  loaded = checkpointing.load_model(workdir, "best")
  splits = measure.load_splits(config["dataset"], data_dir, manual_dir)
  prior = common.class_prior(splits["train"].labels,
                             len(loaded.class_names))
  choice = adjust.choose(
      _predictor(loaded, loaded.variables).logits(
          splits["validation"].images),
      splits["validation"].labels, prior, loaded.class_names)
  offsets = -choice.tau * np.log(prior)
  adjusted = adjust.apply(loaded.variables, offsets)
  full = measure.split_metrics(_predictor(loaded, adjusted),
                               splits["test"])["accuracy"]
  half_variables = _as_float16(adjusted)
  half = measure.split_metrics(_predictor(loaded, half_variables),
                               splits["test"])["accuracy"]
  use_half = abs(half - full) < FLOAT16_TOLERANCE
  variables = half_variables if use_half else adjusted
  accuracy = measure.measure(_predictor(loaded, variables), splits)
  dtype = np.float16 if use_half else np.float32
  flat = {k: v.astype(dtype) for k, v in _flatten(variables).items()}
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **flat)
  data = buffer.getvalue()
  weights = {"file": name + ".npz", "dtype": np.dtype(dtype).name,
             "bytes": len(data),
             "sha256": hashlib.sha256(data).hexdigest()}
  card = build_card(name, loaded, run, config, accuracy, weights,
                    float(half - full), crop_framing(splits["train"]))
  card["training"]["logit_adjustment"] = {
      **choice.as_dict(), "offsets": [round(float(o), 6) for o in offsets]}
  os.makedirs(folder, exist_ok=True)
  _write_together({
      os.path.join(folder, name + ".npz"): data,
      os.path.join(folder, name + ".json"):
          (json.dumps(card, indent=1) + "\n").encode()})
  return card
