#!/usr/bin/env bash
# End-to-end (mpi): `moeq eval` on artifacts of the tiny real model: the report's numbers are identical for
# artifacts made by 1 and 3 ranks and for eval on 1 and 3 ranks; the original model reproduces
# reference.json's perplexity; an unquantized artifact (method none) has block error exactly 0 and the
# original's perplexity; --dump-logits writes the same logits from 1 and 3 ranks (refused without a forward
# pass); a flipped byte in codes, scale, U and V is each found and named (exit 3); thresholds
# exit 6; a foreign, truncated or missing artifact fails cleanly. Also Qwen2-MoE (shared expert, biases), a
# DeepSeek-V3 FP8 checkpoint (MLA, grouped sigmoid routing: perplexity and logits, the same on 1 and 2 ranks)
# and a Qwen3-MoE one (no forward pass: weight pass only, --dump-logits refused) from `moeq synth`.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
# no thread-count settings: the report must not depend on them
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
q() { # q NP OUT [args...]
    local np=$1 out=$2; shift 2
    "$MPIEXEC" --oversubscribe -n "$np" "$MOEQ" quantize -q --out "$out" "$@"
}
ev() { # ev NP [args...]
    local np=$1; shift
    "$MPIEXEC" --oversubscribe -n "$np" "$MOEQ" eval --progress 0 "$@"
}
numbers() { jq -S 'del(.run, .artifact)' "$1"; } # everything but the run's own figures and the file name
head -c 3000 "$tiny/val.txt" >"$tmp/small.txt"

# ---- artifacts from 1 and 3 ranks; eval on 1 and 3 ranks: the same numbers ----
q 1 "$tmp/a1.h5" --model "$tiny" --recipe "$recipe" || fail "quantize 1 rank"
q 3 "$tmp/a3.h5" --model "$tiny" --recipe "$recipe" || fail "quantize 3 ranks"
ev 1 --model "$tiny" "$tmp/a1.h5" --text "$tmp/small.txt" --json "$tmp/a1e1.json" --dump-logits "$tmp/a1e1.f32" >"$tmp/a1e1.out" 2>&1 ||
    { cat "$tmp/a1e1.out"; fail "eval 1 rank"; }
ev 3 --model "$tiny" "$tmp/a1.h5" --text "$tmp/small.txt" --json "$tmp/a1e3.json" --plot "$tmp/a1.png" \
    --dump-logits "$tmp/a1e3.f32" >"$tmp/a1e3.out" 2>&1 ||
    { cat "$tmp/a1e3.out"; fail "eval 3 ranks"; }
ev 2 --model "$tiny" "$tmp/a3.h5" --text "$tmp/small.txt" --json "$tmp/a3e2.json" >/dev/null 2>&1 || fail "eval of the 3-rank artifact"
numbers "$tmp/a1e1.json" >"$tmp/n1"
numbers "$tmp/a1e3.json" >"$tmp/n3"
numbers "$tmp/a3e2.json" >"$tmp/n32"
cmp "$tmp/n1" "$tmp/n3" || { diff "$tmp/n1" "$tmp/n3" | head; fail "eval numbers differ between 1 and 3 ranks"; }
cmp "$tmp/n1" "$tmp/n32" || fail "eval numbers differ between artifacts made by 1 and 3 ranks"
# --dump-logits: the quantized model's logits, float32 (3000 tokens, 65), the same file from 1 and 3 ranks
[ "$(stat -c %s "$tmp/a1e1.f32")" = $((3000 * 65 * 4)) ] || fail "--dump-logits size $(stat -c %s "$tmp/a1e1.f32")"
cmp "$tmp/a1e1.f32" "$tmp/a1e3.f32" || fail "--dump-logits differs between 1 and 3 ranks"
[ "$(jq '.integrity.ok' "$tmp/a1e1.json")" = true ] || fail "integrity ok"
[ "$(jq '.weights.metrics_match_recorded' "$tmp/a1e1.json")" = 112 ] || fail "recomputed weight errors equal quantize's"
[ "$(jq '.block.layers | length' "$tmp/a1e1.json")" = 4 ] || fail "4 MoE layers probed"
jq -e '.block.layers[0].text.topk_changed_forward >= 0 and .block.layers[3].gaussian.rel_err > 0' "$tmp/a1e1.json" >/dev/null ||
    fail "block probes"
grep -q "MoE block output error" "$tmp/a1e3.out" && grep -q "routed_expert.down" "$tmp/a1e3.out" || fail "table printed"
[ "$(head -c 4 "$tmp/a1.png" | tail -c 3)" = PNG ] || fail "plot is a PNG"

