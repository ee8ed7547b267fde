"""Per-epoch metrics as JSON lines and TensorBoard events (process 0 only)."""

from __future__ import annotations

import json
import os

from absl import logging

from mre_jax.runtime import distributed


class MetricWriter:
  """Appends one JSON line per epoch to ``metrics.jsonl``, plus TensorBoard.

  A run resumed from epoch ``resumed_epoch`` first drops the JSON lines of
  later epochs, written before an interruption that lost their checkpoint.
  """

  def __init__(self, workdir: str, resumed_epoch: int = 0):
    self._active = distributed.is_main_process()
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self._active and os.path.exists(self._path):
      with open(self._path) as f:
        lines = f.read().splitlines()
      kept = [l + "\n" for l in lines if _logged_by(l, resumed_epoch)]
      if len(kept) < len(lines):
        with open(self._path, "w") as f:
          f.writelines(kept)
    if self._active:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:
        logging.warning("tensorboardX not installed: no TensorBoard events.")

  def write(self, epoch: int, scalars: dict[str, float]) -> None:
    if not self._active:
      return
    with open(self._path, "a") as f:
      f.write(json.dumps({"epoch": epoch, **scalars}) + "\n")
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, value, epoch)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _logged_by(line: str, epoch: int) -> bool:
  """Whether a metrics.jsonl line is intact and of ``epoch`` or earlier."""
  try:
    return int(json.loads(line)["epoch"]) <= epoch
  except (ValueError, KeyError, TypeError):
    return False  # Cut short by a crash.
