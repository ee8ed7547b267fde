"""Tests for the on-device input pipeline (4 emulated CPU devices)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from mre_jax.data import input_pipeline
from mre_jax.errors import ConfigError
from mre_jax.errors import DatasetError

DATA_AXIS = input_pipeline.DATA_AXIS
NUM_EXAMPLES = 37
MEAN = np.asarray(input_pipeline.IMAGENET_MEAN)
STD = np.asarray(input_pipeline.IMAGENET_STD)


def _host_split(num_examples: int = NUM_EXAMPLES) -> dict[str, np.ndarray]:
  """Small split with every dtype the pipeline carries, tricky floats too."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(num_examples, 2, 7)).astype(np.float32)
  logits[0, 0, 0] = -0.0
  logits[1, 1, 3] = np.nan
  return {
      "image": rng.integers(0, 256, (num_examples, 10, 12, 3), np.uint8),
      "label": rng.integers(0, 7, num_examples),
      "teacher_logits": logits,
      "is_hard": rng.random(num_examples) < 0.5,
  }


def _bits(x) -> bytes:
  return np.ascontiguousarray(np.asarray(x)).tobytes()


def _collectives(hlo: str) -> set[str]:
  return set(re.findall(
      r"\b(all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)"
      r"(?:-start)?\(", hlo))


@pytest.fixture(params=[1, 4], ids=["1dev", "4dev"])
def mesh(request):
  return input_pipeline.make_mesh(request.param)


def test_make_mesh():
  mesh = input_pipeline.make_mesh()
  assert mesh.axis_names == (DATA_AXIS,)
  assert mesh.shape[DATA_AXIS] == len(jax.devices()) == 4
  assert input_pipeline.make_mesh(2).devices.tolist() == jax.devices()[:2]
  with pytest.raises(ConfigError, match="num_devices=5"):
    input_pipeline.make_mesh(5)