# ---- the original reproduces reference.json (default text: val.txt); thresholds exit 6 ----
set +e
ev 2 --model "$tiny" "$tmp/a1.h5" --json "$tmp/full.json" --max-ppl-increase 0.0001 >"$tmp/full.out" 2>&1
rc=$?
set -e
[ $rc -eq 6 ] || { cat "$tmp/full.out"; fail "--max-ppl-increase 0.0001 must exit 6 (got $rc)"; }
jq -e '.perplexity.reference.ok == true and .perplexity.windows == 436 and .perplexity.scored_tokens == 111104' \
    "$tmp/full.json" >/dev/null || { jq .perplexity "$tmp/full.json"; fail "perplexity of the original vs reference.json"; }
grep -q "max_ppl_increase" "$tmp/full.out" || fail "threshold message"
set +e
ev 1 --model "$tiny" "$tmp/a1.h5" --text "$tmp/small.txt" --max-rel-error 0.05 >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 6 ] && grep -q "max_rel_error: tensor" "$tmp/err" || fail "--max-rel-error 0.05 must exit 6 (got $rc)"
ev 1 --model "$tiny" "$tmp/a1.h5" --text "$tmp/small.txt" --max-rel-error 0.5 --max-ppl-increase 1 -q ||
    fail "generous thresholds must pass"

# ---- an unquantized artifact: block error exactly 0, the original's perplexity ----
printf 'version: 1\ndefaults: {method: none}\n' >"$tmp/none.yaml"
q 2 "$tmp/none.h5" --model "$tiny" --recipe "$tmp/none.yaml" || fail "quantize (method none)"
ev 2 --model "$tiny" "$tmp/none.h5" --text "$tmp/small.txt" --json "$tmp/none.json" -q || fail "eval (method none)"
jq -e '[.block.layers[] | .gaussian.rel_err, .text.rel_err, .gaussian.topk_changed, .text.topk_changed_forward]
       | all(. == 0)' "$tmp/none.json" >/dev/null || fail "block error must be exactly 0 without quantization"
jq -e '.perplexity.original.ce_nats == .perplexity.quantized.ce_nats' "$tmp/none.json" >/dev/null ||
    fail "perplexity of an unquantized artifact must equal the original's"

# ---- a flipped byte in codes, scale, U and V: found and named ----
t=model.layers.2.block_sparse_moe.experts.5.w2.weight
for ds in codes scale U V; do
    cp "$tmp/a1.h5" "$tmp/bad.h5"
    off=$(plane_offset "$tmp/bad.h5" "$t" "$ds")
    [ -n "$off" ] || fail "no offset for $ds"
    pos=$((off + 7))
    b=$(od -An -tu1 -j "$pos" -N1 "$tmp/bad.h5" | tr -d ' ')
    printf "$(printf '\\%03o' $(((b ^ 0x10) & 0xff)))" | dd of="$tmp/bad.h5" bs=1 seek="$pos" conv=notrunc status=none
    cmp -s "$tmp/a1.h5" "$tmp/bad.h5" && fail "byte not flipped"
    set +e
    ev 3 --model "$tiny" "$tmp/bad.h5" --text "$tmp/small.txt" --json "$tmp/bad.json" >/dev/null 2>"$tmp/err"
    rc=$?
    set -e
    [ $rc -eq 3 ] || { cat "$tmp/err"; fail "flipped byte in $ds: exit 3 expected (got $rc)"; }
    grep -q "$t/$ds: .*tensor '$t' dataset $ds: checksum" "$tmp/err" || { cat "$tmp/err"; fail "flipped byte in $ds not named"; }
    [ "$(jq -r '.integrity.failures[0].dataset' "$tmp/bad.json")" = "$ds" ] || fail "JSON names the dataset ($ds)"
done

# ---- foreign, truncated, incomplete and missing artifacts; usage ----
"$MOEQ" synth --arch mixtral --layers 2 --experts 4 --top-k 2 --hidden 128 --intermediate 128 -q "$tmp/other" >/dev/null
set +e
ev 2 --model "$tmp/other" "$tmp/a1.h5" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "made from another model or recipe" "$tmp/err" || { cat "$tmp/err"; fail "foreign model (rc $rc)"; }
head -c 2000000 "$tmp/a1.h5" >"$tmp/trunc.h5"
ev 1 --model "$tiny" "$tmp/trunc.h5" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "truncated: 2000000 bytes, its HDF5 superblock records" "$tmp/err" || { cat "$tmp/err"; fail "truncated artifact (rc $rc)"; }
ev 1 --model "$tiny" "$tmp/nope.h5" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "nope.h5" "$tmp/err" || { cat "$tmp/err"; fail "missing artifact (rc $rc)"; }
MOEQ_CRASH_AT=journaled:5 q 1 "$tmp/p.h5" --model "$tiny" --recipe "$recipe" >/dev/null 2>&1
ev 1 --model "$tiny" "$tmp/p.h5.partial" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "not complete" "$tmp/err" || { cat "$tmp/err"; fail "partial artifact (rc $rc)"; }
ev 1 "$tmp/a1.h5" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || fail "missing --model is a usage error (rc $rc)"
set -e

