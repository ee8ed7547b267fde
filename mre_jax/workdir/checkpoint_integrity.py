"""Damaged checkpoints are found before they are used.

When a checkpoint step is saved, the size and SHA-256 of every file in its
folder are written to ``mre_jax_checksums.json`` inside it; restoring a step
first checks them, so a truncated, overwritten or zeroed file is reported by
name instead of surfacing as a library error or, worse, as wrong numbers.
Restored values are then checked to be finite: NaN parameters are never
evaluated or trained on. Steps saved without a checksum file (older runs) are
only checked for finiteness.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from mre_jax.errors import CheckpointError

CHECKSUMS = "mre_jax_checksums.json"
_CHUNK = 1 << 22


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      digest.update(block)
  return digest.hexdigest()


def _files(step_dir: str) -> list[str]:
  found = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir)
      if rel != CHECKSUMS:
        found.append(rel)
  return sorted(found)


def write_checksums(step_dir: str) -> None:
  """Records size and SHA-256 of every file of a saved step."""
  table = {}
  for rel in _files(step_dir):
    path = os.path.join(step_dir, rel)
    table[rel] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
  tmp = os.path.join(step_dir, CHECKSUMS + ".tmp")
  with open(tmp, "w") as f:
    json.dump(table, f, indent=0, sort_keys=True)
  os.replace(tmp, os.path.join(step_dir, CHECKSUMS))


def damaged(step: int, step_dir: str, what: str,
            saved: Sequence[int] = ()) -> CheckpointError:
  """The one error for a damaged step, with what to do instead."""
  others = [s for s in saved if s != step]
  choice = (f"another saved epoch ({', '.join(map(str, sorted(others)))}) "
            "with --config.eval.checkpoint=latest|<epoch>" if others else
            "another checkpoint with --config.eval.checkpoint=latest|<epoch>")
  return CheckpointError(
      f"checkpoint step {step} is damaged: {what}\nEvaluate {choice}, or "
      f"move {step_dir} away to resume from the one before it.")


def verify(step_dir: str, step: int, saved: Sequence[int] = ()) -> None:
  """Raises CheckpointError naming the first file that differs from its
  recorded size or checksum (or is missing)."""
  record = os.path.join(step_dir, CHECKSUMS)
  if not os.path.isfile(record):
    return
  try:
    with open(record) as f:
      table = json.load(f)
  except (OSError, ValueError) as e:
    raise damaged(step, step_dir, f"{record} is unreadable ({e})",
                  saved) from e
  for rel, expected in table.items():
    path = os.path.join(step_dir, rel)
    if not os.path.isfile(path):
      raise damaged(step, step_dir, f"{path} is missing", saved)
    size = os.path.getsize(path)
    if size != expected["size"]:
      raise damaged(step, step_dir, f"{path} has {size} bytes, "
                    f"{expected['size']} were saved", saved)
    if _sha256(path) != expected["sha256"]:
      raise damaged(step, step_dir, f"{path} differs from what was saved "
                    "(checksum mismatch)", saved)


def _allowed_infinite(key: str, leaf: Any) -> bool:
  """The plateau's best value is +inf until it first measures (optax's
  ``reduce_on_plateau``), and stays so in runs on another schedule."""
  return key.endswith(".best_value") and bool(
      jnp.all(jnp.isfinite(leaf) | jnp.isposinf(leaf)))


def check_finite(tree: Any, step: int, step_dir: str,
                 saved: Sequence[int] = ()) -> None:
  """Raises CheckpointError if a restored float array holds NaN or inf
  (bar the plateau's best value, which may be +inf)."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = jax.tree_util.keystr(path)
    if (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
        and not bool(jnp.all(jnp.isfinite(leaf)))
        and not _allowed_infinite(key, leaf)):
      bad.append(key)
  if bad:
    listed = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more"
                                   if len(bad) > 3 else "")
    raise damaged(step, step_dir, f"NaN or infinite values in {listed} "
                  "(a damaged file, or a run that diverged)", saved)
