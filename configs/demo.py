"""Offline demo: teacher -> logits -> student on synthetic_faces, no download.

    python -m mre_jax.main --config=configs/demo.py --workdir=/tmp/mre_demo

Trains a small teacher, exports its logits, distils a smaller student,
evaluates both from their checkpoints (``DIR/teacher``, ``DIR/student``) and
analyses a synthetic session video with the student (``DIR/session``).
Sizes are chosen to finish in a few minutes on a 2-core CPU; fields can be
overridden, e.g. ``--config.teacher.num_epochs=2``.
"""

from ml_collections import config_dict

from mre_jax.config import config_lib
from mre_jax.config import recipe


def _run(model: str, width: int, epochs: int) -> config_dict.ConfigDict:
  config = recipe.get_config()
  config.model = model
  config.model_width = width
  config.dataset.name = "synthetic_faces"
  config.dataset.builder_config = "default"
  config.image_size = 32  # Small inputs keep the demo fast on a CPU.
  config.batch_size = 64
  config.learning_rate = 0.03
  config.num_epochs = epochs
  config.early_stopping_patience = 5
  config.plateau.patience = 2
  return config


def get_config(arg=None):
  del arg
  config = config_dict.ConfigDict()
  config.workflow = "demo"
  config.teacher = _run("teacher", width=10, epochs=15)  # Never distils.
  # Experiment E6's T and alpha (Table IV), from mre_jax.config.paper.
  config.student = config_lib.apply_args(
      _run("student_c", width=6, epochs=15), "exp=E6", student=True)
  return config
