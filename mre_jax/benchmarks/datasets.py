"""Times dataset preparation and loading on the real archives.

    python -m mre_jax.benchmarks.datasets --data=/path/to/shared/data \\
        --workdir=/tmp/bench [--keep] [--repeats=3]

``--data`` holds ``fer2013/fer2013.tar.xz`` and ``rafdb/rafdb_basic.tar.xz``
(it is used as the manual dir). Each run prepares into a fresh folder under
``--workdir`` and removes it afterwards unless ``--keep`` is given. Datasets
whose files are absent are skipped; synthetic_faces always runs. Preparing is
timed once (a second call finds the dataset prepared); loading is timed by
:func:`mre_jax.benchmarks.timing.time_calls`.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from absl import flags
import tensorflow_datasets as tfds

from mre_jax import datasets
from mre_jax.benchmarks import cli
from mre_jax.benchmarks import timing
from mre_jax.datasets import builders

FLAGS = flags.FLAGS
# Dataset -> its archive under --data.
ARCHIVES = {"fer2013": "fer2013/fer2013.tar.xz",
            "raf_db": "rafdb/rafdb_basic.tar.xz"}


def _benchmark_one(name: str, manual_dir: pathlib.Path | None,
                   config: str | None, workdir: pathlib.Path,
                   budget: timing.Budget) -> Iterator[str]:
  """Report lines of preparing one dataset and loading it."""
  source = ARCHIVES.get(name, f"config {config!r}")
  builder, measured = timing.time_result(lambda: datasets.prepare(
      name, data_dir=workdir, manual_dir=manual_dir, config=config))
  sizes = ", ".join(f"{s} {builder.info.splits[s].num_examples}"
                    for s in builder.info.splits)
  yield (f"{name:16s} prepare from {source}: {measured.median_s:6.2f} s "
         f"({sizes})")
  split, measured = timing.time_result(
      lambda: builders.read_split(builder, "train"), budget)
  yield (f"{name:16s} load train into memory: {measured.median_s:6.2f} s "
         f"({split.num_examples} x {split.images.shape[1:]}, "
         f"{split.images.nbytes / 2**20:.0f} MiB)")
  splits, measured = timing.time_result(lambda: datasets.load_splits(
      name, data_dir=workdir, config=config), budget)
  counts = ", ".join(f"{k} {v.num_examples}" for k, v in splits.items())
  yield (f"{name:16s} load_splits (prepared, all splits): "
         f"{measured.median_s:6.2f} s ({counts})")


def benchmark(data: pathlib.Path, workdir: pathlib.Path,
              budget: timing.Budget,
              synthetic_config: str = "default") -> Iterator[str]:
  """Prepares and loads each dataset, yielding one report line per step."""
  jobs = []
  for name, archive in ARCHIVES.items():
    if (data / archive).is_file():
      jobs.append((name, data, None))
    else:
      yield f"{name:16s} skipped: {data / archive} not found"
  jobs.append(("synthetic_faces", None, synthetic_config))
  for name, manual_dir, config in jobs:
    yield from _benchmark_one(name, manual_dir, config, workdir, budget)


def define_flags() -> None:
  flags.DEFINE_string("data", None,
                      "Folder with the fer2013/ and rafdb/ archives.")
  flags.DEFINE_string("workdir", None,
                      "Where the prepared datasets are written.")
  flags.DEFINE_bool("keep", False, "Keep the prepared datasets.")
  flags.mark_flags_as_required(["data", "workdir"])
  cli.define_budget_flags(repeats=3, warmup_seconds=0.0)


def main() -> None:
  budget = cli.budget()
  tfds.disable_progress_bar()
  workdir = pathlib.Path(FLAGS.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  run_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-", dir=workdir))
  print(f"loads: median of up to {budget.repeats} after one untimed load")
  try:
    for line in benchmark(pathlib.Path(FLAGS.data), run_dir, budget):
      print(line, flush=True)
  finally:
    if not FLAGS.keep:
      shutil.rmtree(run_dir, ignore_errors=True)
  if FLAGS.keep:
    print(f"prepared datasets kept in {run_dir}")


if __name__ == "__main__":
  cli.run(main, define_flags)
