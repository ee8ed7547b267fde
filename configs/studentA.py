"""Student A (20.1M parameters, Table II) distilled from the ResEmoteNet teacher.

Usage: ``--config=configs/studentA.py:fer2013,exp=E1`` (experiments of
Table IV), ``:raf_db,alpha=0.15``, or ``:fer2013,baseline`` (no teacher).
Name the teacher with ``--config.distill.teacher_workdir=DIR``.
"""

from configs import default
from mre_jax import config_lib


def get_config(arg=None):
  config = default.get_config()
  config.model = "student_a"
  return config_lib.apply_args(config, arg, student=True)
