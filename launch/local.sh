#!/usr/bin/env bash
# Train on every GPU of this machine: one process, data-parallel over all
# visible devices (restrict with CUDA_VISIBLE_DEVICES).
#
#   launch/local.sh --config=configs/studentA.py:fer2013,exp=E1 --workdir=runs/E1
#
# Several machines without SLURM: run it on each, with the same workdir and
# data_dir on shared storage, adding --coordinator_address=HOST0:PORT
# --num_processes=N --process_id=I (I = 0 on HOST0, 1..N-1 elsewhere).
#
# Environment honoured (defaults in brackets):
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX preallocates [0.75]
#   XLA_PYTHON_CLIENT_PREALLOCATE   "false" to allocate on demand [true]
#   XLA_FLAGS                       extra XLA flags, appended to the GPU ones
#   MRE_JAX_PYTHON                  the Python to use [python3]
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.75}"
# Overlap collectives with compute for multi-GPU data parallelism.
export XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true ${XLA_FLAGS:-}"
exec "${MRE_JAX_PYTHON:-python3}" -m mre_jax.main "$@"
