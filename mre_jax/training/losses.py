"""Losses: class-weighted cross-entropy and temperature-scaled distillation.

The combined objective is::

    loss = ce_weight * CE(student, labels) + kd_weight * T^2 * KL(p_t || p_s)

with ``p = softmax(logits / T)``. The paper's Eq. 6 writes
``CE + beta * T^2 * KD`` yet calls alpha "the weight for hard label loss"; we
keep both weights explicit and the configs use the common reading
``kd_weight = alpha``, ``ce_weight = 1 - alpha`` (Hinton et al., 2015).

Every reduction takes an optional validity ``mask`` so padded examples never
count: means are over valid examples only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _as_mask(mask: jax.Array | None, batch: int) -> jax.Array:
  if mask is None:
    return jnp.ones((batch,), jnp.float32)
  return mask.astype(jnp.float32)


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  class_weights: jax.Array | None = None,
                  mask: jax.Array | None = None,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Weighted-mean cross-entropy, as ``torch.nn.CrossEntropyLoss(weight=w)``.

  Each example's loss is scaled by its target's weight ``w[y_i]`` and the sum is
  divided by the sum of those weights (not by the batch size). Without
  ``class_weights`` this is the plain mean. With ``eps > 0`` (K classes) each
  example's loss is the cross-entropy against its target mixed with the
  uniform distribution, ``(1 - eps) * onehot + eps/K`` (PyTorch's
  ``label_smoothing=eps``), and the weighted mean is taken of those. With
  class weights this differs from PyTorch on purpose: PyTorch weights the
  smoothing term of every example by every class's weight, which pulls every
  face towards the rare classes (on RAF-DB it kept a model below chance);
  here each example keeps its own target's weight.
  """
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  if label_smoothing:
    uniform = -jnp.mean(log_probs, axis=-1)
    nll = (1 - label_smoothing) * nll + label_smoothing * uniform
  weights = _as_mask(mask, logits.shape[0])
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[labels]
  total = jnp.maximum(jnp.sum(weights), 1e-12)
  return jnp.sum(weights * nll) / total


def distillation_kl(student_logits: jax.Array, teacher_logits: jax.Array,
                    temperature: float,
                    mask: jax.Array | None = None) -> jax.Array:
  """``KL(softmax(t/T) || softmax(s/T))`` with ``batchmean`` reduction.

  Summed over classes and averaged over (valid) examples, like
  ``torch.nn.KLDivLoss(reduction="batchmean")``. Not multiplied by ``T^2``.
  """
  s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, -1)
  t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, -1)
  kl = jnp.sum(jnp.exp(t) * (t - s), axis=-1)
  weights = _as_mask(mask, student_logits.shape[0])
  return jnp.sum(weights * kl) / jnp.maximum(jnp.sum(weights), 1e-12)


def distillation_loss(student_logits: jax.Array, labels: jax.Array,
                      teacher_logits: jax.Array | None, *, temperature: float,
                      ce_weight: float, kd_weight: float,
                      class_weights: jax.Array | None = None,
                      mask: jax.Array | None = None,
                      label_smoothing: float = 0.0,
                      logit_offsets: jax.Array | None = None
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``ce_weight * CE + kd_weight * T^2 * KL``; returns (loss, components).

  With ``teacher_logits=None`` (or ``kd_weight == 0``) this is the weighted
  cross-entropy times ``ce_weight``: the no-teacher baseline.
  ``label_smoothing`` smooths the hard labels of the CE term only: the
  teacher's soft targets already carry their own uncertainty.
  ``logit_offsets`` (K,) are added to the logits of the CE term only: with
  ``tau * log(class prior)`` this is the logit-adjusted loss (Menon et al.,
  2021), whose raw logits then favour no class for being frequent.
  """
  ce_logits = (student_logits if logit_offsets is None
               else student_logits + logit_offsets)
  ce = cross_entropy(ce_logits, labels, class_weights, mask, label_smoothing)
  if teacher_logits is None or kd_weight == 0:
    kd = jnp.zeros((), jnp.float32)
  else:
    kd = distillation_kl(student_logits, teacher_logits, temperature, mask)
  loss = ce_weight * ce + kd_weight * temperature**2 * kd
  return loss, {"ce": ce, "kd": kd}
