"""Speed of the ResEmoteNet family in JAX, beside the PyTorch reference.

    python -m mre_jax.benchmark \\
        [--models=teacher,student_a,student_b,student_c] \\
        [--batch_sizes=16,256] [--image_size=64] [--dtype=float32|bfloat16] \\
        [--torch=eager,compile|none] [--repeats=20] [--json_out=PATH]

Per model, on one device (the first JAX device; CUDA for PyTorch when there is
a GPU), it reports

* parameters and size on disk (float32 and bfloat16 parameters, MiB);
* training throughput at each ``--batch_sizes``, through the project's own
  jitted step (:func:`mre_jax.train.make_train_chunk`: ``--steps_per_call``
  steps per dispatch on random uint8 images held on the device, with the
  in-step gather, flip and normalisation, the loss and the SGD update);
* inference latency per image at batch 1 and throughput at
  ``--inference_batch`` (a jitted forward pass with the normalisation);
* peak device memory (JAX: the process's peak so far from
  ``memory_stats()``, which cannot be reset; "n/a" on CPU, which keeps no
  statistics) and the memory XLA reserves for each compiled train step;
* convolution and matrix-product FLOPs per image, counted exactly from the
  programs' jaxprs (products with padding zeros left out, as XLA counts
  them), and the achieved FLOP/s as a share of the device's bf16
  matrix-multiplication peak, measured here with chained large bf16 products.

Beside it, :mod:`mre_jax.torch_reference` is trained as the official
ResEmoteNet script does: ``model.train()``, ``CrossEntropyLoss``,
``SGD(lr=1e-3, momentum=0.9, weight_decay=1e-4)``, then per batch
``zero_grad``, forward, ``backward``, ``step``, ``loss.item()`` and the
correct-prediction count, on random normalised batches already on the device
(its data loading and image transforms are left out). ``eager`` runs it as
is; ``compile`` wraps the model in ``torch.compile`` in a child process that
is stopped after ``--torch_compile_timeout`` seconds, keeping what it measured.
Its inference runs under ``model.eval()`` and ``torch.inference_mode()``. With
``--dtype=bfloat16`` JAX computes in bfloat16 with float32 parameters and
PyTorch runs under ``torch.autocast`` to bfloat16.

Every time is the median over up to ``--repeats`` calls, after warm-up calls
(compilation included) that are not timed; the device is synchronised before
each clock read, every call gets fresh random inputs, and a measurement stops
early once ``--max_seconds_per_measurement`` is spent, so CPU runs of the large
models stay bounded (each record says how many calls it timed). The targets
the models are meant to meet on a GPU are printed with a pass/fail column.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import jax.extend.core
import jax.numpy as jnp
from ml_collections import config_dict
import numpy as np

from mre_jax import distributed
from mre_jax import input_pipeline
from mre_jax import models
from mre_jax.training import train
from mre_jax.errors import ConfigError
from mre_jax.errors import UserError

# The official ResEmoteNet script's SGD, used on both sides.
LEARNING_RATE = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
NUM_CLASSES = 7
TORCH_MODES = ("eager", "compile")
# Distinct random inputs cycled through by successive timed calls.
_INPUT_POOL = 4
# torch.compile'd code runs slowly for a few seconds after it compiled.
_COMPILE_WARMUP_SECONDS = 5.0
_MIB = 2**20
# Measurements whose slowest timed call took this many times the fastest.
_NOISY_SPREAD = 2.0


@dataclasses.dataclass(frozen=True)
class Options:
  """What to measure and how long to spend; see the flags for each field."""
  models: tuple[str, ...] = tuple(models.MODEL_SPECS)
  batch_sizes: tuple[int, ...] = (16, 256)
  image_size: int = 64
  dtype: str = "float32"
  torch_modes: tuple[str, ...] = TORCH_MODES
  repeats: int = 20
  max_seconds: float = 30.0
  warmup_seconds: float = 1.0
  steps_per_call: int = 0  # 0: as training (train.steps_per_dispatch).
  inference_batch: int = 256
  width: int = 0  # 0: the presets' widths.
  peak_matmul_size: int = 0  # 0: 8192 on accelerators, 2048 on CPU.
  torch_compile_timeout: float = 600.0
  seed: int = 0


def on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def resolved_steps(opts: Options) -> int:
  """Train steps per dispatch: as in training unless set."""
  return train.steps_per_dispatch(opts.steps_per_call)


# ----------------------------------------------------------------- timing ---


def time_calls(call: Callable[[int], Any], sync: Callable[[Any], None], *,
               warmup: int, warmup_seconds: float, repeats: int,
               max_seconds: float) -> dict[str, float]:
  """Median wall time of ``call(i)``, each call with its own index ``i``.

  Warm-up calls are not timed: ``warmup`` (at least one) of them
  (compilation, autotuning), then more until ``warmup_seconds`` have passed
  since the first one ended (clocks ramping up; ``torch.compile`` runs slowly
  for a few seconds after compiling). The clock is read after ``sync`` has
  waited for the call's device work. Timing stops after ``repeats`` calls, or
  earlier once another call would exceed ``max_seconds`` in all (at least one
  call is timed).
  """
  sync(call(0))
  index, warm_from = 1, time.perf_counter()
  while index < warmup or time.perf_counter() - warm_from < warmup_seconds:
    sync(call(index))
    index += 1
  times = []
  spent = 0.0
  while len(times) < repeats and (
      not times or spent + times[-1] <= max_seconds):
    start = time.perf_counter()
    sync(call(index))
    times.append(time.perf_counter() - start)
    spent += times[-1]
    index += 1
  return {"median_s": statistics.median(times), "min_s": min(times),
          "max_s": max(times), "repeats": len(times)}


def train_result(timing: dict[str, float], batch: int,
                 steps: int) -> dict[str, float]:
  """Throughput of ``steps`` training steps of ``batch`` images per call."""
  seconds = timing["median_s"]
  return {"images_per_second": steps * batch / seconds,
          "ms_per_step": 1e3 * seconds / steps, "steps_per_call": steps,
          **timing}


def inference_result(timing: dict[str, float], batch: int) -> dict[str, float]:
  """Latency and throughput of one forward call on ``batch`` images."""
  seconds = timing["median_s"]
  return {"images_per_second": batch / seconds,
          "ms_per_image": 1e3 * seconds / batch, **timing}


def with_flops(result: dict[str, Any], flops_per_image: float,
               peak_flops: float | None) -> dict[str, Any]:
  """Adds achieved FLOP/s and its share of the measured peak."""
  achieved = result["images_per_second"] * flops_per_image
  return {**result, "flops_per_second": achieved,
          "peak_fraction": achieved / peak_flops if peak_flops else None}


# ------------------------------------------------------------------ FLOPs ---


def _window_taps(in_size: int, out_size: int, kernel: int, stride: int,
                 padding: tuple[int, int], lhs_dilation: int,
                 rhs_dilation: int) -> int:
  """Kernel taps over all outputs of one spatial axis that hit real inputs.

  Taps on padding or on the zeros a dilated input (the input gradient of a
  strided convolution) has between its rows are multiplications by zero.
  """
  extent = (in_size - 1) * lhs_dilation + 1
  return sum(
      1 for o in range(out_size) for k in range(kernel)
      if 0 <= (p := o * stride + k * rhs_dilation - padding[0]) < extent
      and p % lhs_dilation == 0)


def _conv_flops(eqn) -> float:
  """2 x the multiply-adds of a convolution that involve no padding zeros."""
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  out = eqn.outvars[0].aval
  params = eqn.params
  specs = params["dimension_numbers"]
  if params["feature_group_count"] * params["batch_group_count"] != 1:
    raise NotImplementedError("grouped convolutions")
  taps = 1
  for axis, (l, r, o) in enumerate(zip(specs.lhs_spec[2:], specs.rhs_spec[2:],
                                       specs.out_spec[2:])):
    taps *= _window_taps(
        lhs.shape[l], out.shape[o], rhs.shape[r],
        params["window_strides"][axis], params["padding"][axis],
        params["lhs_dilation"][axis], params["rhs_dilation"][axis])
  return (2.0 * out.shape[specs.out_spec[0]] * out.shape[specs.out_spec[1]] *
          rhs.shape[specs.rhs_spec[1]] * taps)


def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  out = eqn.outvars[0].aval
  (contracting, _), _ = eqn.params["dimension_numbers"]
  return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d]
                                                for d in contracting)


def jaxpr_flops(jaxpr) -> float:
  """Convolution and matrix-product FLOPs of a (closed) jaxpr.

  Scan bodies count ``length`` times, the costliest branch of a ``cond``
  once, and while-loop bodies once (their trip count is not static).
  Element-wise work is not counted: these are the FLOPs a matrix unit does.
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "dot_general":
      total += _dot_flops(eqn)
    else:
      inner = [jaxpr_flops(j)
               for j in jax.extend.core.jaxprs_in_params(eqn.params)]
      if name == "cond":
        total += max(inner, default=0.0)
      elif name == "scan":
        total += eqn.params["length"] * sum(inner)
      else:
        total += sum(inner)
  return total


