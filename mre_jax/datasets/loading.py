"""A run's splits: prepared once for all processes, then placed on the mesh.

Training and evaluation both need the same thing: the train, validation and
test splits of one dataset in host memory (for labels and bookkeeping) and on
the devices (for the jitted steps), plus the class weights of the train split.
In a multi-process run, process 0 prepares the dataset first and the others
wait for it, so that no two processes write the same files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from mre_jax.data import input_pipeline
from mre_jax.datasets import builders
from mre_jax.datasets import common
from mre_jax.errors import DatasetError
from mre_jax.runtime import distributed


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Which dataset, where it lives, and where its validation split comes from."""
  name: str
  data_dir: str = "~/tensorflow_datasets"
  manual_dir: str = ""  # Empty: <data_dir>/downloads/manual.
  builder_config: str = ""
  validation: str = "auto"

  @classmethod
  def from_config(cls, dataset: Any) -> DataSpec:
    """From a config's ``dataset`` section."""
    return cls(name=dataset.name, data_dir=dataset.data_dir,
               manual_dir=dataset.manual_dir,
               builder_config=dataset.builder_config,
               validation=dataset.validation)


@dataclasses.dataclass(frozen=True)
class RunData:
  """The splits of a run, on the host and on the devices."""
  splits: dict[str, common.SplitData]
  device: dict[str, input_pipeline.DeviceData]
  class_weights: np.ndarray | None


def load_splits(spec: DataSpec) -> dict[str, common.SplitData]:
  """Prepares (process 0 first) and loads train, validation and test."""
  data_dir = os.path.expanduser(spec.data_dir)
  manual_dir = spec.manual_dir or None
  config = spec.builder_config or None
  if jax.process_count() > 1:
    error = None
    if distributed.is_main_process():
      try:
        builders.prepare(spec.name, data_dir=data_dir, manual_dir=manual_dir,
                       config=config)
      except DatasetError as e:
        error = e
    # The others wait for process 0, and stop with it if it failed.
    if not distributed.main_process_value(error is None):
      raise error or DatasetError(
          f"process 0 could not prepare dataset {spec.name!r}; its log says "
          "why.")
  return builders.load_splits(spec.name, data_dir=data_dir,
                            manual_dir=manual_dir, config=config,
                            validation=spec.validation)


def load_run_data(spec: DataSpec, mesh: jax.sharding.Mesh,
                  class_weighted: bool) -> RunData:
  """Loads the splits, places each on ``mesh`` and computes class weights."""
  splits = load_splits(spec)
  train = splits["train"]
  weights = (common.class_weights(train.labels, train.num_classes)
             if class_weighted else None)
  device = {name: input_pipeline.put_on_mesh(
      {"image": s.images, "label": s.labels.astype(np.int32)}, mesh)
            for name, s in splits.items()}
  return RunData(splits=splits, device=device, class_weights=weights)
