"""Class probabilities for face images, from a trained or imported model.

    predictor = Predictor.from_workdir("runs/fer/E1")
    probs = predictor.probabilities(faces)  # (N, 7), rows sum to 1.

Faces are uint8 images of any size, grey or RGB (or RGBA, whose alpha is
dropped): one array (N, H, W) / (N, H, W, C), or a list of single images of
different sizes. Each goes through exactly the training preprocessing
(:func:`mre_jax.input_pipeline.preprocess`, after matching the channels the
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

from mre_jax import checkpointing
from mre_jax import input_pipeline
from mre_jax import models
from mre_jax.inference.images import as_images
from mre_jax.inference.images import padded_batches


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A model with its variables and preprocessing, ready for face crops."""
  model: models.ResEmoteNet
  variables: Any
  image_size: int
  class_names: tuple[str, ...]
  batch_size: int = 64
  channels: int | None = None  # Of the training images; None: keep input's.

  @classmethod
  def from_workdir(cls, workdir: str, which: str | int = "best",
                   batch_size: int = 64) -> Predictor:
    """The predictor of checkpoint ``which`` of a trained or imported run."""
    loaded = checkpointing.load_model(workdir, which)
    return cls(model=loaded.model, variables=loaded.variables,
               image_size=loaded.image_size, class_names=loaded.class_names,
               batch_size=batch_size, channels=loaded.channels)

  @functools.cached_property
  def forward(self):
    """Jitted ``(variables, uint8 (B, H, W, C)) -> float32 logits (B, K)``."""

    def forward(variables, images):
      images = input_pipeline.match_channels(images, self.channels)
      x = input_pipeline.preprocess(images, image_size=self.image_size)
      return self.model.apply(variables, x, train=False)

    return jax.jit(forward)

  def logits(self, images: Any) -> np.ndarray:
    """float32 logits (N, K) of ``images``, in order."""
    images = as_images(images)
    out = np.zeros((len(images), len(self.class_names)), np.float32)
    for chunk, batch in padded_batches(images, self.batch_size):
      logits = self.forward(self.variables, batch)
      out[chunk] = np.asarray(logits)[:len(chunk)]
    return out

  def probabilities(self, images: Any) -> np.ndarray:
    """float32 class probabilities (N, K) of ``images``; rows sum to 1."""
    logits = self.logits(images).astype(np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted / shifted.sum(-1, keepdims=True)).astype(np.float32)

  def __call__(self, images: Any) -> np.ndarray:
    return self.probabilities(images)
