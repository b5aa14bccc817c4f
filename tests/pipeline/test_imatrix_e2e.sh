#!/usr/bin/env bash
# End-to-end: importance matrices (issue 21 item 5). `moeq calibrate` on mixtral-mini writes llama.cpp's
# imatrix.gguf (the gguf package reads it: llama-imatrix's keys, gguf's names for every linear weight,
# [cols, experts] in_sum2 and [1, experts] counts); the same statistics as a legacy .dat (written here as
# llama.cpp's save_imatrix_legacy does) give the same importance vectors; `moeq plan --imatrix` says which
# tensors get a vector, names those without one and the methods that ignore it; a matrix of another model
# (wrong width) and a damaged file are refused naming them (exit 3); method search on q3_K with the matrix has
# a lower importance-weighted error (on the calibration statistics) than without; --resume of that artifact
# with another matrix, or none, is refused (exit 7); on a synthetic Qwen2-MoE (shared expert) calibrate
# binds every tensor and method rtn on q4_0 (llama.cpp's weighted quantizer) writes other bytes with it;
# `moeq eval` accepts the artifact (the digest rebuilt from the recorded hash).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
mini="$MOEQ_SHARED_DIR/models/mixtral-mini"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
venv="$MOEQ_SOURCE_DIR/build-venv/bin/python"
check="$MOEQ_SOURCE_DIR/tests/pipeline/imatrix_check.py"
[ -x "$venv" ] || fail "no $venv: run scripts/install-deps.sh (it installs the gguf package there)"

# calibrate: 4 chunks of 256 tokens
"$MOEQ" calibrate -q --model "$mini" --text "$mini/val.txt" --ctx 256 --chunks 4 --out "$tmp/im.gguf" ||
    fail "calibrate"
"$MOEQ" calibrate -q --model "$mini" --text "$mini/val.txt" --ctx 256 --chunks 4 --out "$tmp/im.gguf" &&
    fail "calibrate overwrote its --out"
"$venv" "$check" names "$tmp/im.gguf" "$mini" || fail "the gguf package's view of the imatrix"

# plan: every quantized tensor gets a vector; legacy .dat: the same vectors
printf 'version: 1\ndefaults: {method: search, format: q3_K}\n' >"$tmp/s.yaml"
"$MOEQ" plan --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/im.gguf" >"$tmp/plan.txt" || fail "plan"
grep -q "112 quantized tensors get an importance vector, 0 have none, 0 ignore it" "$tmp/plan.txt" ||
    fail "plan: $(cat "$tmp/plan.txt")"
"$venv" "$check" dat "$tmp/im.gguf" "$tmp/im.dat" || fail "writing the legacy .dat"
t=model.layers.1.block_sparse_moe.experts.3.w2.weight
for f in gguf dat; do
    "$MOEQ" plan --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/im.$f" --explain "$t" |
        grep "importance:" >"$tmp/exp.$f" || fail "plan --explain with the $f"
