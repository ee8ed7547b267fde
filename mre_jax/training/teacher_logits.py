"""Precomputed teacher logits: export from a teacher checkpoint, and checks.

Students never run the teacher while training: its logits for every training
example, for the original and the horizontally flipped view, are computed once
and stored as ``.npz``: ``logits`` (N, 2, K) float32, ``indices`` (N,) (the
examples' positions in the TFDS split) and ``meta`` (JSON). The metadata names
the data (dataset, version, split, example count, a checksum of indices and
labels), the preprocessing (image size, normalisation) and the teacher
(workdir, checkpoint epoch, parameter fingerprint, model). A student refuses a
file whose data or preprocessing differ from its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from absl import logging
import jax
from ml_collections import config_dict
import numpy as np

from mre_jax.config import config_lib
from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.datasets import SplitData
from mre_jax.errors import CheckpointError, ConfigError, TeacherLogitsError
from mre_jax.evaluation import predict
from mre_jax.runtime import distributed
from mre_jax.training import logits_catalog
from mre_jax.training import teachers
from mre_jax.workdir import checkpointing

FORMAT = "mre_jax.teacher_logits/1"
LOGITS_FILENAME = "teacher_logits.npz"


def _checksum(*arrays: np.ndarray) -> str:
  digest = hashlib.sha256()
  for a in arrays:
    digest.update(np.ascontiguousarray(a).astype(np.int64).tobytes())
  return digest.hexdigest()[:16]


def data_meta(split: SplitData, image_size: int) -> dict[str, Any]:
  """What a logits file must agree on with the student's training data."""
  return {
      "dataset": split.dataset,
      "version": split.version,
      "split": split.split,
      "num_examples": int(split.num_examples),
      "num_classes": int(split.num_classes),
      "examples_checksum": _checksum(split.indices, split.labels),
      **checkpointing.preprocessing_meta(image_size,
                                         channels=split.images.shape[-1]),
  }


def export(*, teacher_workdir: str, teacher_checkpoint: str | int,
           split: SplitData, data: input_pipeline.DeviceData,
           mesh: jax.sharding.Mesh, image_size: int, batch_size: int,
           path: str, log=print) -> dict[str, Any]:
  """Runs the teacher(s) ``teacher_workdir`` (see :mod:`.teachers`) over
  ``data`` (both views) and writes their logits to ``path``."""
  named = teachers.refs(teacher_workdir)
  if not named:
    raise ConfigError(f"config.distill.teacher_workdir={teacher_workdir!r} "
                      "names no teacher: give a workdir, a shipped model, "
                      "or several separated by commas.")
  loaded = []
  for ref in named:  # Every member is checked before any runs.
    try:
      loaded.append(teachers.load(ref, teacher_checkpoint, mesh))
    except CheckpointError as e:
      raise CheckpointError(
          f"teacher {ref}: {e} A teacher is trained with configs/teacher.py, "
          "imported with python -m mre_jax.convert, or shipped (python -m "
          "mre_jax.pretrained lists those).") from e
    check_teacher(loaded[-1], split, image_size)
  outputs = []
  for ref, teacher in zip(named, loaded):
    predict_fn = predict.make_predict_fn(teacher.model, mesh, image_size)
    views = []
    for flip in (False, True):
      log(f"teacher logits ({teachers.describe(ref)}): "
          f"{'flipped' if flip else 'original'} view of "
          f"{split.num_examples} {split.dataset}/{split.split} examples")
      views.append(predict.predict(predict_fn, teacher.variables, data, mesh,
                                    batch_size, flip=flip))
    outputs.append(np.stack(views, axis=1).astype(np.float32))
  logits = teachers.combine(outputs)
  meta = dict(data_meta(split, image_size), format=FORMAT,
              teacher=teachers.combined_meta(
                  [teachers.member_meta(t) for t in loaded]))
  if distributed.is_main_process():
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, logits=logits, indices=split.indices, meta=json.dumps(meta))
    os.replace(tmp, path)
  distributed.sync("teacher_logits_written")
  accuracy = float(np.mean(logits[:, 0].argmax(-1) == split.labels))
  log(f"teacher logits written to {path} ({meta['teacher']['model']['name']}"
      f", train accuracy {accuracy:.2%})")
  warn_if_near_chance(accuracy, split, teacher_workdir)
  return meta


def check_teacher(teacher: checkpointing.LoadedModel, split: SplitData,
                  image_size: int) -> None:
  """Refuses a teacher of another dataset, label set or input size."""
  where = f"teacher {teacher.workdir}"
  trained_on = teacher.meta.get("run", {}).get("dataset")
  if trained_on and trained_on != split.dataset:
    raise CheckpointError(
        f"{where} was trained on {trained_on}, but this student trains on "
        f"{split.dataset}: distil from a teacher of the student's dataset.")
  if tuple(teacher.class_names) != tuple(split.class_names):
    raise CheckpointError(
        f"{where} predicts {list(teacher.class_names)}, but {split.dataset} "
        f"is labelled {list(split.class_names)}.")
  if teacher.image_size != image_size:
    raise CheckpointError(
        f"{where} was trained on {teacher.image_size}x{teacher.image_size} "
        f"inputs, but this student uses config.image_size={image_size}: use "
        f"--config.image_size={teacher.image_size}, or a teacher of this size.")


