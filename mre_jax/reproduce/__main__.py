"""The reproduction driver: ``python -m mre_jax.reproduce`` (see
:mod:`mre_jax.reproduce`)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import sys
import time
from typing import Any

from mre_jax.errors import UserError
from mre_jax.reproduce import steps as reproduce_step
from mre_jax.reproduce.common import child_env, timestamp
from mre_jax.reproduce.common import FLAGS, Options, ReproduceError, Step
from mre_jax.reproduce.common import parse_steps, read_json, run, write_json
from mre_jax.runtime import offline_install
from mre_jax.workdir import run_info


def drive(steps: list[Step], opts: Options) -> dict[str, Any]:
  """Runs ``steps`` in order; returns the manifest, written after each."""
  path = os.path.join(opts.outdir, "manifest.json")
  manifest = read_json(path) or {"steps": {}}  # Earlier steps' entries stay.
  # A copy of a checkout has no .git: MRE_JAX_COMMIT can name the commit.
  commit = run_info.git_commit()
  env = child_env(opts)
  for step in steps:
    out = os.path.join(opts.outdir, step.name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    start = time.time()
    entry = manifest["steps"][step.name] = {
        "command": run_info.portable(shlex.join(
            ["python", "-m", "mre_jax.reproduce", *opts.argv(step.name)])),
        "start": timestamp(start), "budget_s": opts.budgets[step.name],
        "status": "running", "commit": commit, "tiny": opts.tiny}
    write_json(path, manifest)
    print(f"== {step.name}: budget {opts.budgets[step.name]:g} s", flush=True)
    runner = (reproduce_step.run_bench if step.name == "bench" else
              functools.partial(reproduce_step.run_training, step))
    result = {"status": "failed", "error": "the driver was stopped"}
    try:
      opts.check_inputs(step)
      result = runner(opts, start + opts.budgets[step.name], out, env)
    except UserError as e:
      result = {"status": "failed", "error": f"error: {e}"}
    finally:
      end = time.time()
      entry.update(end=timestamp(end), wall_s=round(end - start, 1),
                   status=result["status"], error=result.get("error"),
                   note=result.get("note"), device=result.get("device"),
                   equivalent=result.get("command"),
                   outputs=sorted(os.listdir(out)))
      write_json(path, manifest)
    print(f"== {step.name}: {entry['status']} in {entry['wall_s']} s" +
          "".join(f"; {entry[k]}" for k in ("note", "error") if entry[k]),
          flush=True)
  return manifest


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ReproduceError(f"unexpected argument(s) {' '.join(argv[1:])}: "
                         "every argument is a flag, e.g. --outdir=DIR")
  steps = parse_steps(FLAGS.steps)
  opts = Options.from_flags()
  # SIGTERM unwinds like Ctrl-C: the step under way is stopped and recorded.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
  offline_install.install_wheels(FLAGS.install_wheels, opts.workdirs)
  manifest = drive(steps, opts)
  print(f"\n{os.path.join(opts.outdir, 'manifest.json')}:")
  for name, entry in manifest["steps"].items():
    print(f"  {name:12} {entry['status']:8} {entry.get('wall_s', '-'):>7} s  "
          + (entry.get("error") or entry.get("note") or ""))
  if any(manifest["steps"][s.name]["status"] == "failed" for s in steps):
    sys.exit(1)


if __name__ == "__main__":
  run(main)
