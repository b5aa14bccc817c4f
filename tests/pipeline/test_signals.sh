#!/usr/bin/env bash
# Signals (mpi). A signal to any one rank stops the whole job cleanly: SIGTERM/SIGUSR1 to rank 1 only
# (MPMD: only its app context sets MOEQ_CRASH_AT) gives exit 75, and --resume the reference artifact (rank 1's
# signal used to be ignored). What holds for signals to mpirun itself (Open MPI 4.1; slurm/README.md): USR1 is
# forwarded to every rank: exit 75. TERM, INT and HUP make mpirun abort the job and exit 1 whatever the ranks
# return; the journal keeps what finished and --resume completes to the reference artifact.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
A=(quantize --progress 0 --model "$tiny" --out "$tmp/k.h5")
"$MPIEXEC" --oversubscribe -n 1 "$MOEQ" "${A[@]/#$tmp\/k.h5/$tmp/ref.h5}" -q >/dev/null 2>&1 || fail "reference run"
resume_identical() { # WHAT
    "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" "${A[@]}" --resume -q >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "$1: resume"; }
    cmp "$tmp/ref.h5" "$tmp/k.h5" || fail "$1: resumed artifact differs"
}
for spec in "TERM dynamic" "USR1 static"; do
    set -- $spec
    rm -f "$tmp/k.h5"*
    set +e
    "$MPIEXEC" --oversubscribe -n 1 "$MOEQ" "${A[@]}" --schedule $2 : \
        -n 1 -x MOEQ_CRASH_SIGNAL=$1 -x MOEQ_CRASH_AT=unit-durable:3 "$MOEQ" "${A[@]}" --schedule $2 : \
        -n 1 "$MOEQ" "${A[@]}" --schedule $2 >"$tmp/k.log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 75 ] || { cat "$tmp/k.log"; fail "SIG$1 to rank 1 ($2): exit $rc, expected 75"; }
    grep -q "stopped by signal [0-9]* on rank 1" "$tmp/k.log" || { cat "$tmp/k.log"; fail "SIG$1 to rank 1: message"; }
    resume_identical "SIG$1 to rank 1 ($2)"
done
# signals to mpirun: rank 0 is held (SIGSTOP after its 5th journal record) while mpirun gets the signal
rank0_held() { # prints rank 0's pid once it is stopped
    local h
    for _ in $(seq 600); do
        h=$(sed -n 's/.* pid \([0-9]*\) .*/\1/p' "$tmp/k.h5.lock" 2>/dev/null)
        [ -n "$h" ] && [ "$(awk '{print $3}' "/proc/$h/stat" 2>/dev/null)" = T ] && { echo "$h"; return; }
        sleep 0.1
    done
    fail "rank 0 not held"
}
for sig in USR1 TERM; do
    rm -f "$tmp/k.h5"*
    MOEQ_CRASH_SIGNAL=STOP MOEQ_CRASH_AT=journaled:5 "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" "${A[@]}" >"$tmp/k.log" 2>&1 &
    mp=$!
    h=$(rank0_held)
    kill -$sig $mp
    if [ $sig = USR1 ]; then # mpirun forwarded it: pending at the stopped rank 0 (bit 10 of ShdPnd/SigPnd)
        pend() { awk '/^(ShdPnd|SigPnd):/ {print $2}' "/proc/$h/status" | while read -r m; do
            [ $((0x$m & 0x200)) -ne 0 ] && echo yes; done; }
        for _ in $(seq 600); do [ -n "$(pend)" ] && break; sleep 0.1; done
        [ -n "$(pend)" ] || { kill -CONT $h; fail "mpirun did not forward USR1"; }
    fi
    kill -CONT $h 2>/dev/null || true
    set +e
    wait $mp
    rc=$?
    set -e
    if [ $sig = USR1 ]; then
        [ $rc -eq 75 ] || { cat "$tmp/k.log"; fail "USR1 to mpirun: exit $rc, expected 75"; }
    else
        [ $rc -eq 1 ] || { cat "$tmp/k.log"; fail "TERM to mpirun: exit $rc (Open MPI 4.1 exits 1)"; }
    fi
    resume_identical "SIG$sig to mpirun"
done
echo PASS
