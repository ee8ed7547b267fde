"""The printed report of a speed record.

One table per model, JAX beside each PyTorch mode with JAX's speed-up over
it, then the targets with pass/fail. ``python -m mre_jax.benchmarks.report
--json=FILE`` prints it again from a record saved with ``--json_out`` (or a
reproduction's ``bench.json``).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from absl import flags

from mre_jax.benchmarks import results
from mre_jax.errors import UserError

# Measurements whose slowest timed call took this many times the fastest.
NOISY_SPREAD = 2.0
# Measurements during which the hypervisor took this share of the CPUs' time.
NOISY_STOLEN = 0.02
_TITLES = {"jax": "JAX", "torch_eager": "torch eager",
           "torch_compile": "torch.compile"}
# Rows whose values are speeds, so JAX's speed-up is shown beside them.
_SPEEDS = ("images_per_second", "ms_per_step", "ms_per_image")


def _fmt(value: float | None, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def fmt_flops(flops: float | None) -> str:
  """FLOPs with a unit, e.g. ``0.48 GFLOP``."""
  if flops is None:
    return "n/a"
  for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP")):
    if flops >= scale:
      return f"{flops / scale:.3g} {unit}"
  return f"{flops / 1e6:.3g} MFLOP"


def _rows(record: dict[str, Any], model: dict[str, Any]
          ) -> Iterable[tuple[str, tuple[str, ...], str, bool]]:
  """(label, key path, number format, higher is better) of each table row."""
  train = [str(b) for b in record["batch_sizes"]]
  for b in train:
    yield (f"train img/s, batch {b}", ("train", b, "images_per_second"),
           ",.1f", True)
  for b in train:
    yield (f"train ms/step, batch {b}", ("train", b, "ms_per_step"), ".2f",
           False)
  for b in train:
    yield (f"train % of bf16 peak, batch {b}", ("train", b, "peak_fraction"),
           ".2%", True)
  inference = list(model["jax"]["inference"])
  for b in inference:
    yield (f"inference ms/img, batch {b}", ("inference", b, "ms_per_image"),
           ".4f", False)
  for b in inference[1:]:
    yield (f"inference img/s, batch {b}",
           ("inference", b, "images_per_second"), ",.1f", True)
    yield (f"inference % of bf16 peak, batch {b}",
           ("inference", b, "peak_fraction"), ".2%", True)
  yield ("peak device memory MiB", ("peak_memory_mb",), ",.1f", False)
  for b in train:
    yield (f"compiled train-step memory MiB, b{b}",
           ("train", b, "compiled_memory_mb"), ",.1f", False)
  for b in train:
    yield (f"timed calls (train, batch {b})", ("train", b, "repeats"), "d",
           True)


def _row(label: str, values: Sequence[float | None], spec: str,
         higher: bool, speed: bool) -> str:
  row = f"{label:<38}" + "".join(f"{_fmt(v, spec):>15}" for v in values)
  if speed:
    for other in values[1:]:
      ratio = None
      if values[0] and other:
        ratio = values[0] / other if higher else other / values[0]
      row += f"{_fmt(ratio, '.2f') + ('x' if ratio else ''):>14}"
  return row


def _header(model: dict[str, Any]) -> str:
  size = model["size_mb"]
  return (
      f"== {model['name']} (width {model['width']}): {model['params']:,} "
      f"params, {size['float32']:.2f} MiB float32 / {size['bfloat16']:.2f} "
      f"MiB bf16; per image {fmt_flops(model['forward_flops_per_image'])} "
      f"forward, {fmt_flops(model['train_flops_per_image'])} training "
      f"(XLA's forward estimate "
      f"{fmt_flops(model['xla_forward_flops_per_image'])})")


def _measurements(result: dict[str, Any]
                  ) -> list[tuple[str, dict[str, Any]]]:
  """``(name, result)`` of each train and inference measurement."""
  return [(f"{kind} b{batch}", r) for kind in ("train", "inference")
          for batch, r in result.get(kind, {}).items()]


def _noisy(result: dict[str, Any]) -> list[str]:
  """The measurements of ``result`` whose timed calls varied widely."""
  return [f"{name} ({r['max_s'] / r['min_s']:.1f}x)"
          for name, r in _measurements(result)
          if r["max_s"] > NOISY_SPREAD * r["min_s"]]


def _stolen(result: dict[str, Any]) -> list[str]:
  """The measurements of ``result`` that the hypervisor slowed down."""
  return [f"{name} ({r['stolen_fraction']:.1%})"
          for name, r in _measurements(result)
          if (r.get("stolen_fraction") or 0.0) > NOISY_STOLEN]


def _notes(model: dict[str, Any], columns: Sequence[str]) -> list[str]:
  lines = [f"  {_TITLES[c]}: {model[c]['note']}" for c in columns[1:]
           if model[c].get("note")]
  for c in columns:
    noisy = _noisy(model[c])
    if noisy:
      lines.append(f"  {_TITLES[c]}: noisy (slowest/fastest timed call > "
                   f"{NOISY_SPREAD:g}): {', '.join(noisy)}")
    stolen = _stolen(model[c])
    if stolen:
      lines.append(f"  {_TITLES[c]}: CPU time taken by the hypervisor "
                   f"> {NOISY_STOLEN:.0%}: {', '.join(stolen)}")
  return lines


def format_model(record: dict[str, Any], model: dict[str, Any]) -> str:
  """One model's table: JAX, each PyTorch mode, JAX's speed-up over each."""
  columns = ["jax"] + [f"torch_{m}" for m in record["torch_modes"]]
  lines = [_header(model)]
  if len(columns) > 1:
    lines.append("(JAX/...: how many times faster JAX is; > 1 favours JAX)")
  lines.append(f"{'':<38}" + "".join(f"{_TITLES[c]:>15}" for c in columns)
               + "".join(f"{'JAX/' + c[len('torch_'):]:>14}"
                         for c in columns[1:]))
  for label, path, spec, higher in _rows(record, model):
    values = [results.lookup(model, c, *path) for c in columns]
    if all(v is None for v in values) and path[-1] != "peak_memory_mb":
      continue
    lines.append(_row(label, values, spec, higher, path[-1] in _SPEEDS))
  return "\n".join(lines + _notes(model, columns))


def format_targets(targets: Sequence[dict[str, Any]], cpu: bool) -> str:
  """The targets' table with pass/fail (informative only on CPU)."""
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


