"""The paper's training recipe (Mini-ResEmoteNet, Sec. III-D): the base config.

Every hyperparameter of a run lives here, each with its source; the paper's
published results live in :mod:`mre_jax.paper`. The files in ``configs/``
start from :func:`get_config` and pick a model, a dataset and an experiment
(``configs/studentA.py:fer2013,exp=E1``, see
:func:`mre_jax.config_lib.apply_args`). Being part of the package, the recipe
is the same for the command line, the benchmarks and the tests, and config
files load from any directory.
"""

from ml_collections import config_dict

from mre_jax import paper


def get_config():
  """The paper's recipe for any model; other configs override fields."""
  config = config_dict.ConfigDict()
  config.workflow = "train"  # "train" (one run) or "demo" (configs/demo.py).
  config.model = "student_a"  # teacher | student_a | student_b | student_c.
  config.model_width = 0  # 0: the preset's width (Table II); >0: tiny models.
  config.dtype = "float32"  # Compute dtype; "bfloat16" for GPU speed.
  config.seed = 0

  config.dataset = config_dict.ConfigDict()
  config.dataset.name = "fer2013"  # fer2013 | raf_db | synthetic_faces.
  config.dataset.data_dir = "~/tensorflow_datasets"
  # Where the downloaded files are; empty: <data_dir>/downloads/manual.
  config.dataset.manual_dir = ""
  config.dataset.builder_config = ""  # e.g. "tiny" for synthetic_faces.
  # "auto": the dataset's own validation split (FER2013 PublicTest); RAF-DB
  # has none, so a stratified 10% holdout of train. Or "holdout" / "test".
  config.dataset.validation = "auto"

  config.image_size = 64  # ResEmoteNet resizes every face to 64x64.
  config.augment_flip = True  # Random horizontal flip (paper, Sec. III-D).
  config.class_weighted_loss = True  # Class-weight-biased loss (Sec. III-D).

  config.batch_size = 16  # Global batch (paper, Sec. III-D).
  config.eval_batch_size = 256
  config.num_epochs = 80  # Paper, Sec. III-D.
  # Multi-device: keep the global batch (reproduces the paper) or multiply it
  # by the device count (faster); optionally scale the lr linearly with it.
  config.scale_batch_with_devices = False
  config.linear_lr_scaling = False

  # SGD as in the official ResEmoteNet script, torch.optim.SGD semantics:
  # weight decay added to the gradient before momentum, on every parameter.
  config.learning_rate = 1e-3  # Paper, Sec. III-D.
  config.momentum = 0.9
  config.weight_decay = 1e-4

  # ReduceLROnPlateau(factor=0.1) on validation loss (paper, Sec. III-D);
  # patience 10 and threshold 1e-4 are PyTorch's defaults.
  config.plateau = config_dict.ConfigDict()
  config.plateau.metric = "val_loss"  # val_loss (minimised) | val_accuracy.
  config.plateau.factor = 0.1
  config.plateau.patience = 10
  config.plateau.rtol = 1e-4
  config.plateau.cooldown = 0

  # Stop after this many epochs without validation-accuracy gain (official
  # ResEmoteNet script); the best checkpoint is chosen by validation accuracy.
  config.early_stopping_patience = 15
  # Rerunning a finished run trains on from its last epoch to num_epochs.
  config.continue_finished = False

  config.distill = config_dict.ConfigDict()
  config.distill.experiment = ""  # E1..E6 (Table IV), informational.
  # T and alpha of E1 (Table IV), the paper's best student.
  _, config.distill.temperature, config.distill.alpha = paper.EXPERIMENTS["E1"]
  # Loss = ce_weight * CE + kd_weight * T^2 * KL. Negative: derived from
  # alpha as kd_weight = alpha, ce_weight = 1 - alpha (see mre_jax.losses).
  config.distill.kd_weight = -1.0
  config.distill.ce_weight = -1.0
  # The teacher: a workdir (trained here or imported with mre_jax.convert)
  # and/or a logits file; empty logits path: <workdir>/teacher_logits.npz.
  config.distill.teacher_workdir = ""
  config.distill.teacher_checkpoint = "best"
  config.distill.teacher_logits = ""

  config.eval = config_dict.ConfigDict()
  config.eval.checkpoint = "best"  # best | latest | <epoch>.
  config.eval.splits = "validation,test"
  # Evaluate on another dataset than the run's own (files are then named
  # eval_<dataset>_<split>.json); empty: the run's own dataset.
  config.eval.dataset = ""

  # Train steps per jitted call (lax.scan); 0: 1 on CPU, 64 on accelerators.
  config.steps_per_dispatch = 0
  config.progress_every_seconds = 30.0
  return config
