#!/usr/bin/env bash
# One run per --out (mpi): rank 0 holds a POSIX lock on OUT.lock for the whole run. A second run on the same
# --out, with --resume or --force, is refused (exit 7, the holder's host and pid named) and the first one
# finishes intact (it used to be killed with a false "damaged" error, its files removed or rewritten).
# The first run is held mid-way deterministically: MOEQ_CRASH_SIGNAL=STOP pauses rank 0 after its 5th
# journal record, the test resumes it with SIGCONT.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 -q --model "$tiny" "$@"; }
q --out "$tmp/ref.h5" >/dev/null 2>&1 || fail "reference run"
[ ! -e "$tmp/ref.h5.lock" ] || fail "a finished run left its lock file"
MOEQ_CRASH_SIGNAL=STOP MOEQ_CRASH_AT=journaled:5 q --out "$tmp/a.h5" >"$tmp/first.log" 2>&1 &
first=$!
holder=""
for _ in $(seq 600); do # until rank 0 is stopped (state T), at most 60 s
    if [ -s "$tmp/a.h5.lock" ]; then
        holder=$(sed -n 's/.* pid \([0-9]*\) .*/\1/p' "$tmp/a.h5.lock")
        [ -n "$holder" ] && [ "$(awk '{print $3}' "/proc/$holder/stat" 2>/dev/null)" = T ] && break
    fi
    kill -0 $first 2>/dev/null || { cat "$tmp/first.log"; fail "the first run ended before it was held"; }
    sleep 0.1
done
[ -n "$holder" ] && [ "$(awk '{print $3}' "/proc/$holder/stat")" = T ] || { kill -CONT "$holder" 2>/dev/null; fail "first run not held"; }
for flag in --resume --force; do
    set +e
    q --out "$tmp/a.h5" $flag >"$tmp/second.log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 7 ] || { kill -CONT "$holder"; cat "$tmp/second.log"; fail "second run ($flag) while the first holds the lock: exit $rc, expected 7"; }
    grep -q "another moeq run is writing $tmp/a.h5 (it says: host $(hostname) pid $holder since" "$tmp/second.log" ||
        { kill -CONT "$holder"; cat "$tmp/second.log"; fail "$flag: the holder is not named"; }
done
kill -CONT "$holder"
wait $first || { cat "$tmp/first.log"; fail "the first run did not finish after the refused ones"; }
cmp "$tmp/ref.h5" "$tmp/a.h5" || fail "the first run's artifact differs from the reference"
[ ! -e "$tmp/a.h5.lock" ] && [ ! -e "$tmp/a.h5.partial" ] && [ ! -e "$tmp/a.h5.journal" ] || fail "files left behind"
# a lock left by a process that is gone (kill -9) does not block: the lock went with the process
set +e
MOEQ_CRASH_AT=journaled:5 q --out "$tmp/b.h5" >/dev/null 2>&1
set -e
[ -e "$tmp/b.h5.lock" ] || fail "kill -9 should leave the lock file (not the lock)"
q --out "$tmp/b.h5" --resume >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "resume after kill -9 with a stale lock file"; }
cmp "$tmp/ref.h5" "$tmp/b.h5" || fail "resumed artifact differs"
echo PASS
