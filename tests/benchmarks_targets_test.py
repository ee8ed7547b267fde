"""The speed targets: the paper's latencies and the training goals."""

from __future__ import annotations

from mre_jax.benchmarks import targets
from mre_jax.config import paper


def _model(train_ips=None, compile_ips=None, latency_ms=None,
           peak_fraction=None):
  """A speed-record model entry with the given measurements."""
  train = {"16": {"images_per_second": train_ips},
           "256": {"peak_fraction": peak_fraction}}
  return {"jax": {"train": train,
                  "inference": {"1": {"ms_per_image": latency_ms}}},
          "torch_eager": {"train": {"16": {"images_per_second": 100.0}}},
          "torch_compile": {"train": {"16": {"images_per_second":
                                             compile_ips}}}}


def _record(models, width_override=None, torch_modes=("eager", "compile")):
  return {"models": models, "width_override": width_override,
          "torch_modes": list(torch_modes), "recipe_batch_size": 16}


def _by_name(found):
  return {t["target"]: t for t in found}


def test_latency_targets_are_the_papers():
  table = paper.TABLE_V["inference_ms"]["fer2013"]
  latency = targets.paper_latency_ms()
  assert latency["teacher"] == table["teacher"]
  assert latency[paper.EXPERIMENTS["E1"][0]] == table["E1"]
  teacher_ms, student_ms = table["teacher"], table["E1"]
  found = _by_name(targets.evaluate(_record({
      "teacher": _model(latency_ms=teacher_ms * 0.9),
      "student_a": _model(latency_ms=student_ms * 1.1)}, torch_modes=())))
  teacher = found["teacher: JAX inference latency at batch 1 (paper)"]
  assert teacher["passed"] and teacher["required"] == f"< {teacher_ms:g} ms/img"
  student = found["student_a: JAX inference latency at batch 1 (paper)"]
  assert student["passed"] is False
  assert student["required"] == f"< {student_ms:g} ms/img"


def test_training_targets():
  found = _by_name(targets.evaluate(_record({
      "teacher": _model(train_ips=310.0, compile_ips=320.0,
                        peak_fraction=0.41)})))
  eager = found["teacher: JAX train img/s at batch 16 / torch eager"]
  assert eager["measured"] == 3.1 and eager["passed"]
  compiled = found["teacher: JAX train img/s at batch 16 / torch.compile"]
  assert compiled["measured"] < 1 and compiled["passed"] is False
  share = found["teacher: JAX training FLOP/s at batch 256 / bf16 peak"]
  assert share["measured"] == 41.0 and share["passed"]


def test_width_override_leaves_only_relative_targets():
  found = targets.evaluate(_record({"teacher": _model()}, width_override=2,
                                   torch_modes=("eager",)))
  target, = found
  assert "torch eager" in target["target"]
  assert target["measured"] is None and target["passed"] is None
