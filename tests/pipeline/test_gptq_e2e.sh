#!/usr/bin/env bash
# End-to-end: `moeq quantize --calib` (issue 22), GPTQ through the layer-streaming calibration pass, on
# mixtral-tiny with a calibration text unrelated to the evaluation text (scripts/calib-text.sh: Debian's
# license texts). The artifact is byte-identical for 1, 2 and 3 ranks; gptq.sequential (down calibrated on
# the quantized gate and up) changes exactly layer 0's experts' down against false; a kill in the middle of layer 1
# (some of its units journaled) resumes, on another rank count, to the same bytes; --resume with another
# calibration set is refused (exit 7); eval accepts the artifact (digest rebuilt from calib_xxh3), names the
# set and the tokens per routed expert, and GPTQ's perplexity increase is below HQQ's at the same bits;
# gptq.min_inputs above every expert's token count makes the experts fall back (named by eval); the
# refusals: gptq without --calib, --calib without a calibrated method, too short a file, ids outside the
# vocab, gptq on the embedding; `moeq plan` of a GPTQ recipe on DeepSeek-R1's metadata estimates the pass's
# memory per rank and time at 64 ranks (less than at 8). DeepSeek-V3 (MLA) from `moeq synth`: 1 and 3 ranks
# identical, eval's perplexity.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
bash "$MOEQ_SOURCE_DIR/scripts/calib-text.sh" "$tmp/calib.txt" 4096 >/dev/null || fail "calib-text.sh"
cal=(--calib "$tmp/calib.txt" --calib-seqs 32 --calib-len 128)
printf 'version: 1\ndefaults: {method: gptq, bits: 3, group: 64}\n' >"$tmp/g.yaml"
printf 'version: 1\ndefaults: {method: hqq, bits: 3, group: 64}\n' >"$tmp/h.yaml"
checksum() { grep -o 'artifact checksum [0-9a-f]*' "$1" | awk '{print $3}'; }

# 1, 2 and 3 ranks: the same bytes
for n in 1 2 3; do
    "$MPIEXEC" -n $n "$MOEQ" quantize --model "$tiny" --recipe "$tmp/g.yaml" "${cal[@]}" --out "$tmp/g$n.h5" \
        --progress 0 >"$tmp/q$n.out" 2>&1 || fail "quantize on $n rank(s): $(tail -5 "$tmp/q$n.out")"
done
c1=$(checksum "$tmp/q1.out")
[ -n "$c1" ] && [ "$c1" = "$(checksum "$tmp/q2.out")" ] && [ "$c1" = "$(checksum "$tmp/q3.out")" ] ||
    fail "checksums differ across rank counts: $c1 $(checksum "$tmp/q2.out") $(checksum "$tmp/q3.out")"
cmp -s <(grep -v '^calibration' "$tmp/q1.out" | grep -c layer) <(echo 5) || true # (one line per layer + model)

# gptq.sequential (default true): a routed expert's down is calibrated on its gate and up as quantized. Off,
# layer 0's attention and experts' gate and up are the same bytes, its experts' down are not (the later
# layers then see other inputs).
printf 'version: 1\ndefaults: {method: gptq, bits: 3, group: 64, gptq: {sequential: false}}\n' >"$tmp/gs.yaml"
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/gs.yaml" "${cal[@]}" --out "$tmp/gs.h5" ||
    fail "quantize gptq.sequential false"
e=model.layers.0.block_sparse_moe.experts
for a in g1 gs; do
    mkdir -p "$tmp/$a.dq"
    "$MOEQ" inspect "$tmp/$a.h5" --dequant "$e.3.w1.weight,$e.3.w3.weight,$e.3.w2.weight,$e.6.w2.weight,model.layers.0.self_attn.o_proj.weight" \
        --out "$tmp/$a.dq" >/dev/null || fail "inspect --dequant $a"
done
for t in "$e.3.w1.weight" "$e.3.w3.weight" model.layers.0.self_attn.o_proj.weight; do
    cmp -s "$tmp/g1.dq/$t.f32" "$tmp/gs.dq/$t.f32" || fail "gptq.sequential changed $t (only down reads gate and up)"
done
for t in "$e.3.w2.weight" "$e.6.w2.weight"; do
    ! cmp -s "$tmp/g1.dq/$t.f32" "$tmp/gs.dq/$t.f32" || fail "gptq.sequential left $t as without it"
done
grep -q "^calibration .*calib.txt (text): 32 sequences x 128 tokens of 4096" "$tmp/q1.out" ||
    fail "the calibration set is not reported: $(head -5 "$tmp/q1.out")"

