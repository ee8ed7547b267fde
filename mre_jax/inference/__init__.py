"""Class probabilities for face crops, from a shipped model, a workdir or an
exported file.

:func:`load_classifier` takes any of them and returns an object with
``class_names``, ``image_size``, ``channels`` and ``probabilities(images)``.
Nothing is imported until it is called, so that using an exported model never
imports flax or orbax.
"""

from __future__ import annotations

import os

from mre_jax.errors import ExportError


def load_classifier(path: str, which: str | int = "best",
                    batch_size: int = 64):
  """A ``Predictor`` for a shipped model's name (``student_c-fer2013``, see
  :mod:`mre_jax.models.shipped`) or a training workdir, an ``ExportedModel`` for
  a file.

  ``which`` (``best``, ``latest`` or an epoch) picks a workdir's checkpoint.
  Raises ExportError when ``path`` is none of these.
  """
  # pylint: disable=g-import-not-at-top
  from mre_jax.models import shipped
  if not os.path.exists(path) and shipped.is_name(path):
    from mre_jax.inference.predictor import Predictor
    return Predictor.from_shipped(path, batch_size=batch_size)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    from mre_jax.inference.predictor import Predictor
    return Predictor.from_workdir(path, which, batch_size=batch_size)
  if os.path.isfile(path):
    from mre_jax.inference.exported import ExportedModel
    return ExportedModel.load(path, batch_size=batch_size)
  raise ExportError(
      f"{os.path.abspath(path)} is neither a training workdir (with "
      "checkpoints/), a file written by python -m mre_jax.export, nor a "
      "shipped model's name (python -m mre_jax.pretrained lists them).")
