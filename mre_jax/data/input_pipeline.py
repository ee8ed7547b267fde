"""On-device input pipeline: splits live on the mesh, batches are made in-step.

A prepared split (uint8 images, int labels, optionally teacher logits) is
loaded once into host numpy arrays and placed on the devices, sharded along the
mesh's data axis (:func:`put_on_mesh`). The jitted train or eval step then

* draws an epoch permutation from its RNG (:func:`epoch_permutation`) and
  slices the step's global example ids out of it (:func:`train_batch_indices`);
* gathers those rows from the sharded data (:func:`gather`): each device looks
  up the rows it owns and a reduce-scatter over the data axis hands every
  device its slice of the batch, so the dataset is never all-gathered;
* resizes, flips and normalises the images (:func:`preprocess`) and applies
  any further train-only augmentation (:mod:`mre_jax.data.augment`).

There is no per-example Python loop and no per-batch host-to-device copy.
Everything is computed in the global view and depends only on the RNG and the
example ids, so a given seed yields the same batches (same examples, same flip
bits, bit-identical gathered rows, and preprocessed pixels equal to float
rounding) on one device or many, and in multi-process runs, where each process
places only its addressable shards.

Evaluation uses :func:`eval_batches`: padded, masked batches that cover every
example exactly once whatever the batch size and device count.
"""

from __future__ import annotations

import math
from typing import Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mre_jax.data import augment
from mre_jax.errors import ConfigError
from mre_jax.errors import DatasetError

