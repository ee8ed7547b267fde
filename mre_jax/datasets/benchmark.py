"""Times dataset preparation and loading on the real archives.

  python -m mre_jax.datasets.benchmark --data=/path/to/shared/data \\
      --workdir=/tmp/bench

``--data`` holds ``fer2013/fer2013.tar.xz`` and ``rafdb/rafdb_basic.tar.xz``
(it is used as the manual dir). Each run prepares into a fresh folder under
``--workdir`` and removes it afterwards unless ``--keep`` is given. Datasets
whose files are absent are skipped; synthetic_faces always runs.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence

import tensorflow_datasets as tfds

from mre_jax.datasets import common
from mre_jax.errors import DatasetError

_ARCHIVES = {"fer2013": "fer2013/fer2013.tar.xz",
             "raf_db": "rafdb/rafdb_basic.tar.xz"}


def _timed(fn):
  start = time.perf_counter()
  result = fn()
  return result, time.perf_counter() - start


def benchmark(data: pathlib.Path, workdir: pathlib.Path) -> Iterator[str]:
  """Prepares and loads each dataset, yielding one report line per step."""
  jobs = []
  for name, archive in _ARCHIVES.items():
    if (data / archive).is_file():
      jobs.append((name, data, None))
    else:
      yield f"{name:16s} skipped: {data / archive} not found"
  jobs.append(("synthetic_faces", None, "default"))
  for name, manual_dir, config in jobs:
    source = _ARCHIVES.get(name, f"config {config!r}")
    builder, seconds = _timed(lambda: common.prepare(
        name, data_dir=workdir, manual_dir=manual_dir, config=config))
    sizes = ", ".join(f"{s} {builder.info.splits[s].num_examples}"
                      for s in builder.info.splits)
    yield f"{name:16s} prepare from {source}: {seconds:6.2f} s ({sizes})"
    split, seconds = _timed(lambda: common.read_split(builder, "train"))
    yield (f"{name:16s} load train into memory: {seconds:6.2f} s "
           f"({split.num_examples} x {split.images.shape[1:]}, "
           f"{split.images.nbytes / 2**20:.0f} MiB)")
    splits, seconds = _timed(lambda: common.load_splits(
        name, data_dir=workdir, config=config))
    counts = ", ".join(f"{k} {v.num_examples}" for k, v in splits.items())
    yield (f"{name:16s} load_splits (prepared, all splits): "
           f"{seconds:6.2f} s ({counts})")


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", required=True, type=pathlib.Path,
                      help="folder with fer2013/ and rafdb/ archives")
  parser.add_argument("--workdir", required=True, type=pathlib.Path,
                      help="where the prepared datasets are written")
  parser.add_argument("--keep", action="store_true",
                      help="keep the prepared datasets")
  args = parser.parse_args(argv)
  tfds.disable_progress_bar()
  args.workdir.mkdir(parents=True, exist_ok=True)
  run_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-", dir=args.workdir))
  try:
    for line in benchmark(args.data, run_dir):
      print(line, flush=True)
  except DatasetError as e:
    raise SystemExit(f"error: {e}") from None
  finally:
    if not args.keep:
      shutil.rmtree(run_dir, ignore_errors=True)
  if args.keep:
    print(f"prepared datasets kept in {run_dir}")


if __name__ == "__main__":
  main()
