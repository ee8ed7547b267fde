"""Config arguments and validation shared by the files in ``configs/``.

A config file's argument string (after the ``:`` in ``--config=FILE:ARGS``)
is a comma-separated list: an optional dataset name and ``key=value`` pairs.
Keys: ``exp`` (E1..E6, Table IV), ``alpha``, ``T`` (temperature),
``baseline`` (no teacher: kd_weight=0, ce_weight=1), ``width`` (tiny models),
``recipe`` (``paper``, the default, or ``improved``; see
:func:`mre_jax.config.recipe.apply_recipe`).
"""

from __future__ import annotations

from ml_collections import config_dict

from mre_jax.config import paper
from mre_jax.config import recipe
from mre_jax.config.dataset_names import DATASET_NAMES
from mre_jax.config.dataset_names import VALIDATION_MODES
from mre_jax.errors import ConfigError

DTYPES = ("float32", "bfloat16")
_ARG_KEYS = ("exp", "alpha", "T", "baseline", "width", "recipe")
LR_SCHEDULES = ("plateau", "warmup_cosine")
# The largest value of each train-time augmentation, config.augment_<name>
# (see mre_jax.data.augment); 0 turns one off.
AUGMENT_LIMITS = {"shift": 0.5, "rotation": 180.0, "erasing": 1.0,
                  "scale": 0.5}


def parse_args(arg: str | None) -> tuple[str | None, dict[str, str]]:
  """``"fer2013,exp=E1"`` -> ("fer2013", {"exp": "E1"})."""
  dataset, pairs = None, {}
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    if "=" in token:
      key, value = (s.strip() for s in token.split("=", 1))
      if key not in _ARG_KEYS:
        raise ConfigError(f"unknown config argument {key!r} in {arg!r}; "
                          f"expected a dataset and keys {_ARG_KEYS}")
      pairs[key] = value
    elif token == "baseline":
      pairs["baseline"] = "true"
    elif token in DATASET_NAMES:
      dataset = token
    else:
      raise ConfigError(f"unknown config argument {token!r} in {arg!r}; "
                        f"expected a dataset {DATASET_NAMES} or key=value")
  return dataset, pairs


def _number(key: str, value: str) -> float:
  try:
    return float(value)
  except ValueError:
    raise ConfigError(f"config argument {key}={value!r} is not a number"
                      ) from None


def apply_args(config: config_dict.ConfigDict, arg: str | None,
               student: bool) -> config_dict.ConfigDict:
  """Applies a config file's argument string to ``config`` in place."""
  dataset, pairs = parse_args(arg)
  if dataset:
    config.dataset.name = dataset
  # First, so that a recipe never undoes the other arguments.
  recipe.apply_recipe(config, pairs.get("recipe", "paper").lower())
  if "exp" in pairs:
    if not student:
      raise ConfigError("exp= selects a distillation experiment; use it with "
                        "configs/studentA.py, studentB.py or studentC.py")
    exp = pairs["exp"].upper()
    if exp not in paper.EXPERIMENTS:
      raise ConfigError(f"unknown experiment {pairs['exp']!r}; expected one "
                        f"of {sorted(paper.EXPERIMENTS)} (Table IV)")
    model, temperature, alpha = paper.EXPERIMENTS[exp]
    if model != config.model:
      raise ConfigError(f"experiment {exp} distils {model}, but this config "
                        f"trains {config.model}")
    config.distill.experiment = exp
    config.distill.temperature = temperature
    config.distill.alpha = alpha
  if "alpha" in pairs:
    config.distill.alpha = _number("alpha", pairs["alpha"])
  if "T" in pairs:
    config.distill.temperature = _number("T", pairs["T"])
  if "width" in pairs:
    config.model_width = int(_number("width", pairs["width"]))
  if pairs.get("baseline", "false").lower() in ("1", "true", "yes"):
    config.distill.kd_weight = 0.0
    config.distill.ce_weight = 1.0
    config.distill.experiment = "baseline"
  return config


def distill_weights(config: config_dict.ConfigDict) -> tuple[float, float]:
  """(ce_weight, kd_weight) of a run: the one rule for the loss weights.

  ``config`` is a run's config, or one read back from its ``config.json``
  (``ConfigDict(json.load(f))``). Weights set explicitly (>= 0) are kept;
  unset (negative) ones follow alpha: ``kd_weight = alpha``,
  ``ce_weight = 1 - alpha``. A teacher never distils: its ``kd_weight`` is 0
  whatever is set, and its ``ce_weight`` defaults to 1 (plain class-weighted
  cross-entropy, as configs/teacher.py trains it).
  """
  d = config.distill
  if config.model == "teacher":
    return float(d.ce_weight if d.ce_weight >= 0 else 1.0), 0.0
  kd = d.kd_weight if d.kd_weight >= 0 else d.alpha
  ce = d.ce_weight if d.ce_weight >= 0 else 1.0 - d.alpha
  return float(ce), float(kd)