def _preamble(record: dict[str, Any]) -> list[str]:
  peak, host = record["peak_matmul"], record["host"]
  torch_devices = {results.lookup(m, f"torch_{mode}", "device")
                   for m in record["models"].values()
                   for mode in record["torch_modes"]} - {None}
  torch = (f"PyTorch {record['torch_version']} on "
           f"{', '.join(sorted(torch_devices))}" if torch_devices
           else "PyTorch not run")
  size, steps = record["image_size"], record["steps_per_call"]
  min_seconds = record.get("min_seconds_per_measurement", 0)
  more = (f", or more until they add up to {min_seconds:g} s" if min_seconds
          else "")
  return [
      f"JAX {record['jax_version']} on {record['jax_device']}; {torch}; "
      f"host {host['cpus']} CPUs, load average "
      f"{host['load_average'][0]:.2f} at start",
      f"{record['dtype']}, {size}x{size} inputs; {steps} train "
      f"step{'s' if steps != 1 else ''} per timed call; median of "
      f"{record['repeats']} timed calls after warm-up{more}, at most "
      f"{record['max_seconds_per_measurement']:g} s per measurement",
      f"bf16 matmul peak: {fmt_flops(peak['flops_per_second'])}/s "
      f"({peak['size']}x{peak['size']}, {peak['iterations']} chained "
      f"products per call, median of {peak['repeats']})"]


def format_report(record: dict[str, Any]) -> str:
  """The printed report of a speed record."""
  lines = _preamble(record) + record["notes"]
  for model in record["models"].values():
    lines += ["", format_model(record, model)]
  lines += ["", format_targets(record["targets"],
                               record["jax_device"].startswith("cpu"))]
  return "\n".join(lines)


def main() -> None:
  path = flags.FLAGS.json
  try:
    with open(path) as f:
      record = json.load(f)
    text = format_report(record)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path}: {e}; expected the --json_out file "
                    "of python -m mre_jax.benchmarks.speed") from e
  except (KeyError, TypeError, AttributeError, IndexError) as e:
    raise UserError(f"{path} is not a speed record ({type(e).__name__}: "
                    f"{e}); expected the --json_out file of python -m "
                    "mre_jax.benchmarks.speed") from e
  print(text)


if __name__ == "__main__":
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.benchmarks import cli
  cli.run(main, lambda: flags.DEFINE_string(
      "json", None, "A speed record (--json_out of the speed benchmark).",
      required=True))