# ---- Qwen2-MoE (shared expert with gate, q/k/v biases) and DeepSeek FP8 (weight pass only) ----
"$MOEQ" synth --arch qwen2_moe --layers 2 --experts 4 --top-k 2 --hidden 128 --intermediate 64 -q "$tmp/qw" >/dev/null
printf 'version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 4, rounds: 2}\n' >"$tmp/qw.yaml"
q 2 "$tmp/qw.h5" --model "$tmp/qw" --recipe "$tmp/qw.yaml" || fail "quantize qwen2_moe"
ev 1 --model "$tmp/qw" "$tmp/qw.h5" --json "$tmp/qw1.json" -q || fail "eval qwen2_moe 1 rank"
ev 3 --model "$tmp/qw" "$tmp/qw.h5" --json "$tmp/qw3.json" -q || fail "eval qwen2_moe 3 ranks"
cmp <(numbers "$tmp/qw1.json") <(numbers "$tmp/qw3.json") || fail "qwen2_moe eval differs between 1 and 3 ranks"
jq -e '(.weights.by_class | map(.class) | index("shared_expert")) != null and (.block.layers | length) == 2' \
    "$tmp/qw1.json" >/dev/null || fail "qwen2_moe report (shared expert class, 2 MoE layers)"
"$MOEQ" synth --arch deepseek_v3 --layers 2 --dense-layers 1 --experts 4 --top-k 2 --hidden 256 \
    --intermediate 128 --vocab 65 --dtype fp8 -q "$tmp/ds" >/dev/null
cp "$tiny/tokenizer.json" "$tmp/ds/" # the synth vocab is the char tokenizer's 65
printf 'version: 1\ndefaults: {method: hqq, bits: 4, group: 32}\n' >"$tmp/ds.yaml"
q 2 "$tmp/ds.h5" --model "$tmp/ds" --recipe "$tmp/ds.yaml" || fail "quantize deepseek fp8"
for n in 1 2; do
    ev $n --model "$tmp/ds" "$tmp/ds.h5" --text "$tmp/small.txt" --json "$tmp/ds$n.json" \
        --dump-logits "$tmp/ds$n.f32" >"$tmp/ds.out" 2>&1 || { cat "$tmp/ds.out"; fail "eval deepseek fp8 ($n)"; }
done
jq -e '.integrity.ok and .weights.overall.rel_fro > 0 and .weights.overall.rel_fro < 0.2 and
       .perplexity.original.perplexity > 1 and .perplexity.increase > -0.05 and .perplexity.increase < 0.05 and
       (.block.layers | length) == 1' "$tmp/ds1.json" >/dev/null || fail "deepseek fp8: weights, perplexity, block"
cmp <(numbers "$tmp/ds1.json") <(numbers "$tmp/ds2.json") || fail "deepseek eval differs between 1 and 2 ranks"
cmp -s "$tmp/ds1.f32" "$tmp/ds2.f32" && [ "$(stat -c %s "$tmp/ds1.f32")" = $((3000 * 65 * 4)) ] ||
    fail "deepseek --dump-logits: not 3000 x 65 floats, or not the same from 1 and 2 ranks"
"$MOEQ" synth --arch qwen3_moe --layers 1 --experts 4 --top-k 2 --hidden 64 --intermediate 32 --vocab 65 \
    -q "$tmp/q3" >/dev/null
q 1 "$tmp/q3.h5" --model "$tmp/q3" --recipe "$tmp/ds.yaml" || fail "quantize qwen3_moe"
ev 1 --model "$tmp/q3" "$tmp/q3.h5" --json "$tmp/q3.json" -q || fail "eval qwen3_moe"
jq -e '.integrity.ok and .perplexity == null and (.skipped | test("no CPU forward pass"))' "$tmp/q3.json" \
    >/dev/null || fail "qwen3_moe: weight pass only, skipped named"
set +e # no forward pass, so no logits to dump: refused, saying why
ev 1 --model "$tmp/q3" "$tmp/q3.h5" -q --text "$tmp/small.txt" --dump-logits "$tmp/q3.f32" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] && grep -q -- "--dump-logits .*q3.f32: no CPU forward pass" "$tmp/err" ||
    { cat "$tmp/err"; fail "--dump-logits without a forward pass: exit 3 naming the file (rc $rc)"; }
echo PASS
