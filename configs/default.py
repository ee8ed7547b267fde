"""The paper's recipe for any model, as a config file.

    python -m mre_jax.main --config=configs/default.py --workdir=...

The recipe itself, every hyperparameter with its source, is
:func:`mre_jax.config.recipe.get_config`; the other config files start from it.
"""

from mre_jax.config import recipe


def get_config(arg=None):
  del arg
  return recipe.get_config()
