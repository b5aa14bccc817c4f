#!/usr/bin/env bash
# Same bytes on every machine, or a refusal that says why (docs/NUMERICS.md); source
# identity of a resumed run (README "Resume"). Forces OpenBLAS's core types per rank (OPENBLAS_CORETYPE) to
# play nodes of different CPU generations in one run:
#  1. the default run pins OpenBLAS's Haswell kernel: its artifact is the one OPENBLAS_CORETYPE=Haswell gives,
#     and its checksum is the README's main-job checksum; Sandybridge (another kernel) gives other bytes and
#     another fingerprint; on an AVX-512 CPU, MOEQ_NUMERICS=native gives what SkylakeX gives;
#  2. ranks of two core types are refused (exit 3, both named); --allow-mixed-numerics runs and records both;
#  3. a partial run resumed under another core type is refused (exit 7), and under its own gives the same bytes;
#  4. eval under another core type says so and passes (recorded errors within tolerance);
#  5. sources: a shard rewritten in place (same size) after a crash, or another directory of the same geometry,
#     refuses the resume (exit 7, tensors named); the original bytes under a new mtime and inode resume to the
#     same artifact; eval against changed weights fails (exit 3, tensor named, the source blamed).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml" # the README main job's recipe (scripts/run-default.sh)
grep -q 'mixtral-tiny-milo3.yaml' "$MOEQ_SOURCE_DIR/scripts/run-default.sh" || fail "the main job's recipe moved"
q() { # q RANKS OUT [options...]  (environment passes through)
    local n=$1 out=$2
    shift 2
    "$MPIEXEC" --oversubscribe -n "$n" "$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$recipe" \
        --out "$out" "$@"
}
csum() { printf '%016x' "$(h5dump -a artifact_checksum "$1" | sed -n 's/^ *(0): \([0-9]*\)$/\1/p')"; }
attr() { # attr FILE NAME: a root string attribute (h5dump)
    h5dump -a "$2" "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'
}
expect_rc() { # expect_rc CODE LOG WHAT
    [ "$rc" -eq "$1" ] || { cat "$2" >&2; fail "$3: exit $rc, want $1"; }
}

