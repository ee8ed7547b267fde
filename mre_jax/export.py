"""Writes a trained model as one portable file.

    python -m mre_jax.export --workdir=runs/fer/E1 --output=E1.zip \\
        [--checkpoint=best|latest|EPOCH] [--platforms=cpu,cuda]

The file holds a ``jax.export`` artefact of the Predictor's whole function,
``uint8 (batch, height, width, 3)`` RGB faces to ``float32 (batch, K)`` class
probabilities: the channel matching and preprocessing of
:mod:`mre_jax.data.input_pipeline` (the very functions training and
:class:`~mre_jax.inference.predictor.Predictor` use), the model in eval mode
with its parameters baked in, and the softmax. Beside it goes metadata:
classes, preprocessing, model, source checkpoint, fingerprint, jax versions
(format in :mod:`mre_jax.inference.exported`, whose
:class:`~mre_jax.inference.exported.ExportedModel` loads it with jax alone).

* Batch, height and width are symbolic: callers pass faces of any size. A
  face already at the model's size, which the Predictor does not resize, goes
  through a resize to the same size, equal within float rounding (~1e-8).
* Each of ``--platforms`` gets its own lowering: CPU with the convolution
  forms :mod:`mre_jax.models.conv` picks for the exporting machine's backend (so
  export on a CPU machine for the fastest CPU program), the others with XLA's
  convolution, as the Predictor runs there.

The file appears only once complete (written to a temporary file in the same
folder, then renamed). Mistakes end with one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import uuid
import zipfile
from collections.abc import Sequence
from typing import Any

from absl import flags
import jax
import jax.numpy as jnp

from mre_jax import cli
from mre_jax import models
from mre_jax.errors import ExportError
from mre_jax.inference import exported as exported_lib
from mre_jax.inference.predictor import Predictor
from mre_jax.workdir import checkpoint_integrity
from mre_jax.workdir import checkpointing

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def probabilities_fn(loaded: checkpointing.LoadedModel):
  """``uint8 (B, H, W, 3) -> float32 (B, K)``, the Predictor's forward pass.

  On CPU the model computes convolutions as ``Predictor`` does on this
  machine; on other platforms with XLA's convolution, as ``Predictor`` does
  there.
  """
  here, accelerator = (
      Predictor(model=model, variables=loaded.variables,
                image_size=loaded.image_size, class_names=loaded.class_names,
                channels=loaded.channels)
      for model in (loaded.model, loaded.model.clone(conv_impl="lax")))

  def probabilities(images):
    logits = jax.lax.platform_dependent(
        images, cpu=lambda x: here.forward(here.variables, x),
        default=lambda x: accelerator.forward(accelerator.variables, x))
    return jax.nn.softmax(logits, axis=-1)

  return probabilities


def _checksums_sha256(loaded: checkpointing.LoadedModel) -> str | None:
  """SHA-256 of the step's checksum file, which names every file's hash."""
  path = os.path.join(checkpointing.checkpoint_dir(loaded.workdir),
                      str(loaded.step), checkpoint_integrity.CHECKSUMS)
  if not os.path.isfile(path):
    return None
  with open(path, "rb") as f:
    return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def _check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
  platforms = tuple(platforms)
  unknown = [p for p in platforms if p not in PLATFORMS]
  if not platforms or unknown or len(set(platforms)) != len(platforms):
    raise ExportError(
        f"--platforms={','.join(platforms)}: expected distinct names among "
        f"{', '.join(PLATFORMS)}, e.g. --platforms=cpu,cuda")
  return platforms


def _open_temporary(output: str):
  """A new file beside ``output``; ExportError if it cannot be written."""
  folder = os.path.dirname(output)
  if not os.path.isdir(folder):
    raise ExportError(f"--output={output}: the folder {folder} does not "
                      "exist; create it first.")
  if os.path.isdir(output):
    raise ExportError(f"--output={output} is a folder; give a file name, "
                      f"e.g. {os.path.join(output, 'model.zip')}")
  temporary = os.path.join(
      folder, f".{os.path.basename(output)}.{uuid.uuid4().hex[:8]}.tmp")
  try:
    return temporary, open(temporary, "xb")
  except OSError as e:
    raise ExportError(f"--output={output}: cannot write in {folder} "
                      f"({e.strerror}).") from e


def build(loaded: checkpointing.LoadedModel, platforms: Sequence[str],
          which: str | int) -> tuple[dict[str, Any], bytes]:
  """The metadata and serialized artefact of ``loaded``."""
  shape = jax.export.symbolic_shape("batch, height, width, 3")
  exported = jax.export.export(
      jax.jit(probabilities_fn(loaded)), platforms=tuple(platforms))(
          jax.ShapeDtypeStruct(shape, jnp.uint8))
  artefact = bytes(exported.serialize())
  model = dict(loaded.meta["model"], num_params=models.count_params(
      loaded.variables["params"]))
  metadata = {
      "format": exported_lib.FORMAT,
      "model": model,
      "preprocessing": loaded.meta["preprocessing"],
      "input": "uint8 (batch, height, width, 3) RGB faces, any height and "
               "width; grey faces with their channel repeated",
      "output": f"float32 (batch, {len(loaded.class_names)}) probabilities "
                "in the order of model.class_names",
      "platforms": list(exported.platforms),
      "source": {"workdir": loaded.workdir, "checkpoint": str(which),
                 "step": loaded.step,
                 "checksums_sha256": _checksums_sha256(loaded)},
      "fingerprint": exported_lib.sha256(artefact),
      "exported_with": dict(
          exported_lib.running_versions(),
          calling_convention_version=exported.calling_convention_version),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
  }
  return metadata, artefact


def export_model(workdir: str, output: str, which: str | int = "best",
                 platforms: Sequence[str] = ("cpu", "cuda")) -> dict[str, Any]:
  """Writes checkpoint ``which`` of ``workdir`` to ``output``; its metadata.

  Raises:
    ExportError: no such workdir, bad platforms, or ``output`` cannot be
      written (its folder is missing or read-only, or it is a folder).
    CheckpointError: the workdir has no usable checkpoint ``which``.
  """
  platforms = _check_platforms(platforms)
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise ExportError(f"--workdir={workdir} does not exist: point it at a "
                      "run trained with python -m mre_jax.main or imported "
                      "with python -m mre_jax.convert.")
  output = os.path.abspath(output)
  temporary, f = _open_temporary(output)
  try:
    with f:
      metadata, artefact = build(checkpointing.load_model(workdir, which),
                                 platforms, which)
      try:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
          archive.writestr(exported_lib.METADATA,
                           json.dumps(metadata, indent=2) + "\n")
          archive.writestr(exported_lib.ARTEFACT, artefact)
        f.flush()
        os.fsync(f.fileno())
        os.replace(temporary, output)
      except OSError as e:
        raise ExportError(f"could not write {output}: {e.strerror or e}"
                          ) from e
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
  return metadata


def _define_flags() -> flags.FlagValues:
  """The CLI's flags, on their own FlagValues so importing defines nothing."""
  fv = flags.FlagValues()
  flags.DEFINE_string("workdir", None, "A trained or imported run.",
                      flag_values=fv)
  flags.DEFINE_string("output", None, "The file to write, e.g. E1.zip; "
                      "replaced if it exists.", flag_values=fv)
  flags.DEFINE_string("checkpoint", "best", "best, latest or an epoch.",
                      flag_values=fv)
  flags.DEFINE_list("platforms", ["cpu", "cuda"],
                    f"Where the file will run, among {', '.join(PLATFORMS)}.",
                    flag_values=fv)
  flags.mark_flags_as_required(["workdir", "output"], flag_values=fv)
  return fv


def _run(fv: flags.FlagValues) -> int:
  metadata = export_model(fv.workdir, fv.output, fv.checkpoint, fv.platforms)
  model, source = metadata["model"], metadata["source"]
  print(f"wrote {os.path.abspath(fv.output)}: {model['name']} "
        f"({model['num_params']:,} parameters, {len(model['class_names'])} "
        f"classes) from epoch {source['step']} of {source['workdir']}, for "
        f"{', '.join(metadata['platforms'])}. Load it with "
        "mre_jax.inference.exported.ExportedModel.load.")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on ``argv`` (program name first); returns the exit status."""
  return cli.command(_define_flags, __doc__, _run, argv)


if __name__ == "__main__":
  sys.exit(main())
