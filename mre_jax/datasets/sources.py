"""Reading the manually downloaded dataset files: folders and archives.

A :class:`SourceTree` names the files of a folder (:class:`FolderTree`) or of
a zip or tar archive (:class:`ArchiveTree`) by relative posix path, so dataset
builders detect their layout the same way wherever the files are;
:func:`find_manual_source` searches the TFDS manual dir for one, and
:func:`decode_images` turns its image files into uint8 arrays. Kept apart
from the builders because it is plain file handling, without TFDS.

The search can also be watched: inside :func:`recording_search` it notes the
tree it chose and the archives it opened in vain, and inside
:func:`locating_only` it stops at the source it would choose, without reading
any archive, and raises :class:`SourceLocated` (see
:mod:`mre_jax.datasets.provenance`, which compares sources this way).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import io
import lzma
import os
import pathlib
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TypeVar

import numpy as np
from PIL import Image

from mre_jax.errors import DatasetError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz",
                    ".tar.bz2", ".tbz2")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_Layout = TypeVar("_Layout")


def _is_hidden(name: str) -> bool:
  return any(part.startswith(".") or part == "__MACOSX"
             for part in name.split("/"))


def is_archive(path: os.PathLike[str] | str) -> bool:
  return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_SUFFIXES)


class SourceTree:
  """Read-only files of a folder or an archive, named by relative posix path.

  Hidden files (``.DS_Store``, ``__MACOSX/``...) are skipped. ``names`` is
  sorted, so everything derived from a tree is deterministic.
  """

  def __init__(self, location: pathlib.Path, names: Sequence[str]):
    self.location = location
    self.names = tuple(sorted(names))

  def read(self, name: str) -> bytes:
    raise NotImplementedError

  def describe(self, name: str = "") -> str:
    """A human-readable location of ``name`` for error messages."""
    return str(self.location / name) if name else str(self.location)


class FolderTree(SourceTree):
  """The files below a folder, read lazily; archives inside are not opened.

  ``read_names`` collects the names read so far.
  """

  def __init__(self, root: pathlib.Path):
    self.read_names: set[str] = set()
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
      rel_dir = pathlib.Path(dirpath).relative_to(root).as_posix()
      for filename in filenames:
        if _is_hidden(filename) or is_archive(filename):
          continue
        names.append(filename if rel_dir == "." else f"{rel_dir}/{filename}")
    super().__init__(root, names)

  def read(self, name: str) -> bytes:
    self.read_names.add(name)
    try:
      return (self.location / name).read_bytes()
    except OSError as e:
      raise DatasetError(f"cannot read {self.describe(name)}: {e}") from e


class ArchiveTree(SourceTree):
  """The regular files of a zip or tar archive, read once into memory.

  Tar archives are streamed, so compressed tars (``.tar.xz``...) are
  decompressed in one sequential pass without unpacking to disk.
  """

  def __init__(self, path: pathlib.Path):
    try:
      if path.name.lower().endswith(".zip"):
        files = _read_zip(path)
      else:
        files = _read_tar(path)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile,
            lzma.LZMAError, zlib.error) as e:
      raise DatasetError(f"cannot read archive {path}: {e}") from e
    self._files = files
    super().__init__(path, files.keys())

  def read(self, name: str) -> bytes:
    return self._files[name]

  def describe(self, name: str = "") -> str:
    return f"{self.location}:{name}" if name else str(self.location)


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
  return [info for info in archive.infolist()
          if not info.is_dir() and not _is_hidden(info.filename)]


def _read_zip(path: pathlib.Path) -> dict[str, bytes]:
  with zipfile.ZipFile(path) as archive:
    return {info.filename: archive.read(info)
            for info in _zip_members(archive)}


def _read_tar(path: pathlib.Path) -> dict[str, bytes]:
  files = {}
  with tarfile.open(path, mode="r|*") as archive:
    for member in archive:
      name = member.name.removeprefix("./")
      if member.isfile() and not _is_hidden(name):
        files[name] = archive.extractfile(member).read()
  return files


def shallowest(prefixes: set[str]) -> str | None:
  """The prefix with the fewest folders (ties: alphabetical), or None."""
  if not prefixes:
    return None
  return min(prefixes, key=lambda p: (p.count("/"), p))


# ----------------------------------------------------------------------------
# Searching the manual dir.


@dataclasses.dataclass
class SearchResult:
  """What :func:`find_manual_source` chose inside :func:`recording_search`."""
  tree: SourceTree | None = None
  # Archives opened before it that hold no layout of the dataset.
  skipped_archives: list[pathlib.Path] = dataclasses.field(
      default_factory=list)


class SourceLocated(Exception):
  """Raised inside :func:`locating_only` at the source the search chose.

  ``path`` is the folder or archive; ``tree`` the folder's files (None for
  an archive, which is not read).
  """

  def __init__(self, path: pathlib.Path, tree: FolderTree | None):
    super().__init__(str(path))
    self.path = path
    self.tree = tree


@dataclasses.dataclass
class _Search:
  locate_only: bool = False
  skip: Collection[tuple[str, int]] = ()
  result: SearchResult = dataclasses.field(default_factory=SearchResult)

  def found(self, tree: SourceTree, layout: _Layout
            ) -> tuple[SourceTree, _Layout]:
    if self.locate_only:
      raise SourceLocated(tree.location,
                          tree if isinstance(tree, FolderTree) else None)
    self.result.tree = tree
    return tree, layout

  def try_archive(self, path: pathlib.Path,
                  detect: Callable[[SourceTree], _Layout | None]
                  ) -> tuple[SourceTree, _Layout] | None:
    if self.locate_only:
      # Only a zip's names are cheap to list; other archives are taken to
      # hold the dataset unless the search skipped them when it prepared.
      if (path.name, path.stat().st_size) in self.skip:
        return None
      if path.name.lower().endswith(".zip"):
        try:
          with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in _zip_members(archive)]
        except (OSError, zipfile.BadZipFile) as e:
          raise DatasetError(f"cannot read archive {path}: {e}") from e
        if detect(SourceTree(path, names)) is None:
          return None
      raise SourceLocated(path, None)
    tree = ArchiveTree(path)
    layout = detect(tree)
    if layout is None:
      self.result.skipped_archives.append(path)
      return None
    return self.found(tree, layout)


_SEARCH: contextvars.ContextVar[_Search | None] = contextvars.ContextVar(
    "mre_jax_manual_search", default=None)


@contextlib.contextmanager
def _searching(search: _Search) -> Iterator[_Search]:
  token = _SEARCH.set(search)
  try:
    yield search
  finally:
    _SEARCH.reset(token)


@contextlib.contextmanager
def recording_search() -> Iterator[SearchResult]:
  """Notes what :func:`find_manual_source` chooses inside the block."""
  with _searching(_Search()) as search:
    yield search.result


@contextlib.contextmanager
def locating_only(skip: Collection[tuple[str, int]] = ()) -> Iterator[None]:
  """Makes :func:`find_manual_source` raise :class:`SourceLocated`.

  Args:
    skip: ``(file name, size)`` of archives known to hold no layout.
  """
  with _searching(_Search(locate_only=True, skip=skip)):
    yield


def find_manual_source(
    manual_dir: pathlib.Path,
    *,
    subdirs: Sequence[str],
    name_hints: Sequence[str],
    detect: Callable[[SourceTree], _Layout | None],
    describe_missing: Callable[[str], str],
) -> tuple[SourceTree, _Layout]:
  """Finds the first folder or archive in the manual dir holding a layout.

  The folders ``manual_dir/<subdir>`` (for each of ``subdirs``) and then
  ``manual_dir`` itself are searched in turn. In each, the files of the folder
  are tried first, then its archives: those whose name contains one of
  ``name_hints`` first, then the others, alphabetically. A ``manual_dir`` that
  is itself an archive is read directly.

  Args:
    manual_dir: the TFDS manual dir.
    subdirs: dataset-specific subfolders to search first.
    name_hints: lowercase substrings of likely archive names.
    detect: returns the layout found in a tree, or None.
    describe_missing: builds the error message from the searched paths.

  Returns:
    The tree and its layout.

  Raises:
    DatasetError: when nothing matches.
    SourceLocated: inside :func:`locating_only`, instead of returning.
  """
  search = _SEARCH.get() or _Search()
  if manual_dir.is_file() and is_archive(manual_dir.name):
    found = search.try_archive(manual_dir, detect)
    if found is None:
      raise DatasetError(describe_missing(str(manual_dir)))
    return found
  searched = []
  for folder in [manual_dir / s for s in subdirs] + [manual_dir]:
    if not folder.is_dir():
      continue
    searched.append(str(folder))
    tree = FolderTree(folder)
    layout = detect(tree)
    if layout is not None:
      return search.found(tree, layout)
    archives = sorted(p for p in folder.iterdir()
                      if p.is_file() and is_archive(p.name))
    archives.sort(key=lambda p: not any(h in p.name.lower()
                                        for h in name_hints))
    for archive in archives:
      found = search.try_archive(archive, detect)
      if found is not None:
        return found
  where = (", ".join(searched) if searched
           else f"{manual_dir} (which does not exist)")
  raise DatasetError(describe_missing(where))


def decode_image(data: bytes, shape: tuple[int, int, int],
                 where: str) -> np.ndarray:
  """Decodes image bytes to uint8 ``shape`` (grayscale or RGB) or raises.

  Color images are converted to grayscale for one channel and vice versa; the
  height and width must already match, nothing is resized.
  """
  mode = "L" if shape[2] == 1 else "RGB"
  try:
    with Image.open(io.BytesIO(data)) as image:
      array = np.asarray(image.convert(mode), dtype=np.uint8)
  except Exception as e:  # Pillow raises many types for broken files.
    raise DatasetError(f"cannot decode image {where}: {e}") from e
  if array.shape[:2] != shape[:2]:
    raise DatasetError(
        f"image {where} is {array.shape[1]}x{array.shape[0]} pixels, expected "
        f"{shape[1]}x{shape[0]}")
  return array.reshape(shape)


def decode_images(tree: SourceTree, names: Sequence[str],
                  shape: tuple[int, int, int]) -> np.ndarray:
  """Decodes the named images of a tree into one uint8 array."""
  images = np.empty((len(names), *shape), dtype=np.uint8)
  for i, name in enumerate(names):
    images[i] = decode_image(tree.read(name), shape, tree.describe(name))
  return images
