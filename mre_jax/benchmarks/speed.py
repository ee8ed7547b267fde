"""Speed of the ResEmoteNet family in JAX, beside the PyTorch reference.

    python -m mre_jax.benchmarks.speed \\
        [--models=teacher,student_a,student_b,student_c] \\
        [--batch_sizes=16,256] [--image_size=64] [--dtype=float32|bfloat16] \\
        [--torch=eager,compile|none] [--repeats=20] [--json_out=PATH] \\
        [--config.field=value ...]

Per model, on one device (the first JAX device; CUDA for PyTorch when there is
a GPU), it reports parameters and size; training throughput at each
``--batch_sizes`` through the project's jitted train call
(:mod:`~mre_jax.benchmarks.fixtures`, with the optimizer of ``--config``);
inference latency at batch 1 and throughput at ``--inference_batch`` through
the Predictor's forward pass (:mod:`~mre_jax.benchmarks.jax_speed`); peak and
per-program device memory; exact FLOPs per image and the achieved share of
the device's measured bf16 matmul peak; the same for the PyTorch reference
(:mod:`~mre_jax.benchmarks.torch_speed`); and the targets
(:mod:`~mre_jax.benchmarks.targets`) with pass/fail.

Every time comes from :func:`mre_jax.benchmarks.timing.time_calls`: warm-up
untimed, median of ``--repeats`` calls, or more until the timed calls add up
to ``--min_seconds_per_measurement`` (a median over hundreds of short calls,
such as inference at batch 1), at most ``--max_seconds_per_measurement``
each, so CPU runs of the large models stay bounded.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

from absl import flags
from absl import logging
import jax
from ml_collections import config_dict

from mre_jax import models
from mre_jax.benchmarks import cli
from mre_jax.benchmarks import device
from mre_jax.benchmarks import fixtures
from mre_jax.benchmarks import jax_speed
from mre_jax.benchmarks import report
from mre_jax.benchmarks import results
from mre_jax.benchmarks import targets
from mre_jax.benchmarks import timing
from mre_jax.benchmarks import torch_speed
from mre_jax.data import input_pipeline
from mre_jax.errors import ConfigError
from mre_jax.errors import UserError
from mre_jax.training import train

FLAGS = flags.FLAGS
# Seconds kept after torch.compile for the report and the JSON record.
DEADLINE_MARGIN_S = 10.0


@dataclasses.dataclass(frozen=True)
class Options:
  """What to measure and how long to spend; see the flags for each field.

  ``config`` is the training recipe; its ``image_size``, ``dtype``,
  ``model_width``, ``seed`` and ``steps_per_dispatch`` apply too.
  """
  config: config_dict.ConfigDict
  models: tuple[str, ...] = tuple(models.MODEL_SPECS)
  batch_sizes: tuple[int, ...] = (16, 256)
  torch_modes: tuple[str, ...] = torch_speed.MODES
  budget: timing.Budget = timing.Budget(repeats=20, warmup_seconds=1.0,
                                        min_seconds=1.0)
  inference_batch: int = 256
  peak_matmul_size: int = 0  # 0: 8192 on accelerators, 2048 on CPU.
  torch_compile_timeout: float = 600.0
  deadline: float = 0.0  # Unix time; 0: none.

  def compile_timeout(self, now: float) -> float:
    """torch.compile's seconds: its timeout, cut to what the deadline leaves
    after the report's margin."""
    if not self.deadline:
      return self.torch_compile_timeout
    return min(self.torch_compile_timeout,
               self.deadline - now - DEADLINE_MARGIN_S)

  @property
  def steps(self) -> int:
    """Train steps per timed call: as in training unless configured."""
    return train.steps_per_dispatch(self.config.steps_per_dispatch)

  @property
  def inference_batches(self) -> tuple[int, ...]:
    """Batch 1 (latency) and the throughput batch."""
    return tuple(dict.fromkeys((1, self.inference_batch)))

  def model_config(self, name: str) -> config_dict.ConfigDict:
    """The config with model preset ``name``."""
    config = self.config.copy_and_resolve_references()
    config.model = name
    return config


def validate(opts: Options) -> None:
  """Raises ConfigError for options that cannot be measured."""
  for name in opts.models:
    model = fixtures.build_model(opts.model_config(name))
    if 4 * model.width < model.se_reduction:
      raise ConfigError(
          f"--width={model.width} is too small for {name}: its squeeze-excite"
          f" block needs 4 x width >= {model.se_reduction}.")
  if not opts.batch_sizes or min(opts.batch_sizes) < 1:
    raise ConfigError(f"--batch_sizes={opts.batch_sizes}: give positive "
                      "integers, e.g. 16,256.")
  if opts.config.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"--dtype={opts.config.dtype}: expected float32 or "
                      "bfloat16.")
  unknown = set(opts.torch_modes) - set(torch_speed.MODES)
  if unknown:
    raise ConfigError(f"--torch: unknown mode(s) {sorted(unknown)}; expected "
                      "eager, compile or none.")
  if min(opts.inference_batch, opts.config.image_size) < 1:
    raise ConfigError("--inference_batch and --image_size must be positive.")


def _model_record(name: str, model: models.ResEmoteNet,
                  image_size: int) -> dict[str, Any]:
  params = models.abstract_variables(model, image_size)["params"]
  num_params = models.count_params(params)
  return {"name": name, "width": model.width,
          "se_reduction": model.se_reduction, "params": num_params,
          "size_mb": results.model_size_mb(num_params),
          "forward_flops_per_image": jax_speed.forward_flops_per_image(
              model, image_size)}


