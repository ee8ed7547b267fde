"""The scaling benchmark: one device count in-process, and its workers."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest

from mre_jax import models
from mre_jax.benchmarks import scaling
from mre_jax.benchmarks import timing
from mre_jax.config import recipe
from mre_jax.errors import ConfigError


def test_measure_two_devices():
  config = recipe.get_config()
  config.model, config.model_width, config.image_size = "student_c", 2, 32
  result = scaling.measure(2, config, global_batch=4, steps=1,
                           budget=timing.Budget(repeats=2))
  assert result["devices"] == 2 and result["repeats"] == 2
  assert result["seconds_per_step"] > 0 and result["compile_s"] > 0
  variables = models.abstract_variables(models.get_model("student_c",
                                                         width=2), 32)
  assert result["params"] == models.count_params(variables["params"])


def test_worker_is_this_command_with_its_device_count(monkeypatch):
  launched = {}

  def fake_run(command, env, **_):
    launched.update(command=command, env=env)
    line = json.dumps({"devices": 3})
    return subprocess.CompletedProcess(command, 0, f"log\n{line}\n", "")

  monkeypatch.setattr(scaling.subprocess, "run", fake_run)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                     "--xla_other=1")
  assert scaling.run_worker(3, ["--steps=2"], timeout=10) == {"devices": 3}
  module = launched["command"][launched["command"].index("-m") + 1]
  assert importlib.util.find_spec(module).name == scaling.__name__
  assert launched["command"][-2:] == ["--steps=2", "--worker_devices=3"]
  assert launched["env"]["XLA_FLAGS"].split() == [
      "--xla_other=1", "--xla_force_host_platform_device_count=3"]


def test_validate_rejects_uneven_splits_and_unknown_models():
  scaling.validate([1, 2, 4], 8, "student_c")
  with pytest.raises(ConfigError, match=r"over \[3\] devices"):
    scaling.validate([1, 3], 8, "student_c")
  with pytest.raises(ConfigError, match="unknown"):
    scaling.validate([1], 8, "student_z")
