"""The input-pipeline benchmark on a small random split over two devices."""

from __future__ import annotations

import jax
import numpy as np

from mre_jax.benchmarks import fixtures
from mre_jax.benchmarks import input_pipeline as pipeline_benchmark
from mre_jax.benchmarks import timing
from mre_jax.config import recipe
from mre_jax.data import input_pipeline

SPLIT = {"tiny": (24, (12, 12, 1))}


def test_rows_of_every_variant():
  config = recipe.get_config()
  config.image_size = 16
  rows = list(pipeline_benchmark.measure(
      input_pipeline.make_mesh(2), config, [4], steps=2,
      budget=timing.Budget(repeats=1), datasets=SPLIT))
  assert [r["variant"] for r in rows] == [
      "epoch permutation", "gather", "x[idx]", "pipeline"]
  assert rows[0]["ms_per_epoch"] > 0
  for row in rows[1:]:
    assert row["batch"] == 4 and row["images_per_second"] > 0
    assert pipeline_benchmark.format_row(row).startswith("tiny          4")


def test_loop_returns_the_last_steps_batch():
  mesh = input_pipeline.make_mesh(2)
  host = fixtures.random_examples(np.random.default_rng(0), 24, (12, 12, 1))
  data = input_pipeline.put_on_mesh(host, mesh)
  perm = jax.numpy.arange(24, dtype=jax.numpy.int32)[::-1]
  fns = pipeline_benchmark.step_fns(24, 4, recipe.get_config(), mesh)
  for variant in ("gather", "x[idx]"):
    loop = pipeline_benchmark.make_loop(fns[variant], num_steps=3)
    batch = loop(data, perm, jax.random.key(0))
    # Step 2 takes ids perm[8:12] = 15, 14, 13, 12.
    np.testing.assert_array_equal(batch["image"], host["image"][15:11:-1])
    np.testing.assert_array_equal(batch["label"], host["label"][15:11:-1])
