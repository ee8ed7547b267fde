"""The speed benchmark: a tiny end-to-end run, its record and its report."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import pytest

from mre_jax import models
from mre_jax.benchmarks import report
from mre_jax.benchmarks import results
from mre_jax.benchmarks import speed
from mre_jax.benchmarks import timing
from mre_jax.benchmarks import torch_speed
from mre_jax.config import recipe
from mre_jax.data import input_pipeline
from mre_jax.errors import ConfigError

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and value > 0


def tiny_config(width=2, image_size=32, steps=2):
  config = recipe.get_config()
  config.model_width, config.image_size = width, image_size
  config.steps_per_dispatch = steps
  return config


@pytest.fixture(scope="module")
def record():
  opts = speed.Options(
      config=tiny_config(), models=("student_c",), batch_sizes=(4,),
      budget=timing.Budget(repeats=2), inference_batch=4,
      peak_matmul_size=128,
      torch_modes=("eager",) if HAS_TORCH else ())
  return speed.run(opts, log=lambda _: None)


def test_smoke_run_record(record):
  assert _positive(record["peak_matmul"]["flops_per_second"])
  model = record["models"]["student_c"]
  assert model["width"] == 2
  assert _positive(model["forward_flops_per_image"])
  assert _positive(model["train_flops_per_image"])
  frameworks = ["jax"] + (["torch_eager"] if HAS_TORCH else [])
  for name in frameworks:
    result = model[name]
    assert "note" not in result, result.get("note")
    train = result["train"]["4"]
    for key in ("images_per_second", "ms_per_step", "median_s",
                "flops_per_second", "peak_fraction"):
      assert _positive(train[key]), (name, key, train)
    assert train["repeats"] == 2 and train["steps_per_call"] == 2
    assert set(result["inference"]) == {"1", "4"}
    for inference in result["inference"].values():
      assert _positive(inference["ms_per_image"])
      assert _positive(inference["images_per_second"])
    assert "peak_memory_mb" in result
  assert _positive(model["jax"]["train"]["4"]["compiled_memory_mb"])
  # CPU devices report no memory statistics.
  if jax.default_backend() == "cpu":
    assert model["jax"]["peak_memory_mb"] is None
  if HAS_TORCH:
    # The recipe's batch (16) was not measured; presets' targets do not
    # apply under a width override.
    target, = record["targets"]
    assert "batch 16" in target["target"]
    assert target["measured"] is None and target["passed"] is None
  json.dumps(record)  # The --json_out record is plain JSON.


def test_report_prints_every_row(record):
  text = report.format_report(record)
  for row in ("student_c (width 2)", "train img/s, batch 4",
              "train ms/step, batch 4", "train % of bf16 peak, batch 4",
              "inference ms/img, batch 1", "inference img/s, batch 4",
              "peak device memory MiB", "compiled train-step memory MiB, b4",
              "timed calls (train, batch 4)", "bf16 matmul peak", "Targets"):
    assert row in text
  if HAS_TORCH:
    assert "torch eager" in text and "JAX/eager" in text
  if jax.default_backend() == "cpu":
    assert "n/a" in text
  # The timing rule as the record ran it: this budget has no minimum time.
  assert "2 train steps per timed call; median of 2 timed calls after " \
      "warm-up, at most 30 s per measurement" in text
  timed = dict(record, min_seconds_per_measurement=1.5)
  assert "calls after warm-up, or more until they add up to 1.5 s, at most" \
      in report.format_report(timed)


def test_report_flags_noisy_and_stolen_measurements(record):
  noisy = json.loads(json.dumps(record))
  train = noisy["models"]["student_c"]["jax"]["train"]["4"]
  train.update(min_s=0.1, max_s=0.5, stolen_fraction=0.125)
  text = report.format_report(noisy)
  assert "JAX: noisy (slowest/fastest timed call > 2): train b4 (5.0x)" \
      in text
  assert "JAX: CPU time taken by the hypervisor > 2%: train b4 (12.5%)" \
      in text
  for result in noisy["models"]["student_c"].values():
    if isinstance(result, dict):
      for r in (*result.get("train", {}).values(),
                *result.get("inference", {}).values()):
        # As in records saved before steal time was recorded.
        r.pop("stolen_fraction", None)
  assert "hypervisor" not in report.format_report(noisy)


def test_size_matches_parameter_count(record):
  model = record["models"]["student_c"]
  variables = models.abstract_variables(
      models.get_model("student_c", width=2), 32)
  num_params = models.count_params(variables["params"])
  assert model["params"] == num_params
  assert model["size_mb"]["float32"] == num_params * 4 / 2**20
  assert model["size_mb"]["bfloat16"] == num_params * 2 / 2**20


def test_teacher_size_matches_paper_table():
  spec = models.MODEL_SPECS["teacher"]
  # Table V: 306.09 MB.
  assert results.model_size_mb(spec.num_params)["float32"] == (
      pytest.approx(306.09, abs=0.01))


def test_torch_child_keeps_what_it_measured_before_failing():
  """The torch.compile child process, here running eager to stay quick."""
  if not HAS_TORCH:
    pytest.skip("PyTorch is not installed")
  config = tiny_config()
  config.model = "student_c"
  # Training at batch 2 works; inference at batch -1 then fails.
  spec = torch_speed.make_spec("student_c", "eager", config, [2], [-1],
                               steps=1, budget=timing.Budget(repeats=1))
  result = torch_speed.run_compiled(spec, timeout=300)
  assert result["device"].startswith(("cpu", "NVIDIA", "Tesla"))
  assert result["train"]["2"]["repeats"] == 1
  assert result["train"]["2"]["steps_per_call"] == 1
  assert result["note"].startswith("failed (exit 1)"), result["note"]
  assert not result["inference"]


def test_validate_rejects_bad_options():
  config = recipe.get_config()
  with pytest.raises(ConfigError, match="unknown model"):
    speed.validate(speed.Options(config=config, models=("student_z",)))
  with pytest.raises(ConfigError, match="too small for teacher"):
    speed.validate(speed.Options(config=tiny_config(width=2),
                                 models=("teacher",)))
  with pytest.raises(ConfigError, match="--torch"):
    speed.validate(speed.Options(config=config, torch_modes=("jit",)))
  with pytest.raises(ConfigError, match="--batch_sizes"):
    speed.validate(speed.Options(config=config, batch_sizes=(0,)))


def test_torch_compile_gets_only_the_time_the_deadline_leaves():
  config = tiny_config()
  opts = speed.Options(config=config, torch_compile_timeout=600.0,
                       deadline=1000.0)
  assert opts.compile_timeout(now=900.0) == 100.0 - speed.DEADLINE_MARGIN_S
  assert opts.compile_timeout(now=0.0) == 600.0
  assert speed.Options(config=config).compile_timeout(now=1e12) == 600.0
  # A deadline already passed: JAX is measured, torch.compile is not tried.
  opts = speed.Options(
      config=config, models=("student_c",), batch_sizes=(4,),
      budget=timing.Budget(repeats=1), inference_batch=4,
      torch_modes=("compile",), deadline=1.0)
  model = speed.benchmark_model("student_c", opts,
                                input_pipeline.make_mesh(1), None,
                                opts.torch_modes, lambda _: None)
  assert _positive(model["jax"]["train"]["4"]["images_per_second"])
  compiled = model["torch_compile"]
  assert compiled["note"] == "not measured: --deadline left no time"
  assert not compiled["train"] and not compiled["inference"]


def test_report_command_reprints_a_saved_record(record, tmp_path):
  path = tmp_path / "bench.json"
  path.write_text(json.dumps(record))
  command = [sys.executable, "-m", "mre_jax.benchmarks.report"]
  root = pathlib.Path(__file__).resolve().parents[1]
  done = subprocess.run([*command, f"--json={path}"], capture_output=True,
                        text=True, check=True, cwd=root)
  assert done.stdout == report.format_report(record) + "\n"
  (tmp_path / "other.json").write_text(json.dumps({"steps": {}}))
  for name in ("other.json", "missing.json"):
    done = subprocess.run([*command, f"--json={tmp_path / name}"],
                          capture_output=True, text=True, cwd=root)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.startswith("error: ") and len(
        done.stderr.strip().splitlines()) == 1, done.stderr
