"""Where a prepared dataset came from: recorded when prepared, checked on reuse.

A dataset prepared from one manual dir is reused from ``data_dir`` whatever
the manual dir says later, so a dataset prepared from a few hundred images
would silently stand in for the full download. After each preparation from
manual files, :func:`write_record` stores a :class:`Record` beside the
prepared files (``<data_dir>/<name>/<version>/mre_jax_source.json``): the
manual dir and a :class:`Fingerprint` of the source the builder read, by file
names and sizes only (an archive by its own name and size; its content may be
gigabytes). On reuse, :func:`check_reuse` fingerprints the source the builder
would read now and refuses a different one, so that nothing is lost: the user
deletes the prepared folder or picks another ``data_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Collection

from absl import logging

from mre_jax.datasets import sources
from mre_jax.errors import DatasetError

RECORD_NAME = "mre_jax_source.json"
FORMAT = 1

# A folder's fingerprint covers the files the builder read and those that
# look like them: each image file read stands for every file with its suffix
# in its folder (so images added later count), any other file for itself.
Pattern = tuple[str, str]


def _pattern(name: str) -> Pattern:
  folder, _, base = name.rpartition("/")
  if sources.is_image_name(base):
    return folder, "*" + base[base.rfind("."):].lower()
  return folder, base


def _size_text(num_bytes: int) -> str:
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if num_bytes >= scale:
      return f"{num_bytes / scale:.1f} {unit}"
  return f"{num_bytes} bytes"


@dataclasses.dataclass(frozen=True)
class Fingerprint:
  """A source by file names and sizes: equal digests, same files."""
  kind: str  # "folder" or "archive".
  path: str  # The folder or archive, absolute.
  num_files: int
  total_bytes: int
  digest: str
  patterns: tuple[Pattern, ...] = ()  # Folders: what was fingerprinted.

  def same_files(self, other: Fingerprint) -> bool:
    return (self.kind, self.digest) == (other.kind, other.digest)

  def describe(self) -> str:
    if self.kind == "archive":
      return f"archive {self.path} ({_size_text(self.total_bytes)})"
    return (f"folder {self.path} ({self.num_files:,} files, "
            f"{_size_text(self.total_bytes)})")


def _fingerprint(kind: str, path: pathlib.Path, sizes: dict[str, int],
                 patterns: Collection[Pattern] = ()) -> Fingerprint:
  listing = "".join(f"{name}\t{sizes[name]}\n" for name in sorted(sizes))
  return Fingerprint(
      kind=kind, path=str(path.absolute()), num_files=len(sizes),
      total_bytes=sum(sizes.values()),
      digest=hashlib.sha256(listing.encode()).hexdigest(),
      patterns=tuple(sorted(patterns)))


def archive_fingerprint(path: pathlib.Path) -> Fingerprint:
  return _fingerprint("archive", path, {path.name: path.stat().st_size})


def folder_fingerprint(tree: sources.SourceTree,
                       patterns: Collection[Pattern] | None) -> Fingerprint:
  """The files of ``tree`` matching ``patterns`` (None: all of them)."""
  patterns = None if patterns is None else set(patterns)
  sizes = {}
  for name in tree.names:
    if patterns is None or _pattern(name) in patterns:
      try:
        sizes[name] = (tree.location / name).stat().st_size
      except OSError as e:
        raise DatasetError(f"cannot read {tree.describe(name)}: {e}") from e
  return _fingerprint("folder", tree.location, sizes, patterns or ())


@dataclasses.dataclass(frozen=True)
class Record:
  """What a prepared dataset was prepared from."""
  manual_dir: str
  source: Fingerprint
  # (name, size) of the archives searched in vain before the source.
  skipped_archives: tuple[tuple[str, int], ...] = ()

  @classmethod
  def of_search(cls, manual_dir: pathlib.Path,
                result: sources.SearchResult) -> Record:
    """The record of a preparation that read ``result.tree``."""
    tree = result.tree
    if isinstance(tree, sources.FolderTree):
      source = folder_fingerprint(
          tree, {_pattern(name) for name in tree.read_names})
    else:
      source = archive_fingerprint(tree.location)
    return cls(manual_dir=str(manual_dir.absolute()), source=source,
               skipped_archives=tuple((p.name, p.stat().st_size)
                                      for p in result.skipped_archives))

  def describe(self) -> str:
    if self.source.path == self.manual_dir:
      return self.source.describe()
    return f"{self.source.describe()} in manual dir {self.manual_dir}"


def write_record(data_path: os.PathLike[str], record: Record) -> None:
  """Writes the record into the prepared dataset's folder, atomically."""
  path = pathlib.Path(data_path) / RECORD_NAME
  data = {"format": FORMAT, **dataclasses.asdict(record)}
  temporary = path.with_suffix(".tmp")
  try:
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(path)
  except OSError as e:  # The data is prepared all the same.
    logging.warning("could not record the source of %s: %s", data_path, e)


