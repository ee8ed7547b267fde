"""Input-pipeline throughput on random FER2013- and RAF-DB-sized data.

    python -m mre_jax.benchmarks.input_pipeline [--cpu_devices=4]
        [--batch_sizes=16,256] [--steps=10] [--repeats=5]
        [--config.field=value ...]

For each dataset shape and batch size, one jitted call runs ``--steps`` steps
in a ``lax.fori_loop``, timed by :func:`mre_jax.benchmarks.timing.time_calls`,
for

* ``gather``: :func:`mre_jax.data.input_pipeline.gather` of the batch's rows;
* ``x[idx]``: the same rows by plain indexing, left to XLA's partitioner;
* ``pipeline``: a whole :func:`mre_jax.data.input_pipeline.train_batch`
  (permutation slice, gather, resize to the config's ``image_size``, random
  flip if the config augments, normalisation).

Each step's batch becomes the loop carry, so no step's work can be skipped
and no extra work is timed (a checksum reduction of the batch would cost
XLA:CPU more than the preprocessing it consumes). On CPU, emulated devices
share the host's cores: compare device counts with care.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Sequence

from absl import flags
import jax
from ml_collections import config_dict
import numpy as np

from mre_jax.benchmarks import cli
from mre_jax.benchmarks import fixtures
from mre_jax.benchmarks import timing
from mre_jax.data import input_pipeline
from mre_jax.datasets import fer2013
from mre_jax.datasets import raf_db

FLAGS = flags.FLAGS
# name -> (examples, image shape) of the training splits.
DATASETS = {"fer2013": (28_709, fer2013.IMAGE_SHAPE),
            "rafdb": (12_271, raf_db.IMAGE_SHAPE)}

StepFn = Callable[..., dict[str, jax.Array]]


def make_loop(step_fn: StepFn, num_steps: int):
  """Jitted ``(data, perm, rng) -> batch``: ``num_steps`` calls of ``step_fn``.

  Each step's batch is the loop carry, so no step can be skipped; the last one
  is returned.
  """

  def run(data, perm, rng):
    def body(step, _):
      return step_fn(data, perm, jax.random.fold_in(rng, step), step)
    return jax.lax.fori_loop(1, num_steps, body, body(0, None))

  return jax.jit(run)


def step_fns(num_examples: int, batch_size: int,
             config: config_dict.ConfigDict,
             mesh: jax.sharding.Mesh) -> dict[str, StepFn]:
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
        image_size=config.image_size, mesh=mesh,
        augment_flip=config.augment_flip)

  return {"gather": gather, "x[idx]": plain_indexing, "pipeline": pipeline}


def measure(mesh: jax.sharding.Mesh, config: config_dict.ConfigDict,
            batch_sizes: Sequence[int], steps: int, budget: timing.Budget,
            datasets: dict[str, tuple[int, tuple[int, ...]]] = DATASETS
            ) -> Iterator[dict[str, Any]]:
  """One row per dataset's epoch permutation and per (batch, variant)."""
  for name, (num_examples, shape) in datasets.items():
    rng = np.random.default_rng(config.seed)
    data = input_pipeline.put_on_mesh(
        fixtures.random_examples(rng, num_examples, shape), mesh)
    key = jax.random.key(config.seed)
    permute = jax.jit(input_pipeline.epoch_permutation, static_argnums=1)
    perm = permute(key, num_examples)
    measured = timing.time_calls(lambda _: permute(key, num_examples), budget)
    yield {"dataset": name, "variant": "epoch permutation",
           "ms_per_epoch": 1e3 * measured.median_s}
    for batch_size in batch_sizes:
      fns = step_fns(num_examples, batch_size, config, mesh)
      for variant, fn in fns.items():
        loop = functools.partial(make_loop(fn, steps), data, perm, key)
        measured = timing.time_calls(lambda _: loop(), budget)
        yield {"dataset": name, "batch": batch_size, "variant": variant,
               "images_per_second": steps * batch_size / measured.median_s,
               "ms_per_step": 1e3 * measured.median_s / steps}


def format_row(row: dict[str, Any]) -> str:
  """One printed line of a :func:`measure` row."""
  if "ms_per_epoch" in row:
    return (f"{row['dataset']:<9} {'':>5} {row['variant']:<18} "
            f"{row['ms_per_epoch']:>8.2f} ms per epoch")
  return (f"{row['dataset']:<9} {row['batch']:>5} {row['variant']:<9} "
          f"{row['images_per_second']:>10,.0f} {row['ms_per_step']:>8.2f}")


def define_flags() -> None:
  flags.DEFINE_integer(
      "cpu_devices", None,
      "Emulate this many CPU devices (before JAX starts); default: as is.")
  cli.define_int_list("batch_sizes", (16, 256), "Global batch sizes.")
  flags.DEFINE_integer("steps", 10, "Steps per jitted call.", lower_bound=1)
  cli.define_budget_flags(repeats=5, warmup_seconds=0.0)
  cli.define_config_flags(("image_size",))


def main() -> None:
  if FLAGS.cpu_devices:
    jax.config.update("jax_num_cpu_devices", FLAGS.cpu_devices)
  mesh = input_pipeline.make_mesh()
  budget, config = cli.budget(), cli.train_config()
  print(f"devices: {mesh.shape[input_pipeline.DATA_AXIS]} x "
        f"{jax.devices()[0].device_kind}; image_size {config.image_size}; "
        f"{FLAGS.steps} steps per call, median of up to {budget.repeats} "
        "calls")
  print(f"{'dataset':<9} {'batch':>5} {'variant':<9} {'img/s':>10} "
        f"{'ms/step':>8}")
  for row in measure(mesh, config, FLAGS.batch_sizes, FLAGS.steps, budget):
    print(format_row(row), flush=True)


if __name__ == "__main__":
  cli.run(main, define_flags)
