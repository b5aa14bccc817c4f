#!/usr/bin/env bash
# `target: gguf` through the CLI: the shipped servable recipes' plans (GGUF types per class and (layer, proj),
# fallbacks, size and bits per weight, text and --json), the budget recipe under mpirun choosing one type per
# stacked (layer, proj) in `moeq plan` and in a real `moeq quantize` of mixtral-mini, the row-fallback
# warning and --explain on mixtral-tiny, and the refusals' exit code 3 with the reason.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
mini="$MOEQ_SHARED_DIR/models/mixtral-mini"
cfg="$MOEQ_SOURCE_DIR/configs"
py=${MOEQ_PYTHON:-python3}

# every routed-expert stack (layer, proj) of a `moeq plan --json --tensors` has one setting; prints the types
one_type_per_stack() {
    "$py" - "$1" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
stacks = {}
for t in d["tensors"]:
    m = re.match(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.\d+\.(w\d)\.weight", t["name"])
    if m:
        stacks.setdefault(m.groups(), set()).add(t["setting"])
bad = {k: v for k, v in stacks.items() if len(v) != 1}
assert len(stacks) == 12 and not bad, bad
print(sorted({next(iter(v)).split()[-1] for v in stacks.values()}))
PY
}

# 1. the q3_K mix on mixtral-mini: every row a multiple of 256, no fallback
"$MOEQ" plan --model "$mini" --recipe "$cfg/mixtral-mini-gguf-q3k.yaml" >"$tmp/q3k.txt"
for want in "gguf fallbacks  0 tensors" "routed_expert down: q3_K (layers 0-3)" "attention q: q4_K (layers 0-3)" \
    "embedding: q6_K" "lm_head: q6_K" "router: f32 (layers 0-3)" "12 stacks of routed experts"; do
    grep -qF "$want" "$tmp/q3k.txt" || { cat "$tmp/q3k.txt"; fail "q3k plan lacks '$want'"; }
done
"$MOEQ" plan --model "$mini" --recipe "$cfg/mixtral-mini-gguf-q3k.yaml" --json >"$tmp/q3k.json"
"$py" - "$tmp/q3k.json" <<'PY' || fail "q3k plan json"
import json, sys
d = json.load(open(sys.argv[1]))
g = d["gguf"]
assert d["target"] == "gguf" and g["tensors"] == 43 and g["stacks"] == 12 and g["fallbacks"] == [], g
assert g["file_bytes"] == g["tensor_bytes"] + g["header_bytes_est"] and 0 < g["header_bytes_est"] < 65536, g
assert 3.5 < g["bits_per_weight"] < 3.6 and g["params"] == d["params_total"], g
assert {t["type"] for t in g["types"] if t["class"] == "routed_expert"} == {"q3_K"}, g["types"]
# the data: q3_K is 110 bytes per 256 weights; the file holds at least that much for the experts
experts = 4 * 8 * 3 * 256 * 512
assert g["tensor_bytes"] > experts // 256 * 110, g
PY

# 2. the same recipe on mixtral-tiny (rows of 128 and 384): llama-quantize's fallbacks, said so
"$MOEQ" plan --model "$tiny" --recipe "$cfg/mixtral-mini-gguf-q3k.yaml" >"$tmp/tq.txt"
for want in "gguf fallbacks  114 tensors" \
    "routed_expert: 32 tensors [*, 384] (e.g. model.layers.0.block_sparse_moe.experts.0.w2.weight): q3_K needs rows of a multiple of 256, q4_0 used (llama-quantize's fallback)" \
    "attention: 16 tensors [*, 128]" "routed_expert down: q4_0 (layers 0-3)" "lm_head: q8_0"; do
    grep -qF "$want" "$tmp/tq.txt" || { cat "$tmp/tq.txt"; fail "tiny q3k plan lacks '$want'"; }
done
"$MOEQ" plan --model "$tiny" --recipe "$cfg/mixtral-mini-gguf-q3k.yaml" \
    --explain model.layers.1.block_sparse_moe.experts.3.w2.weight >"$tmp/ex.txt"
grep -qF "format: q3_K asked, whose blocks of 256 do not divide the input dimension 384: q4_0 used" "$tmp/ex.txt" \
    || { cat "$tmp/ex.txt"; fail "--explain of a fallback"; }
grep -qF "rtn b4 g64 q4_0" "$tmp/ex.txt" || { cat "$tmp/ex.txt"; fail "the fallback's method is rtn"; }

# 3. the budget recipes need the weights: under mpirun, one type per stacked (layer, proj), at the budget
$MPIEXEC -n 2 "$MOEQ" plan --model "$mini" --recipe "$cfg/mixtral-mini-gguf-mixed3.yaml" --json --tensors \
    2>"$tmp/m3.err" | "$py" -c "import sys; t = sys.stdin.read(); print(t[:t.index('\n}\n') + 3])" >"$tmp/m3.json" \
    || { cat "$tmp/m3.err"; fail "mixed3 plan"; }
types=$(one_type_per_stack "$tmp/m3.json") || fail "mixed3: a stack with two types"
case "$types" in *q2_K*q3_K* | *q3_K*q4_K*) ;; *) fail "mixed3: the solver did not mix types ($types)" ;; esac
"$py" -c "import json,sys; b = json.load(open(sys.argv[1]))['bits_per_weight_quantized']; assert 2.9 <= b <= 3.0, b" \
    "$tmp/m3.json" || fail "mixed3 bits/weight"
