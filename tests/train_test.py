"""Training pipeline tests on tiny models and the tiny synthetic_faces set."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax import models
from mre_jax.config import recipe
from mre_jax.data import input_pipeline
from mre_jax.errors import CheckpointError
from mre_jax.training import train
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing


def params_of(workdir, which="latest"):
  return jax.tree.map(np.asarray, checkpointing.load_model(
      workdir, which).variables["params"])


def test_one_train_step_reduces_loss_on_fixed_batch():
  model = models.get_model("student_c", width=4)
  loss_fn = jax.jit(train.make_loss_fn(model, 3.0, 1.0, 0.0))
  variables = models.init_variables(model, jax.random.PRNGKey(0), 32)
  images = jax.random.normal(jax.random.PRNGKey(1), (16, 32, 32, 3))
  labels = jnp.arange(16) % 7
  rng = jax.random.PRNGKey(2)
  args = (images, labels, None, jnp.ones(7), rng)
  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  config = recipe.get_config()
  config.learning_rate = 0.05
  tx = train.make_optimizer(config, config.learning_rate)
  (before, _), grads = grad_fn(variables["params"],
                               variables["batch_stats"], *args)
  updates, _ = tx.update(grads, tx.init(variables["params"]),
                         variables["params"])
  params = jax.tree.map(lambda p, u: p + u, variables["params"], updates)
  after, _ = loss_fn(params, variables["batch_stats"], *args)
  assert float(after) < float(before)


def test_sgd_matches_torch_semantics():
  """Decay is added to the gradient before momentum, on every parameter."""
  config = recipe.get_config()
  tx = train.make_optimizer(config, 0.1)
  p = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([0.5, 0.25])}
  state = tx.init(p)
  buf = np.zeros(2)
  expected = np.array([1.0, -2.0])
  for _ in range(3):
    d = np.asarray(g["w"]) + 1e-4 * expected
    buf = 0.9 * buf + d
    expected = expected - 0.1 * buf
    updates, state = tx.update(g, state, p)
    p = jax.tree.map(lambda a, b: a + b, p, updates)
  np.testing.assert_allclose(p["w"], expected, rtol=1e-6)


def test_plateau_reduces_like_pytorch():
  """ReduceLROnPlateau(patience=2): lr drops on the 3rd bad epoch, not 2nd."""
  config = recipe.get_config()
  config.plateau.patience = 2
  plateau = train.make_plateau(config)
  state = plateau.init({"w": jnp.zeros(1)})
  scales = []
  for value in [1.0, 1.0, 1.0, 1.0]:
    _, state = plateau.update({"w": jnp.zeros(1)}, state, value=value)
    scales.append(float(state.scale))
  assert scales == pytest.approx([1.0, 1.0, 1.0, 0.1])


def test_kd_uses_teacher_logits_of_the_view_shown():
  """The train step's batch pairs each image with its own view's logits."""
  mesh = input_pipeline.make_mesh(4)
  n = 64
  images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 1), np.uint8)
  ids = np.arange(n, dtype=np.float32)[:, None]
  views = np.stack([np.tile(ids, 7), np.tile(-ids - 1, 7)], axis=1)
  data = input_pipeline.put_on_mesh(
      {"image": images, "label": np.zeros(n, np.int32),
       "teacher_logits": views}, mesh)
  perm = input_pipeline.epoch_permutation(jax.random.PRNGKey(0), n)
  batch = input_pipeline.train_batch(
      data, jax.random.PRNGKey(1), perm, jnp.asarray(1), batch_size=16,
      image_size=8, mesh=mesh)
  flip, index = np.asarray(batch["flip"]), np.asarray(batch["index"])
  assert 0 < flip.sum() < 16
  chosen = np.asarray(input_pipeline.teacher_view(batch["teacher_logits"],
                                                  batch["flip"]))
  np.testing.assert_array_equal(chosen[:, 0],
                                np.where(flip, -index - 1.0, index))
  shown = np.asarray(input_pipeline.preprocess(
      jnp.asarray(images[index]), image_size=8))
  expected = np.where(flip[:, None, None, None], shown[:, :, ::-1], shown)
  np.testing.assert_allclose(np.asarray(batch["image"]), expected, atol=1e-6)


def test_train_step_learns_from_the_teacher_logits(data_dir, tiny_config):
  """With kd_weight > 0 the update depends on the teacher logits given."""
  config = tiny_config(data_dir, model="student_c", epochs=1)
  config.distill.ce_weight, config.distill.kd_weight = 0.0, 1.0
  mesh = input_pipeline.make_mesh(1)
  model = train.build_model(config)
  tx, plateau = (train.make_optimizer(config, 0.1),
                 train.make_plateau(config))
  chunk = train.make_train_chunk(model, tx, config, mesh, 32, 0.0, 1.0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 48, 48, 1), np.uint8)
  perm = jnp.arange(64)
  weights = jnp.ones(7)
  params = []
  for seed in (1, 2):
    logits = np.random.default_rng(seed).normal(0, 5, (64, 2, 7))
    data = input_pipeline.put_on_mesh(
        {"image": images, "label": np.zeros(64, np.int32),
         "teacher_logits": logits.astype(np.float32)}, mesh)
    state = train.init_state(model, config, tx, plateau, mesh)
    state, _ = chunk(state, data, perm, weights, 0, num_steps=1)
    params.append(np.asarray(state.params["fc4"]["kernel"]))
  assert not np.allclose(params[0], params[1])


def test_one_and_four_devices_train_identically(data_dir, tmp_path,
                                               tiny_config):
  config = tiny_config(data_dir, epochs=1)
  # A small step keeps float reordering across devices from being amplified.
  config.learning_rate = 2.0**-10
  results = {}
  for n in (1, 4):
    workdir = str(tmp_path / f"d{n}")
    trainer.Trainer(config, workdir, input_pipeline.make_mesh(n)).train()
    results[n] = params_of(workdir)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               results[1], results[4])
  model = trainer.Trainer(config, str(tmp_path / "d1")).model
  initial = models.init_variables(
      model, jax.random.split(jax.random.PRNGKey(config.seed))[0], 32)
  assert not np.allclose(results[1]["fc4"]["kernel"],
                         initial["params"]["fc4"]["kernel"], atol=1e-6)


def test_interrupted_then_resumed_equals_uninterrupted(data_dir, tmp_path,
                                                       train_until_killed,
                                                       tiny_config):
  config = tiny_config(data_dir, epochs=3)
  straight = str(tmp_path / "straight")
  trainer.Trainer(config, straight).train()

  interrupted = str(tmp_path / "interrupted")
  train_until_killed(config, interrupted, 2)
  loop = trainer.Trainer(config, interrupted).train()
  assert loop.epoch == 3 and loop.finished
  jax.tree.map(np.testing.assert_array_equal, params_of(straight),
               params_of(interrupted))
  lines = [json.loads(l) for l in open(os.path.join(interrupted,
                                                    "metrics.jsonl"))]
  assert [l["epoch"] for l in lines] == [1, 2, 3]
  # A finished run does nothing when rerun.
  assert trainer.train_and_evaluate(config, interrupted) == {}


def test_foreign_checkpoint_is_refused_and_kept(teacher_run, data_dir,
                                               tiny_config):
  teacher_dir, _, _ = teacher_run
  config = tiny_config(data_dir, model="student_c", epochs=1,
                       teacher_workdir=teacher_dir)
  before = sorted(os.listdir(checkpointing.checkpoint_dir(teacher_dir)))
  with pytest.raises(CheckpointError, match="another run"):
    trainer.Trainer(config, teacher_dir).train()
  assert sorted(os.listdir(checkpointing.checkpoint_dir(teacher_dir))) == before


def test_corrupt_checkpoint_gives_clear_error(data_dir, tmp_path,
                                              tiny_config):
  config = tiny_config(data_dir, epochs=1)
  workdir = tmp_path / "run"
  step_dir = workdir / "checkpoints" / "1"
  step_dir.mkdir(parents=True)
  (step_dir / "garbage").write_text("not a checkpoint")
  with pytest.raises(CheckpointError, match="mre_jax checkpoint"):
    trainer.Trainer(config, str(workdir)).train()
  assert (step_dir / "garbage").read_text() == "not a checkpoint"


def test_warmup_cosine_schedule():
  config = recipe.apply_recipe(recipe.get_config(), "improved")
  config.num_epochs, config.warmup_epochs = 10, 2
  schedule = train.lr_schedule(config, 0.1, steps_per_epoch=5)
  lrs = [float(schedule(step)) for step in (0, 5, 10, 30, 50, 60)]
  assert lrs == pytest.approx([0.0, 0.05, 0.1, 0.05, 0.0, 0.0], abs=1e-7)
  config.warmup_epochs = 20  # Longer than the run: warm-up stops short.
  assert float(train.lr_schedule(config, 0.1, 5)(49)) == pytest.approx(0.1)
  assert train.lr_schedule(recipe.get_config(), 0.1, 5) == 0.1


@pytest.mark.parametrize("name", ["improved", "balanced"])
def test_improved_recipes_train_two_steps_and_log(data_dir, tmp_path,
                                                  tiny_config, name):
  """The full improved (and balanced) recipe on a tiny student: cosine lr,
  augmentation (with zoom) and label smoothing (with adjusted logits) in a
  2-step lax.scan; metrics are written."""
  config = recipe.apply_recipe(tiny_config(data_dir, model="student_c",
                                           epochs=1, kd_weight=0.0,
                                           ce_weight=1.0), name)
  config.num_epochs, config.batch_size = 1, 256  # 512 examples: 2 steps.
  config.steps_per_dispatch = 2
  workdir = str(tmp_path / "improved")
  loop = trainer.Trainer(config, workdir).train()
  assert loop.finished and loop.epoch == 1
  [line] = [json.loads(l) for l in open(os.path.join(workdir,
                                                     "metrics.jsonl"))]
  assert line["learning_rate"] == 0.0  # The cosine ends the run at 0.
  assert np.isfinite(line["train_loss"]) and 0 <= line["val_accuracy"] <= 1
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["recipe"] == name and saved["augment_erasing"] == 0.25
  assert saved["logit_adjustment"] == (name == "balanced")


def test_logit_offsets_are_tau_times_the_log_class_prior(tiny_config):
  config = tiny_config("unused", model="student_c")
  labels = np.array([0] * 6 + [1] * 3 + [3] * 1, np.int32)
  assert train.logit_offsets(config, labels) is None
  config.logit_adjustment = 0.5
  offsets = train.logit_offsets(config, labels)
  prior = np.array([0.6, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])  # Absent: 1 of 10.
  np.testing.assert_allclose(offsets, 0.5 * np.log(prior), rtol=1e-6)