def function_flops(fn: Callable[..., Any], *args) -> float:
  """Convolution and matrix-product FLOPs of one call ``fn(*args)``."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args))


def forward_flops_per_image(model: models.ResEmoteNet, image_size: int,
                            batch: int = 8) -> float:
  """Inference FLOPs per image (convolutions and matrix products)."""
  variables = models.abstract_variables(model, image_size)
  images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.uint8)
  return function_flops(make_infer_fn(model, image_size), variables,
                        images) / batch


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP estimate of a compiled program, where it gives one."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def compiled_memory_mb(compiled) -> float | None:
  """Device memory XLA reserves for a program: arguments, outputs, temps."""
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  used = (stats.argument_size_in_bytes + stats.output_size_in_bytes -
          stats.alias_size_in_bytes + stats.temp_size_in_bytes)
  return used / _MIB


def peak_device_memory_mb() -> float | None:
  """Peak bytes in use on the first JAX device so far; None if unknown."""
  stats = jax.devices()[0].memory_stats()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / _MIB


def model_size_mb(num_params: int) -> dict[str, float]:
  """Parameter bytes on disk, in MiB (as the paper's Table V)."""
  return {"float32": num_params * 4 / _MIB, "bfloat16": num_params * 2 / _MIB}


# ----------------------------------------------------------- matmul peak ---


def measure_matmul_peak(opts: Options) -> dict[str, Any]:
  """The device's achieved bf16 matmul FLOP/s on large square products.

  Each call chains ``iterations`` products ``x <- x @ b`` in one program
  (``b`` scaled to keep ``x`` in range), so dispatch is amortised and no
  product can be skipped.
  """
  size = opts.peak_matmul_size or (2048 if on_cpu() else 8192)
  iterations = 4 if on_cpu() else 20
  keys = jax.random.split(jax.random.PRNGKey(opts.seed), _INPUT_POOL + 1)
  b = (jax.random.normal(keys[0], (size, size), jnp.float32) /
       math.sqrt(size)).astype(jnp.bfloat16)
  xs = [jax.random.normal(k, (size, size), jnp.bfloat16) for k in keys[1:]]

  @jax.jit
  def chain(x, b):
    return jax.lax.fori_loop(0, iterations, lambda _, y: jnp.dot(y, b), x)

  compiled = chain.lower(xs[0], b).compile()
  timing = time_calls(lambda i: compiled(xs[i % len(xs)], b),
                      jax.block_until_ready, warmup=1,
                      warmup_seconds=opts.warmup_seconds,
                      repeats=max(opts.repeats, 3),
                      max_seconds=opts.max_seconds)
  flops = 2.0 * size**3 * iterations
  return {"flops_per_second": flops / timing["median_s"], "size": size,
          "iterations": iterations, **timing}


# -------------------------------------------------------------------- JAX ---


def make_train_config(opts: Options) -> config_dict.ConfigDict:
  """The fields of a training config that the train step reads."""
  config = config_dict.ConfigDict()
  config.seed = opts.seed
  config.image_size = opts.image_size
  config.augment_flip = True
  config.learning_rate = LEARNING_RATE
  config.momentum = MOMENTUM
  config.weight_decay = WEIGHT_DECAY
  config.plateau = config_dict.ConfigDict(
      {"factor": 0.1, "patience": 10, "rtol": 1e-4, "cooldown": 0})
  config.distill = config_dict.ConfigDict({"temperature": 3.0})
  return config


def random_images(rng: np.random.Generator, count: int,
                  image_size: int) -> np.ndarray:
  return rng.integers(0, 256, (count, image_size, image_size, 3), np.uint8)


def make_infer_fn(model: models.ResEmoteNet, image_size: int):
  """``(variables, uint8 images) -> logits``: normalisation and forward."""

  def infer(variables, images):
    x = input_pipeline.preprocess(images, image_size=image_size)
    return model.apply(variables, x, train=False)

  return infer


@dataclasses.dataclass(frozen=True)
class JaxTrainer:
  """A model with its optimizer and freshly initialised train state."""
  model: models.ResEmoteNet
  config: config_dict.ConfigDict
  tx: Any
  state: train.TrainState
  mesh: jax.sharding.Mesh

  @classmethod
  def create(cls, model: models.ResEmoteNet, opts: Options,
             mesh: jax.sharding.Mesh) -> JaxTrainer:
    config = make_train_config(opts)
    tx = train.make_optimizer(config, LEARNING_RATE)
    state = train.init_state(model, config, tx, train.make_plateau(config),
                             mesh)
    return cls(model, config, tx, state, mesh)


def jax_train(trainer: JaxTrainer, opts: Options,
              batch: int) -> dict[str, Any]:
  """Times the project's jitted multi-step train call at one batch size.

  The split holds ``steps x batch`` random uint8 images on the device; each
  timed call walks a different permutation of it. The loss is the teacher's
  (cross-entropy, no distillation term), like the PyTorch script's.
  """
  steps, mesh = resolved_steps(opts), trainer.mesh
  rng = np.random.default_rng(opts.seed + batch)
  num_examples = steps * batch
  data = input_pipeline.put_on_mesh(
      {"image": random_images(rng, num_examples, opts.image_size),
       "label": rng.integers(0, NUM_CLASSES, num_examples).astype(np.int32)},
      mesh)
  replicated = distributed.replicated(mesh)
  weights = jax.device_put(np.ones(NUM_CLASSES, np.float32), replicated)
  perms = [jax.device_put(rng.permutation(num_examples).astype(np.int32),
                          replicated) for _ in range(_INPUT_POOL)]
  chunk = train.make_train_chunk(trainer.model, trainer.tx, trainer.config,
                                 mesh, batch, ce_weight=1.0, kd_weight=0.0)
  state = jax.tree.map(jnp.copy, trainer.state)  # Each call donates it.
  flops = function_flops(functools.partial(chunk, num_steps=1), state, data,
                         perms[0], weights, 0) / batch
  start = time.perf_counter()
  compiled = chunk.lower(state, data, perms[0], weights, 0,
                         num_steps=steps).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def call(i):
    holder["state"], sums = compiled(holder["state"], data,
                                     perms[i % len(perms)], weights, 0)
    return sums

  timing = time_calls(call, jax.block_until_ready, warmup=1,
                      warmup_seconds=opts.warmup_seconds,
                      repeats=opts.repeats, max_seconds=opts.max_seconds)
  return {**train_result(timing, batch, steps), "compile_s": compile_s,
          "compiled_memory_mb": compiled_memory_mb(compiled),
          "flops_per_image": flops}


def jax_inference(model: models.ResEmoteNet, variables: Any, opts: Options,
                  batch: int) -> dict[str, Any]:
  """Times a jitted forward pass (with normalisation) on ``batch`` images."""
  rng = np.random.default_rng(opts.seed + batch)
  pool = [jax.device_put(random_images(rng, batch, opts.image_size))
          for _ in range(_INPUT_POOL)]
  start = time.perf_counter()
  compiled = jax.jit(make_infer_fn(model, opts.image_size)).lower(
      variables, pool[0]).compile()
  compile_s = time.perf_counter() - start
  timing = time_calls(lambda i: compiled(variables, pool[i % len(pool)]),
                      jax.block_until_ready, warmup=2,
                      warmup_seconds=opts.warmup_seconds,
                      repeats=opts.repeats, max_seconds=opts.max_seconds)
  xla = xla_flops(compiled)
  return {**inference_result(timing, batch), "compile_s": compile_s,
          "xla_flops_per_image": xla / batch if xla else None}


def jax_benchmark(model: models.ResEmoteNet, opts: Options,
                  mesh: jax.sharding.Mesh, log: Callable[[str], None]
                  ) -> dict[str, Any]:
  """All JAX measurements of one model."""
  result = {"train": {}, "inference": {}}
  trainer = JaxTrainer.create(model, opts, mesh)
  for batch in opts.batch_sizes:
    log(f"JAX training, batch {batch}")
    result["train"][str(batch)] = jax_train(trainer, opts, batch)
  variables = trainer.state.variables()
  for batch in inference_batches(opts):
    log(f"JAX inference, batch {batch}")
    result["inference"][str(batch)] = jax_inference(model, variables, opts,
                                                    batch)
  result["peak_memory_mb"] = peak_device_memory_mb()
  return result


def inference_batches(opts: Options) -> tuple[int, ...]:
  return tuple(dict.fromkeys((1, opts.inference_batch)))


# ---------------------------------------------------------------- PyTorch ---


def _torch_train_call(net, runner, batches: Sequence[tuple[Any, Any]],
                      steps: int, autocast: Callable[[], Any]
                      ) -> Callable[[int], float]:
  """``call(i)``: ``steps`` training steps as the official script runs them."""
  import torch  # pylint: disable=g-import-not-at-top

  optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE,
                              momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
  criterion = torch.nn.CrossEntropyLoss()

  def call(i: int) -> float:
    net.train()
    running_loss, correct = 0.0, 0
    for k in range(steps):
      images, labels = batches[(i * steps + k) % len(batches)]
      optimizer.zero_grad()
      with autocast():
        outputs = runner(images)
        loss = criterion(outputs, labels)
      loss.backward()
      optimizer.step()
      running_loss += loss.item()
      correct += (outputs.argmax(1) == labels).sum().item()
    return running_loss

  return call


def _torch_infer_call(net, runner, images: Sequence[Any],
                      autocast: Callable[[], Any]) -> Callable[[int], Any]:
  """``call(i)``: logits of one batch in evaluation mode."""
  import torch  # pylint: disable=g-import-not-at-top

  def call(i: int):
    net.eval()
    with torch.inference_mode(), autocast():
      return runner(images[i % len(images)])

  return call


def torch_measurements(spec: dict[str, Any],
                       emit: Callable[[str, Any], None]) -> None:
  """Times the PyTorch reference as ``spec`` says; ``emit(key, value)`` each.

  Keys: ``device``, ``train/<batch>``, ``inference/<batch>``,
  ``peak_memory_mb``. Runs in the benchmark's process (eager) or in a child
  process (``torch.compile``, see :func:`torch_compile_child`).
  """
  import torch  # pylint: disable=g-import-not-at-top
  from mre_jax import torch_reference  # pylint: disable=g-import-not-at-top

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  cuda = device.type == "cuda"
  emit("device", torch.cuda.get_device_name(device) if cuda
       else f"cpu ({torch.get_num_threads()} threads)")
  if cuda:
    torch.cuda.reset_peak_memory_stats(device)
  torch.manual_seed(spec["seed"])
  net = torch_reference.get_model(spec["model"], num_classes=NUM_CLASSES,
                                  width=spec["width"] or None).to(device)
  compiled = spec["mode"] == "compile"
  runner = torch.compile(net, dynamic=False) if compiled else net
  autocast = functools.partial(torch.autocast, device.type,
                               dtype=torch.bfloat16,
                               enabled=spec["dtype"] == "bfloat16")

  def sync(_):
    if cuda:
      torch.cuda.synchronize(device)

  warmup = 2 if compiled else 1
  timer = functools.partial(
      time_calls, sync=sync, repeats=spec["repeats"],
      max_seconds=spec["max_seconds"],
      warmup_seconds=max(spec["warmup_seconds"],
                         _COMPILE_WARMUP_SECONDS if compiled else 0.0))
  size, steps = spec["image_size"], spec["steps"]

  def images(batch: int) -> list[Any]:
    return [torch.randn(batch, 3, size, size, device=device)
            for _ in range(_INPUT_POOL)]

  for batch in spec["batch_sizes"]:
    labels = [torch.randint(0, NUM_CLASSES, (batch,), device=device)
              for _ in range(_INPUT_POOL)]
    call = _torch_train_call(net, runner, list(zip(images(batch), labels)),
                             steps, autocast)
    emit(f"train/{batch}",
         train_result(timer(call, warmup=warmup), batch, steps))
  for batch in spec["inference_batches"]:
    call = _torch_infer_call(net, runner, images(batch), autocast)
    emit(f"inference/{batch}",
         inference_result(timer(call, warmup=warmup + 1), batch))
  emit("peak_memory_mb",
       torch.cuda.max_memory_allocated(device) / _MIB if cuda else None)


def torch_spec(name: str, mode: str, opts: Options) -> dict[str, Any]:
  return {"model": name, "mode": mode, "width": opts.width,
          "dtype": opts.dtype, "image_size": opts.image_size,
          "batch_sizes": list(opts.batch_sizes),
          "inference_batches": list(inference_batches(opts)),
          "steps": resolved_steps(opts), "repeats": opts.repeats,
          "max_seconds": opts.max_seconds,
          "warmup_seconds": opts.warmup_seconds, "seed": opts.seed}


def collect(spec: dict[str, Any],
            run: Callable[[dict[str, Any], Callable[[str, Any], None]], None]
            ) -> dict[str, Any]:
  """Runs ``run(spec, emit)`` and files what it emits into a result."""
  result = {"train": {}, "inference": {}}

  def emit(key: str, value: Any) -> None:
    group, _, batch = key.partition("/")
    if batch:
      result[group][batch] = value
    else:
      result[key] = value

  try:
    run(spec, emit)
  except Exception as e:  # pylint: disable=broad-except
    result["note"] = f"failed: {type(e).__name__}: {e}"[:300]
  return result


_CHILD_PREFIX = "MRE_BENCHMARK "


def torch_compile_child() -> None:
  """Child-process entry: reads a spec on stdin, prints results as lines."""
  spec = json.loads(sys.stdin.read())

  def emit(key: str, value: Any) -> None:
    print(_CHILD_PREFIX + json.dumps([key, value]), flush=True)

  torch_measurements(spec, emit)


def run_torch_compile(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
  """The ``torch.compile`` measurements, in a child stopped after ``timeout``.

  Whatever it measured before failing or running out of time is kept, with
  a ``note`` saying what happened.
  """
  child = subprocess.Popen(
      [sys.executable, "-c",
       "from mre_jax import benchmark; benchmark.torch_compile_child()"],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  note = None
  try:
    out, err = child.communicate(json.dumps(spec), timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)  # The child and its compile workers.
    out, err = child.communicate()
    note = f"stopped after {timeout:.0f} s (--torch_compile_timeout)"
  if note is None and child.returncode:
    last = [l for l in err.strip().splitlines() if l.strip()][-1:] or ["?"]
    note = f"failed (exit {child.returncode}): {last[0][:200]}"

  def replay(_, emit):
    for line in out.splitlines():
      if line.startswith(_CHILD_PREFIX):
        emit(*json.loads(line[len(_CHILD_PREFIX):]))

  result = collect(spec, replay)
  if note:
    result["note"] = note
  return result


def torch_benchmark(name: str, mode: str, opts: Options,
                    log: Callable[[str], None]) -> dict[str, Any]:
  """One PyTorch mode's measurements; a ``note`` says if some are missing."""
  log(f"PyTorch {mode}")
  spec = torch_spec(name, mode, opts)
  if mode == "compile":
    return run_torch_compile(spec, opts.torch_compile_timeout)
  return collect(spec, torch_measurements)


def torch_version() -> str | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch.__version__


# ---------------------------------------------------------------- driver ---


def validate(opts: Options) -> None:
  for name in opts.models:
    model = models.get_model(name, width=opts.width or None)
    if 4 * model.width < model.se_reduction:
      raise ConfigError(
          f"--width={opts.width} is too small for {name}: its squeeze-excite "
          f"block needs 4 x width >= {model.se_reduction}.")
  if not opts.batch_sizes or min(opts.batch_sizes) < 1:
    raise ConfigError(f"--batch_sizes={opts.batch_sizes}: give positive "
                      "integers, e.g. 16,256.")
  if opts.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"--dtype={opts.dtype}: expected float32 or bfloat16.")
  unknown = set(opts.torch_modes) - set(TORCH_MODES)
  if unknown:
    raise ConfigError(f"--torch: unknown mode(s) {sorted(unknown)}; expected "
                      "eager, compile or none.")
  if min(opts.repeats, opts.inference_batch, opts.image_size) < 1:
    raise ConfigError("--repeats, --inference_batch and --image_size must be "
                      "positive.")


def benchmark_model(name: str, opts: Options, mesh: jax.sharding.Mesh,
                    peak: float | None, torch_modes: Sequence[str],
                    log: Callable[[str], None]) -> dict[str, Any]:
  """Every measurement of one model, JAX and PyTorch."""
  dtype = jnp.bfloat16 if opts.dtype == "bfloat16" else jnp.float32
  model = models.get_model(name, num_classes=NUM_CLASSES, dtype=dtype,
                           width=opts.width or None)
  params = models.abstract_variables(model, opts.image_size)["params"]
  num_params = models.count_params(params)
  record = {"name": name, "width": model.width,
            "se_reduction": model.se_reduction, "params": num_params,
            "size_mb": model_size_mb(num_params),
            "forward_flops_per_image": forward_flops_per_image(
                model, opts.image_size)}
  frameworks = {"jax": jax_benchmark(model, opts, mesh,
                                     lambda m: log(f"{name}: {m}"))}
  for mode in torch_modes:
    frameworks[f"torch_{mode}"] = torch_benchmark(
        name, mode, opts, lambda m: log(f"{name}: {m}"))
  train_flops = next(iter(frameworks["jax"]["train"].values())
                     )["flops_per_image"]
  record["train_flops_per_image"] = train_flops
  record["xla_forward_flops_per_image"] = next(iter(
      frameworks["jax"]["inference"].values()))["xla_flops_per_image"]
  for key, result in frameworks.items():
    for batch, r in result.get("train", {}).items():
      result["train"][batch] = with_flops(r, train_flops, peak)
    for batch, r in result.get("inference", {}).items():
      result["inference"][batch] = with_flops(
          r, record["forward_flops_per_image"], peak)
    record[key] = result
  return record


def run(opts: Options, log: Callable[[str], None] = logging.info
        ) -> dict[str, Any]:
  """Runs the benchmark; returns the record printed by :func:`format_report`."""
  validate(opts)
  mesh = input_pipeline.make_mesh(1)
  notes = []
  torch_modes = list(opts.torch_modes)
  if torch_modes:
    try:
      # pylint: disable-next=g-import-not-at-top,unused-import
      from mre_jax import torch_reference
    except (ImportError, UserError) as e:
      notes.append(f"PyTorch skipped: {e}")
      torch_modes = []
  log("measuring the bf16 matmul peak")
  peak = measure_matmul_peak(opts)
  device = jax.devices()[0]
  record = {
      "jax_version": jax.__version__, "torch_version": torch_version(),
      "jax_device": f"{device.platform}: {device.device_kind}",
      "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
               "load_average": list(os.getloadavg())},
      "dtype": opts.dtype, "image_size": opts.image_size,
      "batch_sizes": list(opts.batch_sizes),
      "inference_batch": opts.inference_batch,
      "steps_per_call": resolved_steps(opts), "repeats": opts.repeats,
      "max_seconds_per_measurement": opts.max_seconds,
      "width_override": opts.width or None, "torch_modes": torch_modes,
      "peak_matmul": peak, "models": {}, "notes": notes}
  for name in opts.models:
    record["models"][name] = benchmark_model(
        name, opts, mesh, peak["flops_per_second"], torch_modes, log)
  record["targets"] = evaluate_targets(record)
  return record


# --------------------------------------------------------------- targets ---


def _get(record: dict[str, Any], *path: str) -> Any:
  for key in path:
    if not isinstance(record, dict) or key not in record:
      return None
    record = record[key]
  return record


def speedup(model: dict[str, Any], other: str, kind: str,
            batch: int) -> float | None:
  """How many times faster JAX is than ``other`` (>1: JAX is faster)."""
  jax_ips = _get(model, "jax", kind, str(batch), "images_per_second")
  other_ips = _get(model, other, kind, str(batch), "images_per_second")
  if not jax_ips or not other_ips:
    return None
  return jax_ips / other_ips


def _target(name: str, measured: float | None, required: str,
            passed: Callable[[float], bool], unit: str) -> dict[str, Any]:
  return {"target": name, "required": required, "measured": measured,
          "unit": unit,
          "passed": None if measured is None else bool(passed(measured))}


def evaluate_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
  """The GPU targets, checked against this run's measurements.

  Absolute latency and peak-share targets refer to the presets and are left
  out under a ``--width`` override; a target whose measurement this run did
  not make reads ``measured: None``.
  """
  targets = []
  presets = record["width_override"] is None
  for name, model in record["models"].items():
    for other, label, factor in (("torch_eager", "torch eager", 3.0),
                                 ("torch_compile", "torch.compile", 1.0)):
      if other[len("torch_"):] not in record["torch_modes"]:
        continue
      op = ">=" if factor > 1 else ">"
      targets.append(_target(
          f"{name}: JAX train img/s at batch 16 / {label}",
          speedup(model, other, "train", 16), f"{op} {factor:g}x",
          (lambda x, f=factor: x >= f) if factor > 1 else (lambda x: x > 1),
          "x"))
    latency = {"student_a": 0.14, "teacher": 1.4}.get(name)
    if latency and presets:
      targets.append(_target(
          f"{name}: JAX inference latency at batch 1",
          _get(model, "jax", "inference", "1", "ms_per_image"),
          f"< {latency:g} ms/img", lambda x, l=latency: x < l, "ms/img"))
    if name == "teacher" and presets:
      share = _get(model, "jax", "train", "256", "peak_fraction")
      targets.append(_target(
          "teacher: JAX training FLOP/s at batch 256 / bf16 peak",
          None if share is None else 100 * share, ">= 40 %",
          lambda x: x >= 40, "%"))
  return targets


# ------------------------------------------------------------- reporting ---


def _fmt(value: float | None, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def _fmt_flops(flops: float | None) -> str:
  if flops is None:
    return "n/a"
  for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP")):
    if flops >= scale:
      return f"{flops / scale:.3g} {unit}"
  return f"{flops / 1e6:.3g} MFLOP"


def _rows(record: dict[str, Any], model: dict[str, Any]
          ) -> Iterable[tuple[str, tuple[str, ...], str, bool]]:
  """(label, key path, number format, higher is better) of each table row."""
  for b in record["batch_sizes"]:
    yield (f"train img/s, batch {b}", ("train", str(b), "images_per_second"),
           ",.1f", True)
  for b in record["batch_sizes"]:
    yield (f"train ms/step, batch {b}", ("train", str(b), "ms_per_step"),
           ".2f", False)
  for b in record["batch_sizes"]:
    yield (f"train % of bf16 peak, batch {b}",
           ("train", str(b), "peak_fraction"), ".2%", True)
  batches = [str(b) for b in model["jax"]["inference"]]
  for b in batches:
    yield (f"inference ms/img, batch {b}", ("inference", b, "ms_per_image"),
           ".4f", False)
  for b in batches[1:]:
    yield (f"inference img/s, batch {b}",
           ("inference", b, "images_per_second"), ",.1f", True)
    yield (f"inference % of bf16 peak, batch {b}",
           ("inference", b, "peak_fraction"), ".2%", True)
  yield ("peak device memory MiB", ("peak_memory_mb",), ",.1f", False)
  for b in record["batch_sizes"]:
    yield (f"compiled train-step memory MiB, b{b}",
           ("train", str(b), "compiled_memory_mb"), ",.1f", False)
  for b in record["batch_sizes"]:
    yield (f"timed calls (train, batch {b})", ("train", str(b), "repeats"),
           "d", True)


def format_model(record: dict[str, Any], model: dict[str, Any]) -> str:
  """One model's table: JAX, each PyTorch mode, JAX's speed-up over each."""
  columns = ["jax"] + [f"torch_{m}" for m in record["torch_modes"]]
  titles = {"jax": "JAX", "torch_eager": "torch eager",
            "torch_compile": "torch.compile"}
  size = model["size_mb"]
  lines = [
      f"== {model['name']} (width {model['width']}): {model['params']:,} "
      f"params, {size['float32']:.2f} MiB float32 / {size['bfloat16']:.2f} "
      f"MiB bf16; per image {_fmt_flops(model['forward_flops_per_image'])} "
      f"forward, {_fmt_flops(model['train_flops_per_image'])} training "
      f"(XLA's forward estimate "
      f"{_fmt_flops(model['xla_forward_flops_per_image'])})"]
  header = f"{'':<38}" + "".join(f"{titles[c]:>15}" for c in columns)
  header += "".join(f"{'JAX/' + c[len('torch_'):]:>14}"
                    for c in columns[1:])
  if len(columns) > 1:
    lines.append("(JAX/...: how many times faster JAX is; > 1 favours JAX)")
  lines.append(header)
  for label, path, spec, higher in _rows(record, model):
    values = [_get(model, c, *path) for c in columns]
    if all(v is None for v in values) and path[-1] != "peak_memory_mb":
      continue
    row = f"{label:<38}" + "".join(f"{_fmt(v, spec):>15}" for v in values)
    if path[-1] in ("images_per_second", "ms_per_step", "ms_per_image"):
      for other in values[1:]:
        ratio = None
        if values[0] and other:
          ratio = values[0] / other if higher else other / values[0]
        row += f"{_fmt(ratio, '.2f') + ('x' if ratio else ''):>14}"
    lines.append(row)
  for c in columns[1:]:
    note = model[c].get("note")
    if note:
      lines.append(f"  {titles[c]}: {note}")
  for c in columns:
    noisy = _noisy(model[c])
    if noisy:
      lines.append(f"  {titles[c]}: noisy (slowest/fastest timed call > "
                   f"{_NOISY_SPREAD:g}): {', '.join(noisy)}")
  return "\n".join(lines)


def _noisy(result: dict[str, Any]) -> list[str]:
  """The measurements of ``result`` whose timed calls varied widely."""
  return [f"{kind} b{batch} ({r['max_s'] / r['min_s']:.1f}x)"
          for kind in ("train", "inference")
          for batch, r in result.get(kind, {}).items()
          if r["max_s"] > _NOISY_SPREAD * r["min_s"]]


def format_targets(targets: Sequence[dict[str, Any]], cpu: bool) -> str:
  lines = [f"Targets{' (set for a GPU; informative on CPU)' if cpu else ''}:",
           f"{'target':<58}{'measured':>14}{'required':>16}{'result':>8}"]
  if not targets:
    lines.append("  (none applies to this run)")
  for t in targets:
    measured = ("not measured" if t["measured"] is None
                else f"{t['measured']:.3g}{'' if t['unit'] == 'x' else ' '}"
                f"{t['unit']}")
    result = {None: "n/a", True: "pass", False: "FAIL"}[t["passed"]]
    lines.append(f"{t['target']:<58}{measured:>14}{t['required']:>16}"
                 f"{result:>8}")
  return "\n".join(lines)


def format_report(record: dict[str, Any]) -> str:
  """The printed report of a :func:`run` record."""
  peak = record["peak_matmul"]
  host = record["host"]
  torch_devices = {_get(m, f"torch_{mode}", "device")
                   for m in record["models"].values()
                   for mode in record["torch_modes"]} - {None}
  lines = [
      f"JAX {record['jax_version']} on {record['jax_device']}; "
      + (f"PyTorch {record['torch_version']} on "
         f"{', '.join(sorted(torch_devices))}" if torch_devices
         else "PyTorch not run") +
      f"; host {host['cpus']} CPUs, load average "
      f"{host['load_average'][0]:.2f} at start",
      f"{record['dtype']}, {record['image_size']}x{record['image_size']} "
      f"inputs; {record['steps_per_call']} train steps per timed call; "
      f"median of up to {record['repeats']} timed calls after warm-up, at "
      f"most {record['max_seconds_per_measurement']:g} s per measurement",
      f"bf16 matmul peak: {_fmt_flops(peak['flops_per_second'])}/s "
      f"({peak['size']}x{peak['size']}, {peak['iterations']} chained "
      f"products per call, median of {peak['repeats']})"]
  lines += record["notes"]
  for model in record["models"].values():
    lines += ["", format_model(record, model)]
  lines += ["", format_targets(record["targets"],
                               record["jax_device"].startswith("cpu"))]
  return "\n".join(lines)


# ------------------------------------------------------------------ flags ---

_MODELS = flags.DEFINE_list("models", list(models.MODEL_SPECS),
                            "Model presets to measure.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["16", "256"],
                                 "Training batch sizes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Model input size.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute dtype (parameters stay float32).")
_TORCH = flags.DEFINE_list("torch", list(TORCH_MODES),
                           "PyTorch reference modes: eager, compile, or none.")
_REPEATS = flags.DEFINE_integer("repeats", 20,
                                "Timed calls per measurement (at most).")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds_per_measurement", 30.0,
    "Stop timing a measurement once this many seconds are spent (at least "
    "one call is timed); warm-up and compilation are not counted.")
_WARMUP_SECONDS = flags.DEFINE_float(
    "warmup_seconds", 1.0,
    "Untimed warm-up per measurement after the first call (at least 5 s for "
    "torch.compile).")
_STEPS = flags.DEFINE_integer(
    "steps_per_call", 0,
    "Training steps per timed call (one jitted dispatch in JAX); 0: as in "
    "training, 1 on CPU and 64 on accelerators.")
_INFERENCE_BATCH = flags.DEFINE_integer("inference_batch", 256,
                                        "Batch of the inference throughput.")
_WIDTH = flags.DEFINE_integer("width", 0,
                              "Override every model's base width (0: presets).")
_PEAK_SIZE = flags.DEFINE_integer(
    "peak_matmul_size", 0,
    "Side of the bf16 matrices of the peak measurement; 0: 8192 on "
    "accelerators, 2048 on CPU.")
_COMPILE_TIMEOUT = flags.DEFINE_float(
    "torch_compile_timeout", 600.0,
    "Seconds allowed per model for all torch.compile measurements.")
_JSON_OUT = flags.DEFINE_string("json_out", None,
                                "Also write the full record as JSON here.")


def options_from_flags() -> Options:
  modes = tuple(m for m in (s.strip() for s in _TORCH.value)
                if m and m != "none")
  try:
    batch_sizes = tuple(int(b) for b in _BATCH_SIZES.value)
  except ValueError:
    raise ConfigError(f"--batch_sizes={','.join(_BATCH_SIZES.value)}: give "
                      "integers, e.g. 16,256.") from None
  return Options(
      models=tuple(_MODELS.value), batch_sizes=batch_sizes,
      image_size=_IMAGE_SIZE.value, dtype=_DTYPE.value, torch_modes=modes,
      repeats=_REPEATS.value, max_seconds=_MAX_SECONDS.value,
      warmup_seconds=_WARMUP_SECONDS.value,
      steps_per_call=_STEPS.value, inference_batch=_INFERENCE_BATCH.value,
      width=_WIDTH.value, peak_matmul_size=_PEAK_SIZE.value,
      torch_compile_timeout=_COMPILE_TIMEOUT.value)


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    record = run(options_from_flags())
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(format_report(record), flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(record, f, indent=2)


if __name__ == "__main__":
  app.run(main)
