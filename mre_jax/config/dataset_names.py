"""The datasets this project knows, and how a run's validation split is made.

Kept apart from the datasets package (which imports tensorflow_datasets) so
that configs can be checked without the dataset code;
:mod:`mre_jax.datasets.common` re-exports these names.
"""

DATASET_NAMES = ("fer2013", "raf_db", "synthetic_faces")
# "auto": the dataset's own validation split, else a stratified 10% holdout
# of train; "holdout": always the holdout; "test": validate on the test split.
VALIDATION_MODES = ("auto", "holdout", "test")
