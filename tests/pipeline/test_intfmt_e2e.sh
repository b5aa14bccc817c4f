#!/usr/bin/env bash
# End-to-end: the integer-zero formats (kernels/qformat.h MOEQ_QFAMILY_INT) on mixtral-tiny. `format: i4`
# (method rtn) and method gptq into `i4s` with --calib: the artifact is byte-identical on 1 and 2 ranks, the
# plan counts 4 + 16/128 + 4/128 bits per weight for i4 g128, eval on 2 ranks decodes the artifact (perplexity
# increase small; GPTQ's below rtn's at i4s); `group: channel` and method search run, MiLo (rank 8) on i3 is
# below i3's search alone; a misspelt format gets
# a suggestion (exit 3), and the GGUF export refuses the integer formats (no GGUF type, exit 3).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
bash "$MOEQ_SOURCE_DIR/scripts/calib-text.sh" "$tmp/calib.txt" 4096 >/dev/null || fail "calib-text.sh"
cal=(--calib "$tmp/calib.txt" --calib-seqs 16 --calib-len 128)
head -c 12000 "$tiny/val.txt" >"$tmp/eval.txt"
checksum() { grep -o 'artifact checksum [0-9a-f]*' "$1" | awk '{print $3}'; }
recipe() { printf 'version: 1\ndefaults: {%s}\n' "$2" >"$tmp/$1.yaml"; }
recipe i4 "method: rtn, format: i4, group: 128"
recipe s4 "method: rtn, format: i4s, group: 64"
recipe g4 "method: gptq, format: i4s, group: 64"
recipe ch "method: search, format: i3, group: channel"
recipe s3 "method: search, format: i3, group: 64"
recipe m3 "method: milo, format: i3, group: 64, rank: 8, rounds: 2"

"$MOEQ" plan --model "$tiny" --recipe "$tmp/i4.yaml" >"$tmp/plan.out" 2>&1 || fail "plan: $(tail -3 "$tmp/plan.out")"
grep -q "bits/weight *4.1562 " "$tmp/plan.out" || fail "i4 g128 is not 4.15625 bits/weight: $(grep bits "$tmp/plan.out")"

for a in i4 g4; do
    extra=()
    [ "$a" = g4 ] && extra=("${cal[@]}")
    for n in 1 2; do
        "$MPIEXEC" -n $n "$MOEQ" quantize --model "$tiny" --recipe "$tmp/$a.yaml" ${extra[@]+"${extra[@]}"} \
            --out "$tmp/$a$n.h5" --progress 0 >"$tmp/$a$n.out" 2>&1 || fail "$a on $n rank(s): $(tail -5 "$tmp/$a$n.out")"
    done
    c1=$(checksum "$tmp/${a}1.out")
    [ -n "$c1" ] && [ "$c1" = "$(checksum "$tmp/${a}2.out")" ] || fail "$a: checksums differ across rank counts"
done
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/s4.yaml" --out "$tmp/s4.h5" || fail "rtn i4s"
for a in ch s3 m3; do
    "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/$a.yaml" --out "$tmp/$a.h5" || fail "quantize $a"
done
for a in i42 g42 s4 ch s3 m3; do
    "$MPIEXEC" -n 2 "$MOEQ" eval --model "$tiny" "$tmp/$a.h5" --text "$tmp/eval.txt" --json "$tmp/$a.json" \
        --progress 0 >"$tmp/$a.eval" 2>&1 || fail "eval $a: $(tail -5 "$tmp/$a.eval")"
done
python3 - "$tmp" <<'PY' || fail "perplexities out of range"
import json, sys
inc = {}
for a in ("i42", "g42", "s4", "ch", "s3", "m3"):
    p = json.load(open(f"{sys.argv[1]}/{a}.json"))["perplexity"]
    inc[a] = p["quantized"]["perplexity"] / p["original"]["perplexity"] - 1
print({k: f"{v:+.4%}" for k, v in inc.items()})
assert 0 < inc["i42"] < 0.02 and 0 < inc["s4"] < 0.02 and inc["ch"] < 0.08, inc
assert inc["g42"] < inc["s4"], inc  # GPTQ below rtn in the same format
assert inc["m3"] < inc["s3"], inc  # MiLo's compensators on the integer format's search
PY

# a misspelt format: the near name, exit 3
recipe bad "method: rtn, format: int4"
rc=0
"$MOEQ" plan --model "$tiny" --recipe "$tmp/bad.yaml" >/dev/null 2>"$tmp/bad.err" || rc=$?
[ "$rc" = 3 ] && grep -q 'format "int4" is not one of .*; did you mean i4?' "$tmp/bad.err" ||
    fail "misspelt format: exit $rc, $(cat "$tmp/bad.err")"
# GGUF has no integer-zero type: refused, naming the formats
rc=0
"$MOEQ" export --format gguf "$tmp/i41.h5" "$tmp/x.gguf" >/dev/null 2>"$tmp/gguf.err" || rc=$?
[ "$rc" = 3 ] && grep -q "no GGUF type (moeq's grouped q2..q8, integer i2..i8s)" "$tmp/gguf.err" ||
    fail "gguf export of i4: exit $rc, $(cat "$tmp/gguf.err")"
echo "PASS"
