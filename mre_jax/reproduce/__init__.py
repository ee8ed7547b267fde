"""Reproducing the GPU results step by step, each step within its time
budget: the driver (``python -m mre_jax.reproduce``, in ``__main__``), the
steps' processes (:mod:`mre_jax.reproduce.steps`) and what both share
(:mod:`mre_jax.reproduce.common`)."""
