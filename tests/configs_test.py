"""Config files, their arguments, validation and the command line's errors."""

import importlib
import os
import subprocess
import sys

import pytest

from mre_jax.config import config_lib
from mre_jax.config import paper
from mre_jax.config.dataset_names import DATASET_NAMES
from mre_jax.errors import ConfigError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ["default", "teacher", "studentA", "studentB", "studentC", "demo"]


def load(name, arg=None):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(arg) if name != "default" else module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_and_validates(name):
  config = load(name)
  runs = [config.teacher, config.student] if name == "demo" else [config]
  for run in runs:
    if config_lib.is_student(run):
      run.distill.teacher_workdir = "/some/teacher"
    config_lib.validate(run)


def test_paper_defaults():
  config = load("studentA", "fer2013,exp=E1")
  assert (config.batch_size, config.num_epochs) == (16, 80)
  assert (config.learning_rate, config.momentum, config.weight_decay) == (
      1e-3, 0.9, 1e-4)
  assert config.plateau.factor == 0.1 and config.plateau.patience == 10
  assert config.early_stopping_patience == 15 and config.image_size == 64
  assert config_lib.distill_weights(config) == pytest.approx((0.8, 0.2))


STUDENT_CONFIGS = {"student_a": "studentA", "student_b": "studentB",
                   "student_c": "studentC"}


def test_experiments_are_the_papers():
  assert paper.EXPERIMENTS["E4"] == ("student_b", 3.0, 0.15)  # Table IV.
  assert set(STUDENT_CONFIGS) == {m for m, _, _ in paper.EXPERIMENTS.values()}


@pytest.mark.parametrize("exp", sorted(paper.EXPERIMENTS))
@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_experiment_presets(exp, dataset):
  model, temperature, alpha = paper.EXPERIMENTS[exp]
  config = load(STUDENT_CONFIGS[model], f"{dataset},exp={exp}")
  assert (config.model, config.dataset.name) == (model, dataset)
  assert config.distill.experiment == exp
  assert config.distill.temperature == temperature
  assert config.distill.alpha == alpha
  assert config_lib.distill_weights(config) == pytest.approx(
      (1 - alpha, alpha))


def test_default_and_demo_take_their_experiment_from_the_paper():
  _, temperature, alpha = paper.EXPERIMENTS["E1"]
  distill = load("default").distill
  assert (distill.temperature, distill.alpha) == (temperature, alpha)
  student = load("demo").student
  model, temperature, alpha = paper.EXPERIMENTS["E6"]
  assert student.model == model and student.distill.experiment == "E6"
  assert (student.distill.temperature, student.distill.alpha) == (
      temperature, alpha)


def test_a_teacher_never_distils():
  teacher = load("teacher", "fer2013")
  assert config_lib.distill_weights(teacher) == (1.0, 0.0)
  assert config_lib.distill_weights(load("demo").teacher) == (1.0, 0.0)
  teacher.distill.kd_weight = 0.5  # Ignored: there is no teacher to distil.
  assert config_lib.distill_weights(teacher) == (1.0, 0.0)
  teacher.distill.ce_weight = 0.5
  assert config_lib.distill_weights(teacher) == (0.5, 0.0)
  assert not config_lib.is_student(teacher)
  # A student preset switched to the teacher model trains as a teacher.
  student = load("studentA", "fer2013,exp=E1")
  student.model = "teacher"
  assert config_lib.distill_weights(student) == (1.0, 0.0)
  config_lib.validate(student)  # Needs no teacher_workdir.


def test_explicit_weights_override_alpha():
  config = load("studentB", "fer2013,exp=E4")
  config.distill.kd_weight = 0.5
  assert config_lib.distill_weights(config) == pytest.approx((0.85, 0.5))
  config.distill.ce_weight = 0.0
  assert config_lib.distill_weights(config) == (0.0, 0.5)


def test_arguments_override_fields():
  config = load("studentB", "raf_db,alpha=0.15,T=4")
  assert config.dataset.name == "raf_db"
  assert (config.distill.alpha, config.distill.temperature) == (0.15, 4.0)
  baseline = load("studentC", "fer2013,baseline")
  assert config_lib.distill_weights(baseline) == (1.0, 0.0)
  assert not config_lib.is_student(baseline)
  teacher = load("teacher", "raf_db")
  assert teacher.model == "teacher" and not config_lib.is_student(teacher)


