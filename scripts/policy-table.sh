#!/usr/bin/env bash
# policy-table.sh: the recipes-and-policies experiment of docs/RESULTS.md on the tiny real Mixtral: uniform 3-bit
# HQQ and MiLo, the QuantMoE-Bench heuristics (attention, first/last MoE block, outlier scorer, block
# scorer, expert frequency), MiLo's kurtosis ranks, and the budget solver at 2.5 and 3.25 bits per weight
# and at the budget of every heuristic. Each row: `moeq quantize` then `moeq eval` (NP ranks each).
#
#   scripts/policy-table.sh [BUILD_DIR=build] [OUT=out/policy-table] [NP=2]
#
# Prints a markdown table (also in OUT/table.md); the artifacts, eval JSON and generated recipes stay in OUT.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$here/build}
OUT=${2:-$here/out/policy-table}
NP=${3:-2}
MOEQ=$BUILD/moeq
M=${MOEQ_SHARED_DIR:-$here/../shared}/models/mixtral-tiny
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$OUT"
E=$here/configs/experiments
run() { # run NAME RECIPE: quantize + eval, one table row
    local name=$1 recipe=$2
    mpirun --oversubscribe -n "$NP" "$MOEQ" quantize -q --progress 0 --force --model "$M" --recipe "$recipe" \
        --out "$OUT/$name.h5" >"$OUT/$name.quantize.log" 2>&1 || { cat "$OUT/$name.quantize.log" >&2; return 1; }
    mpirun --oversubscribe -n "$NP" "$MOEQ" eval -q --progress 0 --model "$M" "$OUT/$name.h5" \
        --text "$M/val.txt" --json "$OUT/$name.eval.json" >"$OUT/$name.eval.log" 2>&1 || { cat "$OUT/$name.eval.log" >&2; return 1; }
    jq -r --arg n "$name" '"| \($n) | \(.bits_per_weight*10000|round/10000) | \(.weights.overall.rel_fro*10000|round/10000) | \(.block.mean.gaussian.rel_err*10000|round/10000) | \(.block.mean.text.rel_err*10000|round/10000) | \(.perplexity.quantized.perplexity*1000|round/1000) |"' \
        "$OUT/$name.eval.json" | tee -a "$OUT/table.md"
}
bpw_of() { jq -r '.bits_per_weight' "$OUT/$1.eval.json"; }
budget() { # budget NAME BITS: the solver recipe at BITS bits per weight
    sed "s/^    bits: 2.5$/    bits: $2/" "$E/mixtral-tiny-budget.yaml" >"$OUT/$1.yaml"
    run "$1" "$OUT/$1.yaml"
}
: >"$OUT/table.md"
{
    echo "| recipe | bits/weight | weight rel. error | block error (Gaussian) | block error (text) | perplexity |"
    echo "|---|---|---|---|---|---|"
} | tee "$OUT/table.md"
run uniform-hqq3 "$here/configs/mixtral-tiny-hqq3.yaml"
# routing counts of the original model on val.txt, for the frequency policy (next to its recipe and artifact)
jq '.routing_counts' "$OUT/uniform-hqq3.eval.json" >"$OUT/routing-counts.json"
run uniform-milo3 "$here/configs/mixtral-tiny-milo3.yaml"
run milo-kurtosis "$E/mixtral-tiny-milo-kurtosis.yaml"
budget budget-3.25 3.25
budget budget-2.5 2.5
for h in attn first last outlier block freq; do
    cp "$E/mixtral-tiny-$h.yaml" "$OUT/$h.yaml"
    run "$h" "$OUT/$h.yaml"
    b=$(bpw_of "$h")
    budget "budget@$h" "$b"
done
# the original model (reference row)
jq -r '"| original (bf16) | 16 | 0 | 0 | 0 | \(.perplexity.original.perplexity*1000|round/1000) |"' "$OUT/uniform-hqq3.eval.json" | tee -a "$OUT/table.md"
