"""Tests of mre_jax.benchmark: a tiny end-to-end run and its FLOP counts."""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import pytest

from mre_jax import benchmark
from mre_jax import models
from mre_jax.errors import ConfigError

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and value > 0


@pytest.fixture(scope="module")
def record():
  opts = benchmark.Options(
      models=("student_c",), batch_sizes=(4,), image_size=32, width=2,
      repeats=2, warmup_seconds=0.0, steps_per_call=2, inference_batch=4,
      peak_matmul_size=128,
      torch_modes=("eager",) if HAS_TORCH else ())
  return benchmark.run(opts, log=lambda _: None)


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
    target, = record["targets"]  # Batch 16 was not measured.
    assert target["measured"] is None and target["passed"] is None
  json.dumps(record)  # The --json_out record is plain JSON.


def test_report_prints_every_row(record):
  report = benchmark.format_report(record)
  for text in ("student_c (width 2)", "train img/s, batch 4",
               "inference ms/img, batch 1", "peak device memory MiB",
               "bf16 matmul peak", "Targets"):
    assert text in report
  if jax.default_backend() == "cpu":
    assert "n/a" in report


def test_size_matches_parameter_count(record):
  model = record["models"]["student_c"]
  variables = models.abstract_variables(
      models.get_model("student_c", width=2), 32)
  num_params = models.count_params(variables["params"])
  assert model["params"] == num_params
  assert model["size_mb"]["float32"] == num_params * 4 / 2**20
  assert model["size_mb"]["bfloat16"] == num_params * 2 / 2**20


@pytest.mark.parametrize("name", ["teacher", "student_c"])
def test_preset_sizes_match_paper_table(name):
  spec = models.MODEL_SPECS[name]
  assert benchmark.model_size_mb(spec.num_params)["float32"] == pytest.approx(
      spec.num_params * 4 / 2**20)
  if name == "teacher":  # Table V: 306.09 MB.
    assert benchmark.model_size_mb(spec.num_params)["float32"] == (
        pytest.approx(306.09, abs=0.01))


def test_conv_flops_exact():
  x = jnp.ones((4, 16, 16, 8))
  w = jnp.ones((3, 3, 8, 32))

  def conv(x, w, stride):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  # Stride 1, "SAME": per axis 16 x 3 taps, of which 2 fall on padding.
  assert benchmark.function_flops(lambda x, w: conv(x, w, 1), x, w) == (
      2 * 4 * 32 * 8 * 46**2)
  # Stride 2: 8 outputs x 3 taps per axis, the last on the padding.
  forward = 2 * 4 * 32 * 8 * 23**2
  assert benchmark.function_flops(lambda x, w: conv(x, w, 2), x, w) == forward
  # Gradients for input and kernel repeat the forward pass's products, also
  # for the strided convolution whose input gradient dilates its argument.
  grads = jax.grad(lambda x, w: conv(x, w, 2).sum(), argnums=(0, 1))
  assert benchmark.function_flops(grads, x, w) == 3 * forward
  dense = benchmark.function_flops(lambda a, b: a @ b, jnp.ones((5, 7)),
                                   jnp.ones((7, 3)))
  assert dense == 2 * 5 * 7 * 3


def test_scan_flops_scale_with_length():
  def body(c, _):
    return c @ c, None

  def loop(x, n):
    return jax.lax.scan(body, x, None, length=n)[0]

  x = jnp.ones((8, 8))
  one = benchmark.function_flops(lambda x: loop(x, 1), x)
  assert benchmark.function_flops(lambda x: loop(x, 5), x) == 5 * one


def test_model_flops_plausible():
  def flops(width: int) -> float:
    return benchmark.forward_flops_per_image(
        models.get_model("student_b", width=width), 64)

  # Convolutions and products grow with width squared, except the first
  # convolution (3 input channels), hence a little under 4x.
  ratio = flops(16) / flops(8)
  assert 3.5 < ratio < 4.0
  # The published teacher: about 0.48 GFLOP per 64x64 image (0.67 if the
  # taps on padding counted).
  teacher = benchmark.forward_flops_per_image(models.get_model("teacher"), 64)
  assert 0.45e9 < teacher < 0.52e9


def test_model_flops_near_xla_estimate():
  model = models.get_model("student_c")
  counted = benchmark.forward_flops_per_image(model, 32, batch=2)
  variables = models.abstract_variables(model, 32)
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8)
  compiled = jax.jit(benchmark.make_infer_fn(model, 32)).lower(
      variables, images).compile()
  xla = benchmark.xla_flops(compiled)
  if xla is None:
    pytest.skip("this backend gives no FLOP estimate")
  # XLA's estimate adds the element-wise work.
  assert 0.8 < counted / (xla / 2) <= 1.0


def test_time_calls_stops_at_budget():
  calls = []
  timing = benchmark.time_calls(calls.append, lambda _: None, warmup=2,
                                warmup_seconds=0.0, repeats=1000,
                                max_seconds=0.0)
  assert timing["repeats"] == 1
  assert calls == [0, 1, 2]  # Two warm-up calls, then one timed call.


def test_validate_rejects_bad_options():
  with pytest.raises(ConfigError, match="unknown model"):
    benchmark.validate(benchmark.Options(models=("student_z",)))
  with pytest.raises(ConfigError, match="too small for teacher"):
    benchmark.validate(benchmark.Options(models=("teacher",), width=2))
  with pytest.raises(ConfigError, match="--torch"):
    benchmark.validate(benchmark.Options(torch_modes=("jit",)))
