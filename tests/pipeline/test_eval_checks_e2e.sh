#!/usr/bin/env bash
# End-to-end: `moeq eval`'s thresholds and reference check cannot be passed by numbers that are not numbers
# or that drifted: a NaN perplexity (a huge final-norm weight overflows the forward pass of both models)
# fails --max-ppl-increase however generous (exit 6, the reason said), and a reference.json perplexity
# moved by 1e-4 relative is reported as a mismatch (JSON ok false, table, warning) while the shipped one
# matches (the tolerance is 1e-6: docs/EVAL.md). --act-quant ggml refuses an artifact in moeq's grouped
# formats, which no GGUF holds (exit 3, the tensor named), and any other value than ggml/none (exit 2).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
ev() { "$MOEQ" eval --progress 0 "$@"; }
# a copy of the tiny model: symbolic links but for the files named (copied, writable)
model_copy() { # model_copy DIR FILE...
    local d=$1 f; shift
    mkdir "$d"
    for f in "$tiny"/*; do ln -s "$f" "$d/"; done
    for f in "$@"; do rm "$d/$f" && cp "$tiny/$f" "$d/$f" && chmod u+w "$d/$f"; done
}
printf 'version: 1\ndefaults: {method: rtn, bits: 4, group: 64}\n' >"$tmp/rtn.yaml"
head -c 3000 "$tiny/val.txt" >"$tmp/small.txt"

# ---- a NaN perplexity fails --max-ppl-increase (exit 6) ----
model_copy "$tmp/nan" model-00002-of-00002.safetensors
f="$tmp/nan/model-00002-of-00002.safetensors"
n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
begin=$(head -c $((8 + n)) "$f" | tail -c "$n" | jq -r '.["model.norm.weight"].data_offsets[0]')
for el in 0 1 2 3; do # bf16 0x7f7f = 3.39e38, the largest finite value: finite weights, overflowing logits
    printf '\x7f\x7f' | dd of="$f" bs=1 seek=$((8 + n + begin + 2 * el)) conv=notrunc status=none
done
"$MOEQ" quantize -q --model "$tmp/nan" --recipe "$tmp/rtn.yaml" --out "$tmp/nan.h5" || fail "quantize (finite weights)"
for x in 0.01 1e300; do
    set +e
    ev --model "$tmp/nan" "$tmp/nan.h5" --text "$tmp/small.txt" --json "$tmp/nan.json" --max-ppl-increase $x \
        >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    jq -e '.perplexity.original.perplexity == null and .perplexity.quantized.perplexity == null' "$tmp/nan.json" \
        >/dev/null || fail "fixture: the perplexity is not NaN"
    [ $rc -eq 6 ] || { cat "$tmp/err"; fail "NaN perplexity with --max-ppl-increase $x: exit 6 expected (got $rc)"; }
    grep -q "threshold exceeded: max_ppl_increase: .* is not finite" "$tmp/err" || { cat "$tmp/err"; fail "the reason"; }
    jq -e '.thresholds.exceeded | length == 1' "$tmp/nan.json" >/dev/null || fail "JSON thresholds.exceeded"
done

# ---- --act-quant: llama.cpp's activation rounding needs the GGUF type of every weight ----
set +e
ev --model "$tmp/nan" "$tmp/nan.h5" --text "$tmp/small.txt" --act-quant ggml >/dev/null 2>"$tmp/err"
rc=$?
ev --model "$tmp/nan" "$tmp/nan.h5" --act-quant q8 >/dev/null 2>"$tmp/err2"
rc2=$?
set -e
[ $rc -eq 3 ] && grep -q "act-quant ggml: .*nan.h5: tensor 'model\..*' (quantized in a grouped format) has no GGUF" \
    "$tmp/err" || { cat "$tmp/err"; fail "--act-quant ggml on grouped formats: exit 3 naming the tensor (rc $rc)"; }
[ $rc2 -eq 2 ] && grep -q "act-quant takes ggml or none, got 'q8'" "$tmp/err2" ||
    { cat "$tmp/err2"; fail "--act-quant q8: exit 2 expected (rc $rc2)"; }

# ---- reference.json: the shipped perplexity matches to 1e-6, one moved by 1e-4 is a mismatch ----
printf 'version: 1\ndefaults: {method: none}\n' >"$tmp/none.yaml"
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/none.yaml" --out "$tmp/none.h5" || fail "quantize (method none)"
model_copy "$tmp/ref" reference.json
ev --model "$tmp/ref" "$tmp/none.h5" --json "$tmp/ok.json" -q || fail "eval with the shipped reference.json"
jq -e '.perplexity.reference.ok == true and (.perplexity.reference.rel_diff | fabs) <= 1e-6' "$tmp/ok.json" \
    >/dev/null || { jq .perplexity.reference "$tmp/ok.json"; fail "the shipped reference.json must match to 1e-6"; }
jq '.bf16.perplexity *= 1.0001' "$tiny/reference.json" >"$tmp/ref/reference.json"
ev --model "$tmp/ref" "$tmp/none.h5" --json "$tmp/drift.json" >"$tmp/out" 2>"$tmp/err" || fail "eval (drifted reference)"
jq -e '.perplexity.reference.ok == false' "$tmp/drift.json" >/dev/null ||
    { jq .perplexity.reference "$tmp/drift.json"; fail "a 1e-4 drift of reference.json must be a mismatch"; }
grep -q "reference.json bf16: .*: MISMATCH" "$tmp/out" || fail "table: MISMATCH"
grep -q "differs from reference.json's .* more than 1e-06" "$tmp/err" || { cat "$tmp/err"; fail "warning"; }
echo PASS
