"""Exported models: same probabilities as the Predictor, with jax alone."""

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from mre_jax import export
from mre_jax import models
from mre_jax.errors import CheckpointError, ExportError
from mre_jax.inference import exported as exported_lib
from mre_jax.inference import load_classifier
from mre_jax.inference.exported import ExportedModel
from mre_jax.inference.predictor import Predictor

TOLERANCE = 1e-5


def _crops():
  """Faces of several sizes, colours and batch sizes (batch_size 4)."""
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (24, 40), np.uint8)
  return {
      "three grey at the model's size": rng.integers(0, 256, (3, 16, 16),
                                                     np.uint8),
      "grey and RGB": [grey, np.repeat(grey[..., None], 3, axis=-1)],
      "one RGBA": [rng.integers(0, 256, (17, 23, 4), np.uint8)],
  }


def _env():
  """The test's environment, sharing its compilation cache."""
  env = dict(os.environ)
  cache = jax.config.jax_compilation_cache_dir
  if cache:
    env["JAX_COMPILATION_CACHE_DIR"] = cache
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  return env


def _run(*args):
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, env=_env(), check=False, timeout=300)


@pytest.fixture(scope="module")
def cli_export(teacher_run, tmp_path_factory):
  """The teacher exported by the command line: (path, what it printed).

  In this process, to save an interpreter start; the subprocess test of the
  command line runs the same ``main``.
  """
  path = str(tmp_path_factory.mktemp("export") / "teacher.zip")
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    status = export.main(["export", f"--workdir={teacher_run[0]}",
                          f"--output={path}"])
  assert status == 0
  return path, printed.getvalue()


@pytest.fixture(scope="module")
def model(cli_export):
  return ExportedModel.load(cli_export[0], batch_size=4)


@pytest.fixture(scope="module")
def predictor(teacher_run):
  return Predictor.from_workdir(teacher_run[0], batch_size=4)


@pytest.fixture(scope="module")
def expected(predictor):
  return {name: predictor.probabilities(images)
          for name, images in _crops().items()}


def test_probabilities_equal_the_predictors(model, expected):
  for name, images in _crops().items():
    probs = model.probabilities(images)
    assert probs.dtype == np.float32 and probs.shape == (len(images), 7)
    difference = np.abs(probs - expected[name]).max()
    assert difference < TOLERANCE, f"{name}: {difference}"
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  grey, rgb = model.probabilities(_crops()["grey and RGB"])
  np.testing.assert_allclose(rgb, grey, atol=1e-6)  # The same face.
  assert model.probabilities([]).shape == (0, 7)


def test_metadata_describes_model_source_and_versions(model, predictor,
                                                      teacher_run):
  meta = model.metadata
  assert meta["format"] == exported_lib.FORMAT
  assert model.class_names == predictor.class_names
  assert model.image_size == predictor.image_size == 16
  assert model.channels == predictor.channels
  assert meta["model"]["name"] == "teacher" and meta["model"]["width"] == 4
  assert meta["model"]["num_params"] == models.count_params(
      predictor.variables["params"])
  assert meta["preprocessing"]["normalization"]["std"] == [0.229, 0.224,
                                                           0.225]
  assert meta["platforms"] == ["cpu", "cuda"]
  source = meta["source"]
  step_dir = os.path.join(teacher_run[0], "checkpoints", str(source["step"]))
  assert source["workdir"] == os.path.abspath(teacher_run[0])
  assert source["checkpoint"] == "best"
  with open(os.path.join(step_dir, "mre_jax_checksums.json"), "rb") as f:
    assert source["checksums_sha256"] == (
        "sha256:" + hashlib.sha256(f.read()).hexdigest())
  with zipfile.ZipFile(model.path) as archive:
    assert archive.namelist() == [exported_lib.METADATA,
                                  exported_lib.ARTEFACT]
    assert meta["fingerprint"] == exported_lib.sha256(
        archive.read(exported_lib.ARTEFACT))
  versions = meta["exported_with"]
  assert versions["jax"] == jax.__version__ and versions["jaxlib"]
  assert (jax.export.minimum_supported_calling_convention_version
          <= versions["calling_convention_version"]
          <= jax.export.maximum_supported_calling_convention_version)
  created = datetime.datetime.fromisoformat(meta["created"])
  assert abs(datetime.datetime.now(datetime.timezone.utc) - created
             ).total_seconds() < 3600


