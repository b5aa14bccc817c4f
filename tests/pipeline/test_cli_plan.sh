#!/usr/bin/env bash
# moeq plan from metadata alone (real Mixtral-8x7B index, real DeepSeek-R1 config + shard sizes, the
# Kimi-K2 geometry in tests/fixtures) and from the tiny real model: counts by hand, JSON validity,
# --explain, a bad recipe key.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
meta="$MOEQ_SHARED_DIR/fixtures/real-metadata"
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])" "$1" "$2"; }

# Mixtral-8x7B: 32 layers x 8 experts = 256 expert units + 32 x 4 attention linears (a unit each) + 33 "other"
# (per layer: norms and router; one more for embeddings, final norm and lm_head)
"$MOEQ" plan --model "$meta/mixtral-8x7b" --ranks 8 --json >"$tmp/mx.json"
[ "$(json_get "$tmp/mx.json" units)" = 417 ] || fail "mixtral-8x7b units $(json_get "$tmp/mx.json" units)"
[ "$(json_get "$tmp/mx.json" has_data)" = False ] || fail "mixtral-8x7b must be metadata only"
# 4-bit g64 default: 4 + 32/64 = 4.5 bits per weight exactly
[ "$(json_get "$tmp/mx.json" bits_per_weight_quantized)" = 4.5 ] || fail "mixtral bpw"

# DeepSeek-R1 (61 layers, first 3 dense, 256 experts, + 1 MTP layer with its own experts): 59 x 256 = 15104
"$MOEQ" plan --model "$meta/deepseek-r1" --ranks 64 -c h100 >"$tmp/ds.txt"
grep -q "15104 expert" "$tmp/ds.txt" || { cat "$tmp/ds.txt"; fail "deepseek-r1 expert units"; }

# Kimi-K2 (61 layers, first dense, 384 experts): 60 x 384 = 23040 expert units, about 1.04 T parameters
"$MOEQ" plan --model "$MOEQ_SOURCE_DIR/tests/fixtures/kimi-k2" --ranks 128 -c h100 --json >"$tmp/k2.json"
python3 - "$tmp/k2.json" <<'PY' || fail "kimi-k2 plan"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["units_by_kind"]["expert"] == 60 * 384, d["units_by_kind"]
assert 1.0e12 < d["params_total"] < 1.1e12, d["params_total"]
assert d["peak_mem_per_rank_bytes"] < 4 << 30, d["peak_mem_per_rank_bytes"]
assert 0 < d["est_makespan_s"] < d["cost_total_s"]
PY

# the tiny real model, with a recipe, and --explain naming the deciding rule
"$MOEQ" plan --model "$MOEQ_SHARED_DIR/models/mixtral-tiny" --recipe "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml" \
    --explain model.layers.1.self_attn.q_proj.weight >"$tmp/ex.txt"
grep -q "milo b3 g64 r64" "$tmp/ex.txt" && grep -q "decided by: rule 1 at .*mixtral-tiny-milo3.yaml:6" "$tmp/ex.txt" || { cat "$tmp/ex.txt"; fail "explain"; }

# a recipe with an unknown key: exit 3, file:line named
printf 'version: 1\ndefaults: {method: hqq, bitz: 3}\n' >"$tmp/bad.yaml"
set +e
"$MOEQ" plan --model "$meta/mixtral-8x7b" --recipe "$tmp/bad.yaml" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] && grep -q 'bad.yaml:2' "$tmp/err" && grep -q 'bitz' "$tmp/err" || { cat "$tmp/err"; fail "bad recipe key (rc $rc)"; }
# the recipe reference comes from the registries, and configs/README.md shows exactly that
"$MOEQ" plan --help-recipe=markdown >"$tmp/reg.md" || fail "--help-recipe=markdown"
sed -n '/^<!-- registries: /,/^<!-- \/registries -->/p' "$MOEQ_SOURCE_DIR/configs/README.md" | sed '1d;$d' >"$tmp/readme.md"
diff -u "$tmp/readme.md" "$tmp/reg.md" ||
    fail "configs/README.md's registry tables differ from moeq plan --help-recipe=markdown (paste its output)"
grep -q '| `format` |' "$tmp/reg.md" && grep -q '| `milo` |' "$tmp/reg.md" && grep -q '| `q3` | 3 |' "$tmp/reg.md" ||
    fail "registry tables incomplete"
"$MOEQ" quantize --help-recipe >"$tmp/hr.txt" && grep -q "hqq.early_stop" "$tmp/hr.txt" || fail "quantize --help-recipe"
set +e
"$MOEQ" plan --help-recipe=html >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || fail "--help-recipe=html must be a usage error (rc $rc)"

echo PASS
