#!/usr/bin/env bash
# Reproduces the GPU results on one machine, step by step, each step within
# its time budget; everything small goes to OUTDIR (see mre_jax/reproduce/).
#
#   launch/gpu_reproduce.sh OUTDIR [--steps=bench,teacher_fer,teacher_raf,e1,e4]
#       [--data=DIR] [--inputs=DIR] [--budget_s=...] [--epochs=...] [--tiny]
#
# --data holds fer2013/fer2013.tar.xz and rafdb/rafdb_basic.tar.xz (default
# ../shared/data). Steps can run one per machine: e1 and e4 need only
# teacher_fer/teacher_logits.npz from an earlier OUTDIR (--inputs=DIR).
#
# Environment honoured (defaults in brackets):
#   WHEELS                  folder of wheels installed into the scratch folder
#                           when ml_collections, tensorflow_datasets,
#                           importlib_resources or array_record is missing
#                           (with their dependencies; a JAX + PyTorch image
#                           lacks importlib_resources, which TFDS needs to
#                           prepare a dataset); by hand that is:
#                           python3 -m pip install -q --no-index --no-deps \
#                             --no-compile --target .site "$WHEELS"/*.whl
#                           export PYTHONPATH=$PWD/.site:$PYTHONPATH
#   MRE_JAX_COMMIT          commit to record when the tree has no .git
#   MRE_JAX_REPRODUCE_TINY  1: tiny steps, a check that runs on a CPU
#   MRE_JAX_PYTHON          the Python to use [python3]
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX takes [0.75]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: launch/gpu_reproduce.sh OUTDIR [flags of mre_jax.reproduce]}"
shift
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.75}"
extra=()
if [ -n "${WHEELS:-}" ]; then
  extra+=("--install_wheels=$WHEELS")
fi
exec "${MRE_JAX_PYTHON:-python3}" -m mre_jax.reproduce --outdir="$out" \
  ${extra[@]+"${extra[@]}"} "$@"