def _add_flops(record: dict[str, Any], frameworks: dict[str, Any],
               peak: float | None) -> None:
  """Files each framework's results in ``record``, with their FLOP/s."""
  jax_result = frameworks["jax"]
  record["train_flops_per_image"] = next(
      iter(jax_result["train"].values()))["flops_per_image"]
  record["xla_forward_flops_per_image"] = next(
      iter(jax_result["inference"].values()))["xla_flops_per_image"]
  per_image = {"train": record["train_flops_per_image"],
               "inference": record["forward_flops_per_image"]}
  for key, result in frameworks.items():
    for kind, flops_per_image in per_image.items():
      for batch, r in result.get(kind, {}).items():
        result[kind][batch] = results.with_flops(r, flops_per_image, peak)
    record[key] = result


def benchmark_model(name: str, opts: Options, mesh: jax.sharding.Mesh,
                    peak: float | None, torch_modes: Sequence[str],
                    log: Callable[[str], None]) -> dict[str, Any]:
  """Every measurement of one model, JAX and PyTorch."""
  config = opts.model_config(name)
  model = fixtures.build_model(config)
  record = _model_record(name, model, config.image_size)

  def model_log(message: str) -> None:
    log(f"{name}: {message}")

  frameworks = {"jax": jax_speed.measure(
      model, config, mesh, opts.batch_sizes, opts.steps,
      opts.inference_batches, opts.budget, model_log)}
  for mode in torch_modes:
    model_log(f"PyTorch {mode}")
    spec = torch_speed.make_spec(name, mode, config, opts.batch_sizes,
                                 opts.inference_batches, opts.steps,
                                 opts.budget)
    timeout = opts.compile_timeout(time.time())
    if mode == "compile" and timeout < 1:
      result = torch_speed.collect(spec, lambda *_: None)
      result["note"] = "not measured: --deadline left no time"
    else:  # Only torch.compile's child process has a timeout.
      result = torch_speed.measure_mode(spec, timeout)
    frameworks[f"torch_{mode}"] = result
  _add_flops(record, frameworks, peak)
  return record


def _available_torch_modes(opts: Options, notes: list[str]) -> list[str]:
  """The requested PyTorch modes, or none if PyTorch cannot be imported."""
  if not opts.torch_modes:
    return []
  try:
    # pylint: disable-next=g-import-not-at-top,unused-import
    from mre_jax.models import torch_reference
  except (ImportError, UserError) as e:
    notes.append(f"PyTorch skipped: {e}")
    return []
  return list(opts.torch_modes)


def run(opts: Options, log: Callable[[str], None] = logging.info
        ) -> dict[str, Any]:
  """Runs the benchmark; returns the record that :mod:`report` prints."""
  validate(opts)
  mesh = input_pipeline.make_mesh(1)
  notes = []
  torch_modes = _available_torch_modes(opts, notes)
  log("measuring the bf16 matmul peak")
  budget = opts.budget
  peak = device.measure_matmul_peak(
      dataclasses.replace(budget, repeats=max(budget.repeats, 3)),
      opts.peak_matmul_size, opts.config.seed)
  record = {
      **device.describe(), "torch_version": torch_speed.version(),
      "dtype": opts.config.dtype, "image_size": opts.config.image_size,
      "batch_sizes": list(opts.batch_sizes),
      "recipe_batch_size": opts.config.batch_size,
      "inference_batch": opts.inference_batch, "steps_per_call": opts.steps,
      "repeats": budget.repeats,
      "max_seconds_per_measurement": budget.max_seconds,
      "min_seconds_per_measurement": budget.min_seconds,
      "width_override": opts.config.model_width or None,
      "torch_modes": torch_modes, "peak_matmul": peak, "models": {},
      "notes": notes}
  for name in opts.models:
    record["models"][name] = benchmark_model(
        name, opts, mesh, peak["flops_per_second"], torch_modes, log)
  record["targets"] = targets.evaluate(record)
  return record


def define_flags() -> None:
  flags.DEFINE_list("models", list(models.MODEL_SPECS),
                    "Model presets to measure.")
  cli.define_int_list("batch_sizes", (16, 256), "Training batch sizes.")
  flags.DEFINE_list("torch", list(torch_speed.MODES),
                    "PyTorch reference modes: eager, compile, or none.")
  flags.DEFINE_integer("inference_batch", 256,
                       "Batch of the inference throughput.")
  flags.DEFINE_integer(
      "peak_matmul_size", 0, "Side of the bf16 matrices of the peak "
      "measurement; 0: 8192 on accelerators, 2048 on CPU.")
  flags.DEFINE_float("torch_compile_timeout", 600.0, "Seconds allowed per "
                     "model for all torch.compile measurements.")
  flags.DEFINE_float("deadline", 0.0, "Unix time by which the command should "
                     "end: torch.compile gets at most the time left, less "
                     f"{DEADLINE_MARGIN_S:g} s. 0: no deadline.")
  flags.DEFINE_string("json_out", None,
                      "Also write the full record as JSON here.")
  cli.define_budget_flags(repeats=20, min_seconds=1.0)
  cli.define_config_flags(("image_size", "width", "dtype", "steps_per_call"))


def options_from_flags() -> Options:
  """The options the command's flags give."""
  modes = tuple(m for m in (s.strip() for s in FLAGS.torch)
                if m and m != "none")
  return Options(
      config=cli.train_config(), models=tuple(FLAGS.models),
      batch_sizes=tuple(FLAGS.batch_sizes), torch_modes=modes,
      budget=cli.budget(), inference_batch=FLAGS.inference_batch,
      peak_matmul_size=FLAGS.peak_matmul_size,
      torch_compile_timeout=FLAGS.torch_compile_timeout,
      deadline=FLAGS.deadline)


def main() -> None:
  record = run(options_from_flags())
  print(report.format_report(record), flush=True)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump(record, f, indent=2)


if __name__ == "__main__":
  cli.run(main, define_flags)
