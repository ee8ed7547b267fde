"""Facial-expression datasets as TFDS builders, plus in-memory loading.

Importing this package registers the TFDS builders ``fer2013``, ``raf_db`` and
``synthetic_faces``, so the standard TFDS API works::

  import mre_jax.datasets
  builder = tfds.builder("fer2013", data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  source = builder.as_data_source("train")

Training code uses :func:`load_splits` instead, which prepares on first use and
returns whole splits as numpy arrays. All labels follow :data:`CLASS_NAMES`.
"""

from mre_jax.datasets import fer2013
from mre_jax.datasets import raf_db
from mre_jax.datasets import synthetic_faces
from mre_jax.datasets.builders import load_splits
from mre_jax.datasets.builders import prepare
from mre_jax.datasets.common import CLASS_NAMES
from mre_jax.datasets.common import DATASET_NAMES
from mre_jax.datasets.common import SplitData
from mre_jax.datasets.common import class_weights

__all__ = [
    "CLASS_NAMES",
    "DATASET_NAMES",
    "SplitData",
    "class_weights",
    "fer2013",
    "load_splits",
    "prepare",
    "raf_db",
    "synthetic_faces",
]
