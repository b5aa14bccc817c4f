#!/usr/bin/env bash
# End-to-end (mpi): `moeq quantize` on the tiny real model and on a synthesized DeepSeek-style FP8
# checkpoint: the artifact is byte-identical for 1..4 ranks, both schedules and read-ahead off (the CPU
# default), on and with a budget smaller than a tensor; h5dump reads it; kill -9
# at several points followed by --resume gives the identical artifact; bad input fails cleanly and leaves
# an existing artifact untouched; resuming with another recipe is refused.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
# no thread-count settings: the artifact must not depend on them
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
q() { # q NP OUT [args...]
    local np=$1 out=$2; shift 2
    "$MPIEXEC" --oversubscribe -n "$np" "$MOEQ" quantize --progress 0 --out "$out" "$@"
}

# ---- the reference artifact and rank-count / schedule independence ----
q 1 "$tmp/r1.h5" --model "$tiny" --recipe "$recipe" >"$tmp/r1.log" 2>&1 || { cat "$tmp/r1.log"; fail "1 rank"; }
grep -q "artifact checksum" "$tmp/r1.log" || fail "summary printed"
for np in 2 3 4; do
    q $np "$tmp/r$np.h5" --model "$tiny" --recipe "$recipe" --schedule static >/dev/null 2>&1 || fail "$np ranks static"
    cmp "$tmp/r1.h5" "$tmp/r$np.h5" || fail "artifact of $np ranks (static) differs from 1 rank"
done
q 3 "$tmp/d3.h5" --model "$tiny" --recipe "$recipe" --schedule dynamic >/dev/null 2>&1 || fail "3 ranks dynamic"
cmp "$tmp/r1.h5" "$tmp/d3.h5" || fail "dynamic schedule differs"
# read-ahead (a reader thread per rank, the next unit asked for ahead): the same bytes
for spec in "dynamic 256" "static 1" "dynamic 1"; do
    set -- $spec
    q 3 "$tmp/ra.h5" --model "$tiny" --recipe "$recipe" --schedule $1 --read-ahead $2 --stats "$tmp/ra.json" \
        >/dev/null 2>&1 || fail "read-ahead $spec"
    cmp "$tmp/r1.h5" "$tmp/ra.h5" || fail "read-ahead ($spec) changed the artifact"
    python3 - "$tmp/ra.json" "$2" <<'PY' || fail "read-ahead $spec stats"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["read_ahead_bytes"] == int(sys.argv[2]) << 20, d["read_ahead_bytes"]
s = d["sum"]
assert s["bytes_read"] >= d["bytes_in_planned"] and s["read_s"] > 0 and 0 <= s["read_wait_s"], s
# every rank's figures (the real worker's and the run's) reach rank 0: units run, compute, bytes written
assert s["units"] == d["units_this_run"] == d["units"] and len(d["ranks_detail"]) == d["ranks"] == 3, d
assert s["compute_s"] > 0 and s["bytes_written"] > 0 and all(r["peak_rss_bytes"] > 0 for r in d["ranks_detail"]), d
PY
    rm -f "$tmp/ra.h5"
done
[ ! -e "$tmp/r1.h5.partial" ] && [ ! -e "$tmp/r1.h5.journal" ] || fail "partial/journal left behind"
h5dump -d /tables/routed_expert "$tmp/r1.h5" >"$tmp/dump.txt"
grep -q '"model.layers.0.block_sparse_moe.experts.0.w2.weight' "$tmp/dump.txt" && grep -q '"milo' "$tmp/dump.txt" &&
    grep -q '"ok' "$tmp/dump.txt" && ! grep -q '"pending' "$tmp/dump.txt" || fail "h5dump shows names, method and status"
h5dump -A "$tmp/r1.h5" >"$tmp/root.txt"
grep -q '(0): "complete' "$tmp/root.txt" || fail "root status complete"

# ---- a DeepSeek-style FP8 checkpoint: dense first layer, shared experts, block scales ----
"$MOEQ" synth --arch deepseek_v3 --layers 3 --dense-layers 1 --experts 6 --top-k 2 --hidden 256 \
    --intermediate 128 --dtype fp8 --shard-size 300000 -q "$tmp/ds" >/dev/null
cat >"$tmp/ds.yaml" <<'YAML'
version: 1
defaults: {method: milo, bits: 3, group: 64, rank: 4, rounds: 2}
rules:
  - match: {class: attention}
    set: {method: hqq, bits: 4, group: 32}
  - match: {class: shared_expert}
    set: {bits: 4, rank: 8}
YAML
q 1 "$tmp/ds1.h5" --model "$tmp/ds" --recipe "$tmp/ds.yaml" >/dev/null 2>&1 || fail "deepseek 1 rank"
q 3 "$tmp/ds3.h5" --model "$tmp/ds" --recipe "$tmp/ds.yaml" --schedule static >/dev/null 2>&1 || fail "deepseek 3 ranks"
cmp "$tmp/ds1.h5" "$tmp/ds3.h5" || fail "deepseek artifacts differ across rank counts"
q 2 "$tmp/ds3.h5" --model "$tmp/ds" --recipe "$tmp/ds.yaml" --read-ahead 1 --force >/dev/null 2>&1 || fail "deepseek read-ahead"
cmp "$tmp/ds1.h5" "$tmp/ds3.h5" || fail "deepseek: read-ahead (FP8 bytes and scales decoded by the worker) differs"

