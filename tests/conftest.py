"""Shared test setup.

Four emulated CPU devices are configured before JAX is imported, so tests can
compare 1-device and multi-device meshes in one process. XLA's CPU backend
optimisations are off: the tests' tiny models spend far longer compiling than
running, and this makes their compiles several times faster. Freed host memory
is kept for reuse (:mod:`mre_jax.runtime.host_memory`), as the package's
commands keep it: the suite's steps then touch fresh pages less often. Real-data tests find
the shared datasets through ``MRE_JAX_DATA`` (default: ``../shared/data``
beside the project root) and skip when they are absent.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from mre_jax.runtime import host_memory  # noqa: E402

host_memory.keep_freed_memory()  # As the package's commands do.

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Modules that take minutes (their module fixtures run whole training
# pipelines), started first: under ``--dist loadscope`` (setup.cfg) each
# module runs on one worker, its fixtures once, and the long ones overlap
# the rest instead of ending the run alone.
SLOW_MODULES = ("reproduce_test.py", "multiprocess_test.py", "demo_test.py",
                "analysis_test.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_MODULES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def shared_data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get(
      "MRE_JAX_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture
def real_data_dir() -> pathlib.Path:
  """The folder holding fer2013/ and rafdb/ archives; skips when absent."""
  path = shared_data_dir()
  if not path.is_dir():
    pytest.skip(f"real datasets not found at {path} (set MRE_JAX_DATA)")
  return path


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """Shares compiled programs between the tests' many identical tiny runs,
  in this process, the other test workers and the command-line runs the
  tests start."""
  import jax  # pylint: disable=g-import-not-at-top
  # Under pytest-xdist every worker has its own folder in the run's one;
  # the cache goes beside them, shared by all workers.
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  cache = str(base / "jax_cache")
  os.makedirs(cache, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  yield


def make_tiny_config(data_dir, model="teacher", epochs=2, **distill):
  """The paper's recipe at test sizes, on the tiny synthetic_faces set."""
  from mre_jax.config import recipe  # pylint: disable=g-import-not-at-top
  config = recipe.get_config()
  config.model = model
  config.model_width = 4
  config.dataset.name = "synthetic_faces"
  config.dataset.builder_config = "tiny"
  config.dataset.data_dir = data_dir
  config.image_size = 16
  config.batch_size = 32
  config.eval_batch_size = 64
  config.learning_rate = 0.02
  config.num_epochs = epochs
  config.steps_per_dispatch = 8
  if model == "teacher":
    config.distill.kd_weight, config.distill.ce_weight = 0.0, 1.0
  for key, value in distill.items():
    config.distill[key] = value
  return config


@pytest.fixture
def train_until_killed(monkeypatch):
  """``(config, workdir, epoch)``: trains in ``workdir`` as if the process
  were killed right after saving ``epoch``'s checkpoint."""
  from mre_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from mre_jax.workdir import checkpointing  # pylint: disable=g-import-not-at-top

  def run(config, workdir, epoch):
    real_save = checkpointing.save

    def save_then_die(manager, saved_epoch, **kwargs):
      real_save(manager, saved_epoch, **kwargs)
      if saved_epoch == epoch:
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
      patch.setattr(checkpointing, "save", save_then_die)
      with pytest.raises(KeyboardInterrupt):
        trainer.Trainer(config, workdir).train()
  return run


@pytest.fixture(scope="session")
def tiny_config():
  return make_tiny_config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _train(config, workdir):
  from mre_jax.training import trainer  # pylint: disable=g-import-not-at-top
  return str(workdir), config, trainer.train_and_evaluate(config,
                                                          str(workdir))


@pytest.fixture(scope="session")
def teacher_run(data_dir, tmp_path_factory):
  """A trained tiny teacher: (workdir, config, end-of-training metrics)."""
  return _train(make_tiny_config(data_dir, epochs=2),
                tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def student_run(teacher_run, data_dir, tmp_path_factory):
  """A tiny student C distilled from ``teacher_run`` (E6's T and alpha)."""
  config = make_tiny_config(data_dir, model="student_c", epochs=1,
                            teacher_workdir=teacher_run[0], temperature=3.0,
                            alpha=0.2, experiment="E6")
  return _train(config, tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="session")
def baseline_run(data_dir, tmp_path_factory):
  """A tiny student C trained without a teacher (kd_weight 0)."""
  config = make_tiny_config(data_dir, model="student_c", epochs=1,
                            kd_weight=0.0, ce_weight=1.0,
                            experiment="baseline")
  return _train(config, tmp_path_factory.mktemp("baseline"))