$MPIEXEC -n 2 "$MOEQ" plan --model "$tiny" --recipe "$cfg/mixtral-tiny-gguf-mixed5.yaml" --json --tensors \
    2>"$tmp/m5.err" | "$py" -c "import sys; t = sys.stdin.read(); print(t[:t.index('\n}\n') + 3])" >"$tmp/m5.json" \
    || { cat "$tmp/m5.err"; fail "mixed5 plan"; }
one_type_per_stack "$tmp/m5.json" >/dev/null || fail "mixed5: a stack with two types"
# ... mixtral-tiny cannot go below 4.5 bits per weight in llama.cpp's types: 3.0 is refused with the reason
sed 's/bits: 5.0/bits: 3.0/' "$cfg/mixtral-tiny-gguf-mixed5.yaml" >"$tmp/low.yaml"
set +e
$MPIEXEC -n 2 "$MOEQ" plan --model "$tiny" --recipe "$tmp/low.yaml" >/dev/null 2>"$tmp/low.err"
rc=$?
set -e
[ "$rc" = 3 ] && grep -q "below what the candidates allow" "$tmp/low.err" || { cat "$tmp/low.err"; fail "low budget rc $rc"; }

# 4. a real run: quantize mixtral-mini with the budget recipe (analyze phase included), same digest as the plan
$MPIEXEC -n 2 "$MOEQ" quantize --model "$mini" --recipe "$cfg/mixtral-mini-gguf-mixed3.yaml" --out "$tmp/m3.h5" \
    --progress 0 >"$tmp/q.log" 2>&1 || { cat "$tmp/q.log"; fail "quantize mixed3"; }
dg=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['digest'])" "$tmp/m3.json")
grep -q "digest $dg" "$tmp/q.log" || { cat "$tmp/q.log"; fail "quantize's plan digest is not the plan's $dg"; }
if "$py" -c "import h5py" 2>/dev/null; then # the artifact's own table: one format per stack
    "$py" - "$tmp/m3.h5" <<'PY' || fail "artifact formats per stack"
import re, sys
import h5py
f = h5py.File(sys.argv[1], "r")
stacks = {}
for t in f["tables"].values():
    for r in t.fields(["name", "format"])[()]:
        m = re.match(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.\d+\.(w\d)\.weight", r["name"].decode())
        if m:
            stacks.setdefault(m.groups(), set()).add(r["format"].decode())
assert len(stacks) == 12 and all(len(v) == 1 for v in stacks.values()), stacks
PY
fi

# 5. refusals: exit 3 with the reason and a hint
refused() { # refused NAME YAML NEEDLE
    printf '%s' "$2" >"$tmp/$1.yaml"
    set +e
    "$MOEQ" plan --model "$mini" --recipe "$tmp/$1.yaml" >/dev/null 2>"$tmp/$1.err"
    local rc=$?
    set -e
    [ "$rc" = 3 ] || { cat "$tmp/$1.err"; fail "$1: exit $rc, not 3"; }
    grep -qF "$3" "$tmp/$1.err" && grep -q -- "---> HINT" "$tmp/$1.err" || { cat "$tmp/$1.err"; fail "$1: '$3'"; }
}
refused grouped $'version: 1\ntarget: gguf\n' "112 tensors would be stored in moeq's grouped format q4 (method hqq)"
refused target $'version: 1\ntarget: llama\n' 'unknown target "llama"'
refused milo $'version: 1\ntarget: gguf\ndefaults: {method: milo, rank: 8, format: q4_K}\n' \
    "96 routed expert tensors have a MiLo compensator"
refused stack $'version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n  - match: {name: "*.experts.0.w1.weight"}\n    set: {format: q6_K}\n' \
    "the routed experts of layer 0, projection gate are one stacked tensor in GGUF (blk.0.ffn_gate_exps)"
# without the target, the same stack rule plans (an artifact moeq serves, llama.cpp would not)
sed '/^target/d' "$tmp/stack.yaml" >"$tmp/nostack.yaml"
"$MOEQ" plan --model "$mini" --recipe "$tmp/nostack.yaml" >/dev/null || fail "the rule without the target"
"$MOEQ" plan --help-recipe >"$tmp/help.txt"
grep -q "target: gguf" "$tmp/help.txt" || fail "--help-recipe does not document target"
echo "gguf plan: ok"