def test_put_on_mesh_pads_and_shards(mesh):
  host = _host_split()
  data = input_pipeline.put_on_mesh(host, mesh)
  num_shards = mesh.shape[DATA_AXIS]
  padded = -(-NUM_EXAMPLES // num_shards) * num_shards
  assert data.num_examples == NUM_EXAMPLES
  assert data.arrays["label"].dtype == jnp.int32  # int64 on the host.
  for name, array in data.arrays.items():
    assert array.shape == (padded,) + host[name].shape[1:]
    assert array.sharding.is_equivalent_to(
        NamedSharding(mesh, P(DATA_AXIS)), array.ndim)
    assert _bits(array[:NUM_EXAMPLES]) == _bits(
        host[name].astype(array.dtype))
    assert not np.any(np.asarray(array[NUM_EXAMPLES:]))


def test_put_on_mesh_rejects_mismatched_lengths():
  mesh = input_pipeline.make_mesh()
  host = _host_split()
  host["label"] = host["label"][:-1]
  with pytest.raises(DatasetError, match=r"leading lengths differ.*label: 36"):
    input_pipeline.put_on_mesh(host, mesh)
  with pytest.raises(DatasetError, match="no arrays"):
    input_pipeline.put_on_mesh({}, mesh)
  with pytest.raises(DatasetError, match="no examples"):
    input_pipeline.put_on_mesh({"label": np.zeros(0, np.int32)}, mesh)
  with pytest.raises(DatasetError, match="scalar"):
    input_pipeline.put_on_mesh({"label": np.int32(3)}, mesh)


def test_gather_is_identical_on_1_and_4_devices():
  host = _host_split()
  indices = np.random.default_rng(1).integers(0, NUM_EXAMPLES, 16)
  indices[:3] = [0, 1, NUM_EXAMPLES - 1]  # -0.0, NaN and the last example.
  results = []
  for num_devices in (1, 4):
    mesh = input_pipeline.make_mesh(num_devices)
    data = input_pipeline.put_on_mesh(host, mesh)
    gather = jax.jit(lambda d, i, m=mesh: input_pipeline.gather(d, i, m))
    batch = gather(data, jnp.asarray(indices, jnp.int32))
    for name, array in batch.items():
      assert array.dtype == data.arrays[name].dtype
      assert array.sharding.is_equivalent_to(
          NamedSharding(mesh, P(DATA_AXIS)), array.ndim)
      assert _bits(array) == _bits(host[name][indices].astype(array.dtype))
    results.append(batch)
  for name in host:
    assert _bits(results[0][name]) == _bits(results[1][name])
  # Each of the 4 devices holds its own quarter of the batch.
  shards = sorted(results[1]["label"].addressable_shards,
                  key=lambda s: s.index[0].start)
  assert [s.data.shape[0] for s in shards] == [4, 4, 4, 4]
  assert _bits(np.concatenate([s.data for s in shards])) == _bits(
      host["label"][indices].astype(np.int32))


def test_gather_moves_the_batch_not_the_dataset():
  mesh = input_pipeline.make_mesh(4)
  data = input_pipeline.put_on_mesh(_host_split(), mesh)
  indices = jnp.arange(16, dtype=jnp.int32)
  hlo = jax.jit(lambda d, i: input_pipeline.gather(d, i, mesh)).lower(
      data, indices).compile().as_text()
  assert _collectives(hlo) == {"reduce-scatter"}
  # Each reduce-scatter leaves B / 4 = 4 rows per device: it reduces (B, ...)
  # buffers, not the 40 stored rows.
  results = re.findall(r"= \w+\[(\d+)[,\]][^=]*reduce-scatter\(", hlo)
  assert results and set(results) == {"4"}


def test_gather_rejects_batch_not_divisible_by_devices():
  mesh = input_pipeline.make_mesh(4)
  data = input_pipeline.put_on_mesh(_host_split(), mesh)
  with pytest.raises(ConfigError, match="not a multiple of the 4 devices"):
    input_pipeline.gather(data, jnp.arange(6), mesh)


@pytest.mark.parametrize("batch_size,num_shards,width,num_batches",
                         [(16, 1, 16, 3), (16, 4, 16, 3), (10, 4, 12, 4),
                          (64, 4, 64, 1)])
def test_eval_batches_shapes(batch_size, num_shards, width, num_batches):
  indices, mask = input_pipeline.eval_batches(NUM_EXAMPLES, batch_size,
                                              num_shards)
  assert indices.shape == mask.shape == (num_batches, width)
  assert indices.dtype == np.int32 and mask.dtype == bool
  np.testing.assert_array_equal(indices[mask], np.arange(NUM_EXAMPLES))
  assert np.all((indices >= 0) & (indices < NUM_EXAMPLES))


def test_eval_counts_every_example_once(mesh):
  host = dict(_host_split(), example_id=np.arange(NUM_EXAMPLES, dtype=np.int32))
  data = input_pipeline.put_on_mesh(host, mesh)
  indices, mask = input_pipeline.eval_batches(
      NUM_EXAMPLES, 16, mesh.shape[DATA_AXIS])

  @jax.jit
  def evaluate(data, indices, mask):
    def one(totals, batch):
      idx, valid = batch
      rows = input_pipeline.gather(data, idx, mesh)
      seen = jax.ops.segment_sum(valid.astype(jnp.int32), rows["example_id"],
                                 num_segments=NUM_EXAMPLES)
      label_sum = jnp.sum(jnp.where(valid, rows["label"], 0))
      return jax.tree.map(jnp.add, totals, (seen, label_sum)), None
    zeros = (jnp.zeros(NUM_EXAMPLES, jnp.int32), jnp.int32(0))
    return jax.lax.scan(one, zeros, (indices, mask))[0]

  seen, label_sum = evaluate(data, indices, mask)
  np.testing.assert_array_equal(seen, np.ones(NUM_EXAMPLES))
  assert int(label_sum) == int(host["label"].sum())


def test_train_batches_are_the_same_on_1_and_4_devices():
  host = _host_split()
  batches = []
  for num_devices in (1, 4):
    mesh = input_pipeline.make_mesh(num_devices)
    data = input_pipeline.put_on_mesh(host, mesh)

    @jax.jit
    def two_steps(data, rng, mesh=mesh):
      perm = input_pipeline.epoch_permutation(rng, NUM_EXAMPLES)
      return perm, [input_pipeline.train_batch(
          data, jax.random.fold_in(rng, step), perm, jnp.int32(step),
          batch_size=16, image_size=8, mesh=mesh) for step in range(2)]

    batches.append(two_steps(data, jax.random.key(42)))
  (perm, steps), (perm4, steps4) = batches
  assert sorted(np.asarray(perm).tolist()) == list(range(NUM_EXAMPLES))
  assert _bits(perm) == _bits(perm4)
  for step, (batch, batch4) in enumerate(zip(steps, steps4)):
    np.testing.assert_array_equal(batch["index"],
                                  perm[16 * step:16 * (step + 1)])
    assert batch["flip"].dtype == jnp.bool_
    assert 0 < int(batch["flip"].sum()) < 16
    assert set(batch) == set(host) | {"flip", "index"}
    for name in set(batch) - {"image"}:
      assert _bits(batch[name]) == _bits(batch4[name]), name
    # The same pixels; XLA may round the resize differently per shard shape.
    np.testing.assert_allclose(batch["image"], batch4["image"], rtol=0,
                               atol=1e-6)
  assert not np.array_equal(steps[0]["flip"], steps[1]["flip"])


def test_steps_per_epoch_and_batch_indices():
  assert input_pipeline.steps_per_epoch(NUM_EXAMPLES, 16) == 2
  assert input_pipeline.steps_per_epoch(NUM_EXAMPLES, NUM_EXAMPLES) == 1
  assert input_pipeline.steps_per_epoch(NUM_EXAMPLES, NUM_EXAMPLES + 1) == 0
  with pytest.raises(ConfigError, match="batch size"):
    input_pipeline.steps_per_epoch(NUM_EXAMPLES, 0)
  perm = jnp.arange(NUM_EXAMPLES)[::-1]
  take = jax.jit(input_pipeline.train_batch_indices, static_argnums=2)
  np.testing.assert_array_equal(take(perm, jnp.int32(1), 16),
                                np.arange(20, 4, -1))


def _pil_reference(images: np.ndarray, size: int, flip: np.ndarray,
                   float_resize: bool) -> np.ndarray:
  """Resize each channel with PIL's bilinear filter, then the numpy steps."""
  out = []
  for image, flipped in zip(images, flip):
    channels = []
    for k in range(image.shape[-1]):
      plane = image[..., k]
      pil = (Image.fromarray(plane.astype(np.float32), mode="F")
             if float_resize else Image.fromarray(plane))
      channels.append(np.asarray(pil.resize((size, size), Image.BILINEAR),
                                 np.float64))
    x = np.stack(channels, -1) / 255.0
    x = np.repeat(x, 3, -1) if x.shape[-1] == 1 else x
    x = np.fliplr(x) if flipped else x
    out.append((x - MEAN) / STD)
  return np.stack(out)


@pytest.mark.parametrize("shape", [(48, 48, 1), (100, 100, 3)],
                         ids=["fer_up_gray", "raf_down_rgb"])
def test_preprocess_matches_pil(shape):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6,) + shape, np.uint8)
  flip = np.array([False, True, False, True, True, False])
  out = jax.jit(lambda x, f: input_pipeline.preprocess(
      x, image_size=64, flip=f))(images, flip)
  assert out.shape == (6, 64, 64, 3) and out.dtype == jnp.float32
  out = np.asarray(out, np.float64)
  # PIL's float ("F") resize uses the same antialiased triangle filter:
  # measured max difference 1.2e-6 after normalisation.
  exact = _pil_reference(images, 64, flip, float_resize=True)
  np.testing.assert_allclose(out, exact, rtol=0, atol=5e-6)
  # PIL's uint8 resize rounds to uint8 after each of its two passes: measured
  # at most one pixel step (1/255 before normalisation), 0.3 steps on average.
  pil = _pil_reference(images, 64, flip, float_resize=False)
  steps = np.abs(out - pil) * STD * 255
  assert steps.max() <= 1.0 + 1e-3
  assert steps.mean() <= 0.35


