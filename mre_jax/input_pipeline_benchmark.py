"""Input-pipeline throughput on random FER2013- and RAF-DB-sized data.

    python -m mre_jax.input_pipeline_benchmark [--cpu_devices=4]

For each dataset shape and batch size, one jitted call runs ``--steps`` steps
in a ``lax.fori_loop`` and reports images per second (median of ``--repeats``
calls, compilation and a warm-up call excluded, timed up to
``block_until_ready``) for

* ``gather``: :func:`input_pipeline.gather` of the batch's rows alone;
* ``x[idx]``: the same rows by plain indexing, left to XLA's partitioner;
* ``pipeline``: a whole :func:`input_pipeline.train_batch` (permutation
  slice, gather, resize to ``--image_size``, random flip, normalisation).

Each step's batch becomes the loop carry, so no step's work can be skipped
and no extra work is timed (a checksum reduction of the batch would cost
XLA:CPU more than the preprocessing it consumes). On CPU, emulated devices
share the host's cores: compare device counts with care.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable, Sequence

from absl import app
from absl import flags
import jax
import numpy as np

from mre_jax import input_pipeline

_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None,
    "Emulate this many CPU devices (before JAX starts); default: as is.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["16", "256"],
                                 "Global batch sizes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Model input size.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per jitted call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per setting.")

# name -> (num_examples, height, width, channels) of the training splits.
DATASETS = {
    "fer2013": (28_709, 48, 48, 1),
    "rafdb": (12_271, 100, 100, 3),
}


def random_split(num_examples: int, height: int, width: int,
                 channels: int) -> dict[str, np.ndarray]:
  """Uniformly random uint8 images and int32 labels of the given shape."""
  rng = np.random.default_rng(0)
  return {
      "image": rng.integers(0, 256, (num_examples, height, width, channels),
                            np.uint8),
      "label": rng.integers(0, 7, num_examples).astype(np.int32),
  }


def make_loop(step_fn: Callable[..., dict[str, jax.Array]], num_steps: int):
  """Jitted ``(data, perm, rng) -> batch``: ``num_steps`` calls of ``step_fn``.

  Each step's batch is the loop carry, so no step can be skipped; the last one
  is returned.
  """

  def run(data, perm, rng):
    def body(step, _):
      return step_fn(data, perm, jax.random.fold_in(rng, step), step)
    return jax.lax.fori_loop(1, num_steps, body, body(0, None))

  return jax.jit(run)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Median wall time of ``fn()`` after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def step_fns(num_examples: int, batch_size: int, image_size: int,
             mesh: jax.sharding.Mesh) -> dict[str, Callable[..., dict]]:
  """name -> ``(data, perm, rng, step) -> batch`` for each variant."""
  steps_per_epoch = input_pipeline.steps_per_epoch(num_examples, batch_size)

  def indices(perm, step):
    return input_pipeline.train_batch_indices(perm, step % steps_per_epoch,
                                              batch_size)

  def gather(data, perm, _, step):
    return input_pipeline.gather(data, indices(perm, step), mesh)

  def plain_indexing(data, perm, _, step):
    idx = indices(perm, step)
    return {name: a[idx] for name, a in data.arrays.items()}

  def pipeline(data, perm, rng, step):
    return input_pipeline.train_batch(
        data, rng, perm, step % steps_per_epoch, batch_size=batch_size,
        image_size=image_size, mesh=mesh)

  return {"gather": gather, "x[idx]": plain_indexing, "pipeline": pipeline}


def main(argv: Sequence[str]) -> None:
  del argv
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  mesh = input_pipeline.make_mesh()
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  steps, repeats = _STEPS.value, _REPEATS.value
  print(f"devices: {mesh.shape[input_pipeline.DATA_AXIS]} x "
        f"{jax.devices()[0].device_kind}; image_size {_IMAGE_SIZE.value}; "
        f"{steps} steps per call, median of {repeats} calls")
  print(f"{'dataset':<9} {'batch':>5} {'variant':<9} {'img/s':>10} "
        f"{'ms/step':>8}")
  for name, shape in DATASETS.items():
    data = input_pipeline.put_on_mesh(random_split(*shape), mesh)
    rng = jax.random.key(0)
    permute = jax.jit(input_pipeline.epoch_permutation, static_argnums=1)
    perm = permute(rng, shape[0])
    seconds = median_seconds(functools.partial(permute, rng, shape[0]),
                             repeats)
    print(f"{name:<9} {'':>5} {'epoch permutation':<18} "
          f"{1e3 * seconds:>8.2f} ms per epoch")
    for batch_size in batch_sizes:
      fns = step_fns(shape[0], batch_size, _IMAGE_SIZE.value, mesh)
      for variant, fn in fns.items():
        loop = functools.partial(make_loop(fn, steps), data, perm, rng)
        seconds = median_seconds(loop, repeats)
        print(f"{name:<9} {batch_size:>5} {variant:<9} "
              f"{steps * batch_size / seconds:>10,.0f} "
              f"{1e3 * seconds / steps:>8.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
