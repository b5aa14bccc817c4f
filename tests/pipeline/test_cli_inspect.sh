#!/usr/bin/env bash
# End-to-end: `moeq inspect` on the real tiny model and the real metadata fixtures; --help and exit codes.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"

tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
out=$("$MOEQ" inspect "$tiny")
echo "$out"
grep -q "^layers          4 (4 MoE, 0 dense)" <<<"$out" || fail "tiny: 4 layers"
grep -q "8 routed + 0 shared per MoE layer, top-2" <<<"$out" || fail "tiny: 8 experts top-2"
grep -q "^parameters      4937088 " <<<"$out" || fail "tiny: parameter count"
grep -qE "^routed_expert +96 " <<<"$out" || fail "tiny: 96 routed-expert tensors"

json=$("$MOEQ" inspect --json "$tiny")
python3 - "$json" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
assert j["geometry"]["layers"] == 4 and j["geometry"]["routed_experts"] == 8 and j["geometry"]["top_k"] == 2, j
assert j["total"]["parameters"] == 4937088, j["total"]
assert j["classes"]["routed_expert"]["parameters"] == 4718592
assert j["has_data"] is True
PY

tensors=$("$MOEQ" inspect --tensors "$tiny")
grep -q "model.layers.3.block_sparse_moe.experts.7.w2.weight  *routed_expert *3 *7 down" <<<"$tensors" \
    || fail "--tensors lists layer/expert/proj"

m8=$("$MOEQ" inspect "$MOEQ_SHARED_DIR/fixtures/real-metadata/mixtral-8x7b")
grep -q "metadata only" <<<"$m8" || fail "8x7b: metadata-only note"
grep -q "^parameters      46702792704 " <<<"$m8" || fail "8x7b: 46.7B parameters"
ds=$("$MOEQ" inspect "$MOEQ_SHARED_DIR/fixtures/real-metadata/deepseek-r1")
echo "$ds"
grep -q "256 routed + 1 shared per MoE layer, top-8" <<<"$ds" || fail "r1: experts"
grep -q "F8_E4M3 with 128x128 float32 block scales" <<<"$ds" || fail "r1: fp8"
grep -q "^shards          163 " <<<"$ds" || fail "r1: 163 shards"

# --help on every command, exit codes
grep -q "Exit codes" <<<"$("$MOEQ" --help)" || fail "moeq --help"
grep -q "usage: moeq inspect" <<<"$("$MOEQ" inspect --help)" || fail "inspect --help"
set +e
"$MOEQ" inspect >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing operand must exit 2"
"$MOEQ" inspect --bogus "$tiny" >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option must exit 2"
"$MOEQ" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command must exit 2"
"$MOEQ" inspect "$tmp/none" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || fail "missing checkpoint must exit 3 (got $rc)"
grep -q "none: no such directory" "$tmp/err" || fail "missing checkpoint message"
cp "$tiny"/config.json "$tiny"/*.index.json "$tmp/"
head -c 5000 "$tiny/model-00001-of-00002.safetensors" >"$tmp/model-00001-of-00002.safetensors"
cp "$tiny/model-00002-of-00002.safetensors" "$tmp/"
"$MOEQ" inspect "$tmp" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] || fail "truncated shard must exit 3 (got $rc)"
grep -q "model-00001-of-00002.safetensors" "$tmp/err" || fail "truncated shard named"
cat "$tmp/err"
echo "PASS"
