"""Data-parallel scaling: training-step time over 1, 2, 4 emulated CPU devices.

    python -m mre_jax.scaling_benchmark [--devices=1,2,4] [--model=student_c]
        [--global_batch=64] [--image_size=64] [--steps=5] [--repeats=5]

Each device count runs in a fresh process (the device count is fixed when JAX
starts) with ``--xla_force_host_platform_device_count``. It times the real
training program (:func:`mre_jax.train.make_train_chunk`: on-device batch
gather, preprocessing, forward, backward, SGD, cross-device BatchNorm and
gradient sums) at the same global batch, on random FER2013-sized data:
``--steps`` steps per jitted call, compilation and a warm-up call excluded,
timed up to ``block_until_ready``, median of ``--repeats`` calls.

Emulated devices share the host's cores (each runs its part of the step in a
thread of its own), so CPU numbers show how the step splits over devices and
what its collectives cost, not what real accelerators would gain.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

from absl import app
from absl import flags
import jax
import numpy as np

from mre_jax import datasets
from mre_jax import distributed
from mre_jax import input_pipeline
from mre_jax import models
from mre_jax.training import train
from mre_jax.errors import ConfigError, UserError

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4"],
                             "Emulated CPU device counts to compare.")
_MODEL = flags.DEFINE_string("model", "student_c", "Model preset.")
_WIDTH = flags.DEFINE_integer("width", 0, "Model width; 0: the preset's.")
_GLOBAL_BATCH = flags.DEFINE_integer(
    "global_batch", 64, "Global batch, the same for every device count.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Model input size.")
_STEPS = flags.DEFINE_integer("steps", 5, "Training steps per jitted call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per device count.")
_TIMEOUT = flags.DEFINE_integer("timeout", 900,
                                "Seconds allowed per device count.")
_WORKER = flags.DEFINE_integer(
    "worker_devices", None, "Internal: time this device count in this process "
    "and print the result as JSON.")

# FER2013's training images: 48x48 grayscale.
_IMAGE_SHAPE = (48, 48, 1)
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def _recipe():
  """The paper's recipe from configs/default.py (beside the package)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if root not in sys.path:
    sys.path.append(root)
  try:
    from configs import default  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f"configs/default.py not found beside {root}: run the "
                    "benchmark from a source checkout.") from e
  return default.get_config()


def time_training_steps(num_devices: int) -> dict[str, Any]:
  """Median seconds per training step on ``num_devices`` devices."""
  config = _recipe()
  config.model, config.model_width = _MODEL.value, _WIDTH.value
  config.image_size = _IMAGE_SIZE.value
  batch, steps = _GLOBAL_BATCH.value, _STEPS.value
  mesh = input_pipeline.make_mesh(num_devices)
  model = train.build_model(config, len(datasets.CLASS_NAMES))
  tx = train.make_optimizer(config, config.learning_rate)
  plateau = train.make_plateau(config)
  state = train.init_state(model, config, tx, plateau, mesh)
  rng = np.random.default_rng(0)
  num_examples = batch * steps
  data = input_pipeline.put_on_mesh({
      "image": rng.integers(0, 256, (num_examples, *_IMAGE_SHAPE), np.uint8),
      "label": rng.integers(0, 7, num_examples).astype(np.int32)}, mesh)
  replicated = distributed.replicated(mesh)
  perm = jax.device_put(np.arange(num_examples, dtype=np.int32), replicated)
  weights = jax.device_put(np.ones(len(datasets.CLASS_NAMES), np.float32),
                           replicated)
  chunk = train.make_train_chunk(model, tx, config, mesh, batch,
                                 ce_weight=1.0, kd_weight=0.0)

  def run(state):
    state, sums = chunk(state, data, perm, weights, 0, num_steps=steps)
    return jax.block_until_ready((state, sums))[0]

  start = time.perf_counter()
  state = run(state)  # Compilation and warm-up.
  warmup = time.perf_counter() - start
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    state = run(state)
    times.append(time.perf_counter() - start)
  return {"devices": num_devices, "seconds_per_step":
          statistics.median(times) / steps,
          "warmup_seconds": warmup,
          "params": models.count_params(state.params),
          "width": model.width}


def _worker_env(num_devices: int) -> dict[str, str]:
  """The environment of a worker: CPU only, ``num_devices`` devices."""
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith(_DEVICE_COUNT_FLAG)]
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=" ".join(kept + [f"{_DEVICE_COUNT_FLAG}={num_devices}"]))


def run_worker(num_devices: int) -> dict[str, Any]:
  """Times ``num_devices`` in a fresh process with this run's flags."""
  command = [sys.executable, "-m", "mre_jax.scaling_benchmark",
             *sys.argv[1:], f"--worker_devices={num_devices}"]
  try:
    result = subprocess.run(command, env=_worker_env(num_devices),
                            capture_output=True, text=True,
                            timeout=_TIMEOUT.value)
  except subprocess.TimeoutExpired:
    raise UserError(f"{num_devices} device(s): no result within "
                    f"--timeout={_TIMEOUT.value}s.") from None
  lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
  if result.returncode or not lines:
    raise UserError(f"{num_devices} device(s) failed (exit "
                    f"{result.returncode}):\n{result.stderr[-3000:]}")
  return json.loads(lines[-1])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKER.value:
    print(json.dumps(time_training_steps(_WORKER.value)), flush=True)
    return
  devices = [int(d) for d in _DEVICES.value]
  batch = _GLOBAL_BATCH.value
  uneven = [d for d in devices if d < 1 or batch % d]
  if uneven:
    raise ConfigError(f"--global_batch={batch} does not split evenly over "
                      f"{uneven} devices; use a multiple of each count.")
  if _MODEL.value not in models.MODEL_SPECS:
    raise ConfigError(f"--model={_MODEL.value!r} is unknown; expected one of "
                      f"{', '.join(models.MODEL_SPECS)}.")
  print(f"{_MODEL.value}, global batch {batch}, {_IMAGE_SIZE.value}x"
        f"{_IMAGE_SIZE.value} inputs, {_STEPS.value} steps per call, median "
        f"of {_REPEATS.value} calls; emulated CPU devices sharing "
        f"{os.cpu_count()} cores", flush=True)
  print(f"{'devices':>7} {'per device':>10} {'ms/step':>9} {'img/s':>8} "
        f"{'speed-up':>8} {'compile+warm-up':>16}", flush=True)
  first_ms, result = None, {}
  for n in devices:
    result = run_worker(n)
    ms = 1e3 * result["seconds_per_step"]
    first_ms = first_ms or ms
    print(f"{n:>7} {batch // n:>10} {ms:>9.1f} "
          f"{batch / result['seconds_per_step']:>8.0f} {first_ms / ms:>7.2f}x "
          f"{result['warmup_seconds']:>15.1f}s", flush=True)
  print(f"(width {result['width']}, {result['params']:,} parameters; "
        f"speed-up relative to {devices[0]} device(s))")


def entry_point() -> None:
  try:
    app.run(main)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  entry_point()