DATA_AXIS = "data"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all by default).

  The axis is of type ``Auto``: shardings inside ``jit`` are inferred by the
  compiler from the inputs and explicit constraints, as the training code
  expects (``jax.make_mesh`` otherwise defaults to explicit sharding types).
  """
  devices = jax.devices()
  num = len(devices) if num_devices is None else num_devices
  if not 1 <= num <= len(devices):
    raise ConfigError(
        f"num_devices={num_devices} is not available: this run sees "
        f"{len(devices)} device(s). Use a value from 1 to {len(devices)}.")
  return jax.make_mesh((num,), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:num])


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading axis split over the data axis, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


@flax.struct.dataclass
class DeviceData:
  """A split on the mesh.

  Attributes:
    arrays: name -> array with a leading example axis, zero-padded to a
      multiple of the data-axis size and sharded ``P(DATA_AXIS)``, e.g.
      ``{"image": uint8 (Np, H, W, C), "label": int32 (Np,)}``.
    num_examples: the number of real examples N (rows ``N..Np-1`` are padding).
  """
  arrays: dict[str, jax.Array]
  num_examples: int = flax.struct.field(pytree_node=False)


def _leading_length(name: str, array: np.ndarray) -> int:
  if array.ndim == 0:
    raise DatasetError(
        f"array {name!r} is a scalar; every dataset array needs a leading "
        "example axis.")
  return array.shape[0]


def _place_padded(host: np.ndarray, padded_len: int,
                  sharding: NamedSharding) -> jax.Array:
  """Places ``host`` zero-padded to ``padded_len`` rows, one shard at a time.

  Only the shards addressable by this process are materialised, so every
  process of a multi-process run can hold the full host array.
  """
  dtype = jax.dtypes.canonicalize_dtype(host.dtype)
  shape = (padded_len,) + host.shape[1:]

  def shard(index: tuple[slice, ...]) -> np.ndarray:
    start, stop, _ = index[0].indices(padded_len)
    rows = np.asarray(host[start:min(stop, len(host))], dtype=dtype)
    missing = stop - start - len(rows)
    if missing > 0:
      padding = np.zeros((missing,) + host.shape[1:], dtype)
      rows = np.concatenate([rows, padding])
    return np.ascontiguousarray(rows[(slice(None),) + tuple(index[1:])])

  return jax.make_array_from_callback(shape, sharding, shard)


def put_on_mesh(host_arrays: Mapping[str, np.ndarray],
                mesh: jax.sharding.Mesh) -> DeviceData:
  """Places a split's host arrays on ``mesh``, sharded along the data axis.

  64-bit arrays are stored as their 32-bit JAX counterparts (int64 labels
  become int32).

  Raises:
    DatasetError: no arrays or no examples, an array without an example axis,
      or arrays whose leading lengths differ.
  """
  if not host_arrays:
    raise DatasetError("no arrays to place on the devices.")
  hosts = {name: np.asarray(a) for name, a in host_arrays.items()}
  lengths = {name: _leading_length(name, a) for name, a in hosts.items()}
  if len(set(lengths.values())) != 1:
    listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
    raise DatasetError(
        "dataset arrays must all have one entry per example, but their "
        f"leading lengths differ ({listed}).")
  num_examples = next(iter(lengths.values()))
  if not num_examples:
    raise DatasetError("the split has no examples.")
  num_shards = mesh.shape[DATA_AXIS]
  padded_len = math.ceil(num_examples / num_shards) * num_shards
  sharding = data_sharding(mesh)
  arrays = {name: _place_padded(a, padded_len, sharding)
            for name, a in hosts.items()}
  return DeviceData(arrays=arrays, num_examples=num_examples)


def _summable(rows: jax.Array) -> jax.Array:
  """The same bits as an integer array, so a sum with zeros reproduces them.

  Floats are bitcast to unsigned integers of their width: a float sum would
  turn -0.0 into 0.0 and could alter NaN payloads, an integer sum of one value
  and zeros is exact. Booleans become uint8.
  """
  if rows.dtype == jnp.bool_:
    return rows.astype(jnp.uint8)
  if jnp.issubdtype(rows.dtype, jnp.integer):
    return rows
  return jax.lax.bitcast_convert_type(
      rows, jnp.dtype(f"uint{8 * rows.dtype.itemsize}"))


def _restore(rows: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """Inverse of :func:`_summable`."""
  if rows.dtype == dtype:
    return rows
  if dtype == jnp.bool_:
    return rows.astype(jnp.bool_)
  return jax.lax.bitcast_convert_type(rows, dtype)


def gather(data: DeviceData, indices: jax.Array,
           mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Rows ``indices`` of every array of ``data``, sharded along the batch.

  Jittable. Left to itself, XLA partitions ``array[indices]`` on sharded data
  by all-reducing a full (B, ...) copy of the batch onto every device, whose
  float sums are not bit-exact. Here each device looks up the requested rows
  it owns (zeros for the others) and one reduce-scatter per array over the
  data axis leaves each device just its ``B / num_shards`` rows. Per step a
  device reads and sends ``O(B x row bytes)``, independent of the dataset
  size, and the sums are integer sums of one value and zeros, so the result is
  bit-identical whatever the number of devices.

  Args:
    data: the split, from :func:`put_on_mesh`.
    indices: int (B,) global example ids in ``[0, num_examples)``, any
      sharding; B must be a multiple of the data-axis size. Rows for ids
      outside that range are unspecified.
    mesh: the mesh ``data`` lives on.

  Returns:
    name -> (B, ...) in the array's dtype, sharded ``P(DATA_AXIS)``.
  """
  num_shards = mesh.shape[DATA_AXIS]
  batch = indices.shape[0]
  if batch % num_shards:
    raise ConfigError(
        f"batch size {batch} is not a multiple of the {num_shards} devices of "
        "the data axis; choose a multiple.")
  indices = indices.astype(jnp.int32)
  if num_shards == 1:
    return {name: jnp.take(a, indices, axis=0, mode="clip")
            for name, a in data.arrays.items()}
  rows_per_shard = next(iter(data.arrays.values())).shape[0] // num_shards

  def local_gather(arrays, idx):
    local = idx - jax.lax.axis_index(DATA_AXIS) * rows_per_shard
    owned = (local >= 0) & (local < rows_per_shard)
    out = {}
    for name, array in arrays.items():
      rows = _summable(jnp.take(array, local, axis=0, mode="clip"))
      rows = jnp.where(owned.reshape((batch,) + (1,) * (rows.ndim - 1)), rows,
                       jnp.zeros((), rows.dtype))
      rows = jax.lax.psum_scatter(rows, DATA_AXIS, scatter_dimension=0,
                                  tiled=True)
      out[name] = _restore(rows, array.dtype)
    return out

  return jax.shard_map(local_gather, mesh=mesh, in_specs=(P(DATA_AXIS), P()),
                       out_specs=P(DATA_AXIS))(data.arrays, indices)


def epoch_permutation(rng: jax.Array, num_examples: int) -> jax.Array:
  """A random order of ``0..num_examples-1`` (int32), drawn on device."""
  return jax.random.permutation(rng, num_examples).astype(jnp.int32)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (0 when ``batch_size`` exceeds the split).

  The last partial batch is dropped; as the order is reshuffled every epoch, a
  different handful of examples is left out each time.
  """
  if batch_size < 1:
    raise ConfigError(f"batch size must be positive, got {batch_size}.")
  return num_examples // batch_size


def train_batch_indices(perm: jax.Array, step_in_epoch: jax.Array,
                        batch_size: int) -> jax.Array:
  """Example ids of the ``step_in_epoch``-th batch of the permutation."""
  return jax.lax.dynamic_slice_in_dim(perm, step_in_epoch * batch_size,
                                      batch_size)


def random_flips(rng: jax.Array, batch_size: int) -> jax.Array:
  """bool (B,): whether each example is mirrored horizontally (p = 0.5)."""
  return jax.random.bernoulli(rng, 0.5, (batch_size,))


def preprocess(images: jax.Array, *, image_size: int,
               flip: jax.Array | None = None) -> jax.Array:
  """uint8 (B, H, W, C in {1, 3}) -> normalised float32 (B, S, S, 3).

  Bilinear resize with antialiasing to ``S = image_size`` (as PIL's and
  torchvision's bilinear ``Resize``), optional per-example horizontal flip,
  grayscale replicated to three channels, then ImageNet mean/std
  normalisation of the [0, 1]-scaled pixels.
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
        f"expected images of shape (B, H, W, 1 or 3), got {images.shape}.")
  b, h, w, c = images.shape
  x = images.astype(jnp.float32)
  if (h, w) != (image_size, image_size):
    x = jax.image.resize(x, (b, image_size, image_size, c), "bilinear",
                         antialias=True)
  if flip is not None:
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
  x = jnp.broadcast_to(x, (b, image_size, image_size, 3))
  # (x / 255 - mean) / std as one subtraction then one multiplication: no
  # multiply-add the compiler could fuse in some lanes and not in others, so
  # each value is rounded the same way wherever it sits (e.g. once flipped).
  mean = 255.0 * np.asarray(IMAGENET_MEAN, np.float64)
  scale = 1.0 / (255.0 * np.asarray(IMAGENET_STD, np.float64))
  return (x - mean.astype(np.float32)) * scale.astype(np.float32)


