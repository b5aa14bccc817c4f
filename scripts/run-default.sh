#!/usr/bin/env bash
# The README's main-job command: install what is missing, build, then quantize the embedded default, the
# tiny real Mixtral-layout MoE in ../shared/models/mixtral-tiny, with several MPI ranks (MiLo 3-bit) into one
# HDF5 artifact, evaluate it with the same ranks (report on stdout, JSON and PNG beside the artifact).
# Overrides: MODEL=DIR RECIPE=FILE RANKS=N OUT=FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
MODEL=${MODEL:-../shared/models/mixtral-tiny}
RECIPE=${RECIPE:-configs/mixtral-tiny-milo3.yaml}
RANKS=${RANKS:-3}
OUT=${OUT:-out/$(basename "$MODEL")-$(basename "$RECIPE" .yaml).h5}
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$(dirname "$OUT")"
echo "== moeq plan: $MODEL with $RECIPE for $RANKS ranks"
build/moeq plan --model "$MODEL" --recipe "$RECIPE" --ranks "$RANKS"
echo
echo "== mpirun -n $RANKS moeq quantize -> $OUT"
mpirun --oversubscribe -n "$RANKS" build/moeq quantize --model "$MODEL" --recipe "$RECIPE" --out "$OUT" --force \
    --progress 2
echo
echo "== mpirun -n $RANKS moeq eval: integrity, weight error, MoE-block output error, perplexity"
mpirun --oversubscribe -n "$RANKS" build/moeq eval --model "$MODEL" "$OUT" --json "${OUT%.h5}.eval.json" \
    --plot "${OUT%.h5}.eval.png"
