"""The offline demo, end to end, at reduced sizes."""

import csv
import json
import os
import re

from configs import demo as demo_config
from mre_jax import demo
from mre_jax import report
from mre_jax.datasets import demo_session
from mre_jax.evaluation import evaluator


def test_demo_runs_teacher_logits_student_and_evaluates_both(tmp_path,
                                                             capsys):
  config = demo_config.get_config()
  for run, width in ((config.teacher, 6), (config.student, 4)):
    run.dataset.data_dir = str(tmp_path / "tfds")
    run.dataset.builder_config = "tiny"
    run.model_width = width
    run.num_epochs = 1
    run.steps_per_dispatch = 0  # Automatic: one step per call on CPU.
  demo.run(config, str(tmp_path / "demo"), "train")
  table = capsys.readouterr().out
  assert "| teacher | teacher | 6 |" in table
  assert "| student | student_c | 4 |" in table
  # It says where the runs and the generated data go, and how to use them.
  demo_dir, teacher_dir = tmp_path / "demo", tmp_path / "demo" / "teacher"
  assert f"the teacher in {teacher_dir} and the student in " in table
  assert f"(no download) into {tmp_path / 'tfds'} the first time" in table
  assert f"--workdir={demo_dir} --mode=evaluate" in table
  assert (f"mre_jax.report --workdirs={teacher_dir},{demo_dir / 'student'}"
          in table)
  student_dir = tmp_path / "demo" / "student"
  with open(student_dir / "eval_test.json") as f:
    evaluation = json.load(f)
  assert evaluation["num_examples"] == 128
  assert os.path.isfile(student_dir / "teacher_logits.npz")
  # Each run is an ordinary workdir that evaluate mode accepts, without
  # needing its teacher.
  os.remove(student_dir / "teacher_logits.npz")
  student = config.student
  student.distill.teacher_workdir = str(tmp_path / "no_such_teacher")
  again = evaluator.evaluate_config(student, str(student_dir))
  assert not os.path.exists(student_dir / "teacher_logits.npz")
  assert again["test"]["accuracy"] == evaluation["accuracy"]

  # The results report is built from the runs' own files.
  docs = tmp_path / "docs"
  report.write_report([str(tmp_path / "demo" / "teacher"), str(student_dir)],
                      str(docs))
  with open(docs / "results.json") as f:
    records = json.load(f)
  assert [r["experiment"] for r in records] == ["teacher", "E6"]
  assert records[1]["test_acc"] == evaluation["accuracy"]
  assert records[1]["kd_weight"] == 0.2 and records[1]["T"] == 3.0
  assert records[1]["epochs"] == 1 and records[1]["commit"]
  assert records[1]["teacher"] == (
      "teacher (trained on synthetic_faces, workdir teacher)")
  assert records[1]["command"].startswith("python ")
  page = (docs / "results.md").read_text()
  assert f"{100 * evaluation['accuracy']:.2f}" in page
  assert (docs / "figures" / "curves_synthetic_faces.png").stat().st_size > 0
  assert (docs / "figures" / "confusion_student.png").is_file()

  # The student analysed the synthetic session video; the printed agreement
  # with the schedule is that of the emotions.csv it wrote.
  analysis = tmp_path / "demo" / "session" / "analysis"
  for name in ("emotions.csv", "summary.json", "timeline.png", "report.html"):
    assert (analysis / name).stat().st_size > 0, name
    assert f"{analysis / name}" in table
  with open(analysis / "emotions.csv") as f:
    rows = list(csv.DictReader(f))
  labels = demo_session.frame_labels()
  assert [int(r["frame"]) for r in rows] == list(range(len(labels)))
  for r in rows:
    r["frame"] = int(r["frame"])
  printed = re.search(r"follows the schedule in (\d+)% of the frames", table)
  assert int(printed[1]) == round(
      100 * demo_session.agreement(rows, labels))
