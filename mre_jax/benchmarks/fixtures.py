"""The random-data training fixture of the speed and scaling benchmarks.

It runs the project's own jitted training call
(:func:`mre_jax.training.train.make_train_chunk`: in-step batch gather,
resize, flip and normalisation, forward, backward, SGD update, cross-device
BatchNorm and gradient sums), with the optimizer and state built by the
training code from a config, on random uint8 images and labels placed on the
mesh as a real split is. So the benchmarks time what training runs, with no
data loading.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import config_dict
import numpy as np

from mre_jax import models
from mre_jax.benchmarks import timing
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.data import input_pipeline
from mre_jax.runtime import distributed
from mre_jax.training import train

def random_examples(rng: np.random.Generator, count: int,
                    image_shape: tuple[int, int, int]) -> dict[str, Any]:
  """``count`` uniformly random uint8 images and int32 labels."""
  return {"image": rng.integers(0, 256, (count, *image_shape), np.uint8),
          "label": rng.integers(0, NUM_CLASSES, count).astype(np.int32)}


def build_model(config: config_dict.ConfigDict) -> models.ResEmoteNet:
  """The config's model preset, width and compute dtype."""
  dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
  return models.get_model(config.model, num_classes=NUM_CLASSES, dtype=dtype,
                          width=config.model_width or None)


class TrainFixture:
  """``steps`` training steps of ``global_batch`` random examples per call.

  The split holds ``steps x global_batch`` examples; successive calls walk
  different permutations of it. The loss is a teacher's (cross-entropy with
  unit class weights, no distillation term). ``counted_chunk`` is the same
  call with XLA's convolutions (``conv_impl="lax"``): FLOPs are counted on
  it, because the CPU forms of :mod:`mre_jax.models.conv` also multiply padding
  zeros.
  """

  def __init__(self, model: models.ResEmoteNet,
               config: config_dict.ConfigDict, mesh: jax.sharding.Mesh,
               global_batch: int, steps: int,
               image_shape: tuple[int, int, int]):
    self.global_batch, self.steps = global_batch, steps
    tx = train.make_optimizer(config, config.learning_rate)
    self.state = train.init_state(model, config, tx,
                                  train.make_plateau(config), mesh)
    rng = np.random.default_rng(config.seed + global_batch)
    num_examples = steps * global_batch
    self.data = input_pipeline.put_on_mesh(
        random_examples(rng, num_examples, image_shape), mesh)
    replicated = distributed.replicated(mesh)
    self.class_weights = jax.device_put(np.ones(NUM_CLASSES, np.float32),
                                        replicated)
    self.perms = [
        jax.device_put(rng.permutation(num_examples).astype(np.int32),
                       replicated) for _ in range(timing.INPUT_POOL)]
    self.chunk, self.counted_chunk = (
        train.make_train_chunk(m, tx, config, mesh, global_batch,
                               ce_weight=1.0, kd_weight=0.0)
        for m in (model, model.clone(conv_impl="lax")))
    self.compiled = None

  def args(self, i: int) -> tuple[Any, ...]:
    """The train call's positional arguments for call ``i``."""
    return (self.state, self.data, self.perms[i % timing.INPUT_POOL],
            self.class_weights, 0)

  def compile(self) -> float:
    """Compiles the call ahead of time; returns the seconds it took."""
    start = time.perf_counter()
    self.compiled = self.chunk.lower(*self.args(0),
                                     num_steps=self.steps).compile()
    return time.perf_counter() - start

  def __call__(self, i: int) -> dict[str, jax.Array]:
    """Runs call ``i``; returns its summed loss and accuracy counts."""
    if self.compiled is None:
      self.compile()
    self.state, sums = self.compiled(*self.args(i))
    return sums