# ---- kill -9 at several points, then --resume: the identical artifact ----
for point in prepared:1 unit-durable:3 journaled:7 journaled:41 sealed:1; do
    rm -f "$tmp/k.h5"*
    set +e
    MOEQ_CRASH_AT=$point q 2 "$tmp/k.h5" --model "$tiny" --recipe "$recipe" >"$tmp/k.log" 2>&1
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "crash at $point did not stop the run"
    [ ! -e "$tmp/k.h5" ] || fail "crash at $point left a final artifact"
    q 2 "$tmp/k.h5" --model "$tiny" --recipe "$recipe" --resume >"$tmp/k2.log" 2>&1 || { cat "$tmp/k2.log"; fail "resume after $point"; }
    cmp "$tmp/r1.h5" "$tmp/k.h5" || fail "resumed artifact after a crash at $point differs"
done

# ---- graceful stop (SIGUSR1/SIGTERM as Slurm sends them) on rank 0 at a fixed point: units in flight finish
# and are journaled, exit 75 (requeue), and --resume completes to the identical artifact; both schedules ----
# read-ahead 256: a unit assigned ahead and not started is given back at the stop
for spec in "dynamic USR1 journaled:6 0" "static TERM journaled:9 0" "dynamic USR1 journaled:6 256"; do
    set -- $spec
    rm -f "$tmp/k.h5"*
    set +e
    MOEQ_CRASH_SIGNAL=$2 MOEQ_CRASH_AT=$3 q 2 "$tmp/k.h5" --model "$tiny" --recipe "$recipe" --schedule $1 \
        --read-ahead $4 >"$tmp/k.log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 75 ] || { cat "$tmp/k.log"; fail "graceful stop ($spec) must exit 75, got $rc"; }
    grep -q "stopped by signal" "$tmp/k.log" || fail "graceful stop message ($spec)"
    q 2 "$tmp/k.h5" --model "$tiny" --recipe "$recipe" --schedule $1 --resume >/dev/null 2>&1 || fail "resume after $spec"
    cmp "$tmp/r1.h5" "$tmp/k.h5" || fail "resumed artifact after a graceful stop ($spec) differs"
done

# ---- resume with another recipe is refused, the partial run is kept ----
rm -f "$tmp/k.h5"*
set +e
MOEQ_CRASH_AT=journaled:5 q 2 "$tmp/k.h5" --model "$tiny" --recipe "$recipe" >/dev/null 2>&1
q 2 "$tmp/k.h5" --model "$tiny" --recipe "$MOEQ_SOURCE_DIR/configs/mixtral-tiny-hqq3.yaml" --resume 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 7 ] || fail "resume with another recipe must exit 7 (got $rc)"
grep -q "planned for another model, recipe or importance matrix" "$tmp/err" || fail "resume refusal message"
[ -e "$tmp/k.h5.partial" ] || fail "refused resume must keep the partial artifact"

# ---- bad input: clear error, non-zero exit, the existing artifact untouched ----
before=$(sha256sum "$tmp/r1.h5")
mkdir -p "$tmp/bad"
cp "$tiny"/config.json "$tiny"/model.safetensors.index.json "$tiny"/model-00002-of-00002.safetensors "$tmp/bad/"
set +e
q 2 "$tmp/r1.h5" --model "$tmp/bad" --recipe "$recipe" --force 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "shard listed in the index is missing" "$tmp/err" || { cat "$tmp/err"; fail "missing shard (rc $rc)"; }
head -c 3000000 "$tiny/model-00001-of-00002.safetensors" >"$tmp/bad/model-00001-of-00002.safetensors"
q 2 "$tmp/r1.h5" --model "$tmp/bad" --recipe "$recipe" --force 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "truncated" "$tmp/err" || { cat "$tmp/err"; fail "truncated shard (rc $rc)"; }
printf 'version: 1\nrules:\n  - match: {class: experts}\n    set: {bits: 2}\n' >"$tmp/bad.yaml"
q 2 "$tmp/r1.h5" --model "$tiny" --recipe "$tmp/bad.yaml" --force 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && grep -q "bad.yaml:3: unknown tensor class \"experts\"" "$tmp/err" || { cat "$tmp/err"; fail "bad recipe (rc $rc)"; }
q 1 "$tmp/r1.h5" --model "$tiny" --recipe "$recipe" 2>"$tmp/err"; rc=$?
[ $rc -eq 7 ] && grep -q "exists" "$tmp/err" || fail "existing artifact without --force (rc $rc)"
set -e
[ "$before" = "$(sha256sum "$tmp/r1.h5")" ] || fail "a failed run modified the existing artifact"
echo PASS
