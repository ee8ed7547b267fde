"""Student C (1.26M parameters, Table II) distilled from the ResEmoteNet teacher.

Usage: ``--config=configs/studentC.py:fer2013,exp=E6`` (experiments of
Table IV), ``:raf_db,alpha=0.15``, or ``:fer2013,baseline`` (no teacher).
Name the teacher with ``--config.distill.teacher_workdir=DIR``; without
one, a student distils from its dataset's published teacher logits
(``mre_jax/teacher_logits/``). Add
``recipe=improved`` for the improved recipe instead of the paper's
(:func:`mre_jax.config.recipe.apply_recipe`), e.g.
``:fer2013,exp=E6,recipe=improved``.
"""

from mre_jax.config import config_lib
from mre_jax.config import recipe


def get_config(arg=None):
  config = recipe.get_config()
  config.model = "student_c"
  return config_lib.apply_args(config, arg, student=True)
