"""Offline demo: teacher -> logits -> student on synthetic_faces, no download.

    python -m mre_jax.main --config=configs/demo.py --workdir=/tmp/mre_demo

Trains a small teacher, exports its logits, distils a smaller student and
evaluates both from their checkpoints (``DIR/teacher``, ``DIR/student``).
Sizes are chosen to finish in a few minutes on a 2-core CPU; fields can be
overridden, e.g. ``--config.teacher.num_epochs=2``.
"""

from configs import default
from ml_collections import config_dict


def _run(model: str, width: int, epochs: int) -> config_dict.ConfigDict:
  config = default.get_config()
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
  config.teacher = _run("teacher", width=10, epochs=15)
  config.teacher.distill.kd_weight = 0.0
  config.teacher.distill.ce_weight = 1.0
  config.student = _run("student_c", width=6, epochs=15)
  config.student.distill.temperature = 3.0  # Table IV.
  config.student.distill.alpha = 0.2  # Table IV, E6.
  config.student.distill.experiment = "E6"
  return config