def test_a_fresh_interpreter_predicts_without_flax_or_orbax(
    cli_export, expected, tmp_path):
  """A batch of 3 (batch_size 3): the batch dimension is symbolic."""
  images = tmp_path / "faces.npy"
  np.save(images, _crops()["three grey at the model's size"])
  code = (
      "import json, sys\n"
      "import numpy as np\n"
      "from mre_jax.inference.exported import ExportedModel\n"
      f"model = ExportedModel.load({cli_export[0]!r}, batch_size=3)\n"
      f"probs = model.probabilities(np.load({str(images)!r}))\n"
      "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
      "('flax', 'orbax') or m.startswith(('mre_jax.training', "
      "'mre_jax.workdir.checkpointing', 'mre_jax.models')))\n"
      "print(json.dumps({'probs': probs.tolist(), 'loaded': loaded}))\n")
  result = _run("-c", code)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["loaded"] == []
  np.testing.assert_allclose(out["probs"],
                             expected["three grey at the model's size"],
                             atol=TOLERANCE)


def test_command_line_reports_what_it_wrote(cli_export, teacher_run):
  assert f"wrote {cli_export[0]}: teacher (" in cli_export[1]
  assert f"of {os.path.abspath(teacher_run[0])}, for cpu, cuda." in (
      cli_export[1])


def test_command_line_errors_are_one_line(tmp_path):
  missing = _run("-m", "mre_jax.export", f"--workdir={tmp_path / 'nope'}",
                 f"--output={tmp_path / 'm.zip'}")
  foreign = tmp_path / "notes.txt"
  foreign.write_text("not a model\n")
  loader = _run("-m", "mre_jax.inference.exported", str(foreign))
  for result, message in ((missing, "does not exist"),
                          (loader, "is not an mre_jax export")):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
  assert os.listdir(tmp_path) == ["notes.txt"]


def test_the_loader_command_prints_the_metadata(cli_export, capsys):
  assert exported_lib.main(["exported", cli_export[0]]) == 0
  assert json.loads(capsys.readouterr().out)["model"]["name"] == "teacher"


def _rewrite(source, path, metadata=None, artefact=None):
  """A copy of export ``source`` with other metadata or artefact bytes."""
  with zipfile.ZipFile(source) as archive:
    meta = json.loads(archive.read(exported_lib.METADATA))
    data = archive.read(exported_lib.ARTEFACT)
  if artefact is not None:
    data = artefact
    meta["fingerprint"] = exported_lib.sha256(data)
  meta.update(metadata or {})
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr(exported_lib.METADATA, json.dumps(meta))
    archive.writestr(exported_lib.ARTEFACT, data)
  return str(path)


