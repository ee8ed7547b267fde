"""mre_jax: Mini-ResEmoteNet facial-emotion recognition and distillation in JAX."""

__version__ = "0.1.0"
