"""Rerunning a finished run: it says so, or trains on with continue_finished."""

import json
import logging
import os

from mre_jax.evaluation import evaluator
from mre_jax.training import trainer
from mre_jax.workdir import checkpointing


def test_finished_run_says_so_or_continues(data_dir, tmp_path, monkeypatch,
                                           caplog, tiny_config):
  real_evaluate, saved = evaluator.evaluate_split, []
  real_save = checkpointing.save

  def flat_accuracy(*args, **kwargs):  # Epoch 1 stays the best.
    return dict(real_evaluate(*args, **kwargs), accuracy=0.5)

  def save(manager, epoch, **kwargs):
    real_save(manager, epoch, **kwargs)
    saved.append(epoch)
  monkeypatch.setattr(evaluator, "evaluate_split", flat_accuracy)
  monkeypatch.setattr(checkpointing, "save", save)
  caplog.set_level(logging.INFO)
  config = tiny_config(data_dir, epochs=5)
  config.early_stopping_patience = 2
  workdir = str(tmp_path / "run")
  loop = trainer.Trainer(config, workdir).train()
  assert (loop.epoch, loop.stopped_early, saved) == (3, True, [1, 2, 3])

  # A larger num_epochs alone trains nothing, and says how to continue.
  config.num_epochs = 6
  caplog.clear()
  assert trainer.train_and_evaluate(config, workdir) == {}
  assert saved == [1, 2, 3]
  assert (f"{workdir} finished by early stopping at epoch 3" in caplog.text)
  assert ("to train it on to --config.num_epochs=6, add "
          "--config.continue_finished=True" in caplog.text)

  # continue_finished trains on; early stopping counts afresh from epoch 3.
  config.num_epochs, config.continue_finished = 5, True
  loop = trainer.Trainer(config, workdir).train()
  assert saved == [1, 2, 3, 4, 5]
  assert (loop.epoch, loop.finished, loop.stopped_early) == (5, True, False)
  assert loop.best_epoch == 1
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3, 4, 5]

  # Finished at its num_epochs: nothing to continue.
  caplog.clear()
  assert trainer.Trainer(config, workdir).train().epoch == 5
  assert saved == [1, 2, 3, 4, 5]
  assert f"{workdir} finished after its 5 epochs" in caplog.text
  assert "rerun with a larger --config.num_epochs" in caplog.text
