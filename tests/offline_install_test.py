"""Installing missing requirements from a folder of wheels, then restarting."""

import pathlib
import subprocess
import sys
import zipfile

import pytest

from mre_jax.runtime import offline_install

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from mre_jax.runtime import offline_install
offline_install.NEEDED = ("mre_jax_fake_requirement",)
offline_install.install_wheels(sys.argv[1], sys.argv[2])
import mre_jax_fake_requirement
print("restarted with", mre_jax_fake_requirement.VALUE)
"""


def _wheel(folder: pathlib.Path) -> None:
  """A minimal pure-Python wheel of the module ``mre_jax_fake_requirement``."""
  name, info = "mre_jax_fake_requirement", "mre_jax_fake_requirement-1.0"
  files = {
      f"{name}/__init__.py": "VALUE = 42\n",
      f"{info}.dist-info/METADATA": (
          f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"),
      f"{info}.dist-info/WHEEL": ("Wheel-Version: 1.0\nGenerator: test\n"
                                  "Root-Is-Purelib: true\nTag: py3-none-any\n"),
  }
  files[f"{info}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in files) + (
      f"{info}.dist-info/RECORD,,\n")
  with zipfile.ZipFile(folder / f"{info}-py3-none-any.whl", "w") as wheel:
    for path, text in files.items():
      wheel.writestr(path, text)


def test_missing_module_is_installed_and_the_command_restarted(tmp_path):
  wheels = tmp_path / "wheels"
  wheels.mkdir()
  _wheel(wheels)
  done = subprocess.run(
      [sys.executable, "-c", SCRIPT, str(wheels), str(tmp_path / "scratch")],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "restarted with 42"
  assert (tmp_path / "scratch" / "site" / "mre_jax_fake_requirement").is_dir()


def test_what_the_wheels_cannot_supply_is_one_clear_error(tmp_path,
                                                          monkeypatch):
  monkeypatch.setattr(offline_install, "NEEDED", ("no_such_module_here",))
  with pytest.raises(offline_install.InstallError,
                     match="no_such_module_here not installed.*--install"):
    offline_install.install_wheels("", str(tmp_path))
  with pytest.raises(offline_install.InstallError,
                     match="holds no .whl file"):
    offline_install.install_wheels(str(tmp_path), str(tmp_path))
  # Restarted with the wheels installed, a module is still missing: the
  # error says which wheel to add to the folder, before any step runs.
  (tmp_path / "other-1.0-py3-none-any.whl").write_bytes(b"")
  monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
  with pytest.raises(offline_install.InstallError,
                     match=r"none of the wheels .* pip download .*"
                     r"-d \S+ no-such-module-here\)"):
    offline_install.install_wheels(str(tmp_path), str(tmp_path))
