#!/usr/bin/env bash
# Memory against model size, from one command: scripts/scale-memory.sh [WORKDIR]   (default /tmp/moeq-scale)
# Kimi-K2 geometry (hidden 7168, expert FFN 2048, block FP8, MLA 64 heads, vocab 163840) written sparse
# (`moeq synth --sparse`: real headers, data as file holes) with 8, 64 and 384 routed experts at 61
# layers, and 4, 16 and 61 layers at 384 experts. For each: `moeq quantize --simulate --sim-ranks 64`
# (h100 cost model, configs/deepseek-v3-milo3.yaml) reports the resident set after open + plan (what
# every rank holds: catalog and plan) and the process peak (rank 0: that, plus the artifact skeleton,
# the journal and the coordinator); `moeq plan --json` gives the per-rank working set of the largest
# unit (buffers of one unit, independent of the expert count). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/moeq-scale}
MOEQ=${MOEQ:-build/moeq}
RECIPE=${RECIPE:-configs/deepseek-v3-milo3.yaml}
[ -x "$MOEQ" ] || scripts/build.sh >/dev/null
mkdir -p "$work"
geo=(--arch deepseek_v3 --dense-layers 1 --hidden 7168 --intermediate 2048 --dense-intermediate 18432 --top-k 8
    --heads 64 --head-dim 128 --vocab 163840 --dtype fp8 --sparse)
printf '| routed experts | layers | tensors | units | checkpoint (apparent) | RSS after plan, every rank | '
printf 'peak RSS, rank 0 | skeleton s | seal s | largest unit working set |\n|---|---|---|---|---|---|---|---|---|---|\n'
for spec in "8 61" "64 61" "384 61" "384 4" "384 16"; do
    set -- $spec
    e=$1 l=$2 d="$work/kimi-e$1-l$2"
    [ -e "$d/config.json" ] || "$MOEQ" synth -q "${geo[@]}" --experts "$e" --layers "$l" --force "$d" >/dev/null
    rm -f "$work/mem.h5" "$work/mem.h5.partial" "$work/mem.h5.journal"
    /usr/bin/time -f "%M" -o "$work/mem.rss" "$MOEQ" quantize -q --simulate --sim-ranks 64 --cost-model h100 \
        --model "$d" --recipe "$RECIPE" --out "$work/mem.h5" --stats "$work/mem.json"
    "$MOEQ" plan --model "$d" --recipe "$RECIPE" --ranks 64 -c h100 --json >"$work/mem-plan.json"
    python3 - "$work/mem.json" "$work/mem-plan.json" "$work/mem.rss" "$d" "$e" "$l" <<'PY'
import json, os, sys
s, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
peak = int(open(sys.argv[3]).read().split()[-1]) * 1024
d = sys.argv[4]
app = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
mib = 1 << 20
print(f"| {sys.argv[5]} | {sys.argv[6]} | {s['tensors']} | {s['units']} | {app / 1e12:.3f} TB | "
      f"{s['rss_after_plan_bytes'] / mib:.0f} MiB | {peak / mib:.0f} MiB | {s['skeleton_s']:.2f} | {s['seal_s']:.2f} | "
      f"{p['peak_mem_per_rank_bytes'] / mib:.0f} MiB |")
PY
done
rm -f "$work/mem.h5" "$work/mem.h5.partial" "$work/mem.h5.journal" "$work/mem.json" "$work/mem-plan.json" "$work/mem.rss"
