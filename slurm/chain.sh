#!/bin/bash
# slurm/chain.sh: quantize -> eval -> export as three batch jobs, each starting only when the one before it
# succeeded (--dependency=afterok; a failed step cancels the rest: --kill-on-invalid-dep=yes). Run it where
# you run sbatch; MODEL, RECIPE, OUT, EXPORT_DIR, MAX_REL_ERROR, ... go to the jobs (sbatch exports the
# environment). A quantize job stopped before its time limit exits 75 and requeues itself; its dependents
# keep waiting until the requeued job completes, so the chain survives preemption and time limits.
#
#   MODEL=/data/Mixtral-8x7B RECIPE=configs/mixtral-8x7b-milo3.yaml OUT=/scratch/m-milo3.h5 \
#       slurm/chain.sh --nodes=2                 # sbatch options for the quantize job
#   QUANTIZE_JOB=quantize-gpu.sbatch slurm/chain.sh ...   # on GPU nodes
#
# Prints the three job ids ("quantize 101 -> eval 102 -> export 103"); EVAL_SBATCH and EXPORT_SBATCH hold
# sbatch options for the other two.
set -euo pipefail
: "${MODEL:?set MODEL=checkpoint directory}" "${OUT:?set OUT=artifact path}"
here=$(cd "$(dirname "$0")" && pwd) # slurm/ of a checkout or of an installed tree (P/share/moeq/slurm)
export MOEQ_HOME=${MOEQ_HOME:-$(dirname "$here")}
submit() { local id; id=$(sbatch --parsable "$@") && echo "${id%%;*}"; } # "id;cluster" -> id
q=$(submit "$@" "$here/${QUANTIZE_JOB:-quantize.sbatch}")
e=$(submit --dependency=afterok:"$q" --kill-on-invalid-dep=yes ${EVAL_SBATCH:-} "$here/eval.sbatch")
x=$(submit --dependency=afterok:"$e" --kill-on-invalid-dep=yes ${EXPORT_SBATCH:-} "$here/export.sbatch")
echo "quantize $q -> eval $e -> export $x"
