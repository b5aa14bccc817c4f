#!/usr/bin/env bash
# End-to-end: format 1 stays readable, and is not resumed. tests/fixtures/artifact-v1/ holds a complete
# format-1 artifact of mixtral-tiny (configs/mixtral-tiny-milo3.yaml) written by moeq 71ea535, the last
# format-1 moeq. `moeq eval` verifies it and measures it as it measures a format-2 artifact of the same
# recipe made now (same checksum and perplexity where the numerics fingerprints agree, which the pinned
# OpenBLAS kernel gives on x86-64); `moeq export` of both gives the same safetensors byte for byte;
# `moeq quantize --resume` of a format-1 partial run is refused (exit 7) with the reason, the file untouched.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
xz -dc "$MOEQ_SOURCE_DIR/tests/fixtures/artifact-v1/mixtral-tiny-milo3.h5.xz" >"$tmp/v1.h5"
h5dump -a moeq_format_version "$tmp/v1.h5" | grep -q '(0): 1$' || fail "fixture: not a format-1 artifact"
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$recipe" --out "$tmp/v2.h5" || fail "quantize"
h5dump -a moeq_format_version "$tmp/v2.h5" | grep -q '(0): 2$' || fail "quantize writes format 2"
head -c 4000 "$tiny/val.txt" >"$tmp/text.txt" # a few windows: the same protocol, in seconds
for v in v1 v2; do
    "$MPIEXEC" -n 2 "$MOEQ" eval --progress 0 --model "$tiny" "$tmp/$v.h5" --text "$tmp/text.txt" \
        --json "$tmp/$v.json" >"$tmp/$v.txt" 2>&1 || { cat "$tmp/$v.txt"; fail "eval of the format-${v#v} artifact"; }
    grep -q "integrity: 127 tensors.*: ok" "$tmp/$v.txt" || { cat "$tmp/$v.txt"; fail "$v: integrity line"; }
done
jq -e '.integrity.format_version == 1' "$tmp/v1.json" >/dev/null || fail "eval JSON: format_version 1"
jq -e '.integrity.format_version == 2' "$tmp/v2.json" >/dev/null || fail "eval JSON: format_version 2"
fp() { h5dump -a numerics_fingerprint "$1" | sed -n 's/.*(0): "\(.*\)"/\1/p'; }
if [ "$(fp "$tmp/v1.h5")" = "$(fp "$tmp/v2.h5")" ]; then
    # the same numerics: the same bytes, so the same checksum and the same perplexity
    for k in '.integrity.artifact_checksum' '.perplexity.quantized'; do
        a=$(jq -c "$k" "$tmp/v1.json") b=$(jq -c "$k" "$tmp/v2.json")
        [ "$a" = "$b" ] && [ "$a" != null ] || fail "$k: format 1 $a, format 2 $b"
    done
    "$MOEQ" export -q "$tmp/v1.h5" "$tmp/e1" && "$MOEQ" export -q "$tmp/v2.h5" "$tmp/e2" || fail "export"
    n=0
    for f in "$tmp"/e1/*.safetensors; do
        cmp "$f" "$tmp/e2/${f##*/}" || fail "export: ${f##*/} differs between format 1 and format 2"
        n=$((n + 1))
    done
    [ $n -ge 1 ] || fail "export wrote no shard"
else
    echo "numerics differ from the fixture's ($(fp "$tmp/v1.h5") vs $(fp "$tmp/v2.h5")): bytes not compared"
    "$MOEQ" export -q "$tmp/v1.h5" "$tmp/e1" || fail "export of format 1"
fi
# a format-1 partial run is not resumed: exit 7, the reason, the files as they were
cp "$tmp/v1.h5" "$tmp/r.h5.partial"
cp "$tmp/r.h5.partial" "$tmp/before"
set +e
"$MOEQ" quantize --progress 0 --model "$tiny" --recipe "$recipe" --out "$tmp/r.h5" --resume >"$tmp/r.log" 2>&1
rc=$?
set -e
[ $rc -eq 7 ] || { cat "$tmp/r.log"; fail "resume of a format-1 partial run: exit $rc, expected 7"; }
grep -q "format-1 artifact" "$tmp/r.log" && grep -q "HINT: finish the run with the moeq that started it" "$tmp/r.log" ||
    { cat "$tmp/r.log"; fail "resume refusal: no reason"; }
cmp "$tmp/before" "$tmp/r.h5.partial" || fail "the refused partial run was changed"
[ ! -e "$tmp/r.h5" ] || fail "a refused resume made an artifact"
echo PASS
