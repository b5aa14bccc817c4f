#!/usr/bin/env bash
# Defaults that work on any model (issue 18): a model whose hidden size (96) and expert width (160) are not
# multiples of the recipe's group (64; 128 in the mixed recipes) is planned, quantized and evaluated with the
# built-in recipe and with shipped ones: the group falls back to the largest that divides the row (96 -> 48,
# 160 -> 40; with 128: 96, 80), a MiLo rank above min(rows, cols) is capped there (64 -> 48 on [48, 96]), and
# plan, --explain, --json and the quantize log say so. Only when no group
# from 8 up to the one asked divides a row is the recipe refused (exit 3, the tensor named).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SOURCE_DIR:?}"
m="$tmp/h96"
"$MOEQ" synth --layers 2 --hidden 96 --intermediate 160 --experts 4 --heads 4 --kv-heads 2 --vocab 65 "$m" >/dev/null

# plan: the warning names the classes, the shapes, an example tensor and the groups
"$MOEQ" plan --model "$m" >"$tmp/plan.txt" 2>&1 || { cat "$tmp/plan.txt"; fail "plan with the built-in recipe"; }
for needle in "warning         32 settings adapted to this model's shapes" \
    "attention: 8 tensors [*, 96] (e.g. model.layers.0.self_attn.k_proj.weight): group 64 does not divide 96, group 48 used" \
    "routed_expert: 16 tensors [*, 96]" \
    "routed_expert: 8 tensors [*, 160] (e.g. model.layers.0.block_sparse_moe.experts.0.w2.weight): group 64 does not divide 160, group 40 used"; do
    grep -qF -- "$needle" "$tmp/plan.txt" || { cat "$tmp/plan.txt"; fail "plan: no '$needle'"; }
done
"$MOEQ" plan --model "$m" --explain model.layers.1.block_sparse_moe.experts.3.w2.weight >"$tmp/ex.txt"
grep -q "setting: hqq b4 g40" "$tmp/ex.txt" && grep -q "group: 64 asked, which does not divide the input dimension 160: 40 used" "$tmp/ex.txt" ||
    { cat "$tmp/ex.txt"; fail "explain"; }
"$MOEQ" plan --model "$m" --json >"$tmp/plan.json"
python3 - "$tmp/plan.json" <<'PY' || fail "plan --json group_fallbacks"
import json, sys
d = json.load(open(sys.argv[1]))
fb = d["group_fallbacks"]
assert len(fb) == 32, len(fb)
assert {(f["cols"], f["group_asked"], f["group"]) for f in fb} == {(96, 64, 48), (160, 64, 40)}, fb
PY

# quantize (2 ranks) and eval, the built-in recipe and two shipped ones (group 64 and group 128)
for recipe in "" "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-hqq3.yaml" "$MOEQ_SOURCE_DIR/configs/qwen3-moe-mixed2.5.yaml" \
    "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"; do
    name=$(basename "${recipe:-builtin}" .yaml)
    "$MPIEXEC" -n 2 "$MOEQ" quantize --model "$m" ${recipe:+--recipe "$recipe"} --out "$tmp/$name.h5" >"$tmp/$name.q.log" 2>&1 ||
        { cat "$tmp/$name.q.log"; fail "quantize $name"; }
    grep -q "WARN: settings adapted to this model's shapes" "$tmp/$name.q.log" || { cat "$tmp/$name.q.log"; fail "quantize $name: no warning"; }
    "$MPIEXEC" -n 2 "$MOEQ" eval --model "$m" "$tmp/$name.h5" --json "$tmp/$name.json" >"$tmp/$name.e.log" 2>&1 ||
        { cat "$tmp/$name.e.log"; fail "eval $name"; }
done
grep -q "group 128 does not divide 160, group 80 used" "$tmp/qwen3-moe-mixed2.5.q.log" || fail "mixed2.5: group 128 -> 80"
# MiLo's rank 64 on attention: k_proj/v_proj are [48, 96] here: capped at 48 (configs/README.md), said so
grep -q "attention: 4 tensors \[48, 96\] (e.g. model.layers.0.self_attn.k_proj.weight): rank 64 exceeds min(48, 96), rank 48 used" \
    "$tmp/mixtral-tiny-milo3.q.log" || { cat "$tmp/mixtral-tiny-milo3.q.log"; fail "milo3: the rank cap"; }
"$MOEQ" plan --model "$m" --recipe "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml" \
    --explain model.layers.0.self_attn.v_proj.weight >"$tmp/ex2.txt"
grep -q "rank: 64 asked, which exceeds min(48, 96): 48 used" "$tmp/ex2.txt" || { cat "$tmp/ex2.txt"; fail "explain: rank cap"; }
# the stored groups are the fallbacks: 4 + 32/48 and 4 + 32/40 bits per weight, integrity verified, and the
# weight error of a real 4-bit quantization
python3 - "$tmp/builtin.json" <<'PY' || fail "eval report"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["integrity"]["ok"], d["integrity"]
bpw = {c["class"]: c["bits_per_weight"] for c in d["weights"]["by_class"]}
assert abs(bpw["attention"] - (4 + 32 / 48)) < 1e-9 and abs(bpw["routed_expert.down"] - (4 + 32 / 40)) < 1e-9, bpw
assert 0 < d["weights"]["overall"]["rel_fro_max"] < 0.2, d["weights"]["overall"]
PY

# nothing fits: group 8 asked on a row of 100 (no divisor from 8 to 8): exit 3, the tensor named
"$MOEQ" synth --layers 1 --hidden 100 --intermediate 160 --experts 2 --heads 2 --kv-heads 1 --vocab 65 "$tmp/h100" >/dev/null
printf 'version: 1\ndefaults: {group: 8}\n' >"$tmp/g8.yaml"
rc=0
"$MOEQ" plan --model "$tmp/h100" --recipe "$tmp/g8.yaml" >"$tmp/g8.txt" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$tmp/g8.txt"; fail "group 8 on 100 columns: exit $rc, want 3"; }
grep -q "tensor 'model.layers.0.* \[[0-9]*, 100\]: group 8 does not divide the input dimension 100, nor does any group from 8 to 8" "$tmp/g8.txt" ||
    { cat "$tmp/g8.txt"; fail "nothing fits: message"; }
# ... while the default group 64 on the same model takes 50
"$MOEQ" plan --model "$tmp/h100" >"$tmp/h100.txt" 2>&1 && grep -q "group 64 does not divide 100, group 50 used" "$tmp/h100.txt" ||
    { cat "$tmp/h100.txt"; fail "h100 default"; }
echo "test_any_hidden: ok"
