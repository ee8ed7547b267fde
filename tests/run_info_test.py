"""What a workdir records of the code and the command that made it."""

import subprocess
import sys

from mre_jax.training import run_info


def _git(repo, *args):
  subprocess.run(["git", "-C", str(repo), *args], check=True,
                 capture_output=True)


def test_commit_is_dirty_only_when_a_tracked_file_is_edited(tmp_path,
                                                            monkeypatch):
  monkeypatch.setenv("MRE_JAX_COMMIT", "from-the-environment")
  assert run_info.git_commit(str(tmp_path)) == "from-the-environment"
  _git(tmp_path, "init", "-q")
  (tmp_path / "code.py").write_text("x = 1\n")
  _git(tmp_path, "add", "code.py")
  _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
       "c")
  head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                        capture_output=True, text=True, check=True).stdout
  (tmp_path / "scratch").mkdir()
  (tmp_path / "scratch" / "data.bin").write_bytes(b"untracked")
  assert run_info.git_commit(str(tmp_path)) == head.strip()
  (tmp_path / "code.py").write_text("x = 2\n")
  assert run_info.git_commit(str(tmp_path)) == head.strip() + "+dirty"


def test_command_names_any_module_of_the_package(monkeypatch):
  package = run_info.__file__.rsplit("/training/", 1)[0]
  monkeypatch.setattr(sys, "argv", [f"{package}/reproduce_step.py",
                                    "--run_step=e1", "--tiny"])
  assert run_info.command() == (
      "python -m mre_jax.reproduce_step --run_step=e1 --tiny")
  monkeypatch.setattr(sys, "argv", [f"{package}/main.py", "--config=c.py"])
  assert run_info.command() == "python -m mre_jax.main --config=c.py"
  monkeypatch.setattr(sys, "argv", ["/elsewhere/tool.py", "--a=b c"])
  assert run_info.command() == "python /elsewhere/tool.py '--a=b c'"
