#!/usr/bin/env bash
# End-to-end: `moeq eval --stream` (issue 22 item 5), the perplexity layer by layer over the ranks with the
# routed experts on the ranks that own them: on mixtral-tiny, 1 and 3 ranks give the perplexities of the
# default in-memory pass bit for bit (JSON ce_nats equal, a text whose last window is shorter) for a GPTQ
# artifact and for a DeepSeek-V3 one (MLA, dense first layer, grouped sigmoid router, shared expert; 3 ranks);
# the block probes are said to be skipped; --stream with --act-quant or
# --dump-logits is refused (exit 2).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
head -c 12000 "$tiny/val.txt" >"$tmp/ev.txt" # 46 windows of 256 and one of 224
bash "$MOEQ_SOURCE_DIR/scripts/calib-text.sh" "$tmp/calib.txt" 2048 >/dev/null || fail "calib-text.sh"
printf 'version: 1\ndefaults: {method: gptq, bits: 3, group: 64}\n' >"$tmp/g.yaml"
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/g.yaml" --calib "$tmp/calib.txt" \
    --calib-seqs 16 --calib-len 128 --out "$tmp/g.h5" || fail "quantize gptq"
for a in g; do
    "$MPIEXEC" -n 2 "$MOEQ" eval --model "$tiny" "$tmp/$a.h5" --text "$tmp/ev.txt" --json "$tmp/$a.json" \
        --progress 0 >/dev/null 2>&1 || fail "eval $a"
    for n in 1 3; do
        "$MPIEXEC" -n $n "$MOEQ" eval --model "$tiny" "$tmp/$a.h5" --text "$tmp/ev.txt" --stream \
            --json "$tmp/$a.s$n.json" --progress 0 >/dev/null 2>&1 || fail "eval --stream $a on $n rank(s)"
        python3 - "$tmp/$a.json" "$tmp/$a.s$n.json" <<'PY' || fail "--stream differs ($a, $n ranks)"
import json, sys
d, s = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("original", "quantized"):
    assert d["perplexity"][k]["ce_nats"] == s["perplexity"][k]["ce_nats"], (k, d["perplexity"], s["perplexity"])
assert d["perplexity"]["windows"] == s["perplexity"]["windows"] == 47, s["perplexity"]
assert s["block"] is None and "not run with --stream" in s["skipped"], s.get("skipped")
PY
    done
done
# DeepSeek-V3 (MLA, a dense first layer, sigmoid group-limited routing, a shared expert) from `moeq synth`
"$MOEQ" synth --arch deepseek_v3 --layers 2 --dense-layers 1 --experts 4 --top-k 2 --hidden 128 \
    --intermediate 64 --vocab 65 -q "$tmp/ds" >/dev/null || fail "synth deepseek_v3"
cp "$tiny/tokenizer.json" "$tmp/ds/"
head -c 3000 "$tiny/val.txt" >"$tmp/ds.txt"
"$MOEQ" quantize -q --model "$tmp/ds" --out "$tmp/ds.h5" || fail "quantize deepseek_v3"
"$MOEQ" eval --model "$tmp/ds" "$tmp/ds.h5" --text "$tmp/ds.txt" --json "$tmp/ds.json" --progress 0 \
    >/dev/null 2>&1 || fail "eval deepseek_v3"
"$MPIEXEC" -n 3 "$MOEQ" eval --model "$tmp/ds" "$tmp/ds.h5" --text "$tmp/ds.txt" --stream \
    --json "$tmp/ds.s.json" --progress 0 >/dev/null 2>&1 || fail "eval --stream deepseek_v3"
python3 - "$tmp/ds.json" "$tmp/ds.s.json" <<'PY' || fail "--stream differs on deepseek_v3"
import json, sys
d, s = (json.load(open(p))["perplexity"] for p in sys.argv[1:3])
for k in ("original", "quantized"):
    assert d[k]["ce_nats"] == s[k]["ce_nats"], (k, d, s)
PY
rc=0
"$MOEQ" eval --model "$tiny" "$tmp/g.h5" --stream --act-quant ggml >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "\-\-stream computes the perplexity in fp32 only" "$tmp/err" ||
    fail "--stream --act-quant: exit $rc, $(cat "$tmp/err")"
echo "test_eval_stream: ok"
