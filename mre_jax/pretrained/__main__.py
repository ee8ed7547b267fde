"""The models that come with mre_jax: list them, re-measure one, publish one.

    python -m mre_jax.pretrained                  # the shipped models
    python -m mre_jax.pretrained --verify=student_c-fer2013 \\
        --manual_dir=DATA/fer2013                 # its accuracy, re-measured
    python -m mre_jax.pretrained --publish=WORKDIR --name=student_c-raf_db \\
        --manual_dir=DATA/rafdb                   # ship a finished run
    python -m mre_jax.pretrained --readjust=student_b-fer2013 \\
        --manual_dir=DATA/fer2013                 # its logit adjustment, again

``--verify`` prepares the model's dataset from the downloaded files in
``--manual_dir`` (into ``--data_dir``), measures the shipped weights on the
card's splits and prints both side by side; it exits with status 1 when they
disagree by more than 0.1 points.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from absl import flags

from mre_jax import cli
from mre_jax import pretrained
from mre_jax.errors import UserError
from mre_jax.models import shipped

_pct = lambda x: "-" if x is None else f"{100 * x:.2f}"


def listing(folder: str = shipped.FOLDER) -> str:
  """One line per shipped model: dataset, size, accuracies, epochs."""
  rows = [("name", "dataset", "params", "file", "val %", "test %",
           "mean class %", "test+flip %", "epochs")]
  for name in shipped.names(folder):
    card = shipped.card(name, folder)
    acc = card["accuracy"]
    rows.append((name, card["dataset"]["name"],
                 f"{card['model']['num_params']:,}",
                 f"{card['weights']['bytes'] / 2**20:.1f} MiB "
                 f"{card['weights']['dtype']}",
                 _pct(acc["validation"]["accuracy"]),
                 _pct(acc["test"]["accuracy"]),
                 _pct(acc["test"]["mean_class_accuracy"]),
                 _pct(acc["test_flip"]["accuracy"]),
                 str(card["training"]["epochs"])))
  if len(rows) == 1:
    return "no shipped models in this installation"
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                   for r in rows)


def verification(name: str, data_dir: str, manual_dir: str,
                 folder: str = shipped.FOLDER) -> tuple[str, bool]:
  """The card's accuracies beside the re-measured ones, and whether every
  one agrees."""
  # pylint: disable=g-import-not-at-top
  from mre_jax.pretrained import measure
  card = shipped.card(name, folder)
  classifier = pretrained.load(name, folder=folder)
  splits = measure.load_splits(card["dataset"], data_dir, manual_dir)
  rows = measure.differences(card["accuracy"],
                             measure.measure(classifier, splits))
  lines = [f"{name} on {card['dataset']['name']} (data: "
           f"{manual_dir or data_dir})",
           f"{'split':<11} {'accuracy of':<20} {'card %':>8} "
           f"{'measured %':>10}"]
  for split, metric, stated, got in rows:
    same = measure.agree([(split, metric, stated, got)])
    mark = "" if same else "  <- differs"
    lines.append(f"{split:<11} {metric:<20} {_pct(stated):>8} "
                 f"{_pct(got):>10}{mark}")
  ok = measure.agree(rows)
  lines.append("every accuracy agrees with the model card" if ok else
               "the re-measured accuracies differ from the model card: is "
               "this the same dataset, in the same version?")
  return "\n".join(lines), ok


def _publish(fv: flags.FlagValues) -> str:
  # pylint: disable=g-import-not-at-top
  from mre_jax.pretrained import publish
  card = publish.publish(fv.publish, fv.name, fv.data_dir, fv.manual_dir,
                         fv.folder)
  acc = card["accuracy"]
  return (f"published {card['name']} ({card['weights']['dtype']}, "
          f"{card['weights']['bytes']:,} bytes) into {fv.folder}: "
          f"validation {_pct(acc['validation']['accuracy'])}%, test "
          f"{_pct(acc['test']['accuracy'])}% (mean class "
          f"{_pct(acc['test']['mean_class_accuracy'])}%), test with flips "
          f"{_pct(acc['test_flip']['accuracy'])}%")


def _readjust(fv: flags.FlagValues) -> str:
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.pretrained import publish
  before = shipped.card(fv.readjust, fv.folder)
  card = publish.readjust(fv.readjust, fv.data_dir, fv.manual_dir, fv.folder)
  lines = [f"readjusted {card['name']}: tau "
           f"{before['training'].get('logit_adjustment', {}).get('tau', 0):g}"
           f" -> {card['training']['logit_adjustment']['tau']:g}",
           f"{'split':<11} {'accuracy of':<20} {'before %':>8} {'now %':>8}"]
  for split, metric, old, new in _changes(before, card):
    lines.append(f"{split:<11} {metric:<20} {_pct(old):>8} {_pct(new):>8}")
  return "\n".join(lines)


def _changes(before: dict[str, Any], after: dict[str, Any]
             ) -> list[tuple[str, str, float, float]]:
  """``(split, metric, before, after)`` of two cards' overall and mean
  class accuracies."""
  return [(split, label, before["accuracy"][split][key],
           after["accuracy"][split][key])
          for split in ("validation", "test", "test_flip")
          for label, key in (("accuracy", "accuracy"),
                             ("mean class accuracy", "mean_class_accuracy"))]


def _define_flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("verify", None, "A shipped model to re-measure on its "
                      "dataset.", flag_values=fv)
  flags.DEFINE_string("publish", None, "A finished training workdir to ship "
                      "(with --name).", flag_values=fv)
  flags.DEFINE_string("readjust", None, "A shipped model whose logit "
                      "adjustment to choose again by the current rule.",
                      flag_values=fv)
  flags.DEFINE_string("name", None, "The shipped model's name, e.g. "
                      "student_c-raf_db.", flag_values=fv)
  flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "Where the "
                      "prepared dataset is (or goes).", flag_values=fv)
  flags.DEFINE_string("manual_dir", "", "The folder holding the dataset's "
                      "downloaded archive; empty: <data_dir>/downloads/manual.",
                      flag_values=fv)
  flags.DEFINE_string("folder", shipped.FOLDER, "Where the shipped models "
                      "are.", flag_values=fv)
  return fv


def _run(fv: flags.FlagValues) -> int:
  if sum(bool(x) for x in (fv.verify, fv.publish, fv.readjust)) > 1:
    raise UserError("give one of --verify, --publish and --readjust")
  if fv.readjust:
    print(_readjust(fv))
  elif fv.publish:
    if not fv.name:
      raise UserError("--publish needs --name, e.g. --name=student_c-raf_db")
    print(_publish(fv))
  elif fv.verify:
    text, ok = verification(fv.verify, fv.data_dir, fv.manual_dir, fv.folder)
    print(text)
    return 0 if ok else 1
  else:
    print(listing(fv.folder))
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on ``argv`` (program name first); returns the exit status."""
  return cli.command(_define_flags, __doc__, _run, argv)


if __name__ == "__main__":
  sys.exit(main())