def is_student(config: config_dict.ConfigDict) -> bool:
  """A run distils when it has a positive KD weight (never a teacher)."""
  return distill_weights(config)[1] > 0


def _check(ok: bool, field: str, value, expected: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}={value!r} is invalid: expected "
                      f"{expected}")


def check_augmentation(values: dict[str, float]) -> None:
  """Rejects augmentation strengths outside :data:`AUGMENT_LIMITS`."""
  for name, high in AUGMENT_LIMITS.items():
    _check(0 <= values[name] <= high, f"augment_{name}", values[name],
           f"a value in [0, {high:g}] (0: off)")


def validate(config: config_dict.ConfigDict) -> None:
  """Rejects bad values, naming the field; unknown fields fail earlier."""
  c = config
  _check(c.model in paper.TABLE_II, "model", c.model,
         f"one of {sorted(paper.TABLE_II)}")
  _check(c.model_width >= 0, "model_width", c.model_width, ">= 0")
  _check(c.dtype in DTYPES, "dtype", c.dtype, f"one of {DTYPES}")
  _check(c.dataset.name in DATASET_NAMES, "dataset.name", c.dataset.name,
         f"one of {DATASET_NAMES}")
  _check(c.dataset.validation in VALIDATION_MODES, "dataset.validation",
         c.dataset.validation, f"one of {VALIDATION_MODES}")
  _check(c.image_size >= 16, "image_size", c.image_size, ">= 16")
  for field in ("batch_size", "eval_batch_size", "num_epochs"):
    _check(c[field] > 0, field, c[field], "a positive integer")
  _check(c.steps_per_dispatch >= 0, "steps_per_dispatch", c.steps_per_dispatch,
         ">= 0 (0: automatic)")
  _check(c.learning_rate > 0, "learning_rate", c.learning_rate, "> 0")
  _check(0 <= c.momentum < 1, "momentum", c.momentum, "in [0, 1)")
  _check(c.weight_decay >= 0, "weight_decay", c.weight_decay, ">= 0")
  _check(c.recipe in recipe.RECIPES, "recipe", c.recipe,
         f"one of {recipe.RECIPES}")
  _check(c.lr_schedule in LR_SCHEDULES, "lr_schedule", c.lr_schedule,
         f"one of {LR_SCHEDULES}")
  _check(c.warmup_epochs >= 0, "warmup_epochs", c.warmup_epochs, ">= 0")
  _check(0 <= c.label_smoothing < 1, "label_smoothing", c.label_smoothing,
         "in [0, 1)")
  _check(0 <= c.get("logit_adjustment", 0.0) <= 3, "logit_adjustment",
         c.get("logit_adjustment"), "in [0, 3] (0: off)")
  _check(0 <= c.get("ema_decay", 0.0) < 1, "ema_decay", c.get("ema_decay"),
         "in [0, 1) (0: off)")
  check_augmentation({name: float(c.get(f"augment_{name}", 0.0))
                      for name in AUGMENT_LIMITS})
  _check(c.plateau.metric in ("val_loss", "val_accuracy"), "plateau.metric",
         c.plateau.metric, "val_loss or val_accuracy")
  _check(0 < c.plateau.factor <= 1, "plateau.factor", c.plateau.factor,
         "in (0, 1]")
  _check(c.plateau.patience >= 0, "plateau.patience", c.plateau.patience,
         ">= 0")
  _check(c.early_stopping_patience > 0, "early_stopping_patience",
         c.early_stopping_patience, "a positive integer")
  _check(c.distill.temperature > 0, "distill.temperature",
         c.distill.temperature, "> 0")
  _check(0 <= c.distill.alpha <= 1, "distill.alpha", c.distill.alpha,
         "in [0, 1]")
  ce, kd = distill_weights(c)
  _check(ce + kd > 0, "distill.ce_weight", c.distill.ce_weight,
         "ce_weight + kd_weight > 0")
  if is_student(c):
    _check(bool(c.distill.teacher_workdir or c.distill.teacher_logits),
           "distill.teacher_workdir", c.distill.teacher_workdir,
           "a teacher workdir or distill.teacher_logits for a distilled "
           "student of a dataset without published logits (see "
           "mre_jax/teacher_logits/), or 'baseline' for kd_weight=0")
  splits = [s.strip() for s in c.eval.splits.split(",") if s.strip()]
  _check(bool(splits) and set(splits) <= {"train", "validation", "test"},
         "eval.splits", c.eval.splits, "a comma list of train,validation,test")
  checkpoint = str(c.eval.checkpoint)
  _check(checkpoint in ("best", "latest") or checkpoint.isdigit(),
         "eval.checkpoint", c.eval.checkpoint, "best, latest or an epoch")
