"""Speed of the PyTorch reference (:mod:`mre_jax.models.torch_reference`).

It is trained as the official ResEmoteNet script does: ``model.train()``,
``CrossEntropyLoss``, ``SGD`` with the config's learning rate, momentum and
weight decay, then per batch ``zero_grad``, forward, ``backward``, ``step``,
``loss.item()`` and the correct-prediction count, on random normalised
batches already on the device (its data loading and transforms are left
out). Inference runs under ``model.eval()`` and ``torch.inference_mode()``;
``bfloat16`` runs under ``torch.autocast``. ``eager`` runs in this process;
``compile`` wraps the model in ``torch.compile`` in a child process that is
stopped after a timeout, keeping what it measured.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Sequence

from ml_collections import config_dict

from mre_jax.benchmarks import device
from mre_jax.benchmarks import results
from mre_jax.benchmarks import timing
from mre_jax.config.labels import NUM_CLASSES

MODES = ("eager", "compile")
# torch.compile'd code runs slowly for a few seconds after it compiled.
_COMPILE_WARMUP_SECONDS = 5.0
# Prefixes the lines that carry the child's measurements.
_CHILD_PREFIX = "MRE_BENCHMARK "

Emit = Callable[[str, Any], None]


def make_spec(name: str, mode: str, config: config_dict.ConfigDict,
              batch_sizes: Sequence[int], inference_batches: Sequence[int],
              steps: int, budget: timing.Budget) -> dict[str, Any]:
  """What to measure, as JSON for the ``torch.compile`` child."""
  return {"model": name, "mode": mode, "width": config.model_width,
          "dtype": config.dtype, "image_size": config.image_size,
          "seed": config.seed, "sgd": {"lr": config.learning_rate,
                                       "momentum": config.momentum,
                                       "weight_decay": config.weight_decay},
          "batch_sizes": list(batch_sizes),
          "inference_batches": list(inference_batches), "steps": steps,
          "budget": dataclasses.asdict(budget)}


@dataclasses.dataclass(frozen=True)
class _Reference:
  """The PyTorch model of a spec, on its device, and how to time it."""
  net: Any
  runner: Any  # The model, or its torch.compile wrapper.
  device: Any
  autocast: Callable[[], Any]
  budget: timing.Budget

  @classmethod
  def create(cls, spec: dict[str, Any]) -> _Reference:
    import torch  # pylint: disable=g-import-not-at-top
    # pylint: disable-next=g-import-not-at-top
    from mre_jax.models import torch_reference

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
      torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(spec["seed"])
    net = torch_reference.get_model(spec["model"], num_classes=NUM_CLASSES,
                                    width=spec["width"] or None).to(dev)
    budget = timing.Budget(**spec["budget"])
    runner = net
    if spec["mode"] == "compile":
      runner = torch.compile(net, dynamic=False)
      budget = dataclasses.replace(budget, warmup=2, warmup_seconds=max(
          budget.warmup_seconds, _COMPILE_WARMUP_SECONDS))
    autocast = functools.partial(torch.autocast, dev.type,
                                 dtype=torch.bfloat16,
                                 enabled=spec["dtype"] == "bfloat16")
    return cls(net, runner, dev, autocast, budget)

  @property
  def cuda(self) -> bool:
    return self.device.type == "cuda"

  def name(self) -> str:
    import torch  # pylint: disable=g-import-not-at-top
    if self.cuda:
      return torch.cuda.get_device_name(self.device)
    return f"cpu ({torch.get_num_threads()} threads)"

  def sync(self, _) -> None:
    import torch  # pylint: disable=g-import-not-at-top
    if self.cuda:
      torch.cuda.synchronize(self.device)

  def peak_memory_mb(self) -> float | None:
    import torch  # pylint: disable=g-import-not-at-top
    if not self.cuda:
      return None
    return torch.cuda.max_memory_allocated(self.device) / device.MIB

  def images(self, batch: int, size: int) -> list[Any]:
    """A pool of random normalised image batches on the device."""
    import torch  # pylint: disable=g-import-not-at-top
    return [torch.randn(batch, 3, size, size, device=self.device)
            for _ in range(timing.INPUT_POOL)]


def _time_train(ref: _Reference, spec: dict[str, Any],
                batch: int) -> dict[str, Any]:
  """``steps`` training steps per call as the official script runs them."""
  import torch  # pylint: disable=g-import-not-at-top

  optimizer = torch.optim.SGD(ref.net.parameters(), **spec["sgd"])
  criterion = torch.nn.CrossEntropyLoss()
  steps = spec["steps"]
  labels = [torch.randint(0, NUM_CLASSES, (batch,), device=ref.device)
            for _ in range(timing.INPUT_POOL)]
  batches = list(zip(ref.images(batch, spec["image_size"]), labels))

  def call(i: int) -> float:
    ref.net.train()
    running_loss, correct = 0.0, 0
    for k in range(steps):
      images, targets = batches[(i * steps + k) % len(batches)]
      optimizer.zero_grad()
      with ref.autocast():
        outputs = ref.runner(images)
        loss = criterion(outputs, targets)
      loss.backward()
      optimizer.step()
      running_loss += loss.item()
      correct += (outputs.argmax(1) == targets).sum().item()
    return running_loss

  measured = timing.time_calls(call, ref.budget, ref.sync)
  return results.train_result(measured, batch, steps)


def _time_inference(ref: _Reference, spec: dict[str, Any],
                    batch: int) -> dict[str, Any]:
  """Logits of one batch per call, in evaluation mode."""
  import torch  # pylint: disable=g-import-not-at-top

  pool = ref.images(batch, spec["image_size"])

  def call(i: int):
    ref.net.eval()
    with torch.inference_mode(), ref.autocast():
      return ref.runner(pool[i % len(pool)])

  budget = dataclasses.replace(ref.budget, warmup=ref.budget.warmup + 1)
  return results.inference_result(
      timing.time_calls(call, budget, ref.sync), batch)


def measure(spec: dict[str, Any], emit: Emit) -> None:
  """Times the reference as ``spec`` says; ``emit(key, value)`` each result.

  Keys: ``device``, ``train/<batch>``, ``inference/<batch>``,
  ``peak_memory_mb``.
  """
  ref = _Reference.create(spec)
  emit("device", ref.name())
  for batch in spec["batch_sizes"]:
    emit(f"train/{batch}", _time_train(ref, spec, batch))
  for batch in spec["inference_batches"]:
    emit(f"inference/{batch}", _time_inference(ref, spec, batch))
  emit("peak_memory_mb", ref.peak_memory_mb())


def collect(spec: dict[str, Any],
            run: Callable[[dict[str, Any], Emit], None]) -> dict[str, Any]:
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


def compile_child() -> None:
  """Child-process entry: reads a spec on stdin, prints results as lines."""
  spec = json.loads(sys.stdin.read())

  def emit(key: str, value: Any) -> None:
    print(_CHILD_PREFIX + json.dumps([key, value]), flush=True)

  measure(spec, emit)


def _run_child(spec: dict[str, Any], timeout: float
               ) -> tuple[str, str | None]:
  """The child's output, and a note if it failed or ran out of time."""
  child = subprocess.Popen(
      [sys.executable, "-c", "from mre_jax.benchmarks import torch_speed; "
       "torch_speed.compile_child()"],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  try:
    out, err = child.communicate(json.dumps(spec), timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)  # The child and its compile workers.
    out, _ = child.communicate()
    return out, f"stopped after {timeout:.0f} s (--torch_compile_timeout)"
  if child.returncode:
    last = [l for l in err.strip().splitlines() if l.strip()][-1:] or ["?"]
    return out, f"failed (exit {child.returncode}): {last[0][:200]}"
  return out, None


def run_compiled(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
  """The ``torch.compile`` measurements, from a child given ``timeout`` s.

  What it measured before failing or running out of time is kept, with a
  ``note`` saying what happened.
  """
  out, note = _run_child(spec, timeout)

  def replay(_, emit: Emit) -> None:
    for line in out.splitlines():
      if line.startswith(_CHILD_PREFIX):
        emit(*json.loads(line[len(_CHILD_PREFIX):]))

  result = collect(spec, replay)
  if note:
    result["note"] = note
  return result


def measure_mode(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
  """One mode's measurements; a ``note`` says if some are missing."""
  if spec["mode"] == "compile":
    return run_compiled(spec, timeout)
  return collect(spec, measure)


def version() -> str | None:
  """PyTorch's version, None when it is not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch.__version__
