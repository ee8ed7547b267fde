"""Publishing a teacher's logits with the package, so students distil on a CPU.

``mre_jax/teacher_logits/<dataset>.npz`` (read by
:mod:`mre_jax.training.logits_catalog`) holds a teacher's logits for the
dataset's train split (both views, float16, with the metadata that
:func:`mre_jax.training.teacher_logits.load` checks), and ``<dataset>.json``
where they came from: the teacher run's device, commit, command, epochs,
wall time and accuracies, read from its own files. A student that names no
teacher (neither ``distill.teacher_workdir`` nor ``distill.teacher_logits``)
distils from them; the data check still refuses them for other data.

    python -m mre_jax.training.published_logits --teacher_workdir=DIR \\
        [--logits=STUDENT_WORKDIR/teacher_logits.npz] \\
        [--publish_dir=mre_jax/teacher_logits]

publishes the logits of the teacher run ``DIR``: ``--logits``, as a student
distilled from it exported them into its own workdir, or by default the
``teacher_logits.npz`` in ``DIR`` (``--mode=export_logits``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import app
from absl import flags

from mre_jax import cli
from mre_jax.errors import TeacherLogitsError, UserError
from mre_jax.training import logits_catalog
from mre_jax.training import run_record
from mre_jax.training import teacher_logits


def run_provenance(teacher_workdir: str) -> dict[str, Any]:
  """What a published file says of its teacher, from the run's own files."""
  run = run_record.load_run(teacher_workdir)
  if run["model"] != "teacher" and run["kd_weight"]:
    raise TeacherLogitsError(f"{teacher_workdir} is a distilled student, not "
                             "a teacher: publish a teacher's logits.")
  return {
      "dataset": run["dataset"], "model": run["model"],
      "recipe": run["recipe"], "epochs": run["epochs"],
      "best_epoch": run["best_epoch"],
      "accuracy": {"validation": run["val_acc"], "test": run["test_acc"]},
      "mean_class_accuracy_test": run["mean_class_acc"],
      "training_wall_s": run["wall_s"], "device": run["device"],
      "commit": run["commit"], "command": run["command"],
      "teacher_workdir": os.path.basename(os.path.normpath(teacher_workdir)),
  }


def publish(teacher_workdir: str, folder: str | None = None,
            logits: str | None = None) -> str:
  """Writes ``<folder>/<dataset>.npz`` (float16) and its ``.json`` from the
  teacher run's logits file (``logits``, by default the one in its workdir)."""
  source = logits or os.path.join(teacher_workdir,
                                  teacher_logits.LOGITS_FILENAME)
  if not os.path.isfile(source):
    raise TeacherLogitsError(
        f"{source} does not exist: export the teacher's logits first "
        "(python -m mre_jax.main --mode=export_logits with a student config "
        f"naming --config.distill.teacher_workdir={teacher_workdir}).")
  info = run_provenance(teacher_workdir)
  meta = logits_catalog.read_meta(source)
  if (meta.get("dataset"), meta.get("teacher", {}).get("checkpoint_epoch")) != (
      info["dataset"], info["best_epoch"]):
    raise TeacherLogitsError(
        f"{source} holds logits of {meta.get('dataset')} by the checkpoint "
        f"of epoch {meta.get('teacher', {}).get('checkpoint_epoch')}, but "
        f"{teacher_workdir} was evaluated on {info['dataset']} at epoch "
        f"{info['best_epoch']}: export the logits of the evaluated checkpoint.")
  target = os.path.join(folder or logits_catalog.FOLDER,
                        f"{info['dataset']}.npz")
  logits_catalog.save_float16(source, target)
  info["logits_meta"] = meta
  info["logits_meta"]["teacher"].pop("workdir", None)  # A scratch path.
  described = os.path.splitext(target)[0] + ".json"
  with open(described + ".tmp", "w") as f:
    json.dump(info, f, indent=2)
  os.replace(described + ".tmp", described)
  return target


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {' '.join(argv[1:])}")
  try:
    target = publish(flags.FLAGS.teacher_workdir, flags.FLAGS.publish_dir,
                     flags.FLAGS.logits)
  except UserError as e:
    cli.fail(str(e))
  print(f"published {target}: {logits_catalog.describe(target)}")


if __name__ == "__main__":
  flags.DEFINE_string("teacher_workdir", None, "A finished, evaluated teacher "
                      "run holding teacher_logits.npz.", required=True)
  flags.DEFINE_string("publish_dir", logits_catalog.FOLDER,
                      "Where <dataset>.npz/.json go.")
  flags.DEFINE_string("logits", None, "The teacher's logits file, e.g. the "
                      "teacher_logits.npz a student exported into its own "
                      "workdir; default: the one in --teacher_workdir.")
  app.run(main, flags_parser=cli.parse_or_fail)
