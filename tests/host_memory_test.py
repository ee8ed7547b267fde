"""Host memory stays mapped between steps where glibc allows it."""

import platform
import subprocess
import sys

import pytest

from mre_jax import host_memory

_FAULTS = """
import resource, sys
import numpy as np
from mre_jax import host_memory
if sys.argv[1] == "keep":
  assert host_memory.keep_freed_memory()
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # Warm-up: the heap grows to its peak.
  np.ones(64 * 2**20 // 8)
before = faults()
for _ in range(20):
  np.ones(64 * 2**20 // 8)  # 64 MiB, allocated and freed.
print(faults() - before)
"""


def _faults(mode: str) -> int:
  out = subprocess.run([sys.executable, "-c", _FAULTS, mode], check=True,
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


def test_does_nothing_off_linux(monkeypatch):
  monkeypatch.setattr(platform, "system", lambda: "Darwin")
  assert host_memory.keep_freed_memory() is False
