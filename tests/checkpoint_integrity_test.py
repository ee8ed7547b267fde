"""Damaged checkpoints are named, never evaluated or resumed from."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mre_jax import models
from mre_jax.errors import CheckpointError
from mre_jax.evaluation import evaluator
from mre_jax.workdir import checkpoint_integrity
from mre_jax.workdir import checkpointing


@pytest.fixture
def run_copy(teacher_run, tmp_path):
  """A copy of the trained teacher's workdir, free to damage."""
  workdir = str(tmp_path / "teacher")
  shutil.copytree(teacher_run[0], workdir)
  step = checkpointing.load_model(workdir).step
  return workdir, os.path.join(workdir, "checkpoints", str(step)), step


def _snapshot(workdir):
  names = sorted(n for n in os.listdir(workdir) if n.startswith("eval_"))
  return {n: open(os.path.join(workdir, n)).read() for n in names}


def _largest(folder):
  files = [os.path.join(r, n) for r, _, ns in os.walk(folder) for n in ns]
  return max(files, key=os.path.getsize)


def test_saved_steps_record_their_checksums(run_copy):
  _, step_dir, _ = run_copy
  with open(os.path.join(step_dir, checkpoint_integrity.CHECKSUMS)) as f:
    table = json.load(f)
  assert "_CHECKPOINT_METADATA" in table
  assert any(name.startswith("model/") for name in table)
  checkpoint_integrity.verify(step_dir, 1)  # Intact: no error.


def test_zeroed_bytes_inside_a_data_file_are_named(run_copy, teacher_run):
  workdir, step_dir, step = run_copy
  before = _snapshot(workdir)
  target = _largest(os.path.join(step_dir, "model"))
  size = os.path.getsize(target)
  with open(target, "r+b") as f:
    f.seek(size // 4)
    f.write(bytes(min(5000, size // 2)))
  assert os.path.getsize(target) == size
  config = teacher_run[1]
  with pytest.raises(CheckpointError) as error:
    evaluator.evaluate_config(config, workdir)
  message = str(error.value)
  assert f"checkpoint step {step} is damaged: {target}" in message
  assert "--config.eval.checkpoint=latest|<epoch>" in message
  assert len(message.splitlines()) <= 3
  assert _snapshot(workdir) == before


def test_truncated_metadata_is_named(run_copy):
  workdir, step_dir, step = run_copy
  target = os.path.join(step_dir, "model", "_METADATA")
  with open(target, "r+b") as f:
    f.truncate(os.path.getsize(target) // 2)
  with pytest.raises(CheckpointError,
                     match=f"step {step} is damaged: {target} has"):
    checkpointing.load_model(workdir)


def test_damage_without_a_checksum_record_is_a_short_error(run_copy):
  workdir, step_dir, step = run_copy
  os.remove(os.path.join(step_dir, checkpoint_integrity.CHECKSUMS))
  target = os.path.join(step_dir, "model", "_METADATA")
  with open(target, "w") as f:
    f.write("{")
  with pytest.raises(CheckpointError) as error:
    checkpointing.load_model(workdir)
  assert f"checkpoint step {step} in" in str(error.value)
  assert "damaged" in str(error.value)
  assert len(str(error.value).splitlines()) <= 3


def test_nan_parameters_are_refused(tmp_path):
  model = models.get_model("student_c", width=2)
  variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype),
                           models.abstract_variables(model))
  variables["params"]["fc4"]["bias"][2] = np.nan
  manager = checkpointing.open_manager(str(tmp_path))
  checkpointing.save(manager, 1, model=variables, meta={
      "model": checkpointing.model_meta("student_c", model),
      "preprocessing": checkpointing.preprocessing_meta(32)})
  manager.close()
  with pytest.raises(CheckpointError, match=r"NaN or infinite values in "
                     r"\['model'\]\['params'\]\['fc4'\]\['bias'\]"):
    checkpointing.load_model(str(tmp_path), "latest")


def test_an_unmeasured_plateau_may_hold_inf_but_not_nan(tmp_path):
  """Runs on another schedule than the plateau's never update it: its best
  value stays optax's initial +inf, and such a checkpoint resumes."""
  plateau = optax.contrib.reduce_on_plateau().init({"w": jnp.ones(2)})
  assert not bool(jnp.isfinite(plateau.best_value))
  checkpoint_integrity.check_finite({"train": {"plateau_state": plateau}}, 3,
                                    str(tmp_path))
  broken = plateau._replace(best_value=jnp.asarray(jnp.nan))
  with pytest.raises(CheckpointError, match="best_value"):
    checkpoint_integrity.check_finite({"train": {"plateau_state": broken}}, 3,
                                      str(tmp_path))
  with pytest.raises(CheckpointError, match="scale"):
    checkpoint_integrity.check_finite(
        {"train": {"plateau_state": plateau._replace(
            scale=jnp.asarray(jnp.inf))}}, 3, str(tmp_path))
