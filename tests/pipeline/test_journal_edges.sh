#!/usr/bin/env bash
# Journal edge cases of --resume (mpi). An empty or 10-byte OUT.journal (a crash while it was created, or
# emptied) beside a consistent OUT.partial: no unit can be recorded in it, so --resume warns and redoes every
# unit (it used to refuse: "too short for a journal"). A journal left without its .partial (removed by hand,
# or a crash while --force removed both): its records describe bytes that are gone, so --resume warns,
# removes it and starts a new artifact (it used to fail: "cannot create: File exists").
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 --model "$tiny" --out "$tmp/k.h5" "$@"; }
q -q >/dev/null 2>&1 && mv "$tmp/k.h5" "$tmp/ref.h5" || fail "reference run"
for len in 0 10; do
    rm -f "$tmp/k.h5"*
    set +e
    MOEQ_CRASH_AT=journaled:5 q -q >/dev/null 2>&1
    set -e
    [ -e "$tmp/k.h5.partial" ] || fail "crash point"
    truncate -s $len "$tmp/k.h5.journal"
    q --resume >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "resume with a $len-byte journal"; }
    grep -q "shorter than a journal header.*every unit of .* is redone" "$tmp/r.log" || { cat "$tmp/r.log"; fail "$len bytes: warning"; }
    grep -q "0 of 53 units journaled" "$tmp/r.log" || { cat "$tmp/r.log"; fail "$len bytes: units not all redone"; }
    cmp "$tmp/ref.h5" "$tmp/k.h5" || fail "$len-byte journal: resumed artifact differs"
done
rm -f "$tmp/k.h5"*
set +e
MOEQ_CRASH_AT=journaled:5 q -q >/dev/null 2>&1
set -e
rm "$tmp/k.h5.partial"
q --resume >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "resume with a journal and no .partial"; }
grep -q "a journal without its .*starting a new artifact" "$tmp/r.log" || { cat "$tmp/r.log"; fail "orphan journal: warning"; }
cmp "$tmp/ref.h5" "$tmp/k.h5" || fail "orphan journal: artifact differs"
echo PASS