# a kill after 15 journaled units (layer 0 has 13: q/k/v, o, router+norms, 8 experts): mid layer 1
rc=0
MOEQ_CRASH_AT=journaled:15 "$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" "${cal[@]}" \
    --out "$tmp/k.h5" >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] && [ -f "$tmp/k.h5.partial" ] && [ ! -f "$tmp/k.h5" ] || fail "the crash did not happen (exit $rc)"
"$MPIEXEC" -n 3 "$MOEQ" quantize --model "$tiny" --recipe "$tmp/g.yaml" "${cal[@]}" --out "$tmp/k.h5" --resume \
    --progress 0 >"$tmp/r.out" 2>&1 || fail "resume: $(tail -5 "$tmp/r.out")"
n_j=$(grep -o 'resuming .*: [0-9]* of 53 units journaled' "$tmp/r.out" | grep -o ': [0-9]* of' | tr -dc 0-9)
[ -n "$n_j" ] && [ "$n_j" -gt 13 ] && [ "$n_j" -lt 26 ] || fail "not a mid-layer resume: $n_j units journaled"
[ "$(checksum "$tmp/r.out")" = "$c1" ] || fail "resume gave other bytes: $(checksum "$tmp/r.out") vs $c1"
# another calibration set: another digest, refused
rm -f "$tmp/k.h5"
(MOEQ_CRASH_AT=journaled:3 exec "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" "${cal[@]}" --out "$tmp/k.h5" \
    >/dev/null 2>&1) 2>/dev/null || true
rc=0
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" --calib "$tmp/calib.txt" --calib-seqs 16 --calib-len 128 \
    --out "$tmp/k.h5" --resume 2>"$tmp/err" || rc=$?
[ "$rc" = 7 ] || fail "resume with another calibration set: exit $rc, $(cat "$tmp/err")"

# eval: the set, the experts' tokens; GPTQ below HQQ at 3 bits
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/h.yaml" --out "$tmp/h.h5" || fail "hqq"
head -c 20000 "$tiny/val.txt" >"$tmp/eval.txt"
for a in g1 h; do
    "$MPIEXEC" -n 2 "$MOEQ" eval --model "$tiny" "$tmp/$a.h5" --text "$tmp/eval.txt" --json "$tmp/$a.json" \
        --progress 0 >"$tmp/$a.eval" 2>&1 || fail "eval $a: $(tail -5 "$tmp/$a.eval")"
done
grep -q "calibration: .*calib.txt (text): 32 sequences x 128 tokens; 112 calibrated tensors; tokens per routed expert: min [0-9]*, median [0-9]*, max [0-9]* over 32 experts; 0 fell back" "$tmp/g1.eval" ||
    fail "eval does not report the calibration: $(grep -i calib "$tmp/g1.eval")"
python3 - "$tmp/g1.json" "$tmp/h.json" <<'PY' || fail "GPTQ is not better than HQQ at 3 bits"
import json, sys
g, h = (json.load(open(p)) for p in sys.argv[1:3])
c = g["calibration"]
assert len(c["expert_tokens"]) == 32 and sum(e["tokens"] for e in c["expert_tokens"]) == 4 * 32 * 128 * 2, c
inc = lambda r: r["perplexity"]["quantized"]["perplexity"] / r["perplexity"]["original"]["perplexity"] - 1
print(f"gptq {inc(g):+.4%} hqq {inc(h):+.4%}")
assert inc(g) < 0.7 * inc(h), (inc(g), inc(h))
PY

# gptq.min_inputs above every expert's tokens: the experts fall back to hqq (grouped format), named by eval
printf 'version: 1\ndefaults: {method: gptq, bits: 3, group: 64}\nrules:\n  - match: {class: routed_expert}\n    set: {gptq: {min_inputs: 100000}}\n' >"$tmp/fb.yaml"
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/fb.yaml" "${cal[@]}" --out "$tmp/fb.h5" || fail "fallback run"
"$MOEQ" eval --model "$tiny" "$tmp/fb.h5" --text "$tmp/eval.txt" --progress 0 >"$tmp/fb.eval" 2>&1 || fail "eval fb"
grep -q "; 96 fell back to the weight-space quantizer" "$tmp/fb.eval" &&
    grep -q "fallback: model.layers.0.block_sparse_moe.experts.0.w1.weight ([0-9]* inputs): hqq" "$tmp/fb.eval" ||
    fail "fallback not reported: $(grep -i -A2 calibration "$tmp/fb.eval")"

# the plan of a calibrated recipe at DeepSeek-R1 scale (metadata only): the pass's memory per rank and time
r1="$MOEQ_SHARED_DIR/fixtures/real-metadata/deepseek-r1"
printf 'version: 1\ndefaults: {method: gptq, bits: 4, group: 128}\n' >"$tmp/g4.yaml"
"$MOEQ" plan --model "$r1" --recipe "$tmp/g4.yaml" --ranks 64 >"$tmp/plan.txt" || fail "plan R1"
grep -q "^calibration     --calib 128 sequences x 2048 tokens (262144), 64 ranks: memory per rank [0-9.]* GiB = .*time [0-9]* s" \
    "$tmp/plan.txt" || fail "plan: no calibration estimate: $(cat "$tmp/plan.txt")"
