"""JAX speed of one model, measured on what users run.

Training goes through the project's jitted train call (the shared
:class:`~mre_jax.benchmarks.fixtures.TrainFixture`), inference through
:attr:`mre_jax.inference.predictor.Predictor.bound_forward`, the jitted
normalisation and forward pass that ``Predictor.logits`` calls per batch, on
device-resident images so that no host transfer is timed.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
from ml_collections import config_dict
import numpy as np

from mre_jax import models
from mre_jax.benchmarks import device
from mre_jax.benchmarks import fixtures
from mre_jax.benchmarks import flops
from mre_jax.benchmarks import results
from mre_jax.benchmarks import timing
from mre_jax.config import labels
from mre_jax.inference.predictor import Predictor


def make_predictor(model: models.ResEmoteNet, variables: Any,
                   image_size: int, batch_size: int = 64) -> Predictor:
  """The Predictor an application would build for ``model``."""
  return Predictor(model, variables, image_size=image_size,
                   class_names=labels.CLASS_NAMES, batch_size=batch_size)


def forward_flops_per_image(model: models.ResEmoteNet, image_size: int,
                            batch: int = 8) -> float:
  """Inference FLOPs per image of the Predictor's forward pass."""
  model = model.clone(conv_impl="lax")
  variables = models.abstract_variables(model, image_size)
  forward = make_predictor(model, variables, image_size).forward
  return flops.forward_flops_per_image(forward, variables, image_size, batch)


def measure_train(fixture: fixtures.TrainFixture,
                  budget: timing.Budget) -> dict[str, Any]:
  """Times a training fixture's call; counts its FLOPs per image."""
  one_step = functools.partial(fixture.counted_chunk, num_steps=1)
  batch = fixture.global_batch
  flops_per_image = flops.function_flops(one_step, *fixture.args(0)) / batch
  compile_s = fixture.compile()
  measured = timing.time_calls(fixture, budget)
  return {**results.train_result(measured, batch, fixture.steps),
          "compile_s": compile_s, "flops_per_image": flops_per_image,
          "compiled_memory_mb": device.compiled_memory_mb(fixture.compiled)}


def measure_inference(predictor: Predictor, batch: int, budget: timing.Budget,
                      seed: int = 0) -> dict[str, Any]:
  """Times ``predictor.bound_forward``, as :meth:`Predictor.logits` calls it,
  on ``batch`` images already on the device."""
  rng = np.random.default_rng(seed + batch)
  size = predictor.image_size
  images = fixtures.random_examples(rng, batch * timing.INPUT_POOL,
                                    (size, size, 3))["image"]
  pool = [jax.device_put(x) for x in np.split(images, timing.INPUT_POOL)]
  start = time.perf_counter()
  compiled = predictor.lower(pool[0]).compile()
  compile_s = time.perf_counter() - start
  measured = timing.time_calls(
      lambda i: predictor.bound_forward(pool[i % len(pool)]),
      dataclasses.replace(budget, warmup=max(budget.warmup, 2)))
  xla = flops.xla_flops(compiled)
  return {**results.inference_result(measured, batch), "compile_s": compile_s,
          "xla_flops_per_image": xla / batch if xla else None}


def measure(model: models.ResEmoteNet, config: config_dict.ConfigDict,
            mesh: jax.sharding.Mesh, batch_sizes: Sequence[int], steps: int,
            inference_batches: Sequence[int], budget: timing.Budget,
            log: Callable[[str], None]) -> dict[str, Any]:
  """All JAX measurements of one model, ``steps`` train steps per call.

  Inference uses the variables the last training measurement left.
  """
  result = {"train": {}, "inference": {}}
  size = config.image_size
  for batch in batch_sizes:
    log(f"JAX training, batch {batch}")
    fixture = fixtures.TrainFixture(model, config, mesh, batch, steps,
                                    image_shape=(size, size, 3))
    result["train"][str(batch)] = measure_train(fixture, budget)
  predictor = make_predictor(model, fixture.state.variables(), size,
                             max(inference_batches))
  for batch in inference_batches:
    log(f"JAX inference, batch {batch}")
    result["inference"][str(batch)] = measure_inference(predictor, batch,
                                                        budget, config.seed)
  result["peak_memory_mb"] = device.peak_memory_mb()
  return result
