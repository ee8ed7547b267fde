"""The exponential moving average of the weights (config ``ema_decay``)."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mre_jax.config import config_lib
from mre_jax.errors import CheckpointError, ConfigError
from mre_jax.training import train
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing


def saved(workdir, step):
  """A checkpoint's model item (the evaluated variables) and its trained
  params, read as saved."""
  manager = checkpointing.open_manager(workdir, read_only=True)
  items = manager.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(), train=ocp.args.StandardRestore()))
  to_np = lambda tree: jax.tree.map(np.asarray, tree)
  return to_np(items["model"]["params"]), to_np(items["train"].get("params"))


def test_decay_warms_up_to_the_configured_value():
  decays = [float(train.ema_decay_at(0.999, jnp.asarray(step)))
            for step in (0, 1, 90, 10**6)]
  assert decays == pytest.approx([0.1, 2 / 11, 91 / 100, 0.999])


def test_update_moves_the_average_towards_the_weights():
  state = train.TrainState(
      step=jnp.asarray(10**6), params={"w": jnp.array([1.0, 3.0])},
      batch_stats={"m": jnp.array([2.0])}, opt_state=None,
      plateau_state=None, rng=None,
      ema={"params": {"w": jnp.array([0.0, 1.0])},
           "batch_stats": {"m": jnp.array([0.0])}})
  moved = train.update_ema(state, 0.75)
  np.testing.assert_allclose(moved.ema["params"]["w"], [0.25, 1.5])
  np.testing.assert_allclose(moved.ema["batch_stats"]["m"], [0.5])
  assert moved.variables() is moved.ema
  plain = state.replace(ema=None)
  assert train.update_ema(plain, 0.75) is plain
  assert plain.variables()["params"] is plain.params


def test_average_is_checkpointed_and_resumes_exactly(data_dir, tmp_path,
                                                     train_until_killed,
                                                     tiny_config):
  config = tiny_config(data_dir, model="student_c", epochs=3,
                       kd_weight=0.0, ce_weight=1.0)
  config.ema_decay = 0.9
  straight = str(tmp_path / "straight")
  trainer.Trainer(config, straight).train()
  average, trained = saved(straight, 3)
  # The evaluated model is the average, not the last weights.
  assert not np.allclose(average["fc4"]["kernel"], trained["fc4"]["kernel"])

  interrupted = str(tmp_path / "interrupted")
  train_until_killed(config, interrupted, 1)
  trainer.Trainer(config, interrupted).train()
  resumed = saved(interrupted, 3)
  jax.tree.map(np.testing.assert_array_equal, (average, trained), resumed)

  # The same workdir without the average is another run: refused, kept.
  config.ema_decay = 0.0
  with pytest.raises(CheckpointError, match="another run"):
    trainer.Trainer(config, interrupted).train()
  jax.tree.map(np.testing.assert_array_equal, saved(interrupted, 3), resumed)


def test_a_tiny_decay_tracks_the_weights(data_dir, tmp_path, tiny_config):
  config = tiny_config(data_dir, model="student_c", epochs=1,
                       kd_weight=0.0, ce_weight=1.0)
  config.ema_decay = 1e-6
  workdir = str(tmp_path / "run")
  trainer.Trainer(config, workdir).train()
  average, trained = saved(workdir, 1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               average, trained)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_decay_outside_its_range_is_refused(tiny_config, value):
  config = tiny_config("unused", model="student_c")
  config.ema_decay = value
  with pytest.raises(ConfigError, match="ema_decay"):
    config_lib.validate(config)
