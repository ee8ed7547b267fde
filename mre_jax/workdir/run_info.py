"""What a run records about itself: the resolved config and the code version.

``config.json`` and ``run_info.json`` in the workdir say what ran, on which
commit and devices, with which command; the results report reads them. The
command is recorded as anyone can rerun it (:func:`portable`); ``argv``
keeps it exactly as typed.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time

import jax
from ml_collections import config_dict

from mre_jax.runtime import distributed


def git_commit(source: str | None = None) -> str:
  """The commit of the mre_jax source tree, or of ``source`` (``+dirty`` if
  a tracked file is edited); outside a git checkout, ``$MRE_JAX_COMMIT``
  (e.g. for a copied tree) or ``unknown``."""
  fallback = os.environ.get("MRE_JAX_COMMIT", "unknown")
  here = source or os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"],
                         capture_output=True, text=True, timeout=10)
    # Untracked files (scratch folders, outputs) leave the source as is.
    dirty = subprocess.run(["git", "-C", here, "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return fallback
  if out.returncode:
    return fallback
  return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_name() -> str:
  """The CPU's model name (``/proc/cpuinfo`` on Linux), or the platform's."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict[str, object]:
  """The hardware a run used: accelerator kind and count, CPU and cores."""
  devices = jax.devices()
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "device_count": len(devices), "cpu": cpu_name(),
          "cpu_count": os.cpu_count()}


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
# Flags whose absolute paths :func:`portable` replaces, by how the flag's
# name ends: a run's folder, downloaded data, prepared datasets.
_PLACEHOLDERS = (("workdir", "RUNS"), ("outdir", "RUNS"), ("workdirs", "RUNS"),
                 ("inputs", "RUNS"), ("manual_dir", "DATA"), ("data", "DATA"),
                 ("install_wheels", "WHEELS"), ("data_dir", "TFDS_DIR"))


# What the placeholders of :func:`portable` stand for, for pages that show
# recorded commands.
PLACEHOLDERS_NOTE = (
    "Commands are shown as recorded, with their folders as placeholders: "
    "`RUNS/<name>` a run's workdir, `DATA/<name>` the downloaded dataset "
    "files (`DATA` holds `fer2013/` and `rafdb/`), `TFDS_DIR` where datasets "
    "are prepared (`--config.dataset.data_dir`). Run them from the "
    "repository's root.")


def _portable_path(flag: str, path: str, repo: str) -> str:
  if os.path.commonpath([path, repo]) == repo:
    return os.path.relpath(path, repo)
  for suffix, placeholder in _PLACEHOLDERS:
    if flag == suffix or flag.endswith("." + suffix) or flag.endswith(
        "_" + suffix):
      if placeholder in ("TFDS_DIR", "WHEELS") or (
          placeholder == "DATA" and flag == "data"):
        return placeholder
      return f"{placeholder}/{os.path.basename(os.path.normpath(path))}"
  return path


def portable(command: str, repo: str = REPO) -> str:
  """``command`` as anyone can rerun it: absolute paths inside the
  repository become relative to it, and a run's folder, the data and the
  prepared datasets become placeholders (``RUNS/<name>``, ``DATA/<name>``,
  ``TFDS_DIR``). Other paths stay as they are."""
  try:
    words = shlex.split(command)
  except ValueError:
    return command
  out = []
  for i, word in enumerate(words):
    flag, eq, value = word.partition("=")
    if eq and flag.startswith("--") and os.path.isabs(value):
      word = f"{flag}={_portable_path(flag[2:], value, repo)}"
    elif os.path.isabs(word) and i and words[i - 1].startswith("--") and (
        "=" not in words[i - 1]):
      word = _portable_path(words[i - 1][2:], word, repo)
    elif os.path.isabs(word) and os.path.commonpath([word, repo]) == repo:
      word = os.path.relpath(word, repo)
    out.append(word)
  return shlex.join(out)


def command() -> str:
  """The command line that started this process, as a user would type it."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = os.path.abspath(sys.argv[0]) if sys.argv else ""
  if script.startswith(package + os.sep) and script.endswith(".py"):
    module = os.path.relpath(script[:-3], os.path.dirname(package))
    return portable(shlex.join(["python", "-m", module.replace(os.sep, "."),
                                *sys.argv[1:]]))
  return portable(shlex.join(["python", *sys.argv]))


def write_run_info(config: config_dict.ConfigDict, workdir: str) -> None:
  """Saves the resolved config and the code version into the workdir."""
  if not distributed.is_main_process():
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  info = {"commit": git_commit(), "argv": sys.argv, "command": command(),
          "machine": machine(),
          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
          "process_count": jax.process_count(),
          "time": time.strftime("%Y-%m-%d %H:%M:%S")}
  with open(os.path.join(workdir, "run_info.json"), "w") as f:
    json.dump(info, f, indent=2)
