"""Evaluate a trained or imported model from its workdir alone.

:func:`evaluate_workdir` restores a checkpoint with
:func:`mre_jax.workdir.checkpointing.load_model`, which reads the architecture,
classes and image size from the checkpoint itself, loads the run's dataset and
writes ``eval_<split>.json`` (and a confusion-matrix PNG) into the workdir. It
needs no training config and never touches the teacher of a distilled
student. :func:`evaluate_split` is the evaluator the training loop hands its
own ``predict_fn`` each epoch, so both report the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from absl import logging
import jax

from mre_jax.config.dataset_names import DATASET_NAMES
from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.errors import ConfigError
from mre_jax.evaluation import metrics
from mre_jax.evaluation import predict
from mre_jax.runtime import distributed
from mre_jax.workdir import checkpointing

SPLITS = ("train", "validation", "test")


def evaluate_split(predict_fn, variables: Any, data: loading.RunData,
                   split: str, mesh: jax.sharding.Mesh,
                   batch_size: int) -> dict[str, Any]:
  """Metrics of ``split`` under ``predict_fn`` (see :mod:`.predict`)."""
  logits = predict.predict(predict_fn, variables, data.device[split], mesh,
                           batch_size)
  host = data.splits[split]
  return metrics.metrics_from_logits(logits, host.labels, data.class_weights,
                                     host.class_names)


def data_spec(meta: dict[str, Any], given: loading.DataSpec | None,
              other: str = "") -> tuple[loading.DataSpec, bool]:
  """The dataset to evaluate on, and whether it is the run's own.

  A trained run records its dataset in its checkpoint and is evaluated on it,
  found where ``given`` says the data lives; ``other`` names another dataset
  explicitly. An imported checkpoint records none: ``given`` names it.
  """
  run = meta.get("run")
  own = run["dataset"] if run else None
  if other and other != own:
    if other not in DATASET_NAMES:
      raise ConfigError(f"config.eval.dataset={other!r} is invalid: expected "
                        f"one of {DATASET_NAMES}")
    same = given is not None and given.name == other
    location = given or loading.DataSpec(name=other)
    return loading.DataSpec(
        name=other, data_dir=location.data_dir,
        manual_dir=location.manual_dir if same else "",
        builder_config=location.builder_config if same else "",
        validation=location.validation if same else "auto"), own is None
  if run is None:
    if given is None:
      raise ConfigError(
          "this checkpoint was imported and records no dataset: name one, "
          "e.g. --config=configs/teacher.py:fer2013.")
    return given, True
  if given is not None and given.name != own:
    raise ConfigError(
        f"this run was trained on {own!r}, but the config names "
        f"{given.name!r}. Evaluate it with a config of its own dataset (e.g. "
        f"--config=configs/teacher.py:{own}), or on another one explicitly "
        f"with --config.eval.dataset={given.name}.")
  location = given or loading.DataSpec(name=own)
  return loading.DataSpec(
      name=own, data_dir=location.data_dir, manual_dir=location.manual_dir,
      builder_config=run["builder_config"],
      validation=run["validation"]), True


def check_splits(splits: Sequence[str]) -> tuple[str, ...]:
  splits = tuple(s for s in splits if s)
  unknown = [s for s in splits if s not in SPLITS]
  if not splits or unknown:
    raise ConfigError(f"cannot evaluate splits {list(splits)}: expected some "
                      f"of {list(SPLITS)}.")
  return splits


def evaluate_workdir(workdir: str, splits: Sequence[str] = ("validation",
                                                            "test"),
                     which: str | int = "best", *,
                     data: loading.DataSpec | None = None,
                     other_dataset: str = "",
                     run_data: loading.RunData | None = None,
                     batch_size: int = 256,
                     mesh: jax.sharding.Mesh | None = None,
                     log: Callable[[str], None] = logging.info
                     ) -> dict[str, dict[str, Any]]:
  """Evaluates checkpoint ``which`` of ``workdir`` on ``splits``.

  Args:
    workdir: a trained or imported run.
    splits: any of train, validation, test.
    which: ``best``, ``latest`` or an epoch.
    data: where the dataset lives (and, for imported checkpoints, which one).
      Default: the run's own dataset in ``~/tensorflow_datasets``.
    other_dataset: evaluate on this dataset instead of the run's own; its
      files are named ``eval_<dataset>_<split>.json``.
    run_data: the run's splits already loaded (by the training loop).
    batch_size: evaluation batch.
    mesh: devices to evaluate on (default: all).
    log: where the one-line summaries go.

  Returns:
    split -> metrics, as written to ``<workdir>/eval_<split>.json``. Each
    records the dataset, split, image size, model and checkpoint step.
  """
  splits = check_splits(splits)
  mesh = mesh or input_pipeline.make_mesh()
  loaded = checkpointing.load_model(workdir, which, mesh=mesh)
  spec, own = data_spec(loaded.meta, data, other_dataset)
  if run_data is None:
    class_weighted = loaded.meta.get("run", {}).get("class_weighted_loss",
                                                    True)
    run_data = loading.load_run_data(spec, mesh, class_weighted)
  labels = run_data.splits["test"].class_names
  if tuple(labels) != loaded.class_names:
    raise ConfigError(
        f"the model predicts {list(loaded.class_names)} but {spec.name} is "
        f"labelled {list(labels)}: evaluate it on a dataset of its classes.")
  predict_fn = predict.make_predict_fn(loaded.model, mesh, loaded.image_size)
  results = {}
  for split in splits:
    result = evaluate_split(predict_fn, loaded.variables, run_data, split,
                            mesh, batch_size)
    result.update(dataset=spec.name, split=split,
                  image_size=loaded.image_size, model=loaded.name,
                  checkpoint_step=int(loaded.step))
    results[split] = result
    if distributed.is_main_process():
      metrics.write_report(loaded.workdir,
                           split if own else f"{spec.name}_{split}", result,
                           run_data.splits[split].class_names)
    log(metrics.format_summary(split, result, loaded.step))
  return results


def evaluate_config(config: Any, workdir: str,
                    mesh: jax.sharding.Mesh | None = None
                    ) -> dict[str, dict[str, Any]]:
  """``--mode=evaluate``: uses only the config's data location and ``eval``.

  Whatever else the config says (a student's teacher, the optimiser ...) is
  not needed to evaluate a finished run, and not checked.
  """
  if config.eval_batch_size < 1:
    raise ConfigError(f"config.eval_batch_size={config.eval_batch_size} is "
                      "invalid: expected a positive integer")
  return evaluate_workdir(
      workdir, [s.strip() for s in config.eval.splits.split(",")],
      config.eval.checkpoint, data=loading.DataSpec.from_config(config.dataset),
      other_dataset=config.eval.get("dataset", ""),
      batch_size=config.eval_batch_size, mesh=mesh)
