"""Processes: joining a multi-process run, which process writes, host arrays.

A multi-process run (several hosts, or one process per GPU) joins JAX's
distributed runtime with :func:`initialize` before anything touches the
devices; all processes then see one global device list and run the same
program. Single-process runs take the same code paths.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

from absl import logging
import jax
import numpy as np
from jax.experimental import multihost_utils

from mre_jax.errors import DistributedError

# Launchers whose steps JAX's distributed runtime detects by itself: the
# variables its detection reads, and the one holding the process count.
_LAUNCHERS = (
    ("SLURM", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID",
               "SLURM_LOCALID"), "SLURM_NTASKS"),
    ("Open MPI", ("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_RANK"),
     "OMPI_COMM_WORLD_SIZE"),
)


def launcher_process_count(environ: Mapping[str, str] | None = None
                           ) -> tuple[str | None, int]:
  """(launcher, process count) of a SLURM or Open MPI step; (None, 1) else."""
  environ = os.environ if environ is None else environ
  for name, required, count_var in _LAUNCHERS:
    if all(v in environ for v in required + (count_var,)):
      try:
        return name, int(environ[count_var])
      except ValueError:
        raise DistributedError(
            f"{name} sets {count_var}={environ[count_var]!r}, not a process "
            "count.") from None
  return None, 1


def _check_address(address: str) -> None:
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedError(
        f"--coordinator_address={address!r} is not HOST:PORT; give process "
        "0's host name or IP and a free port, the same for every process, "
        "e.g. 10.0.0.1:12345.")


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               environ: Mapping[str, str] | None = None) -> bool:
  """Joins JAX's distributed runtime when this run has several processes.

  Call it before anything touches the devices. With no arguments, a SLURM
  step (``srun``) or Open MPI job (``mpirun``) of more than one task is
  detected from the launcher's environment and JAX fills in the coordinator,
  the process count and this process's rank (and on GPUs gives each process
  the GPU of its local rank). Otherwise the three arguments describe the run
  and every process sees all of its local devices; ``num_processes=1`` is a
  single-process run. Processes other than 0 then log warnings and errors
  only, so a job's log shows each message once. CPU runs exchange data with
  gloo collectives.

  Args:
    coordinator_address: process 0's ``HOST:PORT``, the same on every process.
    num_processes: the number of processes of the run.
    process_id: this process's id, ``0`` to ``num_processes - 1``.
    environ: where to look for a launcher (default: ``os.environ``).

  Returns:
    Whether the distributed runtime was initialized (False: one process).

  Raises:
    DistributedError: inconsistent arguments, or the processes did not meet.
  """
  explicit = (coordinator_address, num_processes, process_id) != (None,) * 3
  if explicit:
    if num_processes is None or num_processes < 1:
      raise DistributedError(
          f"--num_processes={num_processes} is invalid: with "
          "--coordinator_address or --process_id, give the run's process "
          "count (>= 1).")
    if num_processes == 1:
      if process_id not in (None, 0):
        raise DistributedError(
            f"--process_id={process_id} is out of range for "
            "--num_processes=1; the only process has id 0.")
      return False
    if coordinator_address is None or process_id is None:
      raise DistributedError(
          f"--num_processes={num_processes} needs --coordinator_address "
          "(process 0's HOST:PORT) and --process_id (0 to "
          f"{num_processes - 1}) on every process.")
    if not 0 <= process_id < num_processes:
      raise DistributedError(
          f"--process_id={process_id} is out of range: expected 0 to "
          f"{num_processes - 1} for --num_processes={num_processes}.")
    _check_address(coordinator_address)
    where = (f"process {process_id} of {num_processes}, coordinator "
             f"{coordinator_address}")
  else:
    launcher, count = launcher_process_count(environ)
    if count <= 1:
      return False
    where = f"a {launcher} run of {count} processes"
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    if explicit:
      jax.distributed.initialize(coordinator_address, num_processes,
                                 process_id,
                                 cluster_detection_method="deactivate")
    else:
      jax.distributed.initialize()
  except (RuntimeError, ValueError, TypeError) as e:
    raise DistributedError(
        f"could not join the distributed runtime as {where}: {e}\nEvery "
        "process needs the same coordinator address, reachable from all "
        "hosts, with a port free on process 0's host; initialize before "
        "anything uses JAX.") from e
  if not is_main_process():
    logging.set_verbosity(logging.WARNING)
  logging.info("Joined %s: %d devices, %d local.", where, jax.device_count(),
               jax.local_device_count())
  return True


def is_main_process() -> bool:
  """Only process 0 writes logs, metrics and other workdir files."""
  return jax.process_index() == 0


def to_host(tree: Any) -> Any:
  """Fetches replicated arrays (e.g. metrics, parameters) as numpy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def gather_to_host(x: jax.Array) -> np.ndarray:
  """Fetches an array sharded over processes as one numpy array."""
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def main_process_value(value: bool) -> bool:
  """Process 0's ``value`` on every process (no-op with one process).

  For decisions read from shared storage, which processes may see at
  different moments: every process must take the same branch, or their
  collectives (including orbax's) no longer pair up.
  """
  if jax.process_count() == 1:
    return value
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def sync(name: str) -> None:
  """Barrier across processes (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def abstract_replicated(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Shape/dtype structs of ``tree`` placed replicated on ``mesh``."""
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      tree)
