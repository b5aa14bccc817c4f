#!/usr/bin/env bash
# End-to-end: a `moeq export` that fails once it has started writing (a dataset whose bytes changed, found
# while streaming) leaves no output directory it created, and never removes or changes one the user had
# (empty, or with files and --force); a good export afterwards works.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
printf 'version: 1\ndefaults: {method: rtn, bits: 4, group: 64}\n' >"$tmp/rtn.yaml"
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/rtn.yaml" --out "$tmp/a.h5" || fail "quantize"
# the last tensor in the artifact's unit order: the export has written shards' worth of data before it
t=model.layers.3.block_sparse_moe.experts.7.w2.weight
cp "$tmp/a.h5" "$tmp/bad.h5"
off=$(plane_offset "$tmp/bad.h5" "$t" codes)
[ -n "$off" ] || fail "no offset for codes"
b=$(od -An -tu1 -j $((off + 1)) -N1 "$tmp/bad.h5" | tr -d ' ')
printf "$(printf '\\%03o' $(((b ^ 0x5a) & 0xff)))" | dd of="$tmp/bad.h5" bs=1 seek=$((off + 1)) conv=notrunc status=none
cmp -s "$tmp/a.h5" "$tmp/bad.h5" && fail "byte not changed"
ex() { # ex OUT [args]: export bad.h5 into OUT; must fail with exit 3 naming the dataset
    local out=$1 rc; shift
    set +e
    "$MOEQ" export -q --shard-size 1MB "$@" "$tmp/bad.h5" "$out" 2>"$tmp/err"; rc=$?
    set -e
    [ $rc -eq 3 ] && grep -q "tensor '$t' dataset codes: checksum" "$tmp/err" ||
        { cat "$tmp/err"; fail "export of a changed artifact into $out: exit 3 naming the dataset (got $rc)"; }
}
# a new directory: gone again after the failure
ex "$tmp/new"
[ ! -e "$tmp/new" ] || { ls -la "$tmp/new"; fail "a failed export left the output directory it created"; }
# nested: only what the export created, not the parent the user made
mkdir "$tmp/parent"
ex "$tmp/parent/new"
[ -d "$tmp/parent" ] && [ ! -e "$tmp/parent/new" ] || fail "nested output directory"
# the user's own empty directory stays, empty
mkdir "$tmp/mine"
ex "$tmp/mine"
[ -d "$tmp/mine" ] && [ -z "$(ls -A "$tmp/mine")" ] || fail "the user's empty directory must stay as it was"
# the user's directory with a file, --force: the file stays, nothing else appears
mkdir "$tmp/full" && echo keep >"$tmp/full/README.md"
ex "$tmp/full" --force
[ "$(ls -A "$tmp/full")" = README.md ] && [ "$(cat "$tmp/full/README.md")" = keep ] ||
    { ls -A "$tmp/full"; fail "the user's files must stay, nothing added"; }
# and the good artifact exports into a new directory
"$MOEQ" export -q --shard-size 1MB "$tmp/a.h5" "$tmp/new" >/dev/null || fail "export of the good artifact"
[ -f "$tmp/new/config.json" ] && [ "$(ls "$tmp/new" | grep -c '^model-.*safetensors$')" -gt 1 ] || fail "export output"
echo PASS
