"""The training recipes: the paper's (Mini-ResEmoteNet, Sec. III-D), the base
config, and an improved one that changes a few of its fields.

Every hyperparameter of a run lives here, each with its source; the paper's
published results live in :mod:`mre_jax.config.paper`. The files in ``configs/``
start from :func:`get_config` and pick a model, a dataset, an experiment and
a recipe (``configs/studentA.py:fer2013,exp=E1,recipe=improved``, see
:func:`mre_jax.config.config_lib.apply_args`). Being part of the package,
the recipe is the same for the command line, the benchmarks and the tests,
and config files load from any directory.
"""

from ml_collections import config_dict

from mre_jax.config import paper
from mre_jax.errors import ConfigError

RECIPES = ("paper", "improved", "balanced")


def get_config():
  """The paper's recipe for any model; other configs override fields."""
  config = config_dict.ConfigDict()
  config.workflow = "train"  # "train" (one run) or "demo" (configs/demo.py).
  config.model = "student_a"  # teacher | student_a | student_b | student_c.
  config.model_width = 0  # 0: the preset's width (Table II); >0: tiny models.
  config.dtype = "float32"  # Compute dtype; "bfloat16" for GPU speed.
  config.seed = 0
  # Informational: the recipe= argument that set the fields (see RECIPES).
  config.recipe = "paper"

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
  # Train-only augmentations of mre_jax.data.augment, off in the paper's recipe:
  # largest shift (fraction of the side), rotation (degrees) and the
  # probability of erasing a rectangle.
  config.augment_shift = 0.0
  config.augment_rotation = 0.0
  config.augment_erasing = 0.0
  config.augment_scale = 0.0  # Largest zoom away from 1 (scale jitter).
  config.class_weighted_loss = True  # Class-weight-biased loss (Sec. III-D).
  config.label_smoothing = 0.0  # Of the CE term's hard labels, not of KD.
  # tau of the logit-adjusted loss (CE on logits + tau * log(class prior),
  # Menon et al., 2021): balanced predictions without reweighting; 0: off.
  config.logit_adjustment = 0.0
  # Decay of an exponential moving average of the weights (Polyak
  # averaging), updated every step; where > 0 the average is what is
  # validated, checkpointed and shipped. 0: off, as in the paper.
  config.ema_decay = 0.0

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
  # "plateau": the lr times the plateau's factor (below); "warmup_cosine":
  # linear warm-up over warmup_epochs, then cosine decay to 0 at num_epochs.
  config.lr_schedule = "plateau"
  config.warmup_epochs = 0

  # ReduceLROnPlateau(factor=0.1) on validation loss (paper, Sec. III-D);
  # patience 10 and threshold 1e-4 are PyTorch's defaults.
  config.plateau = config_dict.ConfigDict()  # Used by lr_schedule "plateau".
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
  # The teacher: a workdir (trained here or imported with mre_jax.convert),
  # a shipped model, or several separated by commas (an ensemble, see
  # mre_jax.training.teachers), and/or a logits file; empty logits path:
  # <workdir>/teacher_logits.npz.
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


def apply_recipe(config: config_dict.ConfigDict,
                 name: str) -> config_dict.ConfigDict:
  """Sets the fields of recipe ``name`` (one of :data:`RECIPES`) in place.

  "paper" is :func:`get_config` as it is. "improved" is a common modern
  recipe for small-image CNNs trained from scratch, not from the paper and
  not tuned on its test sets: a larger batch on a warm-up + cosine schedule,
  stronger augmentation and label smoothing. "balanced" is "improved" with
  class weights and scale jitter (:func:`_balanced`). Fields not named here
  (model, dataset, distillation, flip) keep their values.

  Raises:
    ConfigError: ``name`` is not one of :data:`RECIPES`.
  """
  if name not in RECIPES:
    raise ConfigError(f"unknown recipe {name!r}; expected one of {RECIPES}")
  config.recipe = name
  if name == "paper":
    return config
  _improved(config)
  if name == "balanced":
    _balanced(config)
  return config


def _improved(config: config_dict.ConfigDict) -> None:
  """The fields of the improved recipe (see :func:`apply_recipe`)."""
  # Four times the paper's batch: 4x fewer, better-filled steps (an
  # accelerator is barely busy at 16) and steadier BatchNorm statistics.
  config.batch_size = 64
  # SGD with momentum as in the paper, at a larger peak lr: with a short
  # warm-up (which keeps the first steps stable from a random init) and a
  # cosine decay to 0, the lr anneals smoothly instead of waiting for
  # plateaus; warm-up + cosine suits the larger batch (Goyal et al., 2017;
  # Loshchilov & Hutter, 2017).
  config.learning_rate = 0.02
  config.lr_schedule = "warmup_cosine"
  config.warmup_epochs = 3
  # More weight decay, as usual for SGD on small images, to curb
  # overfitting on datasets of 12-29k faces.
  config.weight_decay = 5e-4
  # The cosine horizon: 60 epochs of 4x larger batches, long enough for the
  # model to fit the harder, augmented data before the lr reaches 0.
  config.num_epochs = 60
  # Validation accuracy keeps rising late in a cosine schedule (small lr);
  # stop only after a long stall. The best epoch is still kept.
  config.early_stopping_patience = 20
  # Faces are roughly but not exactly aligned: shifts of up to 10% and tilts
  # of up to 10 degrees mimic the detector's variation.
  config.augment_shift = 0.1
  config.augment_rotation = 10.0
  # Occluded faces (hands, glasses) are common in the wild: erasing a
  # rectangle in a quarter of the images teaches the model to use the whole
  # face rather than one region.
  config.augment_erasing = 0.25
  # FER2013's labels are noisy; smoothing keeps the model from fitting them
  # with overconfident logits (Szegedy et al., 2016).
  config.label_smoothing = 0.1
  # Unweighted CE: PyTorch's label smoothing with class weights (which the
  # loss follows) adds eps/K * sum_k w_k * -log p_k to every example, so the
  # rare classes' large weights pull every face towards them; on RAF-DB that
  # kept the model below chance. The best checkpoint is still chosen on
  # validation accuracy, and mean class accuracy is reported beside it.
  config.class_weighted_loss = False


def _balanced(config: config_dict.ConfigDict) -> None:
  """The improved recipe with the classes balanced and scale jitter.

  The improved recipe's unweighted loss left the rare classes unlearned (on
  RAF-DB its student C never predicted disgust or fear). The logit-adjusted
  loss with tau = 1 (Menon et al., 2021) balances them: its raw logits
  estimate the class-balanced posterior. Inverse-frequency class weights
  did not train at this recipe's learning rate (RAF-DB student C: training
  loss still at ln 7 after 15 epochs, weights of up to 6.2 on fear), as
  the adjusted loss reweights no gradient. Faces found by a detector vary in
  size as well as position: zooms of up to 10% either way.
  """
  config.logit_adjustment = 1.0
  config.augment_scale = 0.1
