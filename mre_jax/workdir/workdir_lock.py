"""One run per workdir: an exclusive lock on ``<workdir>/.lock``.

Two runs writing one workdir at once would mix their checkpoints and logs.
:func:`hold` takes a non-blocking ``flock`` on ``<workdir>/.lock`` and writes
the holder into it (pid, host, start time, command line); a second run is
refused with one line naming the holder, before it writes anything. The
operating system releases the lock when its process ends, however it ends, so
the lock of a dead process is free. In a multi-process run only process 0
locks, and every process follows its answer. Holds nest within a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from typing import Iterator

from absl import logging

from mre_jax.errors import WorkdirBusyError
from mre_jax.runtime import distributed

LOCK_FILE = ".lock"
_held: dict[str, int] = {}  # Workdir -> nesting depth in this process.


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock; WorkdirBusyError if another process holds it."""
  workdir = os.path.abspath(workdir)
  fd, refusal = None, None
  if distributed.is_main_process() and workdir not in _held:
    fd, refusal = _acquire(workdir)
  if not distributed.main_process_value(refusal is None):
    raise WorkdirBusyError(refusal or f"workdir {workdir} is in use by "
                           "another run (see process 0's error)")
  _held[workdir] = _held.get(workdir, 0) + 1
  try:
    yield
  finally:
    _held[workdir] -= 1
    if not _held[workdir]:
      del _held[workdir]
      if fd is not None:
        _release(fd)


def holder() -> dict[str, object]:
  """What the lock file says about this process."""
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
          "command": shlex.join(getattr(sys, "orig_argv", sys.argv))}


def _acquire(workdir: str) -> tuple[int | None, str | None]:
  """The locked file's descriptor, or None and why the lock is refused."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    busy = _describe(fd)
    os.close(fd)
    return None, (f"workdir {workdir} is in use by {busy}; wait for that run "
                  "to end, or use another --workdir")
  except OSError as e:  # A file system without flock, e.g. some network ones.
    logging.warning("Could not lock %s (%s): nothing keeps a second run from "
                    "using this workdir at the same time.", path, e)
    return fd, None
  os.ftruncate(fd, 0)
  os.write(fd, (json.dumps(holder()) + "\n").encode())
  return fd, None


def _describe(fd: int) -> str:
  """The holder named in the lock file, in words."""
  try:
    info = json.loads(os.pread(fd, 1 << 16, 0).decode())
    command = " ".join(str(info["command"]).split())  # On one line.
    return (f"process {info['pid']} on {info['host']} since "
            f"{info['since']} ({command})")
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (which has not written its name yet)"


def _release(fd: int) -> None:
  try:
    os.ftruncate(fd, 0)  # Still locked: nobody reads a half-cleared file.
  finally:
    os.close(fd)  # Releases the lock.
