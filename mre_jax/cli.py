"""What the package's small command-line programs share: flag parsing with
help, and bad input reported as one ``error:`` line with exit status 2."""

from __future__ import annotations

import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import flags

from mre_jax.errors import UserError

HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull")


def error(e: Exception | str, fv: flags.FlagValues | None = None) -> int:
  """Prints ``e`` as one ``error:`` line on stderr; returns exit status 2.

  absl's "Flag --x must have a value other than None" becomes "--x is
  required:" followed by the flag's help.
  """
  message = " ".join(str(e).split())
  required = re.search(r"Flag --(\w+) must have a value other than None",
                       message)
  if required and fv is not None and required[1] in fv:
    message = f"--{required[1]} is required: {fv[required[1]].help}"
  print(f"error: {message}", file=sys.stderr, flush=True)
  return 2


def parse(fv: flags.FlagValues, argv: Sequence[str], doc: str) -> int | None:
  """Parses ``argv`` (program name first) into ``fv``.

  Returns None to go on, or the exit status to stop with: 0 after printing
  ``doc`` and the flags for ``--help``, 2 after a one-line error.
  """
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(f"{doc}\nflags:\n{fv.get_help(include_special_flags=False)}")
    return 0
  try:
    rest = fv(list(argv))
    if len(rest) > 1:
      raise UserError(f"unexpected arguments {rest[1:]}; see --help")
  except (UserError, flags.Error) as e:
    return error(e, fv)
  return None


def fail(message: str) -> NoReturn:
  """Ends the program with ``message`` as one ``error:`` line, status 2."""
  sys.exit(error(message))


def parse_or_fail(argv: list[str]) -> list[str]:
  """``absl.app.run``'s ``flags_parser``: a bad flag is one ``error:`` line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(error(e, flags.FLAGS))


def command(define_flags: Callable[[], flags.FlagValues], doc: str,
            body: Callable[[flags.FlagValues], int | None],
            argv: Sequence[str] | None = None) -> int:
  """Parses ``argv`` (default ``sys.argv``) into ``define_flags()``'s flags
  and runs ``body`` on them; returns the exit status (``body``'s, 0 if it
  returns None, or 2 after a one-line error)."""
  argv = list(sys.argv if argv is None else argv)
  fv = define_flags()
  status = parse(fv, argv, doc)
  if status is not None:
    return status
  try:
    return body(fv) or 0
  except UserError as e:
    return error(e, fv)
