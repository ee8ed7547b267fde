"""The shipped models as a command: listing, re-measuring and publishing.

    python -m mre_jax.pretrained                      # list, with accuracies
    python -m mre_jax.pretrained --verify=NAME --manual_dir=DATA
    python -m mre_jax.pretrained --publish=WORKDIR --name=NAME

The weights and model cards themselves live in :mod:`mre_jax.models.shipped`;
``mre_jax.inference.load_classifier(name)`` (or :func:`load`) loads one.
"""

from __future__ import annotations

from mre_jax.models import shipped


def load(name: str, batch_size: int = 64, folder: str = shipped.FOLDER):
  """A :class:`~mre_jax.inference.predictor.Predictor` of shipped model
  ``name`` (from ``folder``), with its card as ``predictor.card``."""
  # pylint: disable-next=g-import-not-at-top
  from mre_jax.inference.predictor import Predictor
  return Predictor.from_shipped(name, batch_size=batch_size, folder=folder)
