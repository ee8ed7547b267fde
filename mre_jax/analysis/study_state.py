"""Which sessions of a study are already analysed, checked, not assumed.

After a session's outputs are written, ``session.json`` is written beside
them, last: the session's key and the size of every output. The key is a
digest of the outputs' format version, the model's files, the analysis
settings, the video's contents (its size and its first, middle and last
MiB) and the events file's bytes.
A rerun skips a session only when ``session.json`` has the same key and
every output it lists is there with its size, and ``summary.json`` reads;
otherwise the session is analysed again (its old ``session.json`` is removed
first, so an interrupted redo is never taken for a finished one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any

MARKER = "session.json"
FORMAT = 1  # Raised when the outputs of the same analysis change.
_SAMPLE = 1 << 20  # Bytes read at each of three places of a video.


def _digest_file(path: str, sample: int | None = None) -> str:
  """sha256 of a file, or of its size and three samples of it."""
  digest = hashlib.sha256()
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    if sample is None or size <= 3 * sample:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    else:
      digest.update(str(size).encode())
      for offset in (0, (size - sample) // 2, size - sample):
        f.seek(offset)
        digest.update(f.read(sample))
  return digest.hexdigest()


def model_digest(path: str) -> str:
  """A digest of a model file, or of a workdir's checkpoint files (names,
  sizes and modification times): it changes when the model does."""
  path = os.path.abspath(path)
  if os.path.isfile(path):
    return _digest_file(path)
  root = os.path.join(path, "checkpoints")
  root = root if os.path.isdir(root) else path
  digest = hashlib.sha256(path.encode())
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(files):
      stat = os.stat(os.path.join(folder, name))
      digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}"
                    f"|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


def _jsonable(value: Any) -> Any:
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return dataclasses.asdict(value)
  raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def session_key(*, model: str, settings: Any, video: str,
                events: str | None) -> str:
  """The key of a session's analysis: same key, same outputs."""
  parts = {"format": FORMAT, "model": model,
           "settings": json.loads(json.dumps(settings, default=_jsonable,
                                             sort_keys=True)),
           "video": _digest_file(video, _SAMPLE),
           "events": _digest_file(events) if events else None}
  return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()
                        ).hexdigest()


def _outputs(folder: str, names: list[str]) -> dict[str, int]:
  sizes = {}
  for name in names:
    path = os.path.join(folder, name)
    if os.path.isdir(path):
      for sub in sorted(os.listdir(path)):
        sizes[f"{name}/{sub}"] = os.path.getsize(os.path.join(path, sub))
    else:
      sizes[name] = os.path.getsize(path)
  return sizes


def mark_done(folder: str, key: str, names: list[str]) -> None:
  """Writes ``session.json`` (atomically) after the outputs ``names``."""
  record = {"key": key, "outputs": _outputs(folder, names)}
  tmp = os.path.join(folder, f".{MARKER}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, os.path.join(folder, MARKER))


def is_done(folder: str, key: str) -> bool:
  """Whether ``folder`` holds a complete analysis with this key."""
  try:
    with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
      record = json.load(f)
    if record.get("key") != key:
      return False
    for name, size in record["outputs"].items():
      if os.path.getsize(os.path.join(folder, name)) != size:
        return False
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
      json.load(f)
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return False
  return True


def start_redo(folder: str) -> None:
  """Before a session is analysed again: its marker and any staging
  folder an interrupted write left are removed."""
  if not os.path.isdir(folder):
    return
  marker = os.path.join(folder, MARKER)
  if os.path.exists(marker):
    os.remove(marker)
  for name in os.listdir(folder):
    if name.startswith(".analysis-"):
      shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
