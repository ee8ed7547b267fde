"""Batched prediction over a whole split on the mesh.

``predict`` runs a model over every example exactly once (padded, masked
batches, several per dispatch) and returns host logits in split order, so
training's end-of-run numbers, ``--mode=evaluate`` and the teacher-logit
export share one code path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mre_jax.data import input_pipeline
from mre_jax.runtime import distributed

_BATCHES_PER_DISPATCH = 16


def make_predict_fn(model: nn.Module, mesh: jax.sharding.Mesh,
                    image_size: int):
  """Jitted ``(variables, data, indices (n, B), flip) -> logits (n, B, K)``."""

  def predict_batches(variables, data, indices, flip):
    def one(_, idx):
      batch = input_pipeline.gather(data, idx, mesh)
      flips = jnp.full(idx.shape, flip)
      x = input_pipeline.preprocess(batch["image"], image_size=image_size,
                                    flip=flips)
      return None, model.apply(variables, x, train=False)
    return jax.lax.scan(one, None, indices)[1]

  return jax.jit(predict_batches, static_argnames=("flip",))


def predict(predict_fn, variables: Any, data: input_pipeline.DeviceData,
            mesh: jax.sharding.Mesh, batch_size: int, flip: bool = False,
            progress=None) -> np.ndarray:
  """Logits (N, K) for every example of ``data``, in order."""
  num_shards = mesh.shape[input_pipeline.DATA_AXIS]
  indices, mask = input_pipeline.eval_batches(data.num_examples, batch_size,
                                              num_shards)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  outputs = []
  for start in range(0, len(indices), _BATCHES_PER_DISPATCH):
    chunk = indices[start:start + _BATCHES_PER_DISPATCH]
    chunk = jax.make_array_from_callback(chunk.shape, replicated,
                                         lambda i, c=chunk: c[i])
    logits = predict_fn(variables, data, chunk, flip)
    outputs.append(distributed.gather_to_host(logits))
    if progress:
      progress(min(start + _BATCHES_PER_DISPATCH, len(indices)), len(indices))
  logits = np.concatenate(outputs).reshape(-1, outputs[0].shape[-1])
  return logits[mask.reshape(-1)]
