#!/usr/bin/env bash
# intfmt_sweep.sh: perplexity increase (moeq eval, the model's val.txt, windows of 256) of the integer-zero
# formats against the grouped ones, per method, on one model; the calibration of bench/gptq_vs_gptqmodel.py
# (scripts/calib-text.sh, 128 sequences of 256 characters). Prints one TSV line per run:
#   model  format  group  method  bits/weight  perplexity  increase_pct  quantize_s
# Usage: bench/intfmt_sweep.sh MODEL_DIR WORK_DIR "FORMAT:GROUP:METHOD ..." (from the repository root, built in
# build/; e.g. "i4:128:rtn i4:128:search i4:128:gptq i4:128:gptq-clip q4:128:gptq"; gptq-clip: gptq.clip on).
set -euo pipefail
model=$1 work=$2 runs=$3
moeq=${MOEQ:-build/moeq}
mkdir -p "$work"
[ -s "$work/calib.txt" ] || bash scripts/calib-text.sh "$work/calib.txt" $((128 * 256)) >/dev/null
for run in $runs; do
    IFS=: read -r fmt group method <<<"$run"
    tag="$(basename "$model")-$fmt-g$group-$method"
    extra=""
    [ "$method" = gptq-clip ] && extra=", gptq: {clip: true}"
    printf 'version: 1\ndefaults: {method: %s, format: %s, group: %s%s}\n' "${method%-clip}" "$fmt" "$group" \
        "$extra" >"$work/$tag.yaml"
    cal=()
    [ "${method%-clip}" = gptq ] && cal=(--calib "$work/calib.txt" --calib-seqs 128 --calib-len 256)
    rm -f "$work/$tag.h5"
    t0=$(date +%s.%N)
    "$moeq" quantize -q --model "$model" --recipe "$work/$tag.yaml" ${cal[@]+"${cal[@]}"} --out "$work/$tag.h5"
    t1=$(date +%s.%N)
    "$moeq" eval --model "$model" "$work/$tag.h5" --json "$work/$tag.json" --progress 0 >"$work/$tag.eval" 2>&1
    python3 - "$work/$tag.json" "$work/$tag.eval" "$(basename "$model")" "$fmt" "$group" "$method" "$t0" "$t1" <<'PY'
import json, re, sys
j, ev, m, f, g, meth, t0, t1 = sys.argv[1:]
p = json.load(open(j))["perplexity"]
bpw = re.search(r"([0-9.]+) bits per weight", open(ev).read())
q, o = p["quantized"]["perplexity"], p["original"]["perplexity"]
print(f"{m}\t{f}\t{g}\t{meth}\t{bpw.group(1) if bpw else '?'}\t{q:.6f}\t{100 * (q / o - 1):+.4f}\t{float(t1) - float(t0):.1f}",
      flush=True)
PY
    rm -f "$work/$tag.h5"
done
