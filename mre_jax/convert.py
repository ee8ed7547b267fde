"""Imports PyTorch ResEmoteNet weights as an mre_jax checkpoint.

The official ResEmoteNet state-dict keys (``conv1.weight``, ``bn1.running_var``,
``se.fc.0.weight``, ``res_block1.shortcut.1.bias``, ``fc4.bias`` ...) map one to
one onto :mod:`mre_jax.models`; only layouts differ (Conv2d ``(O, I, kh, kw)``
becomes ``(kh, kw, I, O)``, Linear ``(out, in)`` becomes ``(in, out)``). The
expected keys and shapes are derived from the Flax model itself, so the two
cannot drift apart. ``num_batches_tracked`` buffers are ignored.

Usage::

  python -m mre_jax.convert --torch_checkpoint=resemotenet.pth \\
      --model=teacher --workdir=runs/teacher

writes step 0 of ``runs/teacher/checkpoints`` with the metadata of a finished
run, ready to be restored as a distillation teacher or evaluated. ``.pth`` and
``.pt`` files need PyTorch (read with ``weights_only=True``, so no code in the
file runs); ``.npz`` archives of the same keys do not.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mre_jax import cli
from mre_jax import models
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.config.labels import NUM_CLASSES
from mre_jax.errors import CheckpointError, ConfigError, UserError
from mre_jax.workdir import checkpointing

# Keys under which training scripts commonly nest the state_dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_DATA_PARALLEL_PREFIX = "module."
_IGNORED_BUFFER = "num_batches_tracked"
# Flax module and leaf names that differ from the PyTorch ones.
_MODULE_NAMES = {"fc_0": "fc.0", "fc_2": "fc.2", "shortcut_conv": "shortcut.0",
                 "shortcut_bn": "shortcut.1"}
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias",
               "mean": "running_mean", "var": "running_var"}
_MAX_LISTED = 10
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # torch colours some errors.


@dataclasses.dataclass(frozen=True)
class _Slot:
  """One Flax variable and the PyTorch entry it is read from."""
  leaf: str  # Flax leaf name: kernel, bias, scale, mean or var.
  key: str  # PyTorch state-dict key.
  shape: tuple[int, ...]  # Expected PyTorch shape.


def torch_key(path: Sequence[str]) -> str:
  """Flax variable path (without collection) -> PyTorch key.

  ``("res_block1", "shortcut_bn", "mean")`` ->
  ``res_block1.shortcut.1.running_mean``.
  """
  *modules, leaf = path
  return ".".join([_MODULE_NAMES.get(m, m) for m in modules]
                  + [_LEAF_NAMES[leaf]])


def _torch_shape(leaf: str, shape: Sequence[int]) -> tuple[int, ...]:
  if leaf == "kernel" and len(shape) == 4:
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if leaf == "kernel" and len(shape) == 2:
    return tuple(shape[::-1])
  return tuple(shape)


def _to_flax_layout(leaf: str, array: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if leaf == "kernel" and array.ndim == 2:
    return array.T
  return array


def _to_numpy(value: Any) -> np.ndarray:
  """A numpy array from a numpy array or a torch tensor (torch not imported)."""
  if hasattr(value, "detach") and hasattr(value, "cpu"):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # numpy has no bfloat16.
    return value.numpy()
  return np.asarray(value)


def _is_array(value: Any) -> bool:
  return hasattr(value, "shape") and hasattr(value, "dtype")


def _listing(items: Sequence[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = len(items) - _MAX_LISTED
  return f"[{shown}{f', ... (+{more} more)' if more > 0 else ''}]"


def _leading_dim(value: Any, ndim: int) -> int | None:
  if not _is_array(value) or len(value.shape) != ndim:
    return None
  return int(value.shape[0])


def _hints(state: Mapping[str, Any], model: models.ResEmoteNet) -> list[str]:
  """Which preset or flag the weights seem to want, from tell-tale shapes."""
  width = _leading_dim(state.get("conv1.weight"), 4)
  hidden = _leading_dim(state.get("se.fc.0.weight"), 2)
  classes = _leading_dim(state.get("fc4.weight"), 2)
  hints = []
  reduction = None
  if width and hidden and (4 * width) % hidden == 0:
    reduction = 4 * width // hidden
  if width and (width != model.width
                or reduction not in (None, model.se_reduction)):
    matches = [
        name for name, spec in models.MODEL_SPECS.items()
        if spec.width == width and reduction in (None, spec.se_reduction)]
    if matches:
      hints.append(f"conv1.weight has {width} output channels: if these are "
                   f"{matches[0]} weights, pass --model={matches[0]}")
    else:
      presets = "; ".join(f"{name}: width {spec.width}, se_reduction "
                          f"{spec.se_reduction}"
                          for name, spec in models.MODEL_SPECS.items())
      hints.append(f"the weights have width {width} (conv1.weight) and SE "
                   f"hidden width {hidden} (se.fc.0.weight), which match no "
                   f"preset ({presets})")
  if classes and classes != model.num_classes:
    hints.append(f"fc4.weight has {classes} outputs: pass "
                 f"--num_classes={classes}")
  return hints or ["export the state_dict of a ResEmoteNet of this preset "
                   "(mre_jax.models.torch_reference builds one)"]


def _strip_data_parallel_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
  keys = list(state)
  if keys and all(isinstance(k, str) and k.startswith(_DATA_PARALLEL_PREFIX)
                  for k in keys):
    return {k[len(_DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
  return dict(state)


def torch_state_dict_to_flax(state_dict: Mapping[str, Any], model_name: str,
                             num_classes: int = NUM_CLASSES
                             ) -> dict[str, Any]:
  """Converts a ResEmoteNet state_dict to ``{"params", "batch_stats"}``.

  Args:
    state_dict: key -> numpy array or torch tensor, with the official keys
      (a ``module.`` prefix from ``DataParallel`` is stripped).
    model_name: the preset the weights belong to (``models.MODEL_SPECS``).
    num_classes: outputs of ``fc4``.

  Returns:
    Variables for ``models.get_model(model_name, num_classes)``: the same tree
    as ``models.init_variables``, float32 arrays.

  Raises:
    ConfigError: unknown ``model_name``.
    CheckpointError: missing, unexpected or wrongly shaped entries, all listed
      in one message with a hint at the preset the weights seem to fit.
  """
  model = models.get_model(model_name, num_classes=num_classes)
  flat, treedef = jax.tree_util.tree_flatten_with_path(
      models.abstract_variables(model))
  state = _strip_data_parallel_prefix(state_dict)
  arrays, missing, wrong, known = [], [], [], set()
  for path, struct in flat:
    _, *names = (entry.key for entry in path)  # Drop the collection.
    slot = _Slot(names[-1], torch_key(names),
                 _torch_shape(names[-1], struct.shape))
    known.add(slot.key)
    if slot.leaf == "mean":
      known.add(f"{slot.key.rsplit('.', 1)[0]}.{_IGNORED_BUFFER}")
    if slot.key not in state:
      missing.append(slot.key)
      continue
    value = _to_numpy(state[slot.key])
    if value.dtype.kind not in "fiu":
      wrong.append(f"{slot.key} (got dtype {value.dtype}, expected numbers)")
      continue
    if value.shape != slot.shape:
      wrong.append(f"{slot.key} (got {value.shape}, expected {slot.shape})")
      continue
    # A copy: jnp.asarray may alias the host buffer of a torch tensor.
    arrays.append(jnp.array(_to_flax_layout(slot.leaf, value), jnp.float32,
                            copy=True))
  unexpected = sorted(str(k) for k in state if k not in known)
  if missing or unexpected or wrong:
    problems = [f"{label}: {_listing(sorted(items))}" for label, items in (
        ("missing", missing), ("unexpected", unexpected),
        ("wrong shape", wrong)) if items]
    raise CheckpointError(
        f"state_dict does not match model {model_name!r} (width "
        f"{model.width}, se_reduction {model.se_reduction}, "
        f"{model.num_classes} classes): {'; '.join(problems)} — "
        f"{'; '.join(_hints(state, model))}")
  return jax.tree_util.tree_unflatten(treedef, arrays)


def _unwrap(obj: Any, path: str) -> dict[str, Any]:
  """The state_dict in a loaded ``.pth``: itself or nested under a known key."""
  if not isinstance(obj, Mapping):
    raise CheckpointError(
        f"{path} holds a {type(obj).__name__}, not a state_dict. Save the "
        "weights with torch.save(model.state_dict(), path).")
  if any(_is_array(v) for v in obj.values()):
    return dict(obj)
  for key in _WRAPPER_KEYS:
    if isinstance(obj.get(key), Mapping):
      return dict(obj[key])
  raise CheckpointError(
      f"{path} holds a dict with keys {_listing(sorted(map(str, obj)))} but no "
      f"tensors and no state_dict under any of {list(_WRAPPER_KEYS)}. Save the "
      "weights with torch.save(model.state_dict(), path).")


def _load_torch(path: str) -> Any:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f"reading {path} needs PyTorch: pip install 'mre_jax[torch]' (or "
        "export the state_dict to .npz with numpy.savez)") from None
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for unreadable files.
    reason = _ANSI_ESCAPE.sub("", str(e)).strip().split("\n")[0][:300]
    raise CheckpointError(
        f"could not read {path} as a PyTorch state_dict ({type(e).__name__}: "
        f"{reason}). Save the weights with torch.save(model.state_dict(), "
        "path); whole pickled models are not loaded.") from e


def _load_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except Exception as e:  # numpy raises many types for unreadable files.
    raise CheckpointError(
        f"could not read {path} as an .npz archive ({type(e).__name__}: {e}). "
        "Write one with numpy.savez(path, **{k: v.numpy() for k, v in "
        "state_dict.items()}).") from e


def load_state_dict(path: str) -> dict[str, Any]:
  """Reads a state_dict from ``.pth``/``.pt`` (PyTorch) or ``.npz``.

  A ``.pth`` may hold the state_dict itself or a dict nesting it under one of
  ``state_dict``, ``model_state_dict``, ``model`` or ``net``.
  """
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(
        f"weights file {path} does not exist or is not a file; pass a .pth, "
        ".pt or .npz state_dict")
  suffix = os.path.splitext(path)[1].lower()
  if suffix == ".npz":
    return _load_npz(path)
  if suffix in (".pth", ".pt"):
    return _unwrap(_load_torch(path), path)
  raise CheckpointError(
      f"unsupported weights file {path}: expected a .pth or .pt PyTorch "
      "state_dict or an .npz archive of the same keys")


def _require_no_checkpoints(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f"--workdir {workdir} is a file; pass a directory")
  directory = checkpointing.checkpoint_dir(workdir)
  if os.path.isdir(directory) and os.listdir(directory):
    raise CheckpointError(
        f"{directory} already holds checkpoints "
        f"{_listing(sorted(os.listdir(directory)))}; importing never "
        "overwrites a run. Pass a new --workdir or move that folder away.")
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise CheckpointError(f"{directory} is a file; pass another --workdir")


@dataclasses.dataclass(frozen=True)
class ImportResult:
  """What :func:`import_checkpoint` wrote."""
  checkpoint: str  # The step directory.
  num_params: int
  num_batch_stats: int


def import_checkpoint(torch_checkpoint: str, model_name: str, workdir: str,
                      num_classes: int = NUM_CLASSES, image_size: int = 64,
                      channels: int | None = None) -> ImportResult:
  """Writes ``torch_checkpoint`` as step 0 of a new workdir and reads it back.

  The checkpoint is read back with :func:`checkpointing.load_model`, exactly
  as evaluation and distillation load it, and compared with what was written.
  ``image_size`` and ``channels`` describe the inputs the weights were trained
  on (ResEmoteNet: 64x64; FER2013 is grey, channels 1).
  """
  model = models.get_model(model_name, num_classes=num_classes)
  if num_classes < 1:
    raise ConfigError(f"--num_classes must be positive, got {num_classes}")
  if image_size < 16:
    raise ConfigError(f"--image_size must be at least 16, got {image_size}")
  if channels not in (None, 1, 3):
    raise ConfigError(f"--channels must be 1 (grey) or 3 (RGB), got "
                      f"{channels}")
  class_names = (CLASS_NAMES if num_classes == NUM_CLASSES else
                 tuple(f"class_{i}" for i in range(num_classes)))
  workdir = os.path.abspath(workdir)
  _require_no_checkpoints(workdir)
  source = os.path.abspath(torch_checkpoint)
  variables = torch_state_dict_to_flax(load_state_dict(source), model_name,
                                       num_classes)
  meta = {"model": checkpointing.model_meta(model_name, model, class_names),
          "preprocessing": checkpointing.preprocessing_meta(image_size,
                                                            channels),
          "epoch": 0, "best_epoch": 0, "best_val_accuracy": None,
          "finished": True, "source": f"imported from {source}"}
  manager = checkpointing.open_manager(workdir)
  try:
    checkpointing.save(manager, 0, model=variables, meta=meta)
  finally:
    manager.close()
  restored = checkpointing.load_model(workdir, 0).variables
  same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), variables,
                      restored)
  step_dir = os.path.join(checkpointing.checkpoint_dir(workdir), "0")
  if not all(jax.tree_util.tree_leaves(same)):
    raise CheckpointError(
        f"{step_dir} does not read back the weights just written; check the "
        "disk and retry with a new --workdir")
  return ImportResult(step_dir, models.count_params(variables["params"]),
                      models.count_params(variables["batch_stats"]))


def _define_flags() -> flags.FlagValues:
  """The CLI's flags, on their own FlagValues so importing defines nothing."""
  fv = flags.FlagValues()
  flags.DEFINE_string("torch_checkpoint", None,
                      "PyTorch state_dict (.pth/.pt) or .npz of the same keys.",
                      flag_values=fv)
  flags.DEFINE_string(
      "model", "teacher",
      f"Preset of the weights: {', '.join(models.MODEL_SPECS)}.",
      flag_values=fv)
  flags.DEFINE_string("workdir", None,
                      "New run directory; the checkpoint goes to "
                      "WORKDIR/checkpoints/0. Existing checkpoints are never "
                      "overwritten.", flag_values=fv)
  flags.DEFINE_integer("num_classes", NUM_CLASSES, "Outputs of fc4.",
                       flag_values=fv)
  flags.DEFINE_integer("image_size", 64, "Input size the weights were trained "
                       "at (ResEmoteNet: 64).", flag_values=fv)
  flags.DEFINE_enum("channels", None, ["1", "3"], "Channels of the training "
                    "images: 1 for grey (FER2013), 3 for RGB (RAF-DB); unset "
                    "if unknown.", flag_values=fv)
  flags.mark_flags_as_required(["torch_checkpoint", "workdir"], flag_values=fv)
  return fv


def _run(fv: flags.FlagValues) -> int:
  result = import_checkpoint(
      fv.torch_checkpoint, fv.model, fv.workdir, fv.num_classes,
      fv.image_size, int(fv.channels) if fv.channels else None)
  print(f"wrote {result.checkpoint}: model {fv.model!r}, "
        f"{result.num_params:,} parameters and {result.num_batch_stats:,} "
        f"BatchNorm statistics from {os.path.abspath(fv.torch_checkpoint)}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on ``argv`` (program name first); returns the exit status."""
  return cli.command(_define_flags, __doc__, _run, argv)


if __name__ == "__main__":
  sys.exit(main())
