#!/usr/bin/env bash
# Non-regular files as inputs (mpi): a FIFO as the model's config.json, as --recipe and as `eval --text`
# is refused at once with exit 3 and the file named (open() of a FIFO without a writer used to block
# forever, and quantize then ignored SIGTERM). Each run is under `timeout` (30 s) so a hang fails the test.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
mkfifo "$tmp/pipe"
# expect_refused WHAT CMD...: exit 3 within 30 s, the FIFO named (TERM after 30 s: mpirun takes its ranks down)
expect_refused() {
    local what=$1 rc
    shift
    set +e
    timeout -k 10 30 "$@" >"$tmp/log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then # release readers left blocked (mpirun gone): open for writing
        for p in "$tmp/pipe" "$tmp/m/config.json"; do timeout 5 bash -c ": >'$p'" || true; done
        fail "$what: still blocked after 30 s"
    fi
    [ $rc -eq 3 ] || { cat "$tmp/log"; fail "$what: exit $rc, expected 3"; }
    grep -q "is a FIFO (named pipe), not a regular file" "$tmp/log" || { cat "$tmp/log"; fail "$what: message"; }
}
mkdir "$tmp/m"
for f in "$tiny"/*; do ln -s "$f" "$tmp/m/"; done
rm "$tmp/m/config.json"
mkfifo "$tmp/m/config.json"
expect_refused "config.json FIFO" "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 --model "$tmp/m" --out "$tmp/a.h5"
grep -q "$tmp/m/config.json" "$tmp/log" || fail "config.json FIFO: file not named"
expect_refused "config.json FIFO (inspect)" "$MOEQ" inspect "$tmp/m"
expect_refused "--recipe FIFO" "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 --model "$tiny" --recipe "$tmp/pipe" --out "$tmp/a.h5"
grep -q "$tmp/pipe" "$tmp/log" || fail "--recipe FIFO: file not named"
expect_refused "plan --recipe FIFO" "$MOEQ" plan --model "$tiny" --recipe "$tmp/pipe"
"$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize -q --progress 0 --model "$tiny" --out "$tmp/a.h5" >/dev/null 2>&1 || fail "quantize"
expect_refused "eval --text FIFO" "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" eval --progress 0 --model "$tiny" "$tmp/a.h5" --text "$tmp/pipe"
grep -q "$tmp/pipe" "$tmp/log" || fail "--text FIFO: file not named"
echo PASS