# ---- 1. the pin ----
# (OpenBLAS's AVX-512 kernels (SkylakeX, Cooperlake) and Sandybridge's give other MiLo bytes than Haswell's and
# Zen's; the README's checksum is the Haswell kernel's)
unset OPENBLAS_CORETYPE MOEQ_NUMERICS
q 2 "$tmp/default.h5"
OPENBLAS_CORETYPE=Haswell q 2 "$tmp/haswell.h5"
OPENBLAS_CORETYPE=Sandybridge q 1 "$tmp/sandy.h5"
cmp -s "$tmp/default.h5" "$tmp/haswell.h5" || fail "the default run is not the Haswell kernel's artifact"
readme=$(sed -n 's/^  artifact checksum \([0-9a-f]\{16\}\)$/\1/p' "$MOEQ_SOURCE_DIR/README.md" | head -1)
[ -n "$readme" ] || fail "no main-job checksum in README.md"
[ "$(csum "$tmp/default.h5")" = "$readme" ] || fail "default run: checksum $(csum "$tmp/default.h5"), README says $readme"
[ "$(csum "$tmp/sandy.h5")" != "$readme" ] || fail "Sandybridge's kernel gave the same bytes: the test shows nothing"
fp_h=$(attr "$tmp/haswell.h5" numerics_fingerprint) fp_s=$(attr "$tmp/sandy.h5" numerics_fingerprint)
[ ${#fp_h} -eq 16 ] && [ ${#fp_s} -eq 16 ] && [ "$fp_h" != "$fp_s" ] ||
    fail "numerics fingerprints '$fp_h' (Haswell) and '$fp_s' (Sandybridge)"
attr "$tmp/haswell.h5" numerics | grep -q Haswell || fail "the artifact does not say which kernel made it"
if grep -qw avx512f /proc/cpuinfo; then
    MOEQ_NUMERICS=native q 1 "$tmp/native.h5"
    OPENBLAS_CORETYPE=SkylakeX q 1 "$tmp/skx.h5"
    # (the files differ in the kernel they name when native picks Cooperlake: compare the data's checksum)
    [ "$(csum "$tmp/native.h5")" = "$(csum "$tmp/skx.h5")" ] || fail "MOEQ_NUMERICS=native is not an AVX-512 kernel's"
    [ "$(csum "$tmp/native.h5")" != "$readme" ] || fail "AVX-512 kernels gave the pinned bytes: the pin shows nothing"
    echo "AVX-512 CPU: native = SkylakeX $(csum "$tmp/native.h5"), pinned $readme"
fi

# ---- 2. ranks that disagree ----
mixed() { # mixed OUT [options...]: rank 0 Haswell, rank 1 Sandybridge
    local out=$1
    shift
    "$MPIEXEC" --oversubscribe -n 1 -x OPENBLAS_CORETYPE=Haswell "$MOEQ" quantize -q --progress 0 --model "$tiny" \
        --recipe "$recipe" --out "$out" "$@" : -n 1 -x OPENBLAS_CORETYPE=Sandybridge "$MOEQ" quantize -q \
        --progress 0 --model "$tiny" --recipe "$recipe" --out "$out" "$@"
}
set +e
mixed "$tmp/m.h5" >"$tmp/m.log" 2>&1
rc=$?
set -e
expect_rc 3 "$tmp/m.log" "ranks of two core types"
grep -q "rank 0 (.*Haswell" "$tmp/m.log" && grep -q "rank 1 (.*Sandybridge" "$tmp/m.log" ||
    { cat "$tmp/m.log" >&2; fail "the refusal does not name both ranks and kernels"; }
[ ! -e "$tmp/m.h5" ] && [ ! -e "$tmp/m.h5.partial" ] || fail "a refused run left files"
mixed "$tmp/m.h5" --allow-mixed-numerics >"$tmp/m.log" 2>&1 || { cat "$tmp/m.log" >&2; fail "--allow-mixed-numerics"; }
[ "$(attr "$tmp/m.h5" numerics_fingerprint)" = "$fp_h,$fp_s" ] || fail "a mixed run records '$(attr "$tmp/m.h5" numerics_fingerprint)'"

# ---- 3. resume across core types ----
OPENBLAS_CORETYPE=Haswell MOEQ_CRASH_AT=journaled:5 q 2 "$tmp/r.h5" >/dev/null 2>&1 && fail "crash point did not stop the run"
[ -e "$tmp/r.h5.partial" ] || fail "no partial run"
set +e
OPENBLAS_CORETYPE=Sandybridge q 2 "$tmp/r.h5" --resume >"$tmp/r.log" 2>&1
rc=$?
set -e
expect_rc 7 "$tmp/r.log" "resume under another kernel"
grep -q "started under numerics $fp_h" "$tmp/r.log" && grep -q "OPENBLAS_CORETYPE" "$tmp/r.log" ||
    { cat "$tmp/r.log" >&2; fail "the refusal does not say which numerics and how to pin"; }
q 2 "$tmp/r.h5" --resume # the default pin is Haswell's
cmp -s "$tmp/r.h5" "$tmp/default.h5" || fail "resumed under the same numerics: other bytes"

# ---- 4. eval under another core type ----
head -c 4096 "$tiny/val.txt" >"$tmp/short.txt" # a few perplexity windows: the weights are what is checked here
set +e
OPENBLAS_CORETYPE=Sandybridge "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" eval --model "$tiny" "$tmp/default.h5" \
    --probe-tokens 8 --text "$tmp/short.txt" --json "$tmp/e.json" >"$tmp/e.log" 2>&1
rc=$?
set -e
expect_rc 0 "$tmp/e.log" "eval under another kernel"
grep -q "made under ANOTHER fingerprint" "$tmp/e.log" || { cat "$tmp/e.log" >&2; fail "eval does not say the fingerprints differ"; }
grep -q "artifact's: $fp_h" "$tmp/e.log" || fail "eval does not name the artifact's fingerprint"
n_q=$(sed -n 's/.*recorded weight errors: \([0-9]*\) of \([0-9]*\) agree.*/\1 \2/p' "$tmp/e.log")
set -- $n_q
[ "$#" -eq 2 ] && [ "$1" -eq "$2" ] && [ "$2" -gt 0 ] || fail "recorded errors under another kernel: '$n_q'"

# ---- 5. source identity ----
src="$tmp/model"
cp -r "$tiny" "$src"
chmod -R u+w "$src"
shard="$src/model-00001-of-00002.safetensors"
cp -p "$shard" "$tmp/shard.orig"
qm() { # qm MODEL OUT [options...]
    local m=$1 out=$2
    shift 2
    "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize -q --progress 0 --model "$m" --recipe "$recipe" --out "$out" "$@"
}
rewrite() { # the shard's data region shifted by one bf16 element, in place: same size, same header, other weights
    local f=$1 hdr size
    hdr=$(($(od -An -t u8 -N 8 "$f") + 8))
    size=$(stat -c %s "$f")
    dd if="$f" of="$f" bs=1 skip=$((hdr + 4098)) seek=$((hdr + 4096)) count=$((size - hdr - 8192)) \
        conv=notrunc status=none
}
MOEQ_CRASH_AT=journaled:5 qm "$src" "$tmp/s.h5" >/dev/null 2>&1 && fail "crash point did not stop the run"
rewrite "$shard"
[ "$(stat -c %s "$shard")" -eq "$(stat -c %s "$tmp/shard.orig")" ] || fail "the rewrite changed the size"
set +e
qm "$src" "$tmp/s.h5" --resume >"$tmp/s.log" 2>&1
rc=$?
set -e
expect_rc 7 "$tmp/s.log" "resume after a shard was rewritten in place"
grep -q "the source of [0-9]* journaled tensors\? changed" "$tmp/s.log" && grep -q "'model.layers" "$tmp/s.log" ||
    { cat "$tmp/s.log" >&2; fail "the refusal does not name the changed tensors"; }
# another directory of the same geometry: the rewritten copy, the partial run made from the original
cp -p "$tmp/shard.orig" "$shard"
MOEQ_CRASH_AT=journaled:5 qm "$tiny" "$tmp/o.h5" >/dev/null 2>&1 && fail "crash point did not stop the run"
rewrite "$shard"
set +e
qm "$src" "$tmp/o.h5" --resume >"$tmp/o.log" 2>&1
rc=$?
set -e
expect_rc 7 "$tmp/o.log" "resume from another directory of the same geometry"
# the same bytes, another mtime and inode: rehashed, accepted, the same artifact
rm -f "$shard" && cp "$tmp/shard.orig" "$shard" && touch "$shard"
"$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 --model "$src" --recipe "$recipe" --out "$tmp/s.h5" \
    --resume >"$tmp/s.log" 2>&1 || { cat "$tmp/s.log" >&2; fail "resume with the original bytes"; }
grep -q "rehashed, same bytes" "$tmp/s.log" || { cat "$tmp/s.log" >&2; fail "no word of the rehash"; }
# (the file names its source directory: the data's checksum is what must be the same)
[ "$(csum "$tmp/s.h5")" = "$readme" ] || fail "resumed from the original bytes: another artifact"
qm "$tiny" "$tmp/o.h5" --resume >/dev/null 2>&1 || fail "resume of the other partial run from its own model"
cmp -s "$tmp/o.h5" "$tmp/default.h5" || fail "resumed from its own model: another artifact"
# eval of the artifact against changed weights
rewrite "$shard"
set +e
"$MPIEXEC" --oversubscribe -n 2 "$MOEQ" eval --model "$src" "$tmp/default.h5" --probe-tokens 8 --text "$tmp/short.txt" >"$tmp/ev.log" 2>&1
rc=$?
set -e
expect_rc 3 "$tmp/ev.log" "eval against changed weights"
grep -q "recomputed, .* recorded .*the source bytes differ" "$tmp/ev.log" && grep -q "is not the checkpoint" "$tmp/ev.log" ||
    { cat "$tmp/ev.log" >&2; fail "eval's refusal does not name the tensors and the source"; }
echo "numerics: pinned $fp_h = README checksum $readme; Sandybridge $fp_s; refusals and resumes as documented"
