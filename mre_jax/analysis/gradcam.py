"""Grad-CAM heatmaps: which parts of a face crop drove the model's answer.

    maps = gradcam(predictor, crops)           # (N, S, S) in [0, 1]
    picture = overlay(crops[0], maps[0])       # uint8 RGB, the crop's size

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional
activation A by the spatial mean of d score / d A and keeps the positive part
of the weighted sum: the regions whose features raise the class score.

The layer is the output of the last stem stage, ``conv3`` -> ``bn3`` -> ReLU,
before its max-pool (:data:`mre_jax.models.GRADCAM_LAYER`), as the official
ResEmoteNet ``eval_gcam.py`` hooks ``conv3``. It is S/4 x S/4 (16 x 16 for
64 x 64 inputs), while the residual blocks end at 1 x 1 for 64 x 64 inputs
and so could not say *where* anything is. The model sows this activation
and adds a zero ``perturbations`` variable to it (``Module.sow`` and
``Module.perturb``), so one forward and one backward pass give both the
activation and the gradient, with the parameters untouched.

Crops go through the predictor's own preprocessing
(:func:`mre_jax.data.input_pipeline.match_channels` then
:func:`~mre_jax.data.input_pipeline.preprocess`), batched and jitted like
:class:`mre_jax.inference.predictor.Predictor`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from mre_jax import models
from mre_jax.data import input_pipeline
from mre_jax.inference import images as images_lib
from mre_jax.inference import predictor as predictor_lib

LAYER = models.GRADCAM_LAYER


def cam_from(activations: jax.Array, gradients: jax.Array,
             size: int) -> jax.Array:
  """Grad-CAM of (B, h, w, C) activations and gradients -> (B, size, size).

  relu(sum_c mean_hw(grad_c) * A_c), resized bilinearly to ``size`` and
  divided by its maximum, so each map spans [0, 1]; a map with no positive
  evidence is all zeros.
  """
  a = activations.astype(jnp.float32)
  weights = jnp.mean(gradients.astype(jnp.float32), axis=(1, 2))
  cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", a, weights))
  cam = jax.image.resize(cam, (cam.shape[0], size, size), "bilinear")
  cam = jnp.maximum(cam, 0.0)
  peak = jnp.max(cam, axis=(1, 2), keepdims=True)
  return jnp.where(peak > 1e-12, cam / jnp.maximum(peak, 1e-12), 0.0)


@functools.lru_cache(maxsize=8)
def _preprocess_fn(image_size: int, channels: int | None):
  """Jitted uint8 (B, H, W, C) -> model input, as the predictor prepares it.

  Kept apart from the model so that each new crop size only compiles this
  small program, not the forward and backward passes.
  """

  def prepare(images):
    images = input_pipeline.match_channels(images, channels)
    return input_pipeline.preprocess(images, image_size=image_size)

  return jax.jit(prepare)


@functools.lru_cache(maxsize=8)
def _cam_fn(model: models.ResEmoteNet):
  """Jitted ``(variables, inputs, class ids) -> (maps, classes)``."""

  def run(variables, x, class_ids):
    def logits_of(perturbation):
      logits, state = model.apply(
          {**variables, "perturbations": {LAYER: perturbation}}, x,
          train=False, mutable=["intermediates"])
      return logits, state["intermediates"][LAYER][0]

    shape = jax.eval_shape(lambda: model.apply(
        variables, x, train=False,
        mutable=["intermediates"])[1]["intermediates"][LAYER][0])
    zeros = jnp.zeros(shape.shape, shape.dtype)
    logits, backward, activations = jax.vjp(logits_of, zeros, has_aux=True)
    classes = jnp.where(class_ids < 0, jnp.argmax(logits, axis=-1), class_ids)
    (gradients,) = backward(
        jax.nn.one_hot(classes, logits.shape[-1], dtype=logits.dtype))
    return cam_from(activations, gradients, x.shape[1]), classes

  return jax.jit(run)


def _class_ids(class_ids: Any, count: int, num_classes: int) -> np.ndarray:
  """None / one int / a sequence -> int32 (count,), -1 meaning "predicted"."""
  if class_ids is None:
    return np.full((count,), -1, np.int32)
  ids = np.asarray(class_ids)
  if ids.ndim == 0:
    ids = np.full((count,), int(ids))
  if ids.shape != (count,) or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"class_ids must be None, one int or {count} ints; got "
                     f"{np.asarray(class_ids)!r:.80}.")
  if ((ids < 0) | (ids >= num_classes)).any():
    raise ValueError(f"class_ids must lie in [0, {num_classes}); got "
                     f"{ids.tolist()!r:.80}.")
  return ids.astype(np.int32)


def gradcam(predictor: predictor_lib.Predictor, crops: Any,
            class_ids: int | Sequence[int] | None = None) -> np.ndarray:
  """float32 (N, S, S) Grad-CAM maps in [0, 1] of uint8 face ``crops``.

  ``crops`` is anything :meth:`Predictor.logits` accepts (one batch array or a
  list of images of any sizes); ``S`` is the model's input size. Each map
  explains ``class_ids[i]`` (one int: the same class for all), or the
  predicted class when ``class_ids`` is None. Map pixels line up with the crop
  resized to S x S, so resize a map back to the crop to overlay it.
  """
  images = predictor_lib.as_images(crops)
  size = predictor.image_size
  ids = _class_ids(class_ids, len(images), len(predictor.class_names))
  out = np.zeros((len(images), size, size), np.float32)
  prepare = _preprocess_fn(size, predictor.channels)
  run = _cam_fn(predictor.model)
  for chunk, batch in images_lib.padded_batches(images, predictor.batch_size):
    chunk_ids = np.zeros((len(batch),), np.int32)
    chunk_ids[:len(chunk)] = ids[chunk]
    maps, _ = run(predictor.variables, prepare(batch), chunk_ids)
    out[chunk] = np.asarray(maps)[:len(chunk)]
  return out


def overlay(crop: Any, heatmap: Any, alpha: float = 0.45) -> np.ndarray:
  """uint8 RGB picture of ``crop`` with ``heatmap`` blended over it.

  The map ((h, w), values in [0, 1]) is resized to the crop, coloured with the
  "jet" colour map (blue: little influence, red: most) and mixed in with
  weight ``alpha``. Grey crops come out grey under the colours.
  """
  image = predictor_lib.as_images([crop])[0]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  heat = np.asarray(heatmap, np.float32)
  if heat.ndim != 2 or 0 in heat.shape:
    raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}.")
  heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
  height, width = image.shape[:2]
  heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
  colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8),
                             cv2.COLORMAP_JET)[..., ::-1]
  mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colour
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
