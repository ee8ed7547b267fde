"""What a workdir records of the code and the command that made it."""

import subprocess
import sys

from mre_jax.workdir import run_info


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
  package = run_info.__file__.rsplit("/workdir/", 1)[0]
  monkeypatch.setattr(sys, "argv", [f"{package}/reproduce/steps.py",
                                    "--run_step=e1", "--tiny"])
  assert run_info.command() == (
      "python -m mre_jax.reproduce.steps --run_step=e1 --tiny")
  monkeypatch.setattr(sys, "argv", [f"{package}/main.py", "--config=c.py"])
  assert run_info.command() == "python -m mre_jax.main --config=c.py"
  monkeypatch.setattr(sys, "argv", ["/elsewhere/tool.py", "--a=b c"])
  assert run_info.command() == "python /elsewhere/tool.py '--a=b c'"


def test_recorded_commands_can_be_rerun_anywhere():
  repo = "/home/a/mre_jax"
  command = ("python -m mre_jax.main --config=/home/a/mre_jax/configs/c.py:"
             "raf_db --workdir=/scratch/runs/raf_C "
             "--config.dataset.data_dir=/scratch/tfds "
             "--config.dataset.manual_dir=/data/shared/rafdb "
             "--config.distill.teacher_workdir /scratch/runs/raf_B "
             "--config.num_epochs=100 --notes=/etc/notes.md")
  assert run_info.portable(command, repo) == (
      "python -m mre_jax.main --config=configs/c.py:raf_db "
      "--workdir=RUNS/raf_C --config.dataset.data_dir=TFDS_DIR "
      "--config.dataset.manual_dir=DATA/rafdb "
      "--config.distill.teacher_workdir RUNS/raf_B --config.num_epochs=100 "
      "--notes=/etc/notes.md")
  driver = ("python -m mre_jax.reproduce --outdir=/tmp/w/out --data=/d "
            "--workdirs=/tmp/w --install_wheels=/tmp/wheels")
  assert run_info.portable(driver, repo) == (
      "python -m mre_jax.reproduce --outdir=RUNS/out --data=DATA "
      "--workdirs=RUNS/w --install_wheels=WHEELS")
  assert run_info.portable("python 'unbalanced", repo) == "python 'unbalanced"


def test_a_runs_command_is_recorded_portable(monkeypatch, tmp_path):
  package = run_info.__file__.rsplit("/workdir/", 1)[0]
  monkeypatch.setattr(sys, "argv", [f"{package}/main.py",
                                    f"--workdir={tmp_path}/run_1"])
  assert run_info.command() == "python -m mre_jax.main --workdir=RUNS/run_1"
