"""ResEmoteNet teacher (80.2M parameters, Table II), class-weighted CE.

Usage: ``--config=configs/teacher.py:fer2013`` (or ``:raf_db``); add
``recipe=improved`` for the improved recipe instead of the paper's
(:func:`mre_jax.config.recipe.apply_recipe`).
"""

from mre_jax.config import config_lib
from mre_jax.config import recipe


def get_config(arg=None):
  config = recipe.get_config()
  # A teacher never distils: ce_weight 1, kd_weight 0, by the one rule of
  # mre_jax.config.config_lib.distill_weights.
  config.model = "teacher"
  return config_lib.apply_args(config, arg, student=False)
