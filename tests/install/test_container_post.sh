#!/usr/bin/env bash
# apptainer/post.sh, the %post of apptainer/moeq.def, run as a plain script on this Debian 12 (Apptainer itself
# is not packaged here: README, Installing on a cluster): the runtime packages (present: nothing installed),
# a Release build of the source tree without tests in a temporary directory, the install into a temporary
# prefix; then the installed moeq (what the image's /usr/local holds) quantizes the tiny model on 2 ranks.
. "$MOEQ_SOURCE_DIR/tests/pipeline/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ_SHARED_DIR:?}"
MOEQ_POST_BUILD_DIR=$tmp/build MOEQ_VERSION_STAMP=container-test \
    bash "$MOEQ_SOURCE_DIR/apptainer/post.sh" "$MOEQ_SOURCE_DIR" "$tmp/p" >"$tmp/post.log" 2>&1 \
    || { tail -30 "$tmp/post.log"; fail "apptainer/post.sh"; }
[ ! -e "$tmp/build" ] || fail "post.sh left its build directory"
grep -qx "moeq [0-9.]* (container-test)" "$tmp/post.log" || { tail -5 "$tmp/post.log"; fail "post.sh ends with the installed moeq --version"; }
[ -s "$tmp/p/share/moeq/slurm/quantize.sbatch" ] && [ -s "$tmp/p/share/moeq/configs/mixtral-tiny-rtn3.yaml" ] \
    || fail "the installed tree lacks the batch jobs or the recipes"
"$MPIEXEC" --oversubscribe -n 2 "$tmp/p/bin/moeq" quantize -q --progress 0 --model "$MOEQ_SHARED_DIR/models/mixtral-tiny" \
    --recipe "$tmp/p/share/moeq/configs/mixtral-tiny-rtn3.yaml" --out "$tmp/t.h5" || fail "the installed moeq quantize"
[ -s "$tmp/t.h5" ] || fail "no artifact"
echo PASS
