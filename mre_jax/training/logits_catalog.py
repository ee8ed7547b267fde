"""The teacher logits that come with the package (``mre_jax/teacher_logits/``):
which datasets have them, where each came from, and the default a
distilling student that names no teacher uses.

``<dataset>.npz`` holds a teacher's logits for the dataset's train split
(both views, float16, with the metadata that
:func:`mre_jax.training.teacher_logits.load` checks), and ``<dataset>.json``
where they came from (see :mod:`mre_jax.training.published_logits`, which
writes them).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from absl import logging
from ml_collections import config_dict
import numpy as np

from mre_jax.errors import TeacherLogitsError

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "teacher_logits")


def path(dataset: str, folder: str | None = None) -> str | None:
  """The published logits file of ``dataset`` (in ``folder``, by default
  :data:`FOLDER`), or None."""
  candidate = os.path.join(folder or FOLDER, f"{dataset}.npz")
  return candidate if os.path.isfile(candidate) else None


def is_published(logits_path: str) -> bool:
  """Whether ``logits_path`` is one of the published files."""
  return os.path.dirname(os.path.abspath(logits_path)) == os.path.abspath(
      FOLDER)


def published(folder: str | None = None) -> list[str]:
  """The datasets with published logits."""
  folder = folder or FOLDER
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))


def provenance(logits_path: str) -> dict[str, Any]:
  """The ``.json`` beside a published file; empty when there is none."""
  try:
    with open(os.path.splitext(logits_path)[0] + ".json") as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def describe(logits_path: str) -> str:
  """One line on the teacher behind a published file, for logs and reports."""
  info = provenance(logits_path)
  if not info:
    return os.path.basename(logits_path)
  if "members" in info:
    return (f"an ensemble ({info.get('combination')}) of " +
            "; ".join(_describe_one(m) for m in info["members"]))
  return _describe_one(info)


def _describe_one(info: dict[str, Any]) -> str:
  test = info.get("accuracy", {}).get("test")
  shipped = info.get("shipped_model")
  return ((f"shipped {shipped}: " if shipped else "") +
          f"{info['model']} trained {info['epochs']} epochs on "
          f"{info['device']}, best epoch {info['best_epoch']}" +
          (f", test accuracy {100 * test:.2f}%" if test is not None else ""))


def apply_default(config: config_dict.ConfigDict, own_logits: str) -> None:
  """Points a distilling student that names no teacher at the published
  logits of its dataset, if any (in place, so that the workdir's config
  records the file). A run whose logits file ``own_logits`` exists, e.g.
  exported into its workdir earlier, keeps it."""
  distill = config.distill
  if (distill.teacher_logits or distill.teacher_workdir or
      os.path.exists(own_logits)):
    return
  found = path(config.dataset.name)
  if found:
    distill.teacher_logits = found
    logging.info("No teacher named: distilling from the published logits "
                 "%s (%s).", found, describe(found))


def read_meta(logits_path: str) -> dict[str, Any]:
  """A teacher-logits file's metadata; TeacherLogitsError if unreadable."""
  try:
    with np.load(logits_path, allow_pickle=False) as f:
      return json.loads(str(f["meta"]))
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise TeacherLogitsError(f"{logits_path} is not a teacher-logits file "
                             f"({e}): export it with --mode=export_logits."
                             ) from e


def save_float16(source: str, target: str) -> None:
  """Copies a teacher-logits file with float16 logits, atomically."""
  try:
    with np.load(source, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise TeacherLogitsError(f"cannot read teacher logits {source}: {e}. "
                             "Export them with --mode=export_logits.") from e
  arrays["logits"] = arrays["logits"].astype(np.float16)
  os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
  np.savez(target + ".tmp.npz", **arrays)
  os.replace(target + ".tmp.npz", target)
