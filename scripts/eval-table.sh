#!/usr/bin/env bash
# docs/RESULTS.md's evaluation table: quantizes the tiny real Mixtral with RTN-3, HQQ-3 and MiLo-3 (expert rank 8
# and 32, attention rank 64) on RANKS ranks, evaluates each artifact with `moeq eval` (full validation text,
# the protocol of reference.json; text hidden-state probes from its first window) and prints a Markdown table
# from the JSON reports. Overrides: MODEL=DIR RANKS=N OUT=DIR MOEQ=path/to/moeq.
# Prerequisites: a build (scripts/build.sh), jq.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/mixtral-tiny}
RANKS=${RANKS:-3}
OUT=${OUT:-out/eval-table}
MOEQ=${MOEQ:-build/moeq}
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$OUT"
recipes="rtn3 hqq3 milo3 milo3-r32"
for r in $recipes; do
    mpirun --oversubscribe -n "$RANKS" "$MOEQ" quantize -q --force --model "$MODEL" \
        --recipe "configs/mixtral-tiny-$r.yaml" --out "$OUT/$r.h5"
    mpirun --oversubscribe -n "$RANKS" "$MOEQ" eval --progress 0 -q --model "$MODEL" "$OUT/$r.h5" \
        --text "$MODEL/val.txt" --json "$OUT/$r.json" --plot "$OUT/$r.png"
done
first=$(echo $recipes | cut -d' ' -f1)
jq -r '"original (bf16): perplexity \(.perplexity.original.perplexity * 1e4 | round / 1e4) on \(.perplexity.scored_tokens) scored tokens; reference.json \(.perplexity.reference.key): \(.perplexity.reference.perplexity * 1e4 | round / 1e4) (rel. diff \(.perplexity.reference.rel_diff))\n"' "$OUT/$first.json"
echo "| recipe | bits/weight | weight rel. error (all / experts / attention) | block output error (Gaussian / text) | top-k changed (forward) | perplexity | increase vs bf16 |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for r in $recipes; do
    jq -r --arg r "$r" '
      def f(n): (. * pow(10; n) | round) / pow(10; n);
      def cls(c): [.weights.by_class[] | select(.class == c)][0];
      def experts: [.weights.by_class[] | select(.class | startswith("routed_expert"))]
                   | ((map(.err_fro2) | add) / (map(.ref_fro2) | add)) | sqrt;
      "| \($r) | \(.bits_per_weight | f(3)) | \(.weights.overall.rel_fro | f(4)) / \(experts | f(4)) / \(cls("attention").rel_fro | f(4)) | \(.block.mean.gaussian.rel_err | f(4)) / \(.block.mean.text.rel_err | f(4)) | \(.block.mean.text.topk_changed_forward * 100 | f(1))% | \(.perplexity.quantized.perplexity | f(4)) | +\(.perplexity.increase * 100 | f(2))% |"
    ' "$OUT/$r.json"
done
