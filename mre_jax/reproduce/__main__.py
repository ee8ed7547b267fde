"""One command that reproduces the GPU results, step by step, within budgets.

    python -m mre_jax.reproduce --outdir=OUT \\
        [--steps=bench,teacher_fer,teacher_raf,e1,e4] [--data=../shared/data] \\
        [--workdirs=DIR] [--budget_s=SECONDS|STEP=SECONDS,...] \\
        [--epochs=N|STEP=N,...] [--inputs=DIR] [--install_wheels=DIR] [--tiny]

Steps, always in this order: ``bench`` (speed of the four models, JAX beside
PyTorch eager and torch.compile); ``teacher_fer`` and ``teacher_raf`` (the
teacher, paper recipe, on FER2013 / RAF-DB: its evaluation and the train
split's logits, both views, float16); ``e1`` and ``e4`` (students A and B of
Table IV on FER2013, distilled from ``teacher_fer``'s logits).

Each step runs in processes of its own (:mod:`mre_jax.reproduce.steps`)
within its time budget: training stops at an epoch boundary once the next
epoch would eat into the time kept for evaluation and logits, and whatever
outlives the budget is killed. Results land in ``OUTDIR/<step>/`` as soon as
they exist, and ``OUTDIR/manifest.json`` records per step the command,
start, end, wall time, status (``done``; ``cut_off`` by its budget;
``failed``, with the error line), device and commit. A failed step does not
stop the steps that do not need it. Students read
``<inputs>/teacher_fer/teacher_logits.npz``, so each step can run alone on a
fresh machine from earlier outputs. ``--tiny`` (or
``MRE_JAX_REPRODUCE_TINY=1``) shrinks every step to run on a CPU.
"""

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
