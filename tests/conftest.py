"""Shared test setup.

Four emulated CPU devices are configured before JAX is imported, so tests can
compare 1-device and multi-device meshes in one process. Real-data tests find
the shared datasets through ``MRE_JAX_DATA`` (default: ``../shared/data``
beside the project root) and skip when they are absent.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


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
  """Shares compiled programs between the tests' many identical tiny runs."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir",
                    str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  yield