"$MOEQ" plan --model "$r1" --recipe "$tmp/g4.yaml" --ranks 64 --json >"$tmp/plan64.json" || fail "plan json"
"$MOEQ" plan --model "$r1" --recipe "$tmp/g4.yaml" --ranks 8 --json >"$tmp/plan8.json" || fail "plan json 8"
python3 - "$tmp/plan64.json" "$tmp/plan8.json" <<'PY' || fail "calibration estimate does not scale with the ranks"
import json, sys
a, b = (json.load(open(p))["calibration"] for p in sys.argv[1:3])
assert a["tokens"] == 262144 and a["max_cols"] == 18432, a
# more ranks: fewer experts and sequences per rank, less time
assert a["weights_bytes"] < b["weights_bytes"] and a["states_bytes"] < b["states_bytes"], (a, b)
assert a["total_s"] < b["total_s"] and a["mem_per_rank_bytes"] < b["mem_per_rank_bytes"], (a, b)
PY
"$MOEQ" plan --model "$r1" --recipe "$tmp/h.yaml" --ranks 64 | grep -q "^calibration" && fail "hqq plan shows a calibration"

# DeepSeek-V3 (MLA: q_b_proj and kv_b_proj calibrated on the latents, in a round of their own): the same
# bytes on 1 and 3 ranks, and eval reports the perplexity of the GPTQ artifact
"$MOEQ" synth --arch deepseek_v3 --layers 2 --dense-layers 1 --experts 4 --top-k 2 --hidden 128 \
    --intermediate 64 --vocab 65 -q "$tmp/ds" >/dev/null
cp "$tiny/tokenizer.json" "$tmp/ds/"
for n in 1 3; do
    "$MPIEXEC" -n $n "$MOEQ" quantize --model "$tmp/ds" --recipe "$tmp/g.yaml" --calib "$tmp/calib.txt" \
        --calib-seqs 8 --calib-len 64 --out "$tmp/ds$n.h5" --progress 0 >"$tmp/ds$n.out" 2>&1 ||
        fail "deepseek gptq on $n rank(s): $(tail -5 "$tmp/ds$n.out")"
done
[ -n "$(checksum "$tmp/ds1.out")" ] && [ "$(checksum "$tmp/ds1.out")" = "$(checksum "$tmp/ds3.out")" ] ||
    fail "deepseek gptq: checksums differ across rank counts"
"$MOEQ" eval -q --model "$tmp/ds" "$tmp/ds3.h5" --text "$tmp/eval.txt" --json "$tmp/ds.json" || fail "eval ds"
jq -e '.calibration.calibrated_tensors == 28 and .perplexity.original.perplexity > 1 and
       .perplexity.increase < 0.05' "$tmp/ds.json" >/dev/null ||
    fail "deepseek gptq eval: $(jq -c '{c: .calibration.calibrated_tensors, p: .perplexity}' "$tmp/ds.json")"

# refusals
expect() { # expect CODE NEEDLE CMD...
    local want=$1 needle=$2 rc=0
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" = "$want" ] && grep -q -- "$needle" "$tmp/err" || fail "$*: exit $rc (want $want), $(cat "$tmp/err")"
}
expect 2 "method gptq needs calibration inputs" "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" --out "$tmp/x.h5"
expect 2 "no tensor's method reads calibration inputs" "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/h.yaml" \
    "${cal[@]}" --out "$tmp/x.h5"
expect 2 "hold 32 sequence(s) of 128, 64 asked" "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" \
    --calib "$tmp/calib.txt" --calib-seqs 64 --calib-len 128 --out "$tmp/x.h5"
python3 -c "import sys; sys.stdout.buffer.write((70).to_bytes(4,'little')*300)" >"$tmp/bad.ids"
expect 3 "is id 70, outside the model's vocab" "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" \
    --calib "$tmp/bad.ids" --calib-seqs 2 --calib-len 128 --out "$tmp/x.h5"
printf 'version: 1\ndefaults: {method: gptq, bits: 3, group: 64}\nrules:\n  - match: {class: embedding}\n    set: {method: gptq}\n' >"$tmp/e.yaml"
expect 3 "model.embed_tokens.weight': method gptq needs the inputs of a linear layer" "$MOEQ" quantize -q \
    --model "$tiny" --recipe "$tmp/e.yaml" "${cal[@]}" --out "$tmp/x.h5"
ls "$tmp"/x.h5* >/dev/null 2>&1 && fail "a refused run left $(ls "$tmp"/x.h5*)"
echo "test_gptq_e2e: ok"
