#!/usr/bin/env bash
# The speed cost of the numerics pin (docs/NUMERICS.md): the same `moeq quantize` run with
# OpenBLAS's Haswell kernel (moeq's default on x86-64: the same bytes on every AVX2 CPU) and with OpenBLAS's own
# choice for this CPU (MOEQ_NUMERICS=native: e.g. SkylakeX/Cooperlake on AVX-512 CPUs), alternated REPS times,
# one rank, on a synthesized checkpoint of real expert shapes (DeepSeek-V3's 2048 x 7168 experts, Mixtral layout) or
# --model DIR. Prints JSON: the machine, the inputs, per variant the kernel, the compute seconds of every rep
# (--stats) and the artifact checksum, and the ratio pinned / native of the medians.
#   bench/numerics_pin.sh [--moeq build/moeq] [--model DIR] [--recipe FILE (default: MiLo 3-bit g64 rank 32,
#                         3 rounds)] [--reps N] [--hidden H]
#                         [--intermediate I] [--experts E]
set -euo pipefail
cd "$(dirname "$0")/.."
MOEQ=build/moeq MODEL= RECIPE= REPS=3 H=2048 I=7168 E=2
while [ $# -gt 0 ]; do
    case $1 in
    --moeq) MOEQ=$2 ;;
    --model) MODEL=$2 ;;
    --recipe) RECIPE=$2 ;;
    --reps) REPS=$2 ;;
    --hidden) H=$2 ;;
    --intermediate) I=$2 ;;
    --experts) E=$2 ;;
    *) echo "usage: see the header of $0" >&2 && exit 2 ;;
    esac
    shift 2
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_CORETYPE MOEQ_NUMERICS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$RECIPE" ]; then # MiLo 3-bit g64, rank 32, 3 rounds: the rSVD's sgemm/QR/SVD are what the pin touches
    RECIPE=$work/milo3-r32.yaml
    printf 'version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 32, rounds: 3}\n' >"$RECIPE"
fi
if [ -z "$MODEL" ]; then
    MODEL=$work/model synthesized=1
    "$MOEQ" synth --arch mixtral --layers 1 --hidden "$H" --intermediate "$I" --experts "$E" --top-k 1 \
        --heads 16 --kv-heads 4 --vocab 512 "$MODEL" >/dev/null
fi
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
run() { # run VARIANT REP: compute seconds (sum over ranks) and checksum
    local v=$1 k=$2 env=()
    [ "$v" = native ] && env=(MOEQ_NUMERICS=native)
    env "${env[@]}" mpirun -n 1 "$MOEQ" quantize -q --progress 0 --model "$MODEL" --recipe "$RECIPE" \
        --out "$work/$v-$k.h5" --stats "$work/$v-$k.json" >/dev/null
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(r["compute_s"] for r in d["ranks_detail"]))' \
        "$work/$v-$k.json"
}
declare -A secs
for k in $(seq 1 "$REPS"); do
    for v in pinned native; do secs[$v]+="$(run $v "$k") "; done
done
csum() { printf '%016x' "$(h5dump -a artifact_checksum "$1" | sed -n 's/^ *(0): \([0-9]*\)$/\1/p')"; }
kernel() { h5dump -a numerics "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }
mp=$(printf '%s\n' ${secs[pinned]} | median) mn=$(printf '%s\n' ${secs[native]} | median)
cat <<EOF
{
 "bench": "numerics_pin",
 "machine": {"cpu": "$(lscpu | sed -n 's/^Model name: *//p' | head -1)", "cores": $(nproc),
             "flags_avx512f": $(grep -qw avx512f /proc/cpuinfo && echo true || echo false)},
 "inputs": {"model": "${synthesized:+(synthesized) }$MODEL", "recipe": "$RECIPE", "ranks": 1, "reps": $REPS,
            "synthesized": "mixtral, 1 layer of $E experts, hidden $H, expert FFN $I"},
 "pinned": {"numerics": "$(kernel "$work/pinned-1.h5")", "compute_s": [$(echo ${secs[pinned]} | tr ' ' ',')],
            "median_s": $mp, "checksum": "$(csum "$work/pinned-1.h5")"},
 "native": {"numerics": "$(kernel "$work/native-1.h5")", "compute_s": [$(echo ${secs[native]} | tr ' ' ',')],
            "median_s": $mn, "checksum": "$(csum "$work/native-1.h5")"},
 "pinned_over_native": $(python3 -c "print(round($mp / $mn, 4))")
}
EOF
