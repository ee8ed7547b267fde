"""Tests for importing PyTorch ResEmoteNet weights (mre_jax.convert).

The PyTorch reference (mre_jax.models.torch_reference) gets random weights and
BatchNorm statistics, its state_dict is converted, and the Flax model must give
the same logits. Measured errors are printed (visible with ``pytest -s``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mre_jax import convert  # noqa: E402
from mre_jax import models  # noqa: E402
from mre_jax.config.labels import CLASS_NAMES  # noqa: E402
from mre_jax.errors import CheckpointError, ConfigError  # noqa: E402
from mre_jax.models import torch_reference  # noqa: E402
from mre_jax.workdir import checkpointing  # noqa: E402

TOLERANCE = 1e-4


def _dropout_off(module: torch.nn.Module) -> None:
  for m in module.modules():
    if isinstance(m, torch.nn.Dropout):
      m.eval()


def _randomised(name: str, calibration: torch.Tensor,
                seed: int = 0) -> torch.nn.Module:
  """The reference model with random weights and BatchNorm statistics.

  Weights are He-normal (activations keep their scale, so logits are O(1) and
  depend on the input); BatchNorm affine parameters are non-trivial; running
  statistics are measured on ``calibration`` and then perturbed, so that eval
  mode really uses them.
  """
  g = torch.Generator().manual_seed(seed)
  model = torch_reference.get_model(name)
  batch_norms = [m for m in model.modules()
                 if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu",
                                      generator=g)
        if m.bias is not None:
          m.bias.uniform_(-0.1, 0.1, generator=g)
    for m in batch_norms:
      m.weight.uniform_(0.5, 1.5, generator=g)
      m.bias.uniform_(-0.3, 0.3, generator=g)
      m.reset_running_stats()
      m.momentum = None  # Running stats = this batch's statistics.
    model.train()
    _dropout_off(model)
    model(calibration)
    for m in batch_norms:
      m.momentum = 0.1
      shape = m.running_mean.shape
      m.running_mean.add_(
          0.2 * m.running_var.sqrt() * (torch.rand(shape, generator=g) - 0.5))
      m.running_var.mul_(torch.empty(shape).uniform_(0.5, 2.0, generator=g))
  return model.eval()


def _images(n: int, size: int, seed: int) -> torch.Tensor:
  return torch.randn(n, 3, size, size,
                     generator=torch.Generator().manual_seed(seed))


def _torch_logits(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
  with torch.no_grad():
    return model.eval()(x).numpy()


def _flax_logits(name: str, variables, x: torch.Tensor) -> np.ndarray:
  nhwc = x.numpy().transpose(0, 2, 3, 1)
  return np.asarray(models.get_model(name).apply(variables, nhwc))


def _max_abs(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope="module")
def student_c() -> torch.nn.Module:
  return _randomised("student_c", _images(8, 64, seed=1))


@pytest.mark.parametrize("name,batch,size", [("student_c", 4, 64),
                                             ("teacher", 2, 48)])
def test_eval_logits_match_pytorch(name, batch, size):
  model = _randomised(name, _images(4, size, seed=1))
  x = _images(batch, size, seed=2)
  expected = _torch_logits(model, x)
  variables = convert.torch_state_dict_to_flax(model.state_dict(), name)
  error = _max_abs(_flax_logits(name, variables, x), expected)
  scale = float(np.abs(expected).max())
  print(f"\n{name}: eval logits max-abs error {error:.3g} "
        f"(max |logit| {scale:.3g}, batch {batch}x3x{size}x{size})")
  assert np.std(expected, axis=0).mean() > 0.1  # Logits depend on the input.
  assert error < TOLERANCE, f"{name}: max-abs error {error:.3g}"


def test_train_mode_matches_pytorch():
  """Batch-statistics normalisation and running-stat updates, dropout off."""
  torch_model = _randomised("student_c", _images(8, 64, seed=1))
  variables = convert.torch_state_dict_to_flax(torch_model.state_dict(),
                                               "student_c")
  x = _images(4, 64, seed=3)
  torch_model.train()
  _dropout_off(torch_model)
  with torch.no_grad():
    expected = torch_model(x).numpy()
  updated = convert.torch_state_dict_to_flax(torch_model.state_dict(),
                                             "student_c")
  # The conversion copied: the update did not leak into ``variables``.
  assert _max_abs(variables["batch_stats"]["bn1"]["mean"],
                  updated["batch_stats"]["bn1"]["mean"]) > 1e-3

  def skip_dropout(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout):
      return args[0]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(skip_dropout):
    logits, new_state = models.get_model("student_c").apply(
        variables, x.numpy().transpose(0, 2, 3, 1), train=True,
        mutable=["batch_stats"])
  logit_error = _max_abs(logits, expected)
  stats_error = max(jax.tree.leaves(jax.tree.map(
      _max_abs, new_state["batch_stats"], updated["batch_stats"])))
  print(f"\nstudent_c: train logits max-abs error {logit_error:.3g}, "
        f"running stats {stats_error:.3g}")
  assert logit_error < TOLERANCE, logit_error
  assert stats_error < TOLERANCE, stats_error


def _restore(workdir: str):
  loaded = checkpointing.load_model(workdir, 0)
  return {"model": loaded.variables, "meta": loaded.meta}


def _save_pth(state_dict, path, wrapped: bool) -> None:
  if wrapped:  # A training script's checkpoint of a DataParallel model.
    state_dict = {"epoch": 3, "model_state_dict": {
        f"module.{k}": v for k, v in state_dict.items()}}
  torch.save(state_dict, path)


@pytest.mark.parametrize("kind", ["pth", "wrapped_pth", "npz"])
def test_cli_round_trip(kind, student_c, tmp_path, capsys):
  state_dict = student_c.state_dict()
  path = str(tmp_path / f"weights.{kind.split('_')[-1]}")
  if kind == "npz":
    np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})
  else:
    _save_pth(state_dict, path, wrapped=kind == "wrapped_pth")
  workdir = str(tmp_path / "run")
  status = convert.main(["convert", f"--torch_checkpoint={path}",
                         "--model=student_c", f"--workdir={workdir}"])
  out = capsys.readouterr().out
  assert status == 0
  assert "1,259,911 parameters" in out and checkpointing.checkpoint_dir(
      workdir) in out
  restored = _restore(workdir)
  assert restored["meta"]["model"] == {
      "name": "student_c", "width": 8, "se_reduction": 1, "num_classes": 7,
      "class_names": list(CLASS_NAMES)}
  assert restored["meta"]["preprocessing"]["image_size"] == 64
  assert restored["meta"]["finished"] is True
  assert restored["meta"]["best_epoch"] == 0
  assert restored["meta"]["source"] == f"imported from {path}"
  x = _images(3, 48, seed=4)
  error = _max_abs(_flax_logits("student_c", restored["model"], x),
                   _torch_logits(student_c, x))
  print(f"\n{kind} round trip: max-abs error {error:.3g}")
  assert error < TOLERANCE, error


def test_cli_as_module_reports_errors_without_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mre_jax.convert",
       f"--torch_checkpoint={tmp_path / 'absent.pth'}", "--model=student_c",
       f"--workdir={tmp_path / 'run'}"],
      capture_output=True, text=True, check=False, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith("error: weights file "), result.stderr
  assert "does not exist" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def _numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.numpy() for k, v in model.state_dict().items()}


def test_missing_key(student_c):
  state = _numpy_state(student_c)
  del state["res_block2.shortcut.1.running_var"]
  with pytest.raises(
      CheckpointError,
      match=r"missing: \[res_block2\.shortcut\.1\.running_var\]"):
    convert.torch_state_dict_to_flax(state, "student_c")


def test_unexpected_key(student_c):
  state = dict(_numpy_state(student_c), **{"fc5.weight": np.zeros((7, 7))})
  with pytest.raises(CheckpointError, match=r"unexpected: \[fc5\.weight\]"):
    convert.torch_state_dict_to_flax(state, "student_c")


def test_wrong_shape(student_c):
  state = _numpy_state(student_c)
  state["fc2.weight"] = state["fc2.weight"].T
  with pytest.raises(CheckpointError) as e:
    convert.torch_state_dict_to_flax(state, "student_c")
  assert ("wrong shape: [fc2.weight (got (128, 64), expected (64, 128))]"
          in str(e.value))
  assert "missing" not in str(e.value) and "unexpected" not in str(e.value)


def test_all_problems_in_one_message(student_c):
  state = _numpy_state(student_c)
  del state["conv2.bias"]
  state["extra"] = np.zeros(3)
  state["bn1.weight"] = np.zeros(9)
  with pytest.raises(CheckpointError) as e:
    convert.torch_state_dict_to_flax(state, "student_c")
  message = str(e.value)
  assert "missing: [conv2.bias]" in message
  assert "unexpected: [extra]" in message
  assert "wrong shape: [bn1.weight (got (9,), expected (8,))]" in message


def test_width_mismatch_suggests_preset(student_c):
  with pytest.raises(CheckpointError) as e:
    convert.torch_state_dict_to_flax(student_c.state_dict(), "teacher")
  message = str(e.value)
  assert message.startswith(
      "state_dict does not match model 'teacher' (width 64"), message
  assert "bn1.bias (got (8,), expected (64,))" in message
  assert "(+71 more)" in message
  assert message.endswith("conv1.weight has 8 output channels: if these are "
                          "student_c weights, pass --model=student_c"), message


def test_num_classes_mismatch_suggests_flag(student_c):
  with pytest.raises(CheckpointError, match="pass --num_classes=7"):
    convert.torch_state_dict_to_flax(student_c.state_dict(), "student_c",
                                     num_classes=8)


def test_num_batches_tracked_is_optional(student_c):
  state = {k: v for k, v in _numpy_state(student_c).items()
           if not k.endswith("num_batches_tracked")}
  convert.torch_state_dict_to_flax(state, "student_c")


def test_unknown_model_lists_presets(student_c):
  with pytest.raises(ConfigError, match="teacher, student_a, student_b, "
                     "student_c"):
    convert.torch_state_dict_to_flax(student_c.state_dict(), "student_d")


def test_refuses_workdir_with_checkpoints(student_c, tmp_path, capsys):
  path = str(tmp_path / "weights.npz")
  np.savez(path, **_numpy_state(student_c))
  workdir = tmp_path / "run"
  convert.import_checkpoint(path, "student_c", str(workdir))
  before = sorted(os.listdir(workdir / "checkpoints" / "0"))
  with pytest.raises(CheckpointError, match="already holds checkpoints"):
    convert.import_checkpoint(path, "student_c", str(workdir))
  status = convert.main(["convert", f"--torch_checkpoint={path}",
                         "--model=student_c", f"--workdir={workdir}"])
  err = capsys.readouterr().err
  assert status == 2
  assert err.startswith("error: ") and "never overwrites" in err, err
  assert sorted(os.listdir(workdir / "checkpoints" / "0")) == before


@pytest.mark.parametrize("content,expected", [
    (b"not a checkpoint", "could not read"),
    (None, "not a state_dict"),
    ({"epoch": 3, "optimizer": {}}, "no state_dict under any of"),
])
def test_unreadable_files(content, expected, tmp_path):
  path = tmp_path / "weights.pth"
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    torch.save([1, 2] if content is None else content, path)
  with pytest.raises(CheckpointError, match=expected):
    convert.load_state_dict(str(path))


def test_unreadable_npz_and_unknown_suffix(tmp_path):
  npz = tmp_path / "weights.npz"
  npz.write_bytes(b"garbage")
  with pytest.raises(CheckpointError, match="as an .npz archive"):
    convert.load_state_dict(str(npz))
  other = tmp_path / "weights.h5"
  other.write_bytes(b"")
  with pytest.raises(CheckpointError, match="unsupported weights file"):
    convert.load_state_dict(str(other))
  with pytest.raises(CheckpointError, match="does not exist"):
    convert.load_state_dict(str(tmp_path / "absent.npz"))
