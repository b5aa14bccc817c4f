#!/usr/bin/env bash
# Byte-identity of two moeq builds: runs the same jobs with both binaries and compares what they write
# (HDF5 artifacts with cmp, plans as text and JSON, exports file by file). For refactorings that must not
# change a single output byte (the registries issue): run it against a build of the base commit.
#   scripts/artifact-identity.sh OLD_MOEQ NEW_MOEQ [WORKDIR]
#   e.g.  git worktree add ../base BASE && BUILD_DIR=../build-base ../base/scripts/build.sh
#         BUILD_DIR=build-ident scripts/build.sh -DMOEQ_VERSION_STAMP=$(../build-base/moeq --version | sed 's/.*(\(.*\))/\1/')
#         scripts/artifact-identity.sh ../build-base/moeq build-ident/moeq
# (artifacts record the version stamp: the new build must carry the old one's to compare bytes).
# OPENBLAS_CORETYPE is pinned (Haswell unless set): MiLo's randomized SVD goes through OpenBLAS sgemm, whose
# kernel choice changes its bits, and both binaries must see the same one. Exit 0 when every output is
# identical; each difference is named.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
old=$(readlink -f "$1") new=$(readlink -f "$2")
src=$(cd "$(dirname "$0")/.." && pwd)
shared=${MOEQ_SHARED_DIR:-$src/../shared}
work=${3:-$(mktemp -d)}
mkdir -p "$work"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tiny=$shared/models/mixtral-tiny mini=$shared/models/mixtral-mini meta=$shared/fixtures/real-metadata
# Artifacts record the producing version ("0.1.0 (git hash)"): two stamps make every artifact differ.
v_old=$("$old" --version) v_new=$("$new" --version)
if [ "$v_old" != "$v_new" ]; then
    echo "artifact-identity: the builds are stamped differently ($v_old / $v_new): every artifact would differ" >&2
    echo "---> HINT: build the new code stamped as the old one: cmake -DMOEQ_VERSION_STAMP=${v_old##*(} ..." | sed 's/)\( \.\.\.\)$/\1/' >&2
    exit 2
fi
n_same=0 n_diff=0
same() { n_same=$((n_same + 1)); }
differ() { n_diff=$((n_diff + 1)); echo "DIFFERS: $*"; }
# job NAME ARGS...: runs `moeq ARGS` with both binaries into $work/{old,new}/NAME (stdout kept, stderr logged);
# "@OUT@" in ARGS is the per-binary output path.
job() {
    local name=$1; shift
    for side in old new; do
        local bin=${!side} dir=$work/$side
        mkdir -p "$dir"
        local args=("${@//@OUT@/$dir/$name}")
        if [ "${args[0]}" = mpi ]; then
            args=("${args[@]:2}") np=$2
            mpirun --oversubscribe -n "$np" "$bin" "${args[@]}" >"$dir/$name.out" 2>"$dir/$name.err" ||
                differ "$name failed with the $side binary (exit $?; $dir/$name.err)"
        else
            "$bin" "${args[@]}" >"$dir/$name.out" 2>"$dir/$name.err" ||
                differ "$name failed with the $side binary (exit $?; $dir/$name.err)"
        fi
    done
}
compare_file() { # compare_file NAME SUFFIX: $work/old/NAME$SUFFIX vs new
    if cmp -s "$work/old/$1$2" "$work/new/$1$2"; then same; else differ "$1$2"; fi
}
compare_dir() {
    if diff -rq "$work/old/$1" "$work/new/$1" >/dev/null; then same; else differ "$1/ (export)"; fi
}
stdout_without_timings() { # the summary text minus lines that carry wall-clock or memory figures, paths made alike
    grep -v -E 'seconds|elapsed|phase|open\+plan|prepare  |quantize  |seal  |peak RSS|MiB/s' "$1" | sed "s#$2#OUT#g" || true
}
compare_text() {
    if diff -q <(stdout_without_timings "$work/old/$1.out" "$work/old") \
        <(stdout_without_timings "$work/new/$1.out" "$work/new") >/dev/null; then
        same
    else differ "$1 (stdout)"; fi
}

echo "== inputs: synthesized checkpoints of every family (made once, by the old binary)"
mkdir -p "$work/in"
for a in mixtral qwen2_moe qwen3_moe deepseek_v3 olmoe; do
    [ -d "$work/in/$a" ] || "$old" synth --arch "$a" --layers 3 -q "$work/in/$a" >/dev/null
done
[ -d "$work/in/ds-fp8" ] || "$old" synth --arch deepseek_v3 --layers 3 --dense-layers 1 --experts 6 --top-k 2 \
    --hidden 256 --intermediate 128 --dtype fp8 --shard-size 300000 -q "$work/in/ds-fp8" >/dev/null
