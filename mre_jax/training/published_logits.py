"""Teacher logits that ship with the package, so students distil on a CPU.

``mre_jax/teacher_logits/<dataset>.npz`` holds a teacher's logits for the
dataset's train split (both views, float16, with the metadata that
:func:`mre_jax.training.teacher_logits.load` checks), and ``<dataset>.json``
where they came from: the teacher run's device, commit, command, epochs,
wall time and accuracies, read from its own files. A student that names no
teacher (neither ``distill.teacher_workdir`` nor ``distill.teacher_logits``)
distils from them; the data check still refuses them for other data.

    python -m mre_jax.training.published_logits --teacher_workdir=DIR \\
        [--publish_dir=mre_jax/teacher_logits]

publishes the logits of the teacher run ``DIR`` (its ``teacher_logits.npz``,
exported by training a student or by ``--mode=export_logits``).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_dict
import numpy as np

from mre_jax import cli
from mre_jax.errors import TeacherLogitsError, UserError

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "teacher_logits")


def path(dataset: str, folder: str | None = None) -> str | None:
  """The published logits file of ``dataset`` (in ``folder``, by default
  :data:`FOLDER`), or None."""
  candidate = os.path.join(folder or FOLDER, f"{dataset}.npz")
  return candidate if os.path.isfile(candidate) else None


def is_published(logits_path: str) -> bool:
  """Whether ``logits_path`` is one of the published files."""
  return os.path.dirname(os.path.abspath(logits_path)) == os.path.abspath(
      FOLDER)


def published(folder: str | None = None) -> list[str]:
  """The datasets with published logits."""
  folder = folder or FOLDER
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))


def provenance(logits_path: str) -> dict[str, Any]:
  """The ``.json`` beside a published file; empty when there is none."""
  try:
    with open(os.path.splitext(logits_path)[0] + ".json") as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def describe(logits_path: str) -> str:
  """One line on the teacher behind a published file, for logs and reports."""
  info = provenance(logits_path)
  if not info:
    return os.path.basename(logits_path)
  test = info.get("accuracy", {}).get("test")
  return (f"{info['model']} trained {info['epochs']} epochs on "
          f"{info['device']}, best epoch {info['best_epoch']}" +
          (f", test accuracy {100 * test:.2f}%" if test is not None else ""))


def apply_default(config: config_dict.ConfigDict, own_logits: str) -> None:
  """Points a distilling student that names no teacher at the published
  logits of its dataset, if any (in place, so that the workdir's config
  records the file). A run whose logits file ``own_logits`` exists, e.g.
  exported into its workdir earlier, keeps it."""
  distill = config.distill
  if (distill.teacher_logits or distill.teacher_workdir or
      os.path.exists(own_logits)):
    return
  found = path(config.dataset.name)
  if found:
    distill.teacher_logits = found
    logging.info("No teacher named: distilling from the published logits "
                 "%s (%s).", found, describe(found))


def read_meta(logits_path: str) -> dict[str, Any]:
  """A teacher-logits file's metadata; TeacherLogitsError if unreadable."""
  try:
    with np.load(logits_path, allow_pickle=False) as f:
      return json.loads(str(f["meta"]))
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise TeacherLogitsError(f"{logits_path} is not a teacher-logits file "
                             f"({e}): export it with --mode=export_logits."
                             ) from e


def save_float16(source: str, target: str) -> None:
  """Copies a teacher-logits file with float16 logits, atomically."""
  try:
    with np.load(source, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise TeacherLogitsError(f"cannot read teacher logits {source}: {e}. "
                             "Export them with --mode=export_logits.") from e
  arrays["logits"] = arrays["logits"].astype(np.float16)
  os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
  np.savez(target + ".tmp.npz", **arrays)
  os.replace(target + ".tmp.npz", target)


def run_provenance(teacher_workdir: str) -> dict[str, Any]:
  """What a published file says of its teacher, from the run's own files."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax import report
  run = report.load_run(teacher_workdir)
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
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.training import teacher_logits
  source = logits or os.path.join(teacher_workdir,
                                  teacher_logits.LOGITS_FILENAME)
  if not os.path.isfile(source):
    raise TeacherLogitsError(
        f"{source} does not exist: export the teacher's logits first "
        "(python -m mre_jax.main --mode=export_logits with a student config "
        f"naming --config.distill.teacher_workdir={teacher_workdir}).")
  info = run_provenance(teacher_workdir)
  meta = read_meta(source)
  if (meta.get("dataset"), meta.get("teacher", {}).get("checkpoint_epoch")) != (
      info["dataset"], info["best_epoch"]):
    raise TeacherLogitsError(
        f"{source} holds logits of {meta.get('dataset')} by the checkpoint "
        f"of epoch {meta.get('teacher', {}).get('checkpoint_epoch')}, but "
        f"{teacher_workdir} was evaluated on {info['dataset']} at epoch "
        f"{info['best_epoch']}: export the logits of the evaluated checkpoint.")
  target = os.path.join(folder or FOLDER, f"{info['dataset']}.npz")
  save_float16(source, target)
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
    target = publish(flags.FLAGS.teacher_workdir,
                     flags.FLAGS.publish_dir)
  except UserError as e:
    cli.fail(str(e))
  print(f"published {target}: {describe(target)}")


if __name__ == "__main__":
  flags.DEFINE_string("teacher_workdir", None, "A finished, evaluated teacher "
                      "run holding teacher_logits.npz.", required=True)
  flags.DEFINE_string("publish_dir", FOLDER, "Where <dataset>.npz/.json "
                      "go.")
  app.run(main, flags_parser=cli.parse_or_fail)
