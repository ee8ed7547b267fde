"""python -m mre_jax.analyze: its outputs, and one-line errors that write
nothing."""

import csv
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mre_jax.models import shipped

from conftest import PROJECT_ROOT


def _analyze(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "mre_jax.analyze", *args],
                        cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.datasets import synthetic_faces
  folder = tmp_path_factory.mktemp("faces")
  faces = synthetic_faces.render_faces(np.arange(6) % 7,
                                       np.random.default_rng(0))
  for i, face in enumerate(faces):
    cv2.imwrite(str(folder / f"p{i}.png"), face)
  (folder / "notes.txt").write_text("notes")
  return folder


def test_a_folder_of_faces_gives_every_output(teacher_run, faces_folder,
                                              tmp_path):
  out = tmp_path / "out"
  done = _analyze(f"--model={teacher_run[0]}", f"--input={faces_folder}",
                  f"--output={out}", "--detector=none", "--batch_size=8",
                  "--device=cpu")
  assert done.returncode == 0, done.stderr
  assert "warning: skipped 1 file(s)" in done.stderr
  assert f"to {out}" in done.stdout
  with open(out / "emotions.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["source"] for r in rows] == [f"p{i}.png" for i in range(6)]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["frames"]["not_images_skipped"] == 1
  assert summary["detector"] == {"name": "none"}
  assert (out / "timeline.png").stat().st_size > 0


@pytest.mark.parametrize("make_input,message", [
    (lambda d: str(d / "missing.mp4"), "does not exist"),
    (lambda d: _file(d / "clip.mp4", b"\x00\x01garbage" * 50),
     "cannot read .*clip.mp4 as a video"),
    (lambda d: str(_folder(d)), "holds no images"),
    (lambda d: "webcam:99", "no camera 99"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(
    teacher_run, tmp_path, make_input, message):
  out = tmp_path / "out"
  done = _analyze(f"--model={teacher_run[0]}",
                  f"--input={make_input(tmp_path)}", f"--output={out}")
  assert done.returncode == 2
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
  assert re.search(message, lines[0]), lines[0]
  assert not out.exists()


def test_a_model_that_is_neither_workdir_nor_export(faces_folder, tmp_path):
  out = tmp_path / "out"
  face = faces_folder / "p0.png"
  for model in (tmp_path / "nowhere", _file(tmp_path / "weights.bin", b"x")):
    done = _analyze(f"--model={model}", f"--input={face}", f"--output={out}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert str(model) in lines[0]
    assert not out.exists()


def test_without_model_the_shipped_default_analyses(faces_folder, tmp_path):
  """No --model: the shipped default, named with its dataset and test
  accuracy in the summary, the report and the command's output."""
  if shipped.DEFAULT not in shipped.names():
    pytest.skip("the shipped default model is not in this checkout")
  card = shipped.card(shipped.DEFAULT)
  out = tmp_path / "out"
  done = _analyze(f"--input={faces_folder}", f"--output={out}",
                  "--detector=none")
  assert done.returncode == 0, done.stderr
  model = json.loads((out / "summary.json").read_text())["model"]
  assert model["name"] == shipped.DEFAULT and model["kind"] == "shipped"
  assert model["dataset"] == card["dataset"]["name"]
  assert model["test_accuracy"] == card["accuracy"]["test"]["accuracy"]
  accuracy = f"{100 * model['test_accuracy']:.1f}% on its test split"
  assert accuracy in done.stdout
  assert accuracy in (out / "report.html").read_text()


def test_flags_are_checked(tmp_path):
  done = _analyze(f"--output={tmp_path}")
  assert done.returncode == 2 and "--input" in done.stderr
  done = _analyze("--model=m", "--input=x", f"--output={tmp_path}",
                  "--detector=dlib")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith("error: ")


def _file(path, data: bytes):
  path.write_bytes(data)
  return path


def _folder(tmp_path):
  folder = tmp_path / "notes"
  folder.mkdir()
  (folder / "a.txt").write_text("no images here")
  return folder


def test_the_analysis_never_imports_the_training_code():
  code = ("import sys\n"
          "import mre_jax.analyze\n"
          "from mre_jax.analysis import analyzer, timeline, report_html\n"
          "from mre_jax.analysis import gradcam, tracking\n"
          "from mre_jax.benchmarks import analysis\n"
          "print(sorted(m for m in sys.modules\n"
          "             if m.startswith('mre_jax.training')))\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "[]"