def read_record(data_path: os.PathLike[str]) -> Record | None:
  """The record of a prepared dataset; None when it has none (or unreadable)."""
  try:
    data = json.loads((pathlib.Path(data_path) / RECORD_NAME).read_text())
    if data.pop("format") != FORMAT:
      return None
    source = data.pop("source")
    source["patterns"] = tuple(tuple(p) for p in source["patterns"])
    return Record(
        source=Fingerprint(**source),
        skipped_archives=tuple(tuple(a) for a in data.pop("skipped_archives")),
        **data)
  except (OSError, ValueError, TypeError, KeyError, AttributeError):
    return None


def describe_prepared(data_path: os.PathLike[str]) -> str:
  """Where a dataset prepared from manual files came from, for log lines."""
  record = read_record(data_path)
  if record is None:
    return "prepared from an unrecorded source"
  return f"prepared from {record.describe()}"


_logged: set[str] = set()


def _log_once(log: Callable[[str], None], message: str) -> None:
  if message not in _logged:
    _logged.add(message)
    log(message)


# locate(manual_dir, skip) is where the builder would read from now.
Locate = Callable[[pathlib.Path, Collection[tuple[str, int]]],
                  sources.SourceLocated | None]


def check_reuse(name: str, data_path: os.PathLike[str],
                manual_dir: pathlib.Path, locate: Locate) -> None:
  """Checks a prepared dataset against the manual dir before it is reused.

  Args:
    name: the dataset's name, for messages.
    data_path: the prepared dataset's folder.
    manual_dir: the configured manual dir (folder or archive).
    locate: finds the source in a manual dir without reading it; raises
      DatasetError when the manual dir holds no source.

  Raises:
    DatasetError: the manual dir holds another source than the recorded one.
  """
  record = read_record(data_path)
  if record is None:
    _log_once(logging.warning, (
        f"{name} in {data_path} has no record of the files it was prepared "
        "from (an older version of mre_jax prepared it), so its source is "
        "unknown; using it as is. Delete that folder to prepare it again "
        "from the manual dir and record its source."))
    return
  reuse = (f"{name} in {data_path} was prepared from {record.describe()}; "
           f"using it as is, since the manual dir {manual_dir}")
  if not manual_dir.exists():
    _log_once(logging.info, f"{reuse} no longer exists.")
    return
  try:
    located = locate(manual_dir, record.skipped_archives)
  except DatasetError as e:
    first_line = str(e).split("\n", 1)[0]
    _log_once(logging.info, f"{reuse} holds no usable {name} files now "
              f"({first_line}).")
    return
  if located is None:
    return
  if located.tree is None:
    now = archive_fingerprint(located.path)
  else:
    now = folder_fingerprint(located.tree, record.source.patterns)
  if now.same_files(record.source):
    return
  if located.tree is not None:  # Described whole, not just what compares.
    now = folder_fingerprint(located.tree, None)
  raise DatasetError(
      f"the prepared {name} dataset in {data_path} was prepared from other "
      "files than the manual dir holds now:\n"
      f"  prepared from: {record.describe()}\n"
      f"  the manual dir {manual_dir.absolute()} now holds: "
      f"{now.describe()}\n"
      f"To prepare {name} again from the new files, delete {data_path}; to "
      "keep it, use another --config.dataset.data_dir.")