def test_preprocess_without_resize_is_exact():
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), np.uint8)
  out = np.asarray(input_pipeline.preprocess(images, image_size=8))
  expected = (np.repeat(images, 3, -1) / 255.0 - MEAN) / STD
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [20, 31], ids=["same_size", "resized"])
def test_flip_mirrors_exactly_the_flagged_examples(size):
  images = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), np.uint8)
  flip = np.array([True, False, False, True, False])
  run = jax.jit(lambda x, f: input_pipeline.preprocess(x, image_size=size,
                                                       flip=f))
  flipped = np.asarray(run(images, flip))
  plain = np.asarray(run(images, np.zeros(5, bool)))
  assert not np.array_equal(plain, plain[:, :, ::-1])
  np.testing.assert_array_equal(flipped[flip], plain[flip][:, :, ::-1])
  np.testing.assert_array_equal(flipped[~flip], plain[~flip])
  np.testing.assert_array_equal(
      plain, np.asarray(input_pipeline.preprocess(images, image_size=size)))


def test_random_flips_is_fair():
  flips = input_pipeline.random_flips(jax.random.key(0), 10_000)
  assert flips.dtype == jnp.bool_ and flips.shape == (10_000,)
  assert abs(float(flips.mean()) - 0.5) < 0.02


def test_teacher_view_picks_the_flagged_view():
  logits = jnp.arange(3 * 2 * 4, dtype=jnp.float32).reshape(3, 2, 4)
  flip = jnp.array([False, True, True])
  np.testing.assert_array_equal(
      input_pipeline.teacher_view(logits, flip),
      np.asarray(logits)[np.arange(3), [0, 1, 1]])
