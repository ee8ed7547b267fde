"""Tests for the cross-entropy and distillation losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mre_jax.training import losses


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_kl_zero_for_identical_logits():
  logits = jax.random.normal(jax.random.key(0), (5, 7)) * 3
  assert float(losses.distillation_kl(logits, logits, 3.0)) == pytest.approx(
      0.0, abs=1e-6)


def test_hand_computed_small_case():
  s = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  t = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
  labels = np.array([0, 1])
  temp = 2.0
  ps, pt = _softmax(s / temp), _softmax(t / temp)
  kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
  ce = np.mean(-np.log(_softmax(s)[np.arange(2), labels]))
  loss, parts = losses.distillation_loss(
      s, labels, t, temperature=temp, ce_weight=0.8, kd_weight=0.2)
  assert float(parts["kd"]) == pytest.approx(kl, rel=1e-5)
  assert float(parts["ce"]) == pytest.approx(ce, rel=1e-5)
  assert float(loss) == pytest.approx(0.8 * ce + 0.2 * temp**2 * kl, rel=1e-5)


def test_kd_gradient_wrt_student_logits():
  batch, temp, kd_weight = 6, 3.0, 0.2
  s = jax.random.normal(jax.random.key(0), (batch, 7)) * 2
  t = jax.random.normal(jax.random.key(1), (batch, 7)) * 2
  labels = jnp.zeros((batch,), jnp.int32)
  kd_only = lambda s: losses.distillation_loss(
      s, labels, t, temperature=temp, ce_weight=0.0, kd_weight=kd_weight)[0]
  grad = jax.grad(kd_only)(s)
  expected = kd_weight * temp * (
      jax.nn.softmax(s / temp) - jax.nn.softmax(t / temp)) / batch
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_class_weights_reproduce_pytorch_weighted_mean():
  logits = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
  labels = np.array([0, 1, 1, 3, 6, 6])
  weights = np.linspace(0.5, 2.0, 7).astype(np.float32)
  nll = -np.log(_softmax(logits)[np.arange(6), labels])
  expected = np.sum(weights[labels] * nll) / np.sum(weights[labels])
  got = losses.cross_entropy(logits, labels, weights)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  torch = pytest.importorskip("torch")
  reference = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights))(
      torch.tensor(logits), torch.tensor(labels))
  assert float(got) == pytest.approx(float(reference), rel=1e-5)


def test_masked_examples_contribute_nothing():
  rng = np.random.default_rng(1)
  s = rng.normal(size=(5, 7)).astype(np.float32)
  t = rng.normal(size=(5, 7)).astype(np.float32)
  labels = rng.integers(0, 7, 5)
  weights = rng.uniform(0.5, 2, 7).astype(np.float32)
  mask = np.array([1, 1, 1, 0, 0], bool)
  kwargs = dict(temperature=3.0, ce_weight=0.8, kd_weight=0.2,
                class_weights=weights)
  full, _ = losses.distillation_loss(s[:3], labels[:3], t[:3], **kwargs)
  garbage = s.copy()
  garbage[3:] = 1e4
  masked, _ = losses.distillation_loss(garbage, labels, t, mask=mask, **kwargs)
  assert float(masked) == pytest.approx(float(full), rel=1e-6)
  grad = jax.grad(lambda x: losses.distillation_loss(
      x, labels, t, mask=mask, **kwargs)[0])(s)
  np.testing.assert_array_equal(grad[3:], 0.0)


def test_no_teacher_is_weighted_cross_entropy():
  s = np.random.default_rng(2).normal(size=(4, 7)).astype(np.float32)
  labels = np.array([1, 2, 3, 4])
  loss, parts = losses.distillation_loss(
      s, labels, None, temperature=3.0, ce_weight=1.0, kd_weight=0.0)
  assert float(parts["kd"]) == 0.0
  assert float(loss) == pytest.approx(float(losses.cross_entropy(s, labels)))


def test_label_smoothing_mixes_in_the_uniform_distribution():
  logits = np.random.default_rng(3).normal(size=(6, 7)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 4, 6])
  eps = 0.1
  target = np.full((6, 7), eps / 7)
  target[np.arange(6), labels] += 1 - eps
  expected = np.mean(np.sum(-target * np.log(_softmax(logits)), -1))
  got = losses.cross_entropy(logits, labels, label_smoothing=eps)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  assert float(got) != pytest.approx(float(losses.cross_entropy(logits,
                                                                labels)))


def test_weighted_label_smoothing_keeps_each_examples_weight():
  """The weighted mean of PyTorch's per-example smoothed losses: each example
  weighted by its own target's class weight only."""
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(6, 7)).astype(np.float32)
  labels = np.array([0, 1, 1, 3, 6, 6])
  weights = np.linspace(0.5, 2.0, 7).astype(np.float32)
  eps = 0.2
  log_p = np.log(_softmax(logits))
  per_example = ((1 - eps) * -log_p[np.arange(6), labels] +
                 eps * np.mean(-log_p, axis=-1))
  expected = np.sum(weights[labels] * per_example) / np.sum(weights[labels])
  got = losses.cross_entropy(logits, labels, weights, label_smoothing=eps)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # Not PyTorch's weighted smoothing, whose smoothing term weights every
  # class by its weight.
  pytorch_form = ((1 - eps) * np.sum(weights[labels] * -log_p[np.arange(6),
                                                             labels]) +
                  eps / 7 * np.sum(-log_p * weights)) / np.sum(
                      weights[labels])
  assert float(got) != pytest.approx(pytorch_form, rel=1e-3)
  mask = np.array([1, 1, 1, 1, 0, 0], bool)
  masked = losses.cross_entropy(logits, labels, weights, mask, eps)
  assert float(masked) == pytest.approx(float(losses.cross_entropy(
      logits[:4], labels[:4], weights, label_smoothing=eps)), rel=1e-6)
  torch = pytest.importorskip("torch")
  reference = torch.nn.CrossEntropyLoss(label_smoothing=eps,
                                        reduction="none")(
      torch.tensor(logits), torch.tensor(labels)).numpy()
  assert float(got) == pytest.approx(
      np.sum(weights[labels] * reference) / np.sum(weights[labels]), rel=1e-5)