def warn_if_near_chance(accuracy: float, split: SplitData,
                        teacher_workdir: str) -> None:
  """Logs a loud warning when the teacher barely beats guessing."""
  counts = np.bincount(split.labels, minlength=split.num_classes)
  chance = max(1.0 / split.num_classes, counts.max() / max(counts.sum(), 1))
  if accuracy < chance + 0.05:
    logging.warning(
        "THE TEACHER IS NEAR CHANCE: %s gets %.2f%% of the %s training split "
        "right, where always answering the most frequent class gets %.2f%%. "
        "Its logits teach the student little; train the teacher longer or "
        "check its checkpoint.", teacher_workdir, 100 * accuracy,
        split.dataset, 100 * chance)


def load(path: str, split: SplitData, image_size: int) -> np.ndarray:
  """Logits (N, 2, K) for ``split`` from ``path``, after checking its metadata."""
  fix = ("Re-export it for this data with --mode=export_logits (or delete it "
         "to have training export it from distill.teacher_workdir).")
  if logits_catalog.is_published(path):
    fix = ("These are the published logits, made for the recipe's data and "
           "preprocessing: name a teacher run of this data with "
           "--config.distill.teacher_workdir, or keep those settings.")
  if not os.path.isfile(path):
    raise TeacherLogitsError(
        f"teacher-logits file {path} does not exist. Set "
        "--config.distill.teacher_workdir to a teacher run to export it.")
  try:
    with np.load(path, allow_pickle=False) as f:
      logits, indices = f["logits"], f["indices"]
      meta = json.loads(str(f["meta"]))
  except Exception as e:  # np.load raises many types for bad files.
    raise TeacherLogitsError(
        f"teacher-logits file {path} is unreadable ({type(e).__name__}: {e}). "
        + fix) from e
  if meta.get("format") != FORMAT:
    raise TeacherLogitsError(f"{path} is not an mre_jax teacher-logits file "
                             f"(expected format {FORMAT!r}). " + fix)
  expected = data_meta(split, image_size)
  wrong = [f"{k}: file has {meta.get(k)!r}, this run needs {v!r}"
           for k, v in expected.items() if meta.get(k) != v]
  if not wrong and (logits.shape != (split.num_examples, 2, split.num_classes)
                    or not np.array_equal(indices, split.indices)):
    wrong.append(f"logits shape {logits.shape} / indices do not match "
                 f"{split.num_examples} examples")
  if wrong:
    raise TeacherLogitsError(
        f"teacher-logits file {path} does not match this run's data or "
        "preprocessing:\n  " + "\n  ".join(wrong) + "\n" + fix)
  return logits.astype(np.float32)


def logits_path(config: config_dict.ConfigDict, workdir: str) -> str:
  """The student's logits file: configured, or in its workdir."""
  return config.distill.teacher_logits or os.path.join(workdir,
                                                       LOGITS_FILENAME)


def default_to_published(config: config_dict.ConfigDict,
                         workdir: str) -> None:
  """A distilling student that names no teacher and has no logits file of
  its own gets its dataset's published logits (see logits_catalog)."""
  if config_lib.is_student(config):
    logits_catalog.apply_default(config, logits_path(config, workdir))


def export_for_run(config: config_dict.ConfigDict, workdir: str,
                   split: SplitData, data: input_pipeline.DeviceData,
                   mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """Exports the logits of ``config.distill``'s teacher for a student run."""
  if not config.distill.teacher_workdir:
    raise ConfigError("config.distill.teacher_workdir is empty: name the "
                      "teacher run whose logits to export.")
  return export(
      teacher_workdir=config.distill.teacher_workdir,
      teacher_checkpoint=config.distill.teacher_checkpoint, split=split,
      data=data, mesh=mesh, image_size=config.image_size,
      batch_size=config.eval_batch_size, path=logits_path(config, workdir),
      log=logging.info)


def export_command(config: config_dict.ConfigDict, workdir: str,
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """``--mode=export_logits``: the student's train split through its teacher."""
  mesh = mesh or input_pipeline.make_mesh()
  train = loading.load_splits(loading.DataSpec.from_config(config.dataset))[
      "train"]
  data = input_pipeline.put_on_mesh(
      {"image": train.images, "label": train.labels.astype(np.int32)}, mesh)
  return export_for_run(config, workdir, train, data, mesh)


def ensure(config: config_dict.ConfigDict, workdir: str, split: SplitData,
           data: input_pipeline.DeviceData,
           mesh: jax.sharding.Mesh) -> np.ndarray:
  """The student's teacher logits, exported first if the file is missing."""
  path = logits_path(config, workdir)
  if not os.path.exists(path):
    if not config.distill.teacher_workdir:
      raise ConfigError(
          f"config.distill.teacher_logits={path!r} does not exist and "
          "config.distill.teacher_workdir is empty: name a teacher run to "
          "export the logits from (published logits exist for "
          f"{', '.join(logits_catalog.published()) or 'no dataset'}).")
    export_for_run(config, workdir, split, data, mesh)
  return load(path, split, config.image_size)