def match_channels(images: jax.Array, channels: int | None) -> jax.Array:
  """uint8 (B, H, W, C) -> the ``channels`` a model was trained on.

  RGB becomes grey with ITU-R 601-2 luma weights (as PIL's ``convert("L")``)
  for models trained on grey images; grey stays grey for RGB models, as
  :func:`preprocess` replicates it; ``None`` keeps the images as they are.
  """
  if channels != 1 or images.shape[-1] == 1:
    return images
  luma = jnp.asarray([0.299, 0.587, 0.114], jnp.float32)
  grey = jnp.round(images.astype(jnp.float32) @ luma)
  return jnp.clip(grey, 0, 255).astype(jnp.uint8)[..., None]


def train_batch(data: DeviceData, rng: jax.Array, perm: jax.Array,
                step_in_epoch: jax.Array, *, batch_size: int, image_size: int,
                mesh: jax.sharding.Mesh, augment_flip: bool = True,
                augmentation: augment.Augmentation | None = None
                ) -> dict[str, jax.Array]:
  """One preprocessed training batch, for use inside the jitted train step.

  Returns every array of ``data`` for the batch's examples, with ``image``
  preprocessed, plus ``flip`` (bool (B,), the view each image shows, e.g. for
  :func:`teacher_view`) and ``index`` (int32 (B,), the examples' ids), all
  sharded along the batch. ``data`` should not hold arrays of those two names.
  With ``augment_flip=False`` no image is flipped. ``augmentation`` adds the
  warps and erasing of :mod:`mre_jax.data.augment`, drawn from a stream folded
  off ``rng`` so that the flips stay those drawn without it.
  """
  indices = train_batch_indices(perm, step_in_epoch, batch_size)
  batch = gather(data, indices, mesh)
  sharding = data_sharding(mesh)
  flip = (random_flips(rng, batch_size) if augment_flip
          else jnp.zeros((batch_size,), bool))
  flip = jax.lax.with_sharding_constraint(flip, sharding)
  batch["image"] = preprocess(batch["image"], image_size=image_size, flip=flip)
  if augmentation is not None and augmentation.enabled:
    batch["image"] = augment.apply(
        batch["image"], jax.random.fold_in(rng, 1), augmentation,
        constrain=lambda x: jax.lax.with_sharding_constraint(x, sharding))
  batch["flip"] = flip
  batch["index"] = jax.lax.with_sharding_constraint(indices, sharding)
  return batch


def teacher_view(teacher_logits: jax.Array, flip: jax.Array) -> jax.Array:
  """(B, 2, K) logits of the (original, flipped) views -> (B, K) of ``flip``."""
  view = flip.astype(jnp.int32)[:, None, None]
  return jnp.take_along_axis(teacher_logits, view, axis=1)[:, 0]


def eval_batches(num_examples: int, batch_size: int,
                 num_shards: int) -> tuple[np.ndarray, np.ndarray]:
  """Padded batches covering every example exactly once, in order.

  Returns:
    indices: int32 (num_batches, B') with ``B'`` = ``batch_size`` rounded up
      to a multiple of ``num_shards``; padding slots hold example 0.
    mask: bool (num_batches, B'), False exactly on the padding slots.
  """
  if batch_size < 1 or num_shards < 1:
    raise ConfigError(
        f"batch size ({batch_size}) and device count ({num_shards}) must be "
        "positive.")
  width = math.ceil(batch_size / num_shards) * num_shards
  num_batches = math.ceil(num_examples / width)
  slots = np.arange(num_batches * width, dtype=np.int32)
  mask = slots < num_examples
  indices = np.where(mask, slots, 0).astype(np.int32)
  return indices.reshape(num_batches, width), mask.reshape(num_batches, width)
