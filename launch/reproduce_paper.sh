#!/usr/bin/env bash
# Reproduces Table IV: on FER2013 the teacher and E1-E6, on RAF-DB the teacher,
# E1 and E4; each student also without a teacher (kd_weight=0) as baseline.
# Then writes docs/results.md and docs/results.json from the eval JSONs.
#
#   launch/reproduce_paper.sh RUNS_DIR [extra flags for every run...]
#
# Datasets are read from the TFDS data_dir (default ~/tensorflow_datasets);
# put the downloaded files in <data_dir>/downloads/manual/ first (see the
# README). Runs go through launch/local.sh (all GPUs of this machine); inside a
# SLURM allocation (salloc --nodes=N --ntasks-per-node=G --gres=gpu:G) set
# LAUNCH=launch/slurm.sbatch to run each on all of its GPUs. A rerun resumes
# unfinished runs and skips finished ones.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:?usage: launch/reproduce_paper.sh RUNS_DIR [flags...]}"
shift
launch="${LAUNCH:-launch/local.sh}"

run() {  # run CONFIG WORKDIR [flags...]
  local config="$1" workdir="$2"
  shift 2
  "$launch" --config="$config" --workdir="$workdir" "$@"
}

workdirs=()
for dataset in fer2013 raf_db; do
  teacher="$runs/$dataset/teacher"
  run "configs/teacher.py:$dataset" "$teacher" "$@"
  workdirs+=("$teacher")
  if [ "$dataset" = fer2013 ]; then
    experiments="E1:A E2:A E3:B E4:B E5:B E6:C"
  else
    experiments="E1:A E4:B"
  fi
  declare -A baselines=()
  for item in $experiments; do
    exp="${item%%:*}" student="${item##*:}"
    run "configs/student$student.py:$dataset,exp=$exp" "$runs/$dataset/$exp" \
      --config.distill.teacher_workdir="$teacher" \
      --config.distill.teacher_logits="$runs/$dataset/teacher_logits.npz" "$@"
    workdirs+=("$runs/$dataset/$exp")
    baselines[$student]=1
  done
  for student in "${!baselines[@]}"; do
    run "configs/student$student.py:$dataset,baseline" \
      "$runs/$dataset/baseline_$student" "$@"
    workdirs+=("$runs/$dataset/baseline_$student")
  done
  unset baselines
done

"${MRE_JAX_PYTHON:-python3}" -m mre_jax.report \
  --workdirs="$(IFS=,; echo "${workdirs[*]}")" --output=docs
