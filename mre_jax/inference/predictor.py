"""Class probabilities for face images, from a trained or imported model.

    predictor = Predictor.from_workdir("runs/fer/E1")
    probs = predictor.probabilities(faces)  # (N, 7), rows sum to 1.

Faces are uint8 images of any size, grey or RGB (or RGBA, whose alpha is
dropped): one array (N, H, W) / (N, H, W, C), or a list of single images of
different sizes. Each goes through exactly the training preprocessing
(:func:`mre_jax.data.input_pipeline.preprocess`, after matching the channels the
model was trained on), then a jitted forward pass in eval mode. Batches are
padded to power-of-two sizes up to ``batch_size``, so a stream of single
frames and a folder of thousands compile a handful of programs between them.
Nothing here imports the training code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from mre_jax import models
from mre_jax.data import input_pipeline
from mre_jax.inference.images import as_images
from mre_jax.inference.images import padded_batches
from mre_jax.models import shipped
from mre_jax.workdir import checkpointing


# Variables up to this size are compiled into the forward pass (students B
# and C): a call then hands JAX one array instead of their pytree, whose
# handling costs about 0.1 ms per call on a CPU, a tenth of student C's time
# per frame at batch 1. Larger ones stay arguments: as constants they would
# triple the teacher's compile time (7.6 s against 2.4 s on a CPU) to save
# a cost that is small beside its forward pass.
BIND_MAX_BYTES = 32 * 2**20


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A model with its variables and preprocessing, ready for face crops."""
  model: models.ResEmoteNet
  variables: Any
  image_size: int
  class_names: tuple[str, ...]
  batch_size: int = 64
  channels: int | None = None  # Of the training images; None: keep input's.
  # A shipped model's card (mre_jax.models.shipped); None for a workdir's.
  card: dict[str, Any] | None = dataclasses.field(default=None, compare=False,
                                                  repr=False)

  @classmethod
  def from_workdir(cls, workdir: str, which: str | int = "best",
                   batch_size: int = 64) -> Predictor:
    """The predictor of checkpoint ``which`` of a trained or imported run."""
    loaded = checkpointing.load_model(workdir, which)
    return cls(model=loaded.model, variables=loaded.variables,
               image_size=loaded.image_size, class_names=loaded.class_names,
               batch_size=batch_size, channels=loaded.channels)

  @classmethod
  def from_shipped(cls, name: str, batch_size: int = 64,
                   folder: str = shipped.FOLDER) -> Predictor:
    """The predictor of shipped model ``name``, with its card as ``card``."""
    info = shipped.card(name, folder)
    spec = info["model"]
    return cls(model=models.from_description(spec),
               variables=shipped.variables(name, folder),
               image_size=int(info["preprocessing"]["image_size"]),
               class_names=tuple(spec["class_names"]), batch_size=batch_size,
               channels=info["preprocessing"].get("channels"), card=info)

  @functools.cached_property
  def forward(self):
    """Jitted ``(variables, uint8 (B, H, W, C)) -> float32 logits (B, K)``."""

    def forward(variables, images):
      images = input_pipeline.match_channels(images, self.channels)
      x = input_pipeline.preprocess(images, image_size=self.image_size)
      return self.model.apply(variables, x, train=False)

    return jax.jit(forward)

  @functools.cached_property
  def binds_variables(self) -> bool:
    """Whether :attr:`bound_forward` compiles the variables in as constants:
    only when they are at most :data:`BIND_MAX_BYTES`."""
    size = sum(leaf.nbytes for leaf in jax.tree.leaves(self.variables))
    return size <= BIND_MAX_BYTES

  @functools.cached_property
  def bound_forward(self):
    """``uint8 (B, H, W, C) -> float32 logits (B, K)`` with this predictor's
    variables: :attr:`forward` with them passed, or, when
    :attr:`binds_variables`, compiled in once."""
    variables = self.variables
    if self.binds_variables:
      return jax.jit(lambda images: self.forward(variables, images))
    return functools.partial(self.forward, variables)

  def lower(self, images: Any) -> jax.stages.Lowered:
    """The program that ``bound_forward(images)`` runs, lowered."""
    if self.binds_variables:
      return self.bound_forward.lower(images)
    return self.forward.lower(self.variables, images)

  def logits(self, images: Any) -> np.ndarray:
    """float32 logits (N, K) of ``images``, in order."""
    images = as_images(images)
    out = np.zeros((len(images), len(self.class_names)), np.float32)
    for chunk, batch in padded_batches(images, self.batch_size):
      logits = self.bound_forward(batch)
      out[chunk] = np.asarray(logits)[:len(chunk)]
    return out

  def probabilities(self, images: Any) -> np.ndarray:
    """float32 class probabilities (N, K) of ``images``; rows sum to 1."""
    logits = self.logits(images).astype(np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)

  def __call__(self, images: Any) -> np.ndarray:
    return self.probabilities(images)
