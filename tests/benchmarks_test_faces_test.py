"""The analysis benchmark's test faces, read from the real datasets."""

import numpy as np
import pytest

from mre_jax.benchmarks import test_faces
from mre_jax.errors import UserError


def test_faces_of_both_datasets_are_shared_evenly(real_data_dir):
  faces, labels, datasets = test_faces.test_faces(
      real_data_dir, ("raf_db", "fer2013"), 9, seed=3)
  assert len(faces) == len(labels) == len(datasets) == 9
  assert datasets.count("raf_db") == 5 and datasets.count("fer2013") == 4
  for face, dataset in zip(faces, datasets):
    expected = (100, 100, 3) if dataset == "raf_db" else (48, 48, 1)
    assert face.shape == expected and face.dtype == np.uint8
  assert labels.min() >= 0 and labels.max() <= 6
  again = test_faces.test_faces(real_data_dir, ("raf_db", "fer2013"), 9,
                                seed=3)
  assert all(np.array_equal(a, b) for a, b in zip(faces, again[0]))


def test_fer2013_faces_come_from_privatetest_with_their_folder_label(
    real_data_dir):
  faces, labels = test_faces.fer_test_faces(real_data_dir, 20, seed=0)
  assert faces.shape == (20, 48, 48, 1) and len(set(labels.tolist())) > 2
  with pytest.raises(UserError, match="expected 1 to 3589"):
    test_faces.fer_test_faces(real_data_dir, 10**6)