IMPROVED = {"recipe": "improved", "batch_size": 64, "learning_rate": 0.02,
            "momentum": 0.9, "weight_decay": 5e-4,
            "lr_schedule": "warmup_cosine", "warmup_epochs": 3,
            "num_epochs": 60, "early_stopping_patience": 20,
            "augment_flip": True, "augment_shift": 0.1,
            "augment_rotation": 10.0, "augment_erasing": 0.25,
            "label_smoothing": 0.1, "class_weighted_loss": False}


@pytest.mark.parametrize("name", ["teacher", "studentA", "studentB",
                                  "studentC"])
def test_improved_recipe_sets_its_fields_and_only_those(name):
  paper_config = load(name, "fer2013")
  improved = load(name, "fer2013,recipe=improved")
  assert {k: improved[k] for k in IMPROVED} == IMPROVED
  changed = {k for k, v in improved.items() if paper_config[k] != v}
  assert changed <= set(IMPROVED)
  if config_lib.is_student(improved):
    improved.distill.teacher_workdir = "/some/teacher"
  config_lib.validate(improved)


@pytest.mark.parametrize("name", ["teacher", "studentC"])
def test_paper_recipe_is_the_default(name):
  config = load(name, "raf_db,recipe=paper")
  assert config.to_dict() == load(name, "raf_db").to_dict()
  assert config.recipe == "paper" and config.lr_schedule == "plateau"
  assert (config.augment_shift, config.augment_rotation,
          config.augment_erasing, config.label_smoothing) == (0, 0, 0, 0)


def test_improved_recipe_combines_with_other_arguments():
  baseline = load("studentC", "raf_db,baseline,recipe=improved,width=4")
  assert baseline.dataset.name == "raf_db" and baseline.model_width == 4
  assert config_lib.distill_weights(baseline) == (1.0, 0.0)
  assert baseline.batch_size == 64 and baseline.recipe == "improved"
  distilled = load("studentB", "recipe=IMPROVED,fer2013,exp=E4")
  assert distilled.distill.experiment == "E4"
  assert config_lib.distill_weights(distilled) == pytest.approx((0.85, 0.15))
  assert distilled.lr_schedule == "warmup_cosine"


@pytest.mark.parametrize("name,arg,message", [
    ("studentC", "fer2013,recipe=fancy", "unknown recipe 'fancy'.*'paper', "
     "'improved'"),
    ("studentA", "fer2013,exp=E4", "student_b"),
    ("studentA", "fer2013,exp=E9", "E1"),
    ("studentA", "fer2014", "fer2013"),
    ("studentA", "alpah=0.1", "alpah"),
    ("studentA", "alpha=high", "not a number"),
    ("teacher", "fer2013,exp=E1", "student"),
])
def test_bad_arguments_are_rejected(name, arg, message):
  with pytest.raises(ConfigError, match=message):
    load(name, arg)


@pytest.mark.parametrize("field,value", [
    ("dtype", "float16"), ("model", "student_d"), ("batch_size", 0),
    ("dataset.name", "affectnet"), ("distill.alpha", 1.5),
    ("plateau.metric", "train_loss"), ("eval.checkpoint", "newest"),
    ("recipe", "fancy"), ("lr_schedule", "step"), ("warmup_epochs", -1),
    ("label_smoothing", 1.0), ("augment_shift", 0.7),
    ("augment_rotation", 200.0), ("augment_erasing", -0.1),
    ("augment_scale", 0.6), ("logit_adjustment", -1.0),
])
def test_bad_values_name_the_field(field, value):
  config = load("teacher")
  section, _, key = field.rpartition(".")
  (config[section] if section else config)[key] = value
  with pytest.raises(ConfigError, match=f"config.{field}="):
    config_lib.validate(config)


def test_balanced_recipe_is_improved_with_adjusted_logits_and_zoom():
  improved = load("studentC", "raf_db,baseline,recipe=improved")
  balanced = load("studentC", "raf_db,baseline,recipe=balanced")
  config_lib.validate(balanced)
  changed = {k for k, v in balanced.items() if improved[k] != v}
  assert changed == {"recipe", "logit_adjustment", "augment_scale"}
  assert not balanced.class_weighted_loss and balanced.label_smoothing == 0.1
  assert balanced.logit_adjustment == 1.0 and improved.logit_adjustment == 0
  assert balanced.augment_scale == 0.1 and improved.augment_scale == 0


