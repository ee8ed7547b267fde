"""Installs missing requirements from a folder of wheels, for a machine
without a package index (a rented GPU machine, say): the GPU reproduction
driver calls it before its first step, so that a missing package stops it at
once instead of in the middle of a step."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from mre_jax.errors import UserError

# Of setup.cfg's requirements, those a JAX + PyTorch GPU image lacks; TFDS
# imports importlib_resources only when it prepares a dataset.
NEEDED = ("ml_collections", "tensorflow_datasets", "importlib_resources",
          "array_record")


class InstallError(UserError):
  """The wheels cannot supply a missing requirement."""


def install_wheels(folder: str, workdirs: str) -> None:
  """If a module of :data:`NEEDED` is missing, installs the wheels in
  ``folder`` into ``<workdirs>/site`` and restarts the command with it on
  ``PYTHONPATH`` (its child processes inherit it). Raises
  :class:`InstallError` when that cannot supply them."""
  missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
  if not missing:
    return
  wheels = sorted(os.path.join(folder, f) for f in (
      os.listdir(folder) if folder and os.path.isdir(folder) else ())
                  if f.endswith(".whl"))
  site = os.path.join(workdirs, "site")
  python = f"{sys.version_info.major}.{sys.version_info.minor}"
  if not wheels or site in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    raise InstallError(
        f"{', '.join(missing)} not installed: pip install them, or pass "
        "--install_wheels=DIR naming a folder of their wheels" + (
            f" ({folder} holds no .whl file)" if not wheels and folder else
            f" (none of the wheels of {folder} provides them for this "
            "Python: add them there, e.g. python3 -m pip download --no-deps "
            f"--only-binary=:all: --python-version {python} -d {folder} "
            f"{' '.join(m.replace('_', '-') for m in missing)})"
            if wheels else ""))
  pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--no-index", "--no-deps", "--no-compile", "--upgrade",
                        "--target", site, *wheels], check=False)
  if pip.returncode:
    raise InstallError(f"pip could not install the wheels of {folder} into "
                       f"{site} (exit status {pip.returncode}; its message "
                       "is above)")
  os.environ["PYTHONPATH"] = os.pathsep.join(
      p for p in (site, os.environ.get("PYTHONPATH")) if p)
  os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
