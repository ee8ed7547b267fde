"""The dataset benchmark without archives: synthetic faces only."""

from __future__ import annotations

from mre_jax.benchmarks import datasets as datasets_benchmark
from mre_jax.benchmarks import timing


def test_missing_archives_are_skipped_and_synthetic_faces_timed(tmp_path):
  lines = list(datasets_benchmark.benchmark(
      tmp_path / "no_archives", tmp_path / "work",
      timing.Budget(repeats=1, warmup=0), synthetic_config="tiny"))
  assert len(lines) == 5
  assert lines[0].startswith("fer2013") and "skipped" in lines[0]
  assert lines[1].startswith("raf_db") and "skipped" in lines[1]
  assert "prepare from config 'tiny'" in lines[2]
  assert "train 512" in lines[2] and "validation 128" in lines[2]
  assert "load train into memory" in lines[3]
  assert "512 x (48, 48, 1)" in lines[3]
  assert "load_splits" in lines[4] and "test 128" in lines[4]
  assert (tmp_path / "work" / "synthetic_faces").is_dir()
