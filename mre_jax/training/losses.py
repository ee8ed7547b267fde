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
  """Weighted-mean cross-entropy, as ``torch.nn.CrossEntropyLoss(weight=w,
  label_smoothing=eps)``.

  Each example's loss is scaled by its target's weight ``w[y_i]`` and the sum is
  divided by the sum of those weights (not by the batch size). Without
  ``class_weights`` this is the plain mean. With ``eps > 0`` (K classes) the
  loss is PyTorch's ``(1 - eps) * CE + eps / K * sum_i sum_k w_k *
  -log p_ik / sum_i w[y_i]``: without weights, the cross-entropy against the
  target mixed with the uniform distribution, ``(1 - eps) * onehot + eps/K``.
  """
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  weights = _as_mask(mask, logits.shape[0])
  if class_weights is not None:
    weights = weights * jnp.asarray(class_weights, jnp.float32)[labels]
  total = jnp.maximum(jnp.sum(weights), 1e-12)
  loss = jnp.sum(weights * nll) / total
  if not label_smoothing:
    return loss
  per_class = -log_probs
  if class_weights is not None:
    per_class = per_class * jnp.asarray(class_weights, jnp.float32)
  valid = _as_mask(mask, logits.shape[0])
  smooth = jnp.sum(valid * jnp.sum(per_class, axis=-1)) / total
  num_classes = logits.shape[-1]
  return (1 - label_smoothing) * loss + label_smoothing / num_classes * smooth


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
                      label_smoothing: float = 0.0
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``ce_weight * CE + kd_weight * T^2 * KL``; returns (loss, components).

  With ``teacher_logits=None`` (or ``kd_weight == 0``) this is the weighted
  cross-entropy times ``ce_weight``: the no-teacher baseline.
  ``label_smoothing`` smooths the hard labels of the CE term only: the
  teacher's soft targets already carry their own uncertainty.
  """
  ce = cross_entropy(student_logits, labels, class_weights, mask,
                     label_smoothing)
  if teacher_logits is None or kd_weight == 0:
    kd = jnp.zeros((), jnp.float32)
  else:
    kd = distillation_kl(student_logits, teacher_logits, temperature, mask)
  loss = ce_weight * ce + kd_weight * temperature**2 * kd
  return loss, {"ce": ce, "kd": kd}
