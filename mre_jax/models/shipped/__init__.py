"""The trained models that come with the package: their files, by name.

    from mre_jax.inference import load_classifier
    from mre_jax.models import shipped
    shipped.names()                         # e.g. ("student_c-fer2013", ...)
    classifier = load_classifier("student_c-raf_db")
    probs = classifier.probabilities(faces)

Each shipped model is two files in this folder: ``<name>.npz``, its
variables (float16 where that moves test accuracy by under 0.1 points), and
``<name>.json``, its model card: architecture and preprocessing, dataset and
its terms, accuracies per split and per class measured with these very
weights, recipe, teacher and provenance (commit, command, wall time,
machine). Loading reads only those two files: no network, no dataset and no
training code. ``python -m mre_jax.pretrained`` lists them and re-measures
one on a copy of its dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from mre_jax.errors import UserError

FOLDER = os.path.dirname(os.path.abspath(__file__))
CARD_FORMAT = 1
# Other tools' published accuracies on the same splits, the reference the
# shipped models are measured against: the `fer` package's one bundled model
# (FER2013-trained), run on FER2013 PrivateTest and, cross-dataset, on
# RAF-DB test.
REFERENCES = {
    "fer2013": {"fer (bundled model)": {"accuracy": 0.658,
                                        "mean_class_accuracy": 0.638}},
    "raf_db": {"fer (bundled model, trained on FER2013)": {
        "accuracy": 0.608}},
}
# The model ``python -m mre_jax.analyze`` uses without --model: of the
# shipped models that analyse at least 30 frames/s end to end on 2 CPU cores,
# the one that classifies faces found in video best
# (python -m mre_jax.benchmarks.analysis; docs/analysis_models.md).
DEFAULT = "student_b-raf_db"
TERMS = {
    "fer2013": "FER2013 (Goodfellow et al., 2013): research use; the images "
               "were collected from the web and are not licensed for "
               "commercial use. Weights trained on it are for research and "
               "non-commercial use.",
    "raf_db": "RAF-DB (Li, Deng and Du, 2017): non-commercial research use "
              "only, under the database's agreement. Weights trained on it "
              "are for research and non-commercial use.",
}


# What loading and the listings read from a card.
_REQUIRED = (("model", "width"), ("model", "se_reduction"),
             ("model", "num_classes"), ("model", "class_names"),
             ("preprocessing", "image_size"), ("accuracy", "test"),
             ("weights", "sha256"), ("dataset", "name"))


class PretrainedError(UserError):
  """A shipped model's name is unknown or its files are damaged."""


def names(folder: str = FOLDER) -> tuple[str, ...]:
  """The shipped models' names: those with both a card and weights."""
  found = []
  for entry in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(entry)
    if ext == ".json" and os.path.isfile(os.path.join(folder, stem + ".npz")):
      found.append(stem)
  return tuple(found)


def is_name(text: str, folder: str = FOLDER) -> bool:
  """Whether ``text`` names a shipped model (not a path)."""
  return os.sep not in text and text in names(folder)


def _path(name: str, ext: str, folder: str) -> str:
  if not is_name(name, folder):
    shipped = ", ".join(names(folder)) or "none"
    raise PretrainedError(
        f"{name!r} is not a shipped model; the shipped models are: "
        f"{shipped} (python -m mre_jax.pretrained lists them), or give a "
        "training workdir or a file written by python -m mre_jax.export")
  return os.path.join(folder, name + ext)


def card(name: str, folder: str = FOLDER) -> dict[str, Any]:
  """The model card of shipped model ``name``."""
  path = _path(name, ".json", folder)
  try:
    with open(path) as f:
      data = json.load(f)
    missing = [f"{section}.{key}" for section, key in _REQUIRED
               if key not in data.get(section, {})]
    if missing:
      raise KeyError(f"no {', '.join(missing)}")
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise PretrainedError(
        f"the model card {path} is damaged ({type(e).__name__}: {e}); "
        "reinstall mre_jax") from e
  return data


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  """``{"params/a/b": x}`` -> ``{"params": {"a": {"b": x}}}``."""
  tree: dict[str, Any] = {}
  for key, value in flat.items():
    node = tree
    *parents, leaf = key.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def variables(name: str, folder: str = FOLDER) -> dict[str, Any]:
  """The variables of ``name`` as float32 arrays, checked against its card."""
  info = card(name, folder)
  path = _path(name, ".npz", folder)
  expected = info.get("weights", {}).get("sha256")
  if expected and file_sha256(path) != expected:
    raise PretrainedError(
        f"{path} does not match its model card's checksum: the file is "
        "damaged or was replaced; reinstall mre_jax")
  try:
    with np.load(path) as f:
      flat = {k: np.asarray(f[k], np.float32) for k in f.files}
  except (OSError, ValueError, KeyError) as e:
    raise PretrainedError(f"cannot read {path} ({e}); reinstall mre_jax"
                          ) from e
  return unflatten(flat)
