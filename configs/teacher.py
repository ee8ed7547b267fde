"""ResEmoteNet teacher (80.2M parameters, Table II), class-weighted CE.

Usage: ``--config=configs/teacher.py:fer2013`` (or ``:raf_db``).
"""

from configs import default
from mre_jax import config_lib


def get_config(arg=None):
  config = default.get_config()
  config.model = "teacher"
  config.distill.kd_weight = 0.0
  config.distill.ce_weight = 1.0
  return config_lib.apply_args(config, arg, student=False)
