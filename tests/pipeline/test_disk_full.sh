#!/usr/bin/env bash
# Disk full (mpi, needs root for mount): --out on a tiny tmpfs. While the skeleton (128 KiB) is written (32-100 KiB):
# exit 4, "No space left on device" naming the file, nothing left behind (HDF5 1.10 crashed in
# MPI_Finalize here, exit 139, or exited 1). While the units are written (1 MiB): exit 4, the finished
# units journaled; after the filesystem grows, --resume completes to the reference artifact.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize --progress 0 -q --model "$tiny" "$@"; }
mnt="$tmp/mnt"
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); disk-full behaviour not tested"
    exit 0
fi
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
q --out "$tmp/ref.h5" >/dev/null 2>&1 || fail "reference run"
for size in 32k 64k 100k; do
    mount -o remount,size=$size "$mnt"
    rm -f "$mnt"/*
    set +e
    q --out "$mnt/a.h5" >"$tmp/log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 4 ] || { cat "$tmp/log"; fail "skeleton on a $size filesystem: exit $rc, expected 4"; }
    grep -q "$mnt/a.h5.partial.creating: write of .* No space left on device" "$tmp/log" ||
        { cat "$tmp/log"; fail "$size: no 'No space left on device' naming the file"; }
    grep -q "HINT: no space left" "$tmp/log" || { cat "$tmp/log"; fail "$size: no hint"; }
    [ -z "$(ls -A "$mnt")" ] || { ls -la "$mnt"; fail "$size: a failed skeleton left files behind"; }
done
# the skeleton fits, the units' bytes do not: exit 4, then --resume once there is room
mount -o remount,size=1m "$mnt"
set +e
q --out "$mnt/a.h5" >"$tmp/log" 2>&1
rc=$?
set -e
[ $rc -eq 4 ] || { cat "$tmp/log"; fail "units on a 1 MiB filesystem: exit $rc, expected 4"; }
grep -q "No space left on device" "$tmp/log" || { cat "$tmp/log"; fail "1m: cause not named"; }
[ -e "$mnt/a.h5.partial" ] && [ ! -e "$mnt/a.h5" ] || fail "1m: partial run kept, no final artifact"
mount -o remount,size=16m "$mnt"
q --out "$mnt/a.h5" --resume >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "resume after disk full"; }
cmp "$tmp/ref.h5" "$mnt/a.h5" || fail "resumed artifact after disk full differs"
echo PASS
