"""User-facing errors.

Every problem caused by the user's input (files, layouts, configs, checkpoints)
is raised as a subclass of :class:`UserError` with a message that says what was
expected and how to fix it. ``mre_jax.main`` prints such errors as one line and
exits with status 2 instead of showing a traceback.
"""


class UserError(Exception):
  """An error in user-provided input, reported without a traceback."""


class ConfigError(UserError):
  """A config field is unknown, missing or has a bad value."""


class DatasetError(UserError):
  """Dataset files are missing, malformed or in an unknown layout."""


class CheckpointError(UserError):
  """A checkpoint is missing, corrupt, or belongs to another model or run."""


class TeacherLogitsError(UserError):
  """A teacher-logits file is missing or does not match the dataset."""


class DistributedError(UserError):
  """Multi-process flags are inconsistent or the run's processes cannot meet."""


class ImageError(UserError):
  """An image given to a predictor has a wrong type or shape."""


class ExportError(UserError):
  """An exported model cannot be written or read, or is not an export."""


class AnalysisError(UserError):
  """An image, folder, video or camera to analyse is missing or unusable."""


class Interrupted(Exception):
  """A run stopped by Ctrl-C or SIGTERM after keeping what it had saved.

  Not a :class:`UserError`: ``mre_jax.main`` prints its message as one line
  and exits with status 130, as a shell does for Ctrl-C.
  """


class WorkdirBusyError(UserError):
  """Another run is using the workdir (it holds ``<workdir>/.lock``)."""
