"""Each benchmark command ends a user's mistake with one ``error:`` line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("command, message", [
    ("speed --config.bogus=1", "bad --config override: no field 'bogus'"),
    ("scaling --devices=1,3 --global_batch=8",
     "--global_batch=8 does not split evenly over [3] devices"),
    ("input_pipeline --batch_sizes=16,x", "give integers"),
    ("datasets --data=/nowhere", "--workdir must have a value"),
    ("analysis --data=/nowhere", "no rafdb/ folder in /nowhere"),
    ("analysis --datasets=raf_db,affectnet", "unknown 'affectnet'"),
], ids=["speed", "scaling", "input_pipeline", "datasets", "analysis_data",
        "analysis_datasets"])
def test_bad_flag_gives_one_error_line(command, message):
  name, *args = command.split()
  result = subprocess.run(
      [sys.executable, "-m", f"mre_jax.benchmarks.{name}", *args],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2, result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr
  assert "Traceback" not in result.stderr
