"""Images on their way into a model: the on-device input pipeline and the
one preprocessing function that training, evaluation and the application
share (``input_pipeline``), and train-time augmentation (``augment``). The
datasets themselves are in :mod:`mre_jax.datasets`."""
