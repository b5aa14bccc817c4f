#!/usr/bin/env bash
# Crash test: 20 runs of `mpirun -n 2 moeq quantize`, each killed with SIGKILL (every process of the job at
# once, like a node loss) after a seeded random delay spread over the run's duration, then resumed (with a
# second kill in half of the cases); every final artifact must equal the uninterrupted one byte for byte.
# Reproducible: MOEQ_CRASH_SEED (default 20261123) seeds the delays.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 -q --model "$tiny" --recipe "$recipe" "$@"; }
t0=$(date +%s%N)
q --out "$tmp/ref.h5" || fail "reference run"
dur_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
RANDOM=${MOEQ_CRASH_SEED:-20261123}
killed=0 completed_before_kill=0
# kill_after MS ARGS...: runs the job in the background and SIGKILLs all of its processes after MS milliseconds
kill_after() {
    local ms=$1; shift
    "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 -q --model "$tiny" \
        --recipe "$recipe" "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if kill -0 "$pid" 2>/dev/null; then
        # every process of the job (Open MPI gives each rank its own process group, so the group of mpirun
        # is not enough): mpirun and both ranks, matched by the unique output path
        pkill -9 -f -- "--out $tmp/c.h5" 2>/dev/null || true
        killed=$((killed + 1))
    else
        completed_before_kill=$((completed_before_kill + 1))
    fi
    wait "$pid" 2>/dev/null || true
}
for i in $(seq 1 20); do
    rm -f "$tmp/c.h5"*
    kill_after $((RANDOM % (dur_ms + 200))) --out "$tmp/c.h5"
    if [ $((i % 2)) -eq 0 ] && [ -e "$tmp/c.h5.partial" ]; then # a second kill, during the resume
        kill_after $((RANDOM % (dur_ms / 2 + 1))) --out "$tmp/c.h5" --resume
    fi
    if [ -e "$tmp/c.h5.partial" ]; then
        q --out "$tmp/c.h5" --resume >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "run $i: resume"; }
    elif [ ! -e "$tmp/c.h5" ]; then # killed before the skeleton existed: nothing to resume
        q --out "$tmp/c.h5" >"$tmp/r.log" 2>&1 || { cat "$tmp/r.log"; fail "run $i: rerun"; }
    fi
    cmp -s "$tmp/ref.h5" "$tmp/c.h5" || fail "run $i: the artifact after kill -9 and resume differs"
done
echo "crash test: 20 runs (uninterrupted run $dur_ms ms), $killed kills with SIGKILL, $completed_before_kill runs finished before their kill; all 20 final artifacts identical"
echo PASS
