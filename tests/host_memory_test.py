"""Host memory stays mapped between steps where glibc allows it."""

import platform
import subprocess
import sys

import pytest

from mre_jax.runtime import host_memory

_FAULTS = """
import resource, sys
import numpy as np
from mre_jax.runtime import host_memory
if sys.argv[1] in ("keep", "restore"):
  assert host_memory.keep_freed_memory()
if sys.argv[1] == "restore":
  assert host_memory.restore_malloc_defaults()
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # Warm-up: the heap grows to its peak.
  np.ones(64 * 2**20 // 8)
before = faults()
for _ in range(20):
  np.ones(64 * 2**20 // 8)  # 64 MiB, allocated and freed.
print(faults() - before)
"""

# A jitted step whose temporary (sin(x), 80 MiB) is above the 64 MiB that
# glibc's per-thread arenas can hold.
_STEP_FAULTS = """
import resource, sys
from mre_jax.runtime import host_memory
if sys.argv[1] == "keep":
  assert host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x[:8].T))
x = jax.device_put(jnp.ones((5120, 4096), jnp.float32))
for _ in range(3):
  step(x).block_until_ready()
before = faults()
for _ in range(10):
  step(x).block_until_ready()
print(faults() - before)
"""


def _faults(mode: str, script: str = _FAULTS) -> int:
  out = subprocess.run([sys.executable, "-c", script, mode], check=True,
                       capture_output=True, text=True, timeout=120)
  return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or
                    platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
  # Above glibc's largest mmap threshold (32 MiB), each of the 20 64 MiB
  # buffers is fresh mmap'd memory by default: at least one page fault per
  # 2 MiB (huge pages), 16,384 per buffer with 4 KiB pages.
  assert _faults("default") >= 20 * 32
  assert _faults("keep") < 100
  # glibc's own policy back (for long analyses): freed again, mapped anew.
  assert _faults("restore") >= 20 * 32


@pytest.mark.skipif(platform.system() != "Linux" or
                    platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_step_buffers_are_reused_without_page_faults():
  # Run on JAX's worker thread, the 80 MiB temporary is mapped anew at each
  # of the 10 steps (20,480 faults each with 4 KiB pages, 40 with huge
  # pages); run on the main thread, it comes from the main heap and is
  # reused. Smaller buffers of the product's own threads may still fault
  # (about 2,000 per step on a loaded 2-core machine, 10 on an idle one).
  assert _faults("default", _STEP_FAULTS) >= 10 * 40
  assert _faults("keep", _STEP_FAULTS) < 10 * 20480 // 2


def test_does_nothing_off_linux(monkeypatch):
  monkeypatch.setattr(platform, "system", lambda: "Darwin")
  assert host_memory.keep_freed_memory() is False
  assert host_memory.restore_malloc_defaults() is False
