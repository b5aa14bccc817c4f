#!/usr/bin/env bash
# End-to-end: `moeq export --format gguf`. mixtral-tiny in a legacy llama.cpp type (q5_1: its 384-wide
# expert rows are no multiple of 256) and mixtral-mini in k-quants (q4_K, split into several files with
# --shard-size), checked by tests/pipeline/gguf_export_check.py with the gguf package: keys are gguf's Keys,
# tensor names gguf's mapping of the HF names, types and shapes right, every quantized tensor dequantized by
# gguf.quants.dequantize equal bit for bit to `moeq inspect --dequant` (q/k rows un-permuted), every other
# tensor equal to the artifact's values (in full for tiny; the first and last expert of each stack for the
# other exports, to keep the test short). Refusals: an existing OUT (exit 7, --force replaces it), moeq's
# grouped format (exit 3, tensors named), MiLo compensators (exit 3; --no-compensators exports the base),
# --lora with compensated routed experts (exit 3, named; tests/pipeline/test_gguf_lora.sh covers the adapter);
# a refused export leaves no file.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
venv="$MOEQ_SOURCE_DIR/build-venv/bin/python"
[ -x "$venv" ] || fail "no $venv: run scripts/install-deps.sh (it installs the gguf package there)"
check="$MOEQ_SOURCE_DIR/tests/pipeline/gguf_export_check.py"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
q() { # q MODEL NAME RECIPE-DEFAULTS: quantize into $tmp/NAME.h5
    printf 'version: 1\ndefaults: {%s}\n' "$3" >"$tmp/$2.yaml"
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$MOEQ_SHARED_DIR/models/$1" --recipe "$tmp/$2.yaml" \
        --out "$tmp/$2.h5" || fail "quantize $2"
}
q mixtral-tiny tiny "method: rtn, format: q5_1"
"$MOEQ" export -q --format gguf --progress 0 "$tmp/tiny.h5" "$tmp/tiny.gguf" >"$tmp/tiny.out" || fail "export tiny"
grep -q "q5_1 28" "$tmp/tiny.out" || fail "summary: $(cat "$tmp/tiny.out")"
"$venv" "$check" "$MOEQ" "$tmp/tiny.h5" "$tiny" "$tmp/tiny.gguf" 1 || fail "tiny: check"
# an existing OUT is kept (exit 7), --force replaces it
set +e
"$MOEQ" export -q --format gguf "$tmp/tiny.h5" "$tmp/tiny.gguf" 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 7 ] && grep -q "tiny.gguf exists" "$tmp/err" || fail "existing OUT: exit $rc: $(cat "$tmp/err")"
"$MOEQ" export -q --format gguf --force --outtype f32 "$tmp/tiny.h5" "$tmp/tiny.gguf" >/dev/null || fail "--force"
"$venv" "$check" "$MOEQ" "$tmp/tiny.h5" "$tiny" "$tmp/tiny.gguf" 1 f32 sample || fail "tiny --outtype f32: check"

q mixtral-mini mini "method: rtn, format: q4_K"
"$MOEQ" export -q --format gguf --progress 0 --shard-size 3MB "$tmp/mini.h5" "$tmp/mini.gguf" >"$tmp/mini.out" ||
    fail "export mini"
n=$(ls "$tmp"/mini-0000?-of-0000?.gguf | wc -l)
[ "$n" -ge 2 ] && [ ! -e "$tmp/mini.gguf" ] || fail "mini: $n split files"
"$venv" "$check" "$MOEQ" "$tmp/mini.h5" "$MOEQ_SHARED_DIR/models/mixtral-mini" "$tmp/mini-00001-of-0000$n.gguf" "$n" sample || fail "mini: check"

refused() { # refused NAME ARTIFACT NEEDLE [OPTIONS...]: exit 3, NEEDLE in the message, no file left
    local name=$1 art=$2 needle=$3
    shift 3
    set +e
    "$MOEQ" export -q --format gguf "$@" "$art" "$tmp/$name.gguf" 2>"$tmp/err"
    local rc=$?
    set -e
    [ $rc -eq 3 ] || fail "$name: exit $rc, expected 3: $(cat "$tmp/err")"
    grep -q -- "$needle" "$tmp/err" || fail "$name: '$needle' not in: $(cat "$tmp/err")"
    ls "$tmp" | grep -q "^$name.gguf" && fail "$name: a refused export left $(ls "$tmp" | grep "^$name")"
    return 0
}
q mixtral-tiny grouped "method: rtn, bits: 4, group: 64"
refused grouped "$tmp/grouped.h5" "(moeq's grouped q2..q8, integer i2..i8s), which llama.cpp cannot run: model.layers"
q mixtral-tiny milo "method: milo, format: q4_0, rank: 4, rounds: 1"
refused milo "$tmp/milo.h5" "low-rank compensator"
refused lora "$tmp/milo.h5" "experts.0.w1.weight (a routed expert" --lora "$tmp/adapter.gguf"
[ ! -e "$tmp/adapter.gguf" ] || fail "lora: a refused export left the adapter"
"$MOEQ" export -q --format gguf --no-compensators "$tmp/milo.h5" "$tmp/milo.gguf" >"$tmp/milo.out" ||
    fail "--no-compensators"
grep -q "compensators dropped" "$tmp/milo.out" || fail "--no-compensators summary: $(cat "$tmp/milo.out")"
"$venv" "$check" "$MOEQ" "$tmp/milo.h5" "$tiny" "$tmp/milo.gguf" 1 sample || fail "milo base: check"
echo "ok"
