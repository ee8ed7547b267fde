"""The benchmark commands' shared command line.

Each command defines its flags when it runs, not when it is imported, so the
benchmarks can be imported together (tests, the ``torch.compile`` child) and
each command lists only the flags it reads. The flags several commands share
are defined here once. A user's mistake ends a command with one ``error:``
line and exit status 2, not a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from ml_collections import config_dict
from ml_collections import config_flags

from mre_jax import cli
from mre_jax.benchmarks import timing
from mre_jax.config import recipe
from mre_jax.errors import ConfigError
from mre_jax.errors import UserError
from mre_jax.runtime import host_memory

FLAGS = flags.FLAGS
# Flags that override a field of --config when given: flag -> field.
CONFIG_OVERRIDES = {"image_size": "image_size", "width": "model_width",
                    "dtype": "dtype", "steps_per_call": "steps_per_dispatch"}


class _IntListParser(flags.ListParser):
  """Comma-separated integers, e.g. ``16,256``."""

  def parse(self, argument):
    values = super().parse(argument)
    try:
      return [int(v) for v in values]
    except ValueError:
      raise ValueError("give integers, e.g. 16,256") from None


def define_int_list(name: str, default: Sequence[int], help_text: str) -> None:
  """A flag of comma-separated integers; a bad one fails when parsed."""
  flags.DEFINE(_IntListParser(), name, list(default), help_text,
               serializer=flags.CsvListSerializer(","))


def define_budget_flags(repeats: int, warmup_seconds: float = 1.0,
                        min_seconds: float = 0.0) -> None:
  """The timer's budget: ``--repeats`` and its time limits."""
  flags.DEFINE_integer("repeats", repeats,
                       "Timed calls per measurement (at most).")
  flags.DEFINE_float(
      "max_seconds_per_measurement", 30.0,
      "Stop timing a measurement once this many seconds are spent (at least "
      "one call is timed); warm-up and compilation are not counted.")
  flags.DEFINE_float(
      "min_seconds_per_measurement", min_seconds,
      "Keep timing past --repeats calls until the timed calls add up to this "
      "many seconds: short calls (inference at batch 1) get a median over "
      "many. --max_seconds_per_measurement still applies.")
  flags.DEFINE_float("warmup_seconds", warmup_seconds,
                     "Untimed warm-up per measurement after the first call.")


def budget() -> timing.Budget:
  """The budget the flags of :func:`define_budget_flags` give."""
  return timing.Budget(repeats=FLAGS.repeats,
                       max_seconds=FLAGS.max_seconds_per_measurement,
                       warmup_seconds=FLAGS.warmup_seconds,
                       min_seconds=FLAGS.min_seconds_per_measurement)


def define_config_flags(overrides: Sequence[str]) -> None:
  """``--config`` (the training recipe) and the named ``CONFIG_OVERRIDES``."""
  try:
    config_flags.DEFINE_config_dict(
        "config", recipe.get_config(), "The training recipe (optimizer, "
        "plateau, augmentation, seed, ...) the benchmark uses "
        "(mre_jax.config.recipe); fields can be overridden, e.g. "
        "--config.dtype=bfloat16.", lock_config=True)
  except (AttributeError, KeyError, ValueError, flags.Error) as e:
    raise ConfigError(_override_error(e)) from None
  definers = {
      "image_size": lambda: flags.DEFINE_integer(
          "image_size", None, "Model input size; default: the config's "
          "image_size.", lower_bound=1),
      "width": lambda: flags.DEFINE_integer(
          "width", None, "Base width of every model (tiny models for quick "
          "runs); default: the config's model_width, whose 0 means the "
          "presets' widths.", lower_bound=0),
      "dtype": lambda: flags.DEFINE_enum(
          "dtype", None, ["float32", "bfloat16"], "Compute dtype (parameters "
          "stay float32); default: the config's dtype."),
      "steps_per_call": lambda: flags.DEFINE_integer(
          "steps_per_call", None, "Training steps per timed call (one jitted "
          "dispatch); default: the config's steps_per_dispatch, whose 0 means "
          "as in training: 1 on CPU, 64 on accelerators.", lower_bound=0),
  }
  for name in overrides:
    definers[name]()


def train_config() -> config_dict.ConfigDict:
  """A copy of ``--config`` with the override flags that were given."""
  config = FLAGS.config.copy_and_resolve_references()
  for flag, field in CONFIG_OVERRIDES.items():
    if flag in FLAGS and FLAGS[flag].value is not None:
      config[field] = FLAGS[flag].value
  return config


def _override_error(error: Exception) -> str:
  """One line for a ``--config.<field>`` that failed to apply."""
  while error.args and isinstance(error.args[0], Exception):
    error = error.args[0]  # ml_collections wraps a KeyError.
  reason = str(error.args[0] if error.args else error)
  if isinstance(error, KeyError):
    reason = f"no field {reason}"
  return f"bad --config override: {reason}".replace("\n", "; ")


fail = cli.fail


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(str(e).replace("\n", "; "))
  except (AttributeError, KeyError) as e:
    fail(_override_error(e))


def run(main: Callable[[], None], define_flags: Callable[[], None]) -> None:
  """Defines a command's flags, parses them and runs ``main()``."""

  def checked_main(argv: list[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])}")
    host_memory.keep_freed_memory()
    try:
      main()
    except UserError as e:
      fail(str(e))

  try:
    define_flags()
  except UserError as e:
    fail(str(e))
  for flag in FLAGS.get_flags_for_module(__name__):  # Listed by --help.
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(checked_main, flags_parser=_parse_flags)
