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
``teacher_logits.npz`` in ``DIR`` (``--mode=export_logits``). ``DIR`` may
also be a shipped model or an ensemble, as the student named it
(``--teacher_workdir=RUNS/raf_B,student_b-raf_db``, see
:mod:`mre_jax.training.teachers`); ``--logits`` is then required.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import app
from absl import flags

from mre_jax import cli
from mre_jax.errors import TeacherLogitsError, UserError
from mre_jax.models import shipped
from mre_jax.training import logits_catalog
from mre_jax.training import run_record
from mre_jax.training import teacher_logits
from mre_jax.training import teachers


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


def shipped_provenance(name: str) -> dict[str, Any]:
  """:func:`run_provenance` of a shipped model, from its model card."""
  card = shipped.card(name)
  training, accuracy = card.get("training", {}), card["accuracy"]
  return {
      "dataset": card["dataset"]["name"], "model": card["model"]["name"],
      "recipe": training.get("recipe"), "epochs": training.get("epochs"),
      "best_epoch": training.get("best_epoch"),
      "accuracy": {split: accuracy.get(split, {}).get("accuracy")
                   for split in ("validation", "test")},
      "mean_class_accuracy_test": accuracy["test"].get("mean_class_accuracy"),
      "training_wall_s": training.get("wall_s"),
      "device": training.get("machine"), "commit": training.get("commit"),
      "command": training.get("command"), "shipped_model": name,
  }


def provenance(teacher_workdir: str) -> dict[str, Any]:
  """The provenance of the teacher(s) ``teacher_workdir`` names (see
  :mod:`mre_jax.training.teachers`): one's, or an ensemble's with each
  member's."""
  members = [shipped_provenance(ref) if teachers.is_shipped(ref)
             else run_provenance(ref)
             for ref in teachers.refs(teacher_workdir)]
  if len(members) == 1:
    return members[0]
  datasets = sorted({m["dataset"] for m in members})
  if len(datasets) > 1:
    raise TeacherLogitsError(
        f"the teachers {teacher_workdir} were trained on {datasets}: an "
        "ensemble's members share one dataset.")
  return {"dataset": datasets[0],
          "model": "ensemble of " + ", ".join(m["model"] for m in members),
          "combination": teachers.COMBINATION, "members": members,
          "best_epoch": None, "epochs": None, "accuracy": {},
          "device": ", ".join(sorted({str(m["device"]) for m in members}))}


def _epochs_of(meta: dict[str, Any]) -> list[Any]:
  """The checkpoint epochs of a logits file's teacher(s)."""
  teacher = meta.get("teacher", {})
  return [m.get("checkpoint_epoch")
          for m in teacher.get("members", [teacher])]


def _check_shipped_unchanged(named: list[str], meta: dict[str, Any],
                             source: str) -> None:
  """Refuses logits of a shipped teacher whose weights have been replaced
  since (its card would describe another model)."""
  members = meta.get("teacher", {})
  for ref, member in zip(named, members.get("members", [members])):
    if teachers.is_shipped(ref) and member.get("params_fingerprint") != (
        teachers.params_fingerprint(shipped.variables(ref)["params"])):
      raise TeacherLogitsError(
          f"{source} holds logits of another {ref} than the one shipped now "
          "(its parameters differ): export them again from the shipped "
          "model, or publish them before replacing it.")


def publish(teacher_workdir: str, folder: str | None = None,
            logits: str | None = None) -> str:
  """Writes ``<folder>/<dataset>.npz`` (float16) and its ``.json`` from the
  teacher run's logits file (``logits``, by default the one in its workdir)."""
  named = teachers.refs(teacher_workdir)
  if not logits and (len(named) != 1 or teachers.is_shipped(named[0])):
    raise TeacherLogitsError(
        f"{teacher_workdir} is not one teacher run with logits of its own: "
        "give --logits, the teacher_logits.npz a student distilled from "
        "them exported into its workdir.")
  source = logits or os.path.join(teacher_workdir,
                                  teacher_logits.LOGITS_FILENAME)
  if not os.path.isfile(source):
    raise TeacherLogitsError(
        f"{source} does not exist: export the teacher's logits first "
        "(python -m mre_jax.main --mode=export_logits with a student config "
        f"naming --config.distill.teacher_workdir={teacher_workdir}).")
  info = provenance(teacher_workdir)
  meta = logits_catalog.read_meta(source)
  expected = [m["best_epoch"] for m in info.get("members", [info])]
  if (meta.get("dataset"), _epochs_of(meta)) != (info["dataset"], expected):
    raise TeacherLogitsError(
        f"{source} holds logits of {meta.get('dataset')} by the checkpoints "
        f"of epochs {_epochs_of(meta)}, but {teacher_workdir} was evaluated "
        f"on {info['dataset']} at epochs {expected}: export the logits of "
        "the evaluated checkpoints, of the same teachers in the same order.")
  _check_shipped_unchanged(named, meta, source)
  target = os.path.join(folder or logits_catalog.FOLDER,
                        f"{info['dataset']}.npz")
  logits_catalog.save_float16(source, target)
  info["logits_meta"] = meta
  for member in meta["teacher"].get("members", [meta["teacher"]]):
    member.pop("workdir", None)  # A scratch path.
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
                      "run holding teacher_logits.npz, a shipped model, or "
                      "several separated by commas (an ensemble), as the "
                      "student named them.", required=True)
  flags.DEFINE_string("publish_dir", logits_catalog.FOLDER,
                      "Where <dataset>.npz/.json go.")
  flags.DEFINE_string("logits", None, "The teacher's logits file, e.g. the "
                      "teacher_logits.npz a student exported into its own "
                      "workdir; default: the one in --teacher_workdir.")
  app.run(main, flags_parser=cli.parse_or_fail)