def test_label_smoothing_leaves_the_kd_term_alone():
  rng = np.random.default_rng(5)
  s = rng.normal(size=(4, 7)).astype(np.float32)
  t = rng.normal(size=(4, 7)).astype(np.float32)
  labels = np.array([1, 2, 3, 4])
  kwargs = dict(temperature=3.0, ce_weight=0.8, kd_weight=0.2)
  _, plain = losses.distillation_loss(s, labels, t, **kwargs)
  loss, smooth = losses.distillation_loss(s, labels, t, label_smoothing=0.1,
                                          **kwargs)
  assert float(smooth["kd"]) == float(plain["kd"])
  assert float(smooth["ce"]) == pytest.approx(float(
      losses.cross_entropy(s, labels, label_smoothing=0.1)))
  assert float(loss) == pytest.approx(
      0.8 * float(smooth["ce"]) + 0.2 * 9 * float(smooth["kd"]), rel=1e-6)


def test_logit_offsets_adjust_the_ce_term_only():
  """The logit-adjusted loss: CE of logits + offsets; the KD term sees the
  raw logits."""
  rng = np.random.default_rng(7)
  s = rng.normal(size=(5, 7)).astype(np.float32)
  t = rng.normal(size=(5, 7)).astype(np.float32)
  labels = np.array([0, 2, 3, 3, 6])
  prior = np.array([0.05, 0.1, 0.1, 0.4, 0.15, 0.1, 0.1], np.float32)
  offsets = np.log(prior)
  loss, parts = losses.distillation_loss(
      s, labels, t, temperature=3.0, ce_weight=0.8, kd_weight=0.2,
      logit_offsets=offsets)
  assert float(parts["ce"]) == pytest.approx(
      float(losses.cross_entropy(s + offsets, labels)), rel=1e-6)
  assert float(parts["kd"]) == pytest.approx(
      float(losses.distillation_kl(s, t, 3.0)), rel=1e-6)
  plain = losses.distillation_loss(s, labels, t, temperature=3.0,
                                   ce_weight=0.8, kd_weight=0.2)[1]["ce"]
  assert float(parts["ce"]) != pytest.approx(float(plain))
  assert float(loss) == pytest.approx(
      0.8 * float(parts["ce"]) + 0.2 * 9 * float(parts["kd"]), rel=1e-6)
