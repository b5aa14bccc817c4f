#!/usr/bin/env bash
# `moeq synth --sparse --preset` through the CLI and the commands that run at scale on its output: the full
# Kimi-K2 and DeepSeek-R1 checkpoints as file holes (< 64 MiB of disk each), then `moeq inspect` and
# `moeq plan --dry-run` on them; the dry run's shard-size comparison; bad --preset uses exit 2 with a hint.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d' + sys.argv[2]))" "$1" "$2"; }

# usage errors: unknown preset, preset + geometry option
set +e
"$MOEQ" synth --preset foo "$tmp/x" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "deepseek-r1, kimi-k2" "$tmp/err" && grep -q "HINT" "$tmp/err" || { cat "$tmp/err"; fail "--preset foo (rc $rc)"; }
set +e
"$MOEQ" synth --sparse --preset kimi-k2 --experts 8 "$tmp/x" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--experts conflicts" "$tmp/err" && grep -q "HINT: drop --experts" "$tmp/err" \
    || { cat "$tmp/err"; fail "--preset with --experts (rc $rc)"; }
[ ! -e "$tmp/x" ] || fail "a usage error must not create OUT"

# DeepSeek-R1 dry run: the published shard names, and how close the shard sizes come
"$MOEQ" synth --dry-run --preset deepseek-r1 "$tmp/r1" >"$tmp/dry.txt"
grep -q "model-00001-of-000163.safetensors ... model-00163-of-000163.safetensors" "$tmp/dry.txt" \
    && grep -qE "16[0-3] of 163 shards within 64 KiB" "$tmp/dry.txt" || { cat "$tmp/dry.txt"; fail "r1 dry run"; }
[ ! -e "$tmp/r1" ] || fail "--dry-run wrote something"

check() { # DIR SHARDS FIRST_SHARD EXPERT_UNITS
    local dir=$1
    [ "$(ls "$dir" | grep -c '\.safetensors$')" -eq "$2" ] || fail "$dir: $2 shards expected"
    [ -f "$dir/$3" ] || fail "$dir: no $3"
    ! ls "$dir" | grep -q partial || fail "$dir: partial files left"
    local kib
    kib=$(du -sk "$dir" | cut -f1)
    [ "$kib" -lt 65536 ] || fail "$dir: $kib KiB on disk"
    "$MOEQ" inspect --json "$dir" >"$tmp/inspect.json"
    [ "$(json_get "$tmp/inspect.json" '["has_data"]')" = True ] || fail "$dir: inspect must read the shards"
    "$MOEQ" plan --dry-run --model "$dir" --ranks 128 -c h100 --json >"$tmp/plan.json"
    [ "$(json_get "$tmp/plan.json" '["units_by_kind"]["expert"]')" = "$4" ] || fail "$dir: plan expert units"
    [ "$(json_get "$tmp/plan.json" '["has_data"]')" = True ] || fail "$dir: plan must read the shards"
}

"$MOEQ" synth --sparse --preset kimi-k2 "$tmp/k2" >"$tmp/k2.txt"
cat "$tmp/k2.txt"
grep -q "preset kimi-k2, sparse): kimi_k2, 61 layers, 384 experts (top-8).*139583 tensors.*61 shards, 958.51 GiB apparent" \
    "$tmp/k2.txt" || fail "kimi-k2 summary"
check "$tmp/k2" 61 model-1-of-61.safetensors 23040 # 60 MoE layers x 384
grep -q '"model_type": "kimi_k2"' "$tmp/k2/config.json" || fail "kimi-k2 model_type"

"$MOEQ" synth --sparse --preset deepseek-r1 "$tmp/r1" >"$tmp/r1.txt"
cat "$tmp/r1.txt"
check "$tmp/r1" 163 model-00163-of-000163.safetensors 15104 # 59 MoE layers x 256 (incl. the MTP layer)
cmp "$tmp/r1/config.json" "$MOEQ_SHARED_DIR/fixtures/real-metadata/deepseek-r1/config.json" || fail "r1 config.json"
echo PASS
