"""Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM.

SLURM, preemption and ``kill`` send SIGTERM; a terminal sends SIGINT. While a
:class:`StopOnSignal` is active, the first such signal only asks the loop to
stop: it finishes the dispatch (or checkpoint) under way and raises
:class:`mre_jax.errors.Interrupted`, whose one-line message says from which
epoch a rerun of the same command resumes. A second signal stops at once,
except inside :meth:`StopOnSignal.protect` (writing a checkpoint), which always
completes first. With several processes, they stop together after an epoch's
checkpoint, when any of them was signalled.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from mre_jax.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopNow(BaseException):
  """Raised by a second signal. A BaseException, like KeyboardInterrupt, so
  that libraries' ``except Exception`` clauses do not swallow it."""


class StopOnSignal:
  """Context manager: SIGINT and SIGTERM request a stop instead of killing.

  The handlers are installed in the main thread only, for signals not
  ignored, and the previous ones restored on exit. The loop reports its
  progress in :attr:`epoch` (the epoch under way) and :attr:`saved_epoch`
  (the last one checkpointed), and calls :meth:`check` where it can stop.
  """

  def __init__(self, workdir: str, num_epochs: int, saved_epoch: int = 0):
    self.workdir, self.num_epochs = workdir, num_epochs
    self.saved_epoch = self.epoch = saved_epoch
    self.finished = False  # Whether the saved epoch ended the training.
    self.signal_name: str | None = None
    self._protected = 0
    self._previous: dict[int, object] = {}
    self._multiprocess = jax.process_count() > 1

  def __enter__(self) -> StopOnSignal:
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        # An ignored signal stays ignored (e.g. SIGINT in a background job).
        if signal.getsignal(sig) is not signal.SIG_IGN:
          self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      # None: a handler installed outside Python, e.g. the default one.
      signal.signal(sig, signal.SIG_DFL if previous is None else previous)
    self._previous.clear()

  def _handle(self, signum: int, frame) -> None:
    del frame
    first = self.signal_name is None
    self.signal_name = signal.Signals(signum).name
    if self._protected:
      logging.warning("%s received: stopping once the checkpoint being "
                      "written is complete.", self.signal_name)
    elif first:
      logging.warning("%s received: stopping after the current step (send "
                      "it again to stop at once).", self.signal_name)
    else:
      raise StopNow()

  @contextlib.contextmanager
  def protect(self) -> Iterator[None]:
    """Signals inside only request a stop, so that what is written completes."""
    self._protected += 1
    try:
      yield
    finally:
      self._protected -= 1

  def check(self, *, epoch_end: bool = False) -> None:
    """Raises Interrupted if a stop was requested.

    Between steps (the default) only single-process runs stop; processes of a
    multi-process run agree on stopping at the end of an epoch, as their
    collectives must pair up.
    """
    if not self._multiprocess:
      requested = self.signal_name is not None
    elif epoch_end:
      requested = bool(np.any(multihost_utils.process_allgather(
          np.asarray(self.signal_name is not None))))
    else:
      return
    if requested:
      raise self.interrupted()

  def interrupted(self) -> Interrupted:
    """The one-line Interrupted for where the run is now."""
    signal_name = self.signal_name or "another process's signal"
    if self.finished:
      return Interrupted(
          f"stopped by {signal_name} after epoch {self.saved_epoch}, the "
          f"last of {self.workdir}: training is finished; --mode=evaluate "
          "reports it")
    where = (f"after epoch {self.saved_epoch}" if self.epoch ==
             self.saved_epoch else f"during epoch {self.epoch}")
    start = " (the start)" if self.saved_epoch == 0 else ""
    return Interrupted(
        f"stopped by {signal_name} {where}/{self.num_epochs} of "
        f"{self.workdir}; rerun the same command to resume from epoch "
        f"{self.saved_epoch}{start}")
