"""The results report, built from workdirs holding the files a run writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import studentB
from configs import studentC
from configs import teacher
from mre_jax import report
from mre_jax.config import config_lib
from mre_jax.config import paper
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.errors import UserError
from mre_jax.evaluation import metrics
from mre_jax.training import logits_catalog
from mre_jax.training import run_record

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {  # Workdir name: (its config, the epochs it logged).
    "teacher": (lambda: teacher.get_config("fer2013"), 3),
    "E6": (lambda: studentC.get_config("fer2013,exp=E6"), 4),
    "baseline": (lambda: studentC.get_config("fer2013,baseline"), 2),
}


def evaluation(seed, best_epoch, num_examples=70):
  """An eval_<split>.json's content, as evaluation writes it."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(num_examples, len(CLASS_NAMES)))
  labels = np.arange(num_examples) % len(CLASS_NAMES)
  result = metrics.metrics_from_logits(logits, labels, None, CLASS_NAMES)
  return {**result, "checkpoint_step": best_epoch}


def epoch_line(epoch, val_accuracy, seconds):
  return json.dumps({"epoch": epoch, "train_loss": 1.5, "val_loss": 1.6,
                     "val_accuracy": val_accuracy, "epoch_seconds": seconds})


def write_run(workdir, config, epochs, seed):
  """The files of a finished, evaluated run; epoch 2 is logged twice (a run
  resumed after an interruption), the second time with other numbers."""
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  with open(os.path.join(workdir, "run_info.json"), "w") as f:
    json.dump({"commit": f"c0ffee{seed}", "devices": ["TFRT_CPU_0"],
               "argv": ["mre_jax.main"], "process_count": 1}, f)
  lines = [epoch_line(1, 0.25, 10.0), epoch_line(2, 0.30, 99.0),
           epoch_line(2, 0.35, 11.0)]
  lines += [epoch_line(e, e / 10, 12.0) for e in range(3, epochs + 1)]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("\n".join(lines) + "\n")
  for split, offset in (("validation", 0), ("test", 100)):
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
      json.dump(evaluation(seed + offset, best_epoch=2), f, indent=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{name: (workdir, config)} of three runs on fer2013."""
  root = tmp_path_factory.mktemp("runs")
  made = {}
  for seed, (name, (get_config, epochs)) in enumerate(RUNS.items()):
    config = get_config()
    write_run(str(root / name), config, epochs, seed)
    made[name] = (str(root / name), config)
  return made


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
  """The report of the three runs: (output folder, results.md path)."""
  output = tmp_path_factory.mktemp("docs")
  workdirs = [runs[name][0] for name in RUNS]
  return output, report.write_report(workdirs, str(output))


def test_records_name_the_experiment_and_use_the_distill_rule(runs):
  records = {name: run_record.load_run(runs[name][0]) for name in RUNS}
  assert {name: r["experiment"] for name, r in records.items()} == {
      "teacher": "teacher", "E6": "E6", "baseline": "baseline"}
  _, temperature, alpha = paper.EXPERIMENTS["E6"]
  assert (records["E6"]["T"], records["E6"]["alpha"]) == (temperature, alpha)
  for name in ("teacher", "baseline"):  # No teacher: no T or alpha.
    assert records[name]["T"] is None and records[name]["alpha"] is None
  for name, (_, config) in runs.items():
    assert records[name]["kd_weight"] == config_lib.distill_weights(config)[1]
    assert records[name]["model"] == config.model
    assert records[name]["dataset"] == "fer2013"
  assert records["E6"]["kd_weight"] == alpha > 0
  assert records["teacher"]["kd_weight"] == 0
  assert records["baseline"]["kd_weight"] == 0


def test_record_reads_the_evaluation_and_run_info(runs):
  record = run_record.load_run(runs["E6"][0])
  test, val = evaluation(101, 2), evaluation(1, 2)
  assert record["test_acc"] == test["accuracy"]
  assert record["val_acc"] == val["accuracy"]
  assert record["mean_class_acc"] == test["mean_class_accuracy"]
  assert record["confusion_matrix"] == test["confusion_matrix"]
  assert record["class_names"] == list(CLASS_NAMES)
  assert record["best_epoch"] == 2
  assert (record["device"], record["commit"]) == ("TFRT_CPU_0", "c0ffee1")
  assert record["workdir"] == os.path.abspath(runs["E6"][0])


def test_resumed_epochs_count_once_with_their_last_line(runs):
  record = run_record.load_run(runs["E6"][0])
  assert record["history"] == [(1, 0.25), (2, 0.35), (3, 0.3), (4, 0.4)]
  assert record["epochs"] == 4
  assert record["wall_s"] == 10.0 + 11.0 + 12.0 + 12.0  # Not the lost 99 s.


def test_missing_run_files_are_optional(runs, tmp_path):
  workdir = tmp_path / "bare"
  write_run(str(workdir), runs["E6"][1], 2, seed=5)
  for name in ("eval_validation.json", "run_info.json", "metrics.jsonl"):
    os.remove(workdir / name)
  record = run_record.load_run(str(workdir))
  assert record["val_acc"] is None and record["history"] == []
  assert (record["epochs"], record["wall_s"]) == (None, 0)
  assert (record["device"], record["commit"]) == ("?", "unknown")


def test_missing_test_evaluation_is_one_error_naming_the_file(runs, tmp_path):
  workdir = tmp_path / "unevaluated"
  write_run(str(workdir), runs["E6"][1], 2, seed=6)
  os.remove(workdir / "eval_test.json")
  with pytest.raises(UserError) as error:
    report.write_report([runs["teacher"][0], str(workdir)],
                        str(tmp_path / "docs"))
  assert str(workdir / "eval_test.json") in str(error.value)
  assert "config.json" not in str(error.value)
  assert not (tmp_path / "docs" / "results.md").exists()


def table_row(page, experiment):
  rows = [l for l in page.splitlines()
          if l.startswith(f"| fer2013 | {experiment} |")]
  assert len(rows) == 1, page
  return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_table_puts_each_run_beside_the_paper(written, runs):
  output, path = written
  assert path == os.path.join(str(output), "results.md")
  page = open(path).read()
  page = page[page.index("## Our runs"):page.index("### Test accuracy")]
  header = table_row(page.replace("| dataset | run |", "| fer2013 | head |"),
                     "head")
  for name, experiment in (("teacher", "teacher"), ("E6", "E6"),
                           ("baseline", "baseline")):
    row = dict(zip(header, table_row(page, experiment)))
    record = run_record.load_run(runs[name][0])
    assert row["test acc (%)"] == f"{100 * record['test_acc']:.2f}"
    assert row["kd_weight"] == str(record["kd_weight"])
    assert row["epochs"] == str(record["epochs"])
    reference = paper.TEST_ACCURACY["fer2013"].get(experiment)
    assert row["paper test acc (%)"] == (
        "-" if reference is None else f"{reference:.2f}")
  assert paper.TEST_ACCURACY["fer2013"].get("E6") is not None


def test_results_json_and_figures(written):
  output, _ = written
  with open(output / "results.json") as f:
    records = json.load(f)
  assert [r["experiment"] for r in records] == [
      "teacher", "E6", "baseline"]
  assert set(records[0]) == {
      "dataset", "model", "experiment", "recipe", "teacher", "T", "alpha",
      "kd_weight", "val_acc", "test_acc", "mean_class_acc", "per_class_acc",
      "epochs", "best_epoch", "wall_s", "device", "commit", "command"}
  assert records[1]["per_class_acc"] == evaluation(101, 2)[
      "per_class_accuracy"]
  pytest.importorskip("matplotlib")
  page = (output / "results.md").read_text()
  for name in ("curves_fer2013.png", "confusion_teacher.png",
               "confusion_E6.png", "confusion_baseline.png"):
    assert (output / "figures" / name).stat().st_size > 0
    assert f"(figures/{name})" in page


def run_cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "mre_jax.report", *args], cwd=PROJECT_ROOT,
      capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_cli_writes_the_report_from_globbed_workdirs(runs, tmp_path):
  root = os.path.dirname(runs["E6"][0])
  result = run_cli(f"--workdirs={root}/E*,{root}/teacher",
                   f"--output={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == f"wrote {tmp_path}/results.md"
  with open(tmp_path / "results.json") as f:
    assert [r["experiment"] for r in json.load(f)] == ["E6", "teacher"]


@pytest.mark.parametrize("workdirs", ["{tmp}/no_such_run*", ""])
def test_cli_without_a_run_is_an_error(workdirs, tmp_path):
  result = run_cli(f"--workdirs={workdirs.format(tmp=tmp_path)}",
                   f"--output={tmp_path}/docs")
  assert result.returncode != 0
  assert any(l.startswith("error: ") for l in result.stderr.splitlines()), (
      result.stderr)
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "docs" / "results.md")


def test_distillation_from_a_trained_student_is_named_and_compared(
    runs, tmp_path):
  teacher_dir = tmp_path / "B_baseline"
  write_run(str(teacher_dir), studentB.get_config("raf_db,baseline"), 2, 7)
  student_dir, base_dir = tmp_path / "C_kd", tmp_path / "C_base"
  config = studentC.get_config("raf_db")
  config.distill.teacher_workdir = str(teacher_dir)
  write_run(str(student_dir), config, 3, seed=8)
  write_run(str(base_dir), studentC.get_config("raf_db,baseline"), 3, 9)
  kd = run_record.load_run(str(student_dir))
  base = run_record.load_run(str(base_dir))
  assert kd["experiment"] == "kd-from-student_b"
  assert kd["teacher"] == ("student_b (trained on raf_db, workdir "
                           "B_baseline)")
  assert (base["experiment"], base["teacher"]) == ("baseline", None)
  sentence, = report.comparisons([base, kd])
  delta = 100 * (kd["test_acc"] - base["test_acc"])
  assert f"{delta:+.2f} points" in sentence
  assert ("did not help" in sentence) == (delta <= 0)


def test_recipe_prefix_device_command_and_notes(runs, tmp_path):
  workdir = tmp_path / "improved"
  write_run(str(workdir), studentC.get_config("fer2013,baseline,"
                                              "recipe=improved"), 2, seed=3)
  info = {"commit": "abc", "command": "python -m mre_jax.main --x=1 "
          f"--workdir={workdir} --config.dataset.manual_dir=/data/x/rafdb",
          "machine": {"platform": "cpu", "device_kind": "cpu",
                      "device_count": 1, "cpu": "AMD EPYC", "cpu_count": 2}}
  with open(workdir / "run_info.json", "w") as f:
    json.dump(info, f)
  record = run_record.load_run(str(workdir))
  assert (record["experiment"], record["recipe"]) == (
      "improved+baseline", "improved")
  assert record["device"] == "AMD EPYC (CPU, 2 cores)"
  notes = tmp_path / "notes.md"
  notes.write_text("The improved recipe is a separate config.")
  page = open(report.write_report([str(workdir)], str(tmp_path / "docs"),
                                  notes=str(notes))).read()
  assert "The improved recipe is a separate config." in page
  # Recorded with absolute paths (as older runs were), shown portable.
  assert ("python -m mre_jax.main --x=1 --workdir=RUNS/improved "
          "--config.dataset.manual_dir=DATA/rafdb") in page
  assert str(tmp_path) not in page and "`RUNS/<name>`" in page
  with pytest.raises(UserError, match="no such file"):
    report.write_report([str(workdir)], str(tmp_path / "docs2"),
                        notes=str(tmp_path / "missing.md"))


def test_a_logits_files_teacher_is_named_from_its_metadata(tmp_path):
  published = logits_catalog.path("fer2013")
  with np.load(published) as f:
    arrays = {k: f[k] for k in f.files}
  meta = json.loads(str(arrays["meta"]))
  teacher = meta["teacher"]
  copy, other = tmp_path / "elsewhere.npz", tmp_path / "other.npz"
  np.savez(copy, **arrays)
  meta["teacher"] = {**teacher, "params_fingerprint": "0123456789abcdef"}
  np.savez(other, **{**arrays, "meta": json.dumps(meta)})
  for path, is_published in ((published, True), (str(copy), True),
                             (str(other), False)):
    if not is_published:
      teacher = meta["teacher"]
    config = studentC.get_config("fer2013,exp=E6")
    config.distill.teacher_logits = path
    workdir = tmp_path / f"E6_{os.path.basename(path)}"
    write_run(str(workdir), config, 3, seed=3)
    named = run_record.load_run(str(workdir))["teacher"]
    info = logits_catalog.provenance(published)
    model = teacher["model"]["name"]
    assert named == (
        f"{model} at epoch {teacher['checkpoint_epoch']}, the published "
        f"fer2013 logits ({info['device']}, test "
        f"{100 * info['accuracy']['test']:.2f}%)" if is_published else
        f"{model} at epoch {teacher['checkpoint_epoch']} (params "
        f"{teacher['params_fingerprint']}, logits file other.npz)")
  config = studentC.get_config("fer2013,exp=E6")
  config.distill.teacher_logits = str(tmp_path / "missing.npz")
  write_run(str(tmp_path / "E6_missing"), config, 3, seed=4)
  assert run_record.load_run(str(tmp_path / "E6_missing"))["teacher"] == (
      f"logits file {tmp_path / 'missing.npz'}")


def test_a_distilled_run_is_compared_with_the_baseline_of_its_epochs(
    tmp_path):
  made = {}
  for name, arg, epochs, seed in (("kd", "raf_db", 3, 1),
                                  ("base3", "raf_db,baseline", 3, 2),
                                  ("base5", "raf_db,baseline", 5, 3)):
    config = studentC.get_config(arg)
    config.distill.teacher_logits = str(tmp_path / "logits.npz")
    write_run(str(tmp_path / name), config, epochs, seed)
    made[name] = run_record.load_run(str(tmp_path / name))
  kd, base3, base5 = made["kd"], made["base3"], made["base5"]
  sentence, = report.comparisons([kd, base3, base5])
  assert f"against {100 * base3['test_acc']:.2f}% without" in sentence
  assert "epochs against" not in sentence
  assert report.run_name(base3) == "raf_db student_c baseline, 3 epochs"
  assert report.run_name(base5) == "raf_db student_c baseline, 5 epochs"
  sentence, = report.comparisons([kd, base5])
  assert f"against {100 * base5['test_acc']:.2f}% without" in sentence
  assert "; 3 epochs against 5)" in sentence


def test_a_truncated_logits_file_is_named_by_its_path(tmp_path):
  published = logits_catalog.path("fer2013")
  broken = tmp_path / "broken.npz"
  with open(published, "rb") as f:
    broken.write_bytes(f.read(1000))
  config = studentC.get_config("fer2013,exp=E6")
  config.distill.teacher_logits = str(broken)
  write_run(str(tmp_path / "E6"), config, 3, seed=5)
  assert run_record.load_run(str(tmp_path / "E6"))["teacher"] == (
      f"logits file {broken}")


def test_a_damaged_run_file_is_one_clear_error(tmp_path):
  write_run(str(tmp_path / "E6"), studentC.get_config("fer2013,exp=E6"), 3,
            seed=6)
  (tmp_path / "E6" / "eval_test.json").write_text("{")
  with pytest.raises(UserError, match="eval_test.json .*damaged"):
    run_record.load_run(str(tmp_path / "E6"))