def test_student_without_teacher_is_rejected():
  with pytest.raises(ConfigError, match="teacher_workdir"):
    config_lib.validate(load("studentA", "fer2013,exp=E1"))


def run_main(*args, tmp_path, workdir=True, cwd=PROJECT_ROOT, env=None):
  workdir_flag = [f"--workdir={tmp_path}/w"] if workdir else []
  return subprocess.run(
      [sys.executable, "-m", "mre_jax.main", *workdir_flag, *args],
      cwd=cwd, capture_output=True, text=True, timeout=300,
      env=env or {**os.environ, "JAX_PLATFORMS": "cpu"})


def assert_one_error_line(result, *messages):
  """Exit status 2, one ``error:`` line naming ``messages``, no traceback."""
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr
  for message in messages:
    assert message in errors[0], result.stderr


@pytest.mark.parametrize("args,messages", [
    (["--config=configs/studentA.py", "--config.learning_rat=0.1"],
     ["--config.learning_rat=0.1", "no field 'learning_rat'"]),
    (["--config=configs/studentA.py", "--config.bogus=1"],
     ["--config.bogus=1", "no field 'bogus'"]),
    (["--config=configs/studentA.py", "--config.plateau.bogus=1"],
     ["config.plateau has no field 'bogus'"]),
    (["--config=configs/studentA.py", "--config.batch_size=abc"],
     ["--config.batch_size=abc", "'abc'"]),
    (["--config=configs/studentA.py:fer2013,exp=E9"], ["unknown experiment"]),
    (["--config=configs/teacher.py", "--config.dtype=float16"],
     ["config.dtype='float16'"]),
    (["--config=configs/no_such_config.py"], ["could not load --config"]),
    (["--config=configs/teacher.py", "--mode=foo"], ["--mode=foo", "train"]),
    (["--config=configs/teacher.py", "extra"], ["unexpected", "extra"]),
])
def test_cli_reports_config_errors_without_traceback(args, messages,
                                                     tmp_path):
  assert_one_error_line(run_main(*args, tmp_path=tmp_path), *messages)


@pytest.mark.parametrize("flag", ["config", "workdir"])
def test_cli_names_a_missing_required_flag(flag, tmp_path):
  args = {"config": [], "workdir": ["--config=configs/teacher.py"]}[flag]
  result = run_main(*args, tmp_path=tmp_path, workdir=flag != "workdir")
  assert_one_error_line(result, f"--{flag} is required")


@pytest.mark.parametrize("form", ["equals", "space"])
def test_config_files_load_from_outside_the_repository(form, tmp_path):
  """An absolute config path works from any directory, with only mre_jax
  importable (not the repository's configs package)."""
  path = os.path.join(PROJECT_ROOT, "configs", "studentC.py")
  spec = f"{path}:synthetic_faces,baseline"
  config = [f"--config={spec}"] if form == "equals" else ["--config", spec]
  packages = tmp_path / "packages"
  packages.mkdir()
  os.symlink(os.path.join(PROJECT_ROOT, "mre_jax"), packages / "mre_jax")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  # No JAX_PLATFORMS: JAX probes for accelerators as a user's run does.
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_PLATFORMS", "PYTHONPATH")}
  env["PYTHONPATH"] = str(packages)
  result = run_main(*config, "--config.batch_size=4",
                    "--config.eval_batch_size=8", "--mode=evaluate",
                    tmp_path=tmp_path, cwd=elsewhere, env=env)
  # Past config loading: the workdir is what is missing.
  assert_one_error_line(result, f"{tmp_path}/w holds no checkpoints/")
  assert "Unable to initialize backend" not in result.stderr


def test_cli_without_dataset_explains_how_to_provide_it(tmp_path):
  result = run_main("--config=configs/teacher.py:fer2013",
                    f"--config.dataset.data_dir={tmp_path}/tfds",
                    tmp_path=tmp_path)
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  assert "fer2013.csv" in result.stderr and "configs/demo.py" in result.stderr