done
python3 - "$tmp/exp.gguf" "$tmp/exp.dat" <<'PY' || fail "legacy .dat and GGUF give other vectors"
import re, sys
a, b = ([float(x) for x in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", open(p).read())] for p in sys.argv[1:3])
assert len(a) == len(b) == 8 and a[0] == 512, (a, b)
assert all(abs(x - y) <= 1e-6 * abs(x) for x, y in zip(a, b)), (a, b)
PY
# a .dat without layer 1: those tensors are named, quantized without
"$venv" "$check" dat "$tmp/im.gguf" "$tmp/part.dat" blk.1. || fail "writing the partial .dat"
"$MOEQ" plan --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/part.dat" >"$tmp/plan2.txt" || fail "plan part"
grep -q "^WARNING: no importance for 28 tensors.*model.layers.1.self_attn" "$tmp/plan2.txt" ||
    fail "missing entries not named: $(cat "$tmp/plan2.txt")"
# hqq ignores it: said
printf 'version: 1\ndefaults: {method: hqq, bits: 4, group: 64}\n' >"$tmp/h.yaml"
"$MOEQ" plan --model "$mini" --recipe "$tmp/h.yaml" --imatrix "$tmp/im.gguf" >"$tmp/hplan.txt" &&
    grep -q "^note: 112 tensors ignore.*hqq" "$tmp/hplan.txt" ||
    fail "plan does not say that hqq ignores the imatrix"

# refused: another model's matrix (hidden 128, not 256), a truncated file
"$MOEQ" calibrate -q --model "$tiny" --text "$tiny/val.txt" --ctx 64 --chunks 1 --out "$tmp/tiny.gguf" ||
    fail "calibrate tiny"
rc=0
"$MOEQ" plan --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/tiny.gguf" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" = 3 ] && grep -q "tiny.gguf: entry 'blk.0.attn_k.weight' has 1 x 128 values.*needs 1 x 256" "$tmp/err" ||
    fail "wrong width: exit $rc, $(cat "$tmp/err")"
head -c 20000 "$tmp/im.gguf" >"$tmp/cut.gguf"
rc=0
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/cut.gguf" \
    --out "$tmp/cut.h5" 2>"$tmp/err" || rc=$?
[ "$rc" = 3 ] && grep -q "cut.gguf" "$tmp/err" || fail "damaged imatrix: exit $rc, $(cat "$tmp/err")"

# method search q3_K, with and without: the importance-weighted error on the calibration statistics
for a in with without; do
    opt=()
    [ "$a" = with ] && opt=(--imatrix "$tmp/im.gguf")
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/s.yaml" "${opt[@]}" \
        --out "$tmp/$a.h5" || fail "quantize $a"
    "${MOEQ_PYTHON:-/usr/bin/python3}" "$check" dump "$tmp/$a.h5" "$tmp/$a.npz" || fail "dump $a"
    "$venv" "$check" werr "$tmp/$a.npz" "$mini" "$tmp/im.gguf" >"$tmp/$a.werr" || fail "werr $a"
done
echo "importance-weighted rel. error, mean over 112 tensors: with $(head -1 "$tmp/with.werr"), without $(head -1 "$tmp/without.werr")"
python3 - "$tmp/with.werr" "$tmp/without.werr" <<'PY' || fail "the imatrix does not lower the weighted error"
import sys
a, b = ({l.split()[0]: float(l.split()[1]) for l in open(p)} for p in sys.argv[1:3])
assert a.keys() == b.keys() and len(a) == 113, len(a)
assert a["mean"] < 0.95 * b["mean"], (a["mean"], b["mean"])
worse = [n for n in a if a[n] > b[n]]
assert len(worse) <= 5, worse
PY

# resume: another matrix, or none, refused (exit 7); the same one: already complete
"$MOEQ" calibrate -q --model "$mini" --text "$mini/val.txt" --ctx 256 --chunks 2 --out "$tmp/im2.gguf" ||
    fail "calibrate 2"
for other in "--imatrix $tmp/im2.gguf" ""; do
    rc=0
    # shellcheck disable=SC2086
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/s.yaml" $other --resume \
        --out "$tmp/with.h5" 2>"$tmp/err" || rc=$?
    [ "$rc" = 7 ] && grep -q "importance matrix" "$tmp/err" || fail "resume with '$other': exit $rc, $(cat "$tmp/err")"
done
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/s.yaml" --imatrix "$tmp/im.gguf" \
    --resume --out "$tmp/with.h5" || fail "resume with the same imatrix"
# Qwen2-MoE (shared expert and its gate): calibrate on a synthetic one; method rtn on q4_0 with the matrix
# (llama.cpp's weighted quantizer) writes other bytes than without, for every tensor
"$MOEQ" synth -q --arch qwen2_moe --layers 2 "$tmp/q2" >/dev/null || fail "synth qwen2_moe"
cp "$tiny/tokenizer.json" "$tmp/q2/" # the char vocabulary: ids below the synthetic model's vocab
"$MOEQ" calibrate -q --model "$tmp/q2" --text "$tiny/val.txt" --ctx 64 --chunks 2 --out "$tmp/q2.gguf" ||
    fail "calibrate qwen2_moe"
printf 'version: 1\ndefaults: {method: rtn, format: q4_0}\n' >"$tmp/r.yaml"
for a in with without; do
    opt=()
    [ "$a" = with ] && opt=(--imatrix "$tmp/q2.gguf")
    "$MPIEXEC" -n 2 "$MOEQ" quantize --progress 0 --model "$tmp/q2" --recipe "$tmp/r.yaml" "${opt[@]}" \
        --out "$tmp/q2-$a.h5" >"$tmp/q2-$a.log" || fail "quantize qwen2_moe $a"
    "${MOEQ_PYTHON:-/usr/bin/python3}" "$check" dump "$tmp/q2-$a.h5" "$tmp/q2-$a.npz" || fail "dump q2 $a"
done
grep -q "110 quantized tensors get an importance vector, 0 have none" "$tmp/q2-with.log" ||
    fail "qwen2_moe binding: $(cat "$tmp/q2-with.log")"
"${MOEQ_PYTHON:-/usr/bin/python3}" - "$tmp/q2-with.npz" "$tmp/q2-without.npz" <<'PY' || fail "rtn ignored the imatrix"
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
names = [n for n in a.files if not n.startswith("format:")]
same = [n for n in names if np.array_equal(a[n], b[n])]
assert len(names) == 110 and not same, (len(names), same[:4])
PY
# eval needs no file: the recorded hash rebuilds the digest
head -c 3000 "$mini/val.txt" >"$tmp/text.txt"
"$MPIEXEC" -n 2 "$MOEQ" eval -q --progress 0 --model "$mini" "$tmp/with.h5" --text "$tmp/text.txt" \
    --json "$tmp/with.json" || fail "eval of the imatrix artifact"
echo "ok"
