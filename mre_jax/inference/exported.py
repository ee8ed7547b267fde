"""A model exported by ``python -m mre_jax.export``, used with jax alone.

    model = ExportedModel.load("E1.zip")
    probs = model.probabilities(faces)  # (N, K), rows sum to 1.

:class:`ExportedModel` offers the application what
:class:`~mre_jax.inference.predictor.Predictor` does (``class_names``,
``image_size``, ``channels``, ``probabilities``) from one file, importing
only jax and numpy: no flax, orbax or training code, and no checkpoint.

File format (``FORMAT``): a zip archive, members stored uncompressed:

* ``mre_jax_export.json`` (first member): the metadata. ``format``; ``model``
  (name, width, se_reduction, num_classes, class_names, num_params);
  ``preprocessing`` (image_size, channels of the training images, the
  normalisation's mean and std); ``input``/``output`` (what the function
  takes and returns); ``platforms``; ``source`` (workdir, checkpoint asked
  for, step, SHA-256 of the step's checksum file); ``fingerprint``
  (``sha256:`` of the artefact member); ``exported_with`` (jax, jaxlib,
  calling convention version); ``created`` (UTC, ISO 8601).
* ``model.jax_export``: ``jax.export.Exported.serialize()`` of
  ``uint8 (batch, height, width, 3) RGB -> float32 (batch, K)``
  probabilities, with symbolic batch, height and width, the parameters
  baked in. It can be called without mre_jax:
  ``jax.export.deserialize(bytearray(data)).call(faces)``.

The artefact takes RGB only (one exported function, one copy of the
parameters): grey faces are passed with their one channel repeated, which the
exported channel matching and preprocessing treat exactly as the grey face.
As with the predictor, faces are batched by size, padded to power-of-two
batches up to ``batch_size``, and each size compiles once.

``python -m mre_jax.inference.exported FILE`` checks that FILE loads here
and prints its metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import zipfile
from typing import Any

import jax
import jaxlib
import numpy as np

from mre_jax.errors import ExportError
from mre_jax.errors import UserError
from mre_jax.inference.images import as_images
from mre_jax.inference.images import padded_batches

FORMAT = "mre_jax.export/1"
METADATA = "mre_jax_export.json"
ARTEFACT = "model.jax_export"
EXPECTED = (f"a zip archive written by python -m mre_jax.export, holding "
            f"{METADATA} and {ARTEFACT}")


def sha256(data: bytes) -> str:
  """The fingerprint of an artefact."""
  return "sha256:" + hashlib.sha256(data).hexdigest()


def running_versions() -> dict[str, str]:
  """The jax and jaxlib versions of this process."""
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}


def _first_line(error: BaseException, limit: int = 300) -> str:
  lines = str(error).strip().splitlines() or [""]
  text = lines[0] if len(lines[0]) <= limit else lines[0][:limit] + " ..."
  return f"{type(error).__name__}: {text}"


def _looks_like_ours(path: str) -> bool:
  """Whether the file starts as an export does (a zip, metadata first)."""
  with open(path, "rb") as f:
    head = f.read(30 + len(METADATA))
  return head[:4] == b"PK\x03\x04" and METADATA.encode() in head


def _read(path: str) -> tuple[dict[str, Any], bytes]:
  """The metadata and artefact bytes of an export; ExportError otherwise."""
  if not os.path.isfile(path):
    raise ExportError(f"{path} is not a file; expected {EXPECTED}.")
  damaged = (f"{path} is a damaged mre_jax export ({{}}); export the workdir "
             "again with python -m mre_jax.export.")
  try:
    with zipfile.ZipFile(path) as archive:
      names = set(archive.namelist())
      if not {METADATA, ARTEFACT} <= names:
        raise ExportError(f"{path} is not an mre_jax export: expected "
                          f"{EXPECTED}.")
      raw = archive.read(METADATA)
      artefact = archive.read(ARTEFACT)
  except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
    if _looks_like_ours(path):
      raise ExportError(damaged.format(_first_line(e))) from e
    raise ExportError(f"{path} is not an mre_jax export: expected "
                      f"{EXPECTED}.") from e
  try:
    metadata = json.loads(raw)
  except ValueError as e:
    raise ExportError(damaged.format(f"unreadable {METADATA}")) from e
  tag = metadata.get("format") if isinstance(metadata, dict) else None
  if not isinstance(tag, str) or not tag.startswith("mre_jax.export/"):
    raise ExportError(f"{path} is not an mre_jax export: its {METADATA} has "
                      f"no format {FORMAT!r}; expected {EXPECTED}.")
  if tag != FORMAT:
    raise ExportError(f"{path} is in format {tag!r}, but this mre_jax reads "
                      f"{FORMAT!r}; export it again with this version.")
  try:
    int(metadata["preprocessing"]["image_size"])
    tuple(metadata["model"]["class_names"])
  except (KeyError, TypeError, ValueError) as e:
    raise ExportError(damaged.format(
        f"{METADATA} lacks the image size or class names")) from e
  if metadata.get("fingerprint") != sha256(artefact):
    raise ExportError(damaged.format(f"{ARTEFACT} does not match the "
                                     "fingerprint in its metadata"))
  return metadata, artefact


def _version_error(path: str, metadata: dict[str, Any],
                   problem: str) -> ExportError:
  """The artefact cannot be read or run by this jax: which versions differ."""
  wrote = metadata.get("exported_with", {})
  running = running_versions()
  if all(wrote.get(k) == v for k, v in running.items()):
    return ExportError(
        f"{path} cannot be run ({problem}), although this jax {running['jax']}"
        " wrote it: it is damaged. Export the workdir again with python -m "
        "mre_jax.export.")
  low = jax.export.minimum_supported_calling_convention_version
  high = jax.export.maximum_supported_calling_convention_version
  return ExportError(
      f"{path} was exported with jax {wrote.get('jax')} / jaxlib "
      f"{wrote.get('jaxlib')} (calling convention "
      f"{wrote.get('calling_convention_version')}), which this jax "
      f"{running['jax']} / jaxlib {running['jaxlib']} (calling conventions "
      f"{low}-{high}) cannot run ({problem}). Export the workdir again with "
      "this jax (python -m mre_jax.export), or install a jax and jaxlib no "
      f"older than {wrote.get('jax')} and released within about 6 months of "
      "it.")


def _deserialize(path: str, metadata: dict[str, Any],
                 artefact: bytes) -> jax.export.Exported:
  """The checked ``Exported``: right versions, runs on this platform."""
  version = metadata.get("exported_with", {}).get("calling_convention_version")
  low = jax.export.minimum_supported_calling_convention_version
  high = jax.export.maximum_supported_calling_convention_version
  if not isinstance(version, int) or not low <= version <= high:
    raise _version_error(path, metadata, "unsupported calling convention")
  try:
    exported = jax.export.deserialize(bytearray(artefact))
  except Exception as e:  # Flatbuffers and MLIR raise many types.
    raise _version_error(path, metadata, _first_line(e)) from e
  platform = jax.export.default_export_platform()
  if platform not in exported.platforms:
    raise ExportError(
        f"{path} was exported for {', '.join(exported.platforms)} only, but "
        f"jax runs on {platform} here. Export it again with "
        f"--platforms={','.join(exported.platforms + (platform,))}, or run on "
        f"{exported.platforms[0]} (e.g. JAX_PLATFORMS="
        f"{exported.platforms[0]}).")
  size = int(metadata["preprocessing"]["image_size"])
  try:  # Reads the StableHLO now, not at the first prediction.
    jax.jit(exported.call).lower(
        jax.ShapeDtypeStruct((1, size, size, 3), np.uint8))
  except Exception as e:  # MLIR raises many types for unreadable modules.
    raise _version_error(path, metadata, _first_line(e)) from e
  return exported


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  """An exported model with its metadata, ready for face crops."""
  exported: jax.export.Exported
  metadata: dict[str, Any]
  path: str
  batch_size: int = 64

  @classmethod
  def load(cls, path: str, batch_size: int = 64) -> ExportedModel:
    """Reads and checks an export; ExportError says what is wrong."""
    path = os.path.abspath(path)
    metadata, artefact = _read(path)
    return cls(exported=_deserialize(path, metadata, artefact),
               metadata=metadata, path=path, batch_size=batch_size)

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.metadata["model"]["class_names"])

  @property
  def image_size(self) -> int:
    return int(self.metadata["preprocessing"]["image_size"])

  @property
  def channels(self) -> int | None:
    """Channels of the training images (1 grey, 3 RGB; None: unknown)."""
    return self.metadata["preprocessing"].get("channels")

  @functools.cached_property
  def forward(self):
    """Jitted ``uint8 (B, H, W, 3) -> float32 probabilities (B, K)``."""
    return jax.jit(self.exported.call)

  def probabilities(self, images: Any) -> np.ndarray:
    """float32 class probabilities (N, K) of ``images``, in order.

    ``images``: uint8 (N, H, W) or (N, H, W, C), or a list of (H, W[, C])
    faces of any sizes; C is 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped).
    """
    images = as_images(images)
    out = np.zeros((len(images), len(self.class_names)), np.float32)
    # The artefact takes RGB: grey repeats into the three channels.
    rgb = [np.broadcast_to(image, image.shape[:2] + (3,)) for image in images]
    for chunk, batch in padded_batches(rgb, self.batch_size):
      out[chunk] = np.asarray(self.forward(batch))[:len(chunk)]
    return out

  def __call__(self, images: Any) -> np.ndarray:
    return self.probabilities(images)


def main(argv: list[str]) -> int:
  """``python -m mre_jax.inference.exported FILE``: load FILE, print metadata."""
  if len(argv) != 2 or argv[1].startswith("-"):
    print("usage: python -m mre_jax.inference.exported FILE (a file written "
          "by python -m mre_jax.export): checks that it loads here and prints "
          "its metadata.", file=sys.stderr)
    return 2
  try:
    model = ExportedModel.load(argv[1])
  except UserError as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  print(json.dumps(model.metadata, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
