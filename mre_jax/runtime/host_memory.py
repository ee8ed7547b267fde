"""Host memory that stays mapped between training steps (glibc on Linux).

On the CPU, XLA allocates each execution's buffers anew and frees them when
it ends. glibc's ``malloc`` serves large requests with fresh ``mmap``'d pages
and gives freed heap tops back to the system, so every step touches its large
buffers for the first time again: about 15,000 page faults per step for
student C at batch 64 on a 2-core Zen 4 VM, a third of the step's time.

:func:`keep_freed_memory` asks glibc (``mallopt``) to serve every request
from the heap and to keep freed memory for reuse. After the first steps, a
step's buffers reuse pages already mapped. The process's resident memory
then stays at its peak instead of shrinking between steps. Elsewhere (other
C libraries, macOS, Windows) it does nothing.

glibc serves each thread other than the main one from an arena whose heaps
hold at most 64 MiB, and maps any larger request there with ``mmap`` whatever
``mallopt`` says. JAX runs CPU computations on a worker thread by default
(asynchronous dispatch), so a step whose buffers need more than 64 MiB
(students A and B at batch 64) faulted them in again at every step: about
25,000 page faults, a sixth of student B's step. :func:`keep_freed_memory`
therefore also makes JAX run CPU computations on the calling thread, whose
requests come from the main heap. It must be called before JAX's first
computation, as the package's commands do at start. The analysis commands
(``python -m mre_jax.analyze`` and ``mre_jax.study``) do not: their memory
must stay flat over hours of video (:func:`restore_malloc_defaults`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import jax

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
# Freed memory at the heap's top kept before trimming, and extra memory
# requested whenever the heap grows.
_TRIM_THRESHOLD = 2**31 - 1
_TOP_PAD = 256 * 2**20


def _glibc() -> ctypes.CDLL | None:
  """The C library where it is glibc on Linux; None elsewhere."""
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_memory() -> bool:
  """Configures glibc's allocator, and JAX to run CPU computations on the
  calling thread, as the module doc says; returns whether it applied (True
  only on Linux with glibc). Call it before JAX's first computation."""
  libc = _glibc()
  if libc is None:
    return False
  settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
              (_M_TOP_PAD, _TOP_PAD))
  applied = [libc.mallopt(param, value) == 1 for param, value in settings]
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  return all(applied)


# glibc's own values of the settings above (malloc.c).
_GLIBC_DEFAULTS = ((_M_MMAP_MAX, 65536), (_M_TRIM_THRESHOLD, 128 * 1024),
                   (_M_TOP_PAD, 0))


def restore_malloc_defaults() -> bool:
  """Gives glibc back its own allocation policy (JAX's dispatch setting is
  left as it is); returns whether it applied.

  For long video analyses: their frame-sized buffers, freed and requested
  again at every frame among smaller objects that live on, fragment a heap
  that never gives memory back. On a 1280x720 recording the process grew
  by about 150 MB an hour under :func:`keep_freed_memory`, and stayed flat
  under glibc's policy.
  """
  libc = _glibc()
  return libc is not None and all([libc.mallopt(param, value) == 1
                                   for param, value in _GLIBC_DEFAULTS])