# mixed-A.yaml: a recipe per family that uses every class the family has (a rule matching nothing is an error)
for a in mixtral qwen2_moe qwen3_moe deepseek_v3 olmoe ds-fp8; do
    {
        echo 'version: 1'
        echo 'defaults: {method: milo, bits: 3, group: 32, rank: 4, rounds: 2}'
        echo 'rules:'
        echo '  - match: {class: attention}'
        echo '    set: {method: hqq, bits: 4, group: 32}'
        echo '  - match: {class: routed_expert, proj: down}'
        echo '    set: {bits: 2, compensator: int3, rank: 8}'
        case $a in qwen2_moe | deepseek_v3 | ds-fp8)
            echo '  - match: {class: shared_expert}'
            echo '    set: {bits: 4, rank: 8}' ;;
        esac
        case $a in deepseek_v3 | ds-fp8)
            echo '  - match: {class: dense_mlp}'
            echo '    set: {method: rtn, bits: 8}' ;;
        esac
    } >"$work/in/mixed-$a.yaml"
done
# Qwen3-30B-A3B geometry as metadata only (as tests/pipeline/test_policy_e2e.sh makes it)
if [ ! -d "$work/in/q3-30b" ]; then
    "$old" synth --arch qwen3_moe --layers 2 --hidden 128 --intermediate 64 --experts 4 --top-k 2 --heads 2 \
        --kv-heads 1 --head-dim 64 --vocab 128 -q "$work/in/q3s" >/dev/null
    mkdir -p "$work/in/q3-30b"
    jq '.num_hidden_layers=48 | .hidden_size=2048 | .moe_intermediate_size=768 | .num_experts=128
        | .num_experts_per_tok=8 | .num_attention_heads=32 | .num_key_value_heads=4 | .head_dim=128
        | .vocab_size=151936 | .intermediate_size=6144' "$work/in/q3s/config.json" >"$work/in/q3-30b/config.json"
fi
cat >"$work/in/int3.yaml" <<'YAML'
version: 1
defaults: {method: milo, bits: 2, group: 32, rank: 16, rounds: 3, compensator: int3}
rules:
  - match: {class: attention}
    set: {method: rtn, bits: 8, group: 128}
  - match: {class: router}
    set: {method: hqq, bits: 8, group: 32}
YAML

echo "== quantize (2 ranks) and compare the artifacts byte for byte"
for r in builtin "$src"/configs/mixtral-tiny-*.yaml "$src"/configs/experiments/mixtral-tiny-{attn,block,budget,first,last,milo-kurtosis,outlier}.yaml \
    "$work/in/int3.yaml"; do
    name=tiny-$(basename "$r" .yaml)
    rec=(); [ "$r" = builtin ] || rec=(--recipe "$r")
    job "$name" mpi 2 quantize --model "$tiny" "${rec[@]}" --out @OUT@.h5 --progress 0 --force
    compare_file "$name" .h5
    compare_text "$name"
done
job mini-hqq3 mpi 2 quantize --model "$mini" --recipe "$src/configs/mixtral-tiny-hqq3.yaml" --out @OUT@.h5 --progress 0 --force
compare_file mini-hqq3 .h5
for a in mixtral qwen2_moe qwen3_moe deepseek_v3 olmoe ds-fp8; do
    job "synth-$a" mpi 2 quantize --model "$work/in/$a" --recipe "$work/in/mixed-$a.yaml" --out @OUT@.h5 --progress 0 --force
    compare_file "synth-$a" .h5
done

echo "== plans (every tensor's settings) and the JSON summary, real metadata at scale included"
for spec in "tiny:$tiny:mixtral-tiny-milo3" "mini:$mini:mixtral-tiny-hqq3" "m8x7b:$meta/mixtral-8x7b:mixtral-8x7b-milo3" \
    "m8x7b-mixed:$meta/mixtral-8x7b:mixtral-8x7b-mixed2.5" "ds-r1:$meta/deepseek-r1:deepseek-v3-milo3" \
    "ds-r1-hqq4:$meta/deepseek-r1:deepseek-v3-hqq4" "ds-r1-mixed:$meta/deepseek-r1:deepseek-v3-mixed2.5" \
    "kimi:$src/tests/fixtures/kimi-k2:deepseek-v3-milo3" "q3:$work/in/q3-30b:qwen3-moe-milo3" \
    "q3-mixed:$work/in/q3-30b:qwen3-moe-mixed2.5"; do
    IFS=: read -r name model rec <<<"$spec"
    job "plan-$name" plan --model "$model" --recipe "$src/configs/$rec.yaml" --ranks 64 --json
    compare_file "plan-$name" .out
    job "plan-$name-tensors" plan --model "$model" --recipe "$src/configs/$rec.yaml" --tensors
    compare_file "plan-$name-tensors" .out
done
for a in mixtral qwen2_moe qwen3_moe deepseek_v3 olmoe ds-fp8; do
    job "plan-synth-$a" plan --model "$work/in/$a" --recipe "$work/in/mixed-$a.yaml" --tensors
    compare_file "plan-synth-$a" .out
done

echo "== export of two artifacts"
for name in tiny-mixtral-tiny-milo3 synth-ds-fp8; do
    for side in old new; do
        bin=${!side}
        rm -rf "$work/$side/export-$name"
        "$bin" export "$work/$side/$name.h5" "$work/$side/export-$name" >/dev/null 2>&1 ||
            differ "export of $name failed with the $side binary"
    done
    compare_dir "export-$name"
done

echo "== $n_same identical, $n_diff different (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE; outputs in $work)"
[ "$n_diff" -eq 0 ]
