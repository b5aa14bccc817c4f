#!/usr/bin/env bash
# Fault injection into the real executable (MOEQ_FAULT, io/sysio.h): for every seam (allocation, pread,
# pwrite, fdatasync), at a spread of call numbers N, transient (fails once: the unit is retried) and
# persistent (fails from N on: the units are given up), with EIO and ENOSPC. Every run must either succeed
# with the reference artifact, or fail cleanly: exit 4 (I/O) or 5 (memory), a message naming the cause,
# no final artifact; then `--resume` without the fault must give the reference artifact byte for byte.
# Prints the number of injected runs (README "Reliability"). MOEQ_FAULT_NS overrides the call numbers
# (the ASan job uses fewer: the same error paths, a third of the runs).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-hqq3.yaml"
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 -q --model "$tiny" --recipe "$recipe" "$@"; }
q --out "$tmp/ref.h5" || fail "reference run"
runs=0 failed_clean=0 recovered=0
for spec in "pread EIO" "pwrite ENOSPC" "pwrite EIO" "fsync EIO" "alloc ENOMEM"; do
    set -- $spec
    seam=$1 err=$2
    for n in ${MOEQ_FAULT_NS:-1 4 16 64 256}; do
        for k in 1 100000; do
            rm -f "$tmp/f.h5"*
            set +e
            MOEQ_FAULT=$seam:$n:$k:$err q --out "$tmp/f.h5" >"$tmp/f.log" 2>&1
            rc=$?
            set -e
            runs=$((runs + 1))
            what="MOEQ_FAULT=$seam:$n:$k:$err"
            if [ $rc -eq 0 ]; then
                cmp -s "$tmp/ref.h5" "$tmp/f.h5" || fail "$what: succeeded with a different artifact"
                continue
            fi
            case $rc in 4|5) ;; *) cat "$tmp/f.log"; fail "$what: exit $rc (expected 0, 4 or 5)" ;; esac
            grep -qE "read of|write of|fdatasync|out of memory" "$tmp/f.log" || { cat "$tmp/f.log"; fail "$what: no cause named"; }
            [ ! -e "$tmp/f.h5" ] || fail "$what: a failed run left a final artifact"
            failed_clean=$((failed_clean + 1))
            if [ -e "$tmp/f.h5.partial" ]; then
                q --out "$tmp/f.h5" --resume >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "$what: resume"; }
            else # failed before the skeleton existed: a plain rerun
                q --out "$tmp/f.h5" >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "$what: rerun"; }
            fi
            cmp -s "$tmp/ref.h5" "$tmp/f.h5" || fail "$what: resumed artifact differs"
            recovered=$((recovered + 1))
        done
    done
done
echo "fault injection: $runs runs, $failed_clean failed cleanly and were resumed to the identical artifact ($recovered), the rest recovered by retries"
echo PASS