def _damaged(source, path, truncate):
  data = bytearray(open(source, "rb").read())
  if truncate:
    data = data[:len(data) // 2]
  else:
    data[len(data) // 2] ^= 0xFF  # Inside the artefact.
  path.write_bytes(bytes(data))
  return str(path)


def _cuda_only(source, path):
  """An export of the identity, lowered for CUDA only."""
  identity = jax.export.export(jax.jit(lambda x: x), platforms=["cuda"])(
      jax.ShapeDtypeStruct((1, 32, 32, 3), np.uint8))
  return _rewrite(source, path, artefact=bytes(identity.serialize()),
                  metadata={"platforms": ["cuda"]})


@pytest.mark.parametrize("make,message", [
    (lambda src, p: (p.write_text("hello"), str(p))[1],
     "is not an mre_jax export: expected a zip archive"),
    (lambda src, p: (zipfile.ZipFile(p, "w").close(), str(p))[1],
     "is not an mre_jax export"),
    (lambda src, p: _rewrite(src, p, {"format": "something/1"}),
     "is not an mre_jax export"),
    (lambda src, p: _rewrite(src, p, {"format": "mre_jax.export/9"}),
     "in format 'mre_jax.export/9', but this mre_jax reads"),
    (lambda src, p: _damaged(src, p, truncate=True), "damaged"),
    (lambda src, p: _damaged(src, p, truncate=False), "damaged"),
    (lambda src, p: _rewrite(src, p, {"exported_with": {
        "jax": "9.0", "jaxlib": "9.0", "calling_convention_version": 99}}),
     "or install a jax and jaxlib no older than 9.0 and released within "
     "about 6 months of it."),
    (lambda src, p: _rewrite(src, p, {"exported_with": {
        "jax": "0.4.30", "jaxlib": "0.4.30", "calling_convention_version": 9}},
        artefact=b"\0" * 64),
     "exported with jax 0.4.30 / jaxlib 0.4.30 (calling convention 9), which "
     f"this jax {jax.__version__}"),
    (lambda src, p: _rewrite(src, p, artefact=b"\0" * 64),
     f"although this jax {jax.__version__} wrote it: it is damaged"),
    (_cuda_only, "was exported for cuda only, but jax runs on cpu here"),
], ids=["text", "empty zip", "other json", "newer format", "truncated",
        "flipped byte", "calling convention", "older jax", "unreadable",
        "platform"])
def test_bad_files_are_refused_with_the_reason(cli_export, tmp_path, make,
                                               message):
  path = make(cli_export[0], tmp_path / "model.zip")
  with pytest.raises(ExportError, match=re.escape(message)):
    ExportedModel.load(path)


def test_export_refuses_bad_arguments_and_leaves_nothing(teacher_run,
                                                         tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  cases = [
      (dict(workdir=str(tmp_path / "nope"), output=str(out / "m.zip")),
       ExportError, "does not exist: point it at a run"),
      (dict(workdir=teacher_run[0], output=str(tmp_path / "no" / "m.zip")),
       ExportError, "does not exist; create it first"),
      (dict(workdir=teacher_run[0], output=str(out)), ExportError,
       "is a folder"),
      (dict(workdir=teacher_run[0], output=str(out / "m.zip"),
            platforms=["cpu", "gpu"]), ExportError, "expected distinct names"),
      (dict(workdir=str(out), output=str(out / "m.zip")), CheckpointError,
       "holds no checkpoints/ folder"),
  ]
  for kwargs, error, message in cases:
    with pytest.raises(error, match=message):
      export.export_model(**kwargs)
    assert os.listdir(out) == []


def test_a_failed_write_leaves_no_file(teacher_run, tmp_path, monkeypatch):
  def read_only(*args):
    raise OSError(30, "Read-only file system")
  monkeypatch.setattr(export.os, "replace", read_only)
  with pytest.raises(ExportError, match="could not write .*Read-only file"):
    export.export_model(teacher_run[0], str(tmp_path / "m.zip"),
                        platforms=["cpu"])
  assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a folder this user cannot write")
def test_an_unwritable_folder_is_reported_before_loading(teacher_run,
                                                         tmp_path):
  tmp_path.chmod(0o500)
  try:
    with pytest.raises(ExportError, match="cannot write in"):
      export.export_model(teacher_run[0], str(tmp_path / "m.zip"))
  finally:
    tmp_path.chmod(0o700)


def test_load_classifier_picks_the_predictor_or_the_export(
    teacher_run, cli_export, tmp_path):
  assert isinstance(load_classifier(teacher_run[0]), Predictor)
  loaded = load_classifier(cli_export[0], batch_size=8)
  assert isinstance(loaded, ExportedModel) and loaded.batch_size == 8
  with pytest.raises(ExportError, match="neither a training workdir"):
    load_classifier(str(tmp_path))
  (tmp_path / "notes.txt").write_text("hi")
  with pytest.raises(ExportError, match="is not an mre_jax export"):
    load_classifier(str(tmp_path / "notes.txt"))
