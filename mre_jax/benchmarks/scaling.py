"""Data-parallel scaling: training-step time over 1, 2, 4 emulated CPU devices.

    python -m mre_jax.benchmarks.scaling [--devices=1,2,4] [--model=student_c]
        [--global_batch=64] [--image_size=64] [--steps=5] [--repeats=5]
        [--config.field=value ...]

Each device count runs in a fresh process of this command (the device count
is fixed when JAX starts) with ``--xla_force_host_platform_device_count``. It
times the training fixture (:mod:`~mre_jax.benchmarks.fixtures`: the
project's train call, with the optimizer of ``--config``) at the same global
batch on random FER2013-sized images, ``--steps`` steps per call.

Emulated devices share the host's cores (each runs its part of the step in a
thread of its own), so CPU numbers show how the step splits over devices and
what its collectives cost, not what real accelerators would gain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Sequence

from absl import flags
from ml_collections import config_dict

from mre_jax import models
from mre_jax.benchmarks import cli
from mre_jax.benchmarks import fixtures
from mre_jax.benchmarks import timing
from mre_jax.data import input_pipeline
from mre_jax.datasets import fer2013
from mre_jax.errors import ConfigError
from mre_jax.errors import UserError

FLAGS = flags.FLAGS
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def measure(num_devices: int, config: config_dict.ConfigDict,
            global_batch: int, steps: int,
            budget: timing.Budget) -> dict[str, Any]:
  """Seconds per training step of ``config.model`` on ``num_devices``."""
  mesh = input_pipeline.make_mesh(num_devices)
  model = fixtures.build_model(config)
  fixture = fixtures.TrainFixture(model, config, mesh, global_batch, steps,
                                  image_shape=fer2013.IMAGE_SHAPE)
  compile_s = fixture.compile()
  measured = timing.time_calls(fixture, budget)
  return {"devices": num_devices,
          "seconds_per_step": measured.median_s / steps,
          "compile_s": compile_s, "repeats": measured.repeats,
          "params": models.count_params(fixture.state.params),
          "width": model.width}


def validate(devices: Sequence[int], global_batch: int, model: str) -> None:
  """Raises ConfigError unless every device count splits the batch."""
  uneven = [d for d in devices if d < 1 or global_batch % d]
  if not devices or uneven:
    raise ConfigError(f"--global_batch={global_batch} does not split evenly "
                      f"over {uneven or 'no'} devices; give device counts "
                      "that divide it.")
  if model not in models.MODEL_SPECS:
    raise ConfigError(f"--model={model!r} is unknown; expected one of "
                      f"{', '.join(models.MODEL_SPECS)}.")


def worker_env(num_devices: int) -> dict[str, str]:
  """The environment of a worker: CPU only, ``num_devices`` devices."""
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith(_DEVICE_COUNT_FLAG)]
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=" ".join(kept + [f"{_DEVICE_COUNT_FLAG}={num_devices}"]))


def run_worker(num_devices: int, argv: Sequence[str],
               timeout: float) -> dict[str, Any]:
  """Times ``num_devices`` in a fresh process of this command with ``argv``."""
  command = [sys.executable, "-m", "mre_jax.benchmarks.scaling", *argv,
             f"--worker_devices={num_devices}"]
  try:
    result = subprocess.run(command, env=worker_env(num_devices),
                            capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    raise UserError(f"{num_devices} device(s): no result within "
                    f"--timeout={timeout:g}s.") from None
  lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
  if result.returncode or not lines:
    raise UserError(f"{num_devices} device(s) failed (exit "
                    f"{result.returncode}):\n{result.stderr[-3000:]}")
  return json.loads(lines[-1])


def format_row(result: dict[str, Any], global_batch: int,
               first_ms: float) -> str:
  """One printed line of a worker's result; speed-up over ``first_ms``."""
  n = result["devices"]
  ms = 1e3 * result["seconds_per_step"]
  return (f"{n:>7} {global_batch // n:>10} {ms:>9.1f} "
          f"{global_batch / result['seconds_per_step']:>8.0f} "
          f"{first_ms / ms:>7.2f}x {result['compile_s']:>8.1f}s "
          f"{result['repeats']:>6}")


def define_flags() -> None:
  cli.define_int_list("devices", (1, 2, 4),
                      "Emulated CPU device counts to compare.")
  flags.DEFINE_string("model", "student_c", "Model preset.")
  flags.DEFINE_integer("global_batch", 64,
                       "Global batch, the same for every device count.")
  flags.DEFINE_integer("steps", 5, "Training steps per jitted call.",
                       lower_bound=1)
  flags.DEFINE_float("timeout", 900, "Seconds allowed per device count.")
  flags.DEFINE_integer(
      "worker_devices", None, "Internal: time this device count in this "
      "process and print the result as JSON.")
  cli.define_budget_flags(repeats=5, warmup_seconds=0.0)
  cli.define_config_flags(("image_size", "width", "dtype"))


def main() -> None:
  config = cli.train_config()
  config.model = FLAGS.model
  batch, devices = FLAGS.global_batch, FLAGS.devices
  if FLAGS.worker_devices:
    print(json.dumps(measure(FLAGS.worker_devices, config, batch,
                             FLAGS.steps, cli.budget())), flush=True)
    return
  validate(devices, batch, FLAGS.model)
  print(f"{FLAGS.model}, global batch {batch}, {config.image_size}x"
        f"{config.image_size} inputs, {FLAGS.steps} steps per call, median "
        f"of up to {FLAGS.repeats} calls; emulated CPU devices sharing "
        f"{os.cpu_count()} cores", flush=True)
  print(f"{'devices':>7} {'per device':>10} {'ms/step':>9} {'img/s':>8} "
        f"{'speed-up':>8} {'compile':>9} {'timed':>6}", flush=True)
  first_ms, result = None, {}
  for n in devices:
    result = run_worker(n, sys.argv[1:], FLAGS.timeout)
    first_ms = first_ms or 1e3 * result["seconds_per_step"]
    print(format_row(result, batch, first_ms), flush=True)
  print(f"(width {result['width']}, {result['params']:,} parameters; "
        f"speed-up relative to {devices[0]} device(s))")


if __name__ == "__main__":
  cli.run(main, define_flags)
