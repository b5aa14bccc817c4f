# shellcheck shell=bash
# shellcheck disable=SC2154 # shares its variables with gpu-check.sh, which sources it
# gpu-check-full.sh: the --full steps of scripts/gpu-check.sh, which sources it (not meant to be run).
# Uses gpu-check.sh's variables (repo, build, out, shared, targets, n_gpus) and functions (step, step_end,
# fail, ctest_run). What --full adds to the kernels-only check:
#   full_check_deps  (in the dependencies step) the programs the full build and its tests run, and the
#                    shared/ folder with the tiny real model
#   full_tests       test_device_e2e, test_cuda_module*, test_quantize_e2e (after ctest -L gpu)
#   full_quantize    moeq quantize --device cuda of mixtral-tiny on 1 and 2 ranks, cmp of the artifacts
# The artifacts go to BUILD/quantize-check/, their output into gpu-check.log: DIR keeps few files (the
# device tool brings back at most 8).

full_check_deps() {
    local t
    # mpicc: CMake's FindMPI asks it for the flags; mpirun: the mpi tests; h5dump, jq, python3, cmp: the
    # end-to-end scripts (tests/pipeline/*.sh)
    for t in mpicc mpirun h5dump jq python3 cmp; do
        command -v "$t" >/dev/null ||
            fail FAILED "'$t' not found on PATH" \
                "the full build and its tests need it: pass --deps with a tarball from scripts/gpu-deps.sh --full$(
                    [ "$t" != python3 ] || echo ' (python3 is not in it: use the node'"'"'s)')"
        echo "  $t: $(command -v "$t")"
    done
    echo "  $(mpirun --version 2>&1 | head -n 1); OPAL_PREFIX=${OPAL_PREFIX:-(unset)}"
    # The tiny real model: ../shared beside a checkout; a node lent through the device tool gets only what
    # is inside the repository (shared/, or carried ignored paths such as out/shared/)
    if [ -z "$shared" ]; then
        for d in "$repo/../shared" "$repo/shared" "$repo/out/shared"; do
            if [ -f "$d/models/mixtral-tiny/config.json" ]; then
                shared=$(cd "$d" && pwd -P)
                break
            fi
        done
    fi
    [ -f "${shared:-/nonexistent}/models/mixtral-tiny/config.json" ] ||
        fail FAILED "no models/mixtral-tiny in ${shared:-../shared, shared/ or out/shared/}" \
            "on the machine with ../shared: mkdir -p out/shared/models && cp -r ../shared/models/mixtral-tiny out/shared/models/ && rm out/shared/models/mixtral-tiny/model.fp32.safetensors; carry out/shared (or pass --shared DIR)"
    echo "  shared: $shared (models/mixtral-tiny: $(du -sh "$shared/models/mixtral-tiny" | cut -f1))"
}

full_tests() {
    local re='^(test_device_e2e|test_cuda_module.*|test_quantize_e2e)$'
    step "tests: test_device_e2e, test_cuda_module*, test_quantize_e2e (ctest -R)"
    ctest_run pipeline -R "$re" || fail FAILED "pipeline tests failed" "output above; all of it in $out/ctest-pipeline.log"
    if [ "$n_gpus" -eq 0 ]; then
        # test_device_e2e says so when it took its no-GPU half
        echo "gpu-check: no GPU: test_device_e2e checked the no-GPU path (--device cuda refused with exit 3," \
            "--device auto falls back to the CPU); its GPU half did not run"
        step_end "ok (no GPU: test_device_e2e's GPU half skipped)"
    else
        step_end ok
    fi
}

full_quantize() {
    local tiny=$shared/models/mixtral-tiny recipe=$repo/configs/mixtral-tiny-milo3.yaml
    local qdir=$build/quantize-check mpiexec np rc
    local names=("moeq quantize --device cuda, 1 rank" "moeq quantize --device cuda, 2 ranks"
                 "cmp of the 1- and 2-rank CUDA artifacts")
    local why=""
    if [ -n "$targets" ]; then
        why="--targets builds only part of moeq"
    elif [ "$n_gpus" -eq 0 ]; then
        why="no GPU found"
        echo
        echo "gpu-check: NO GPU FOUND: moeq quantize --device cuda (1 and 2 ranks) and their cmp are skipped"
    fi
    if [ -n "$why" ]; then
        for np in "${names[@]}"; do
            step "$np"
            step_end "skipped: $why"
        done
        return 0
    fi
    [ -x "$build/moeq" ] || { step "${names[0]}"; fail FAILED "$build/moeq was not built" "see the build step"; }
    mpiexec=$(sed -n 's/^MPIEXEC_EXECUTABLE:[A-Z]*=//p' "$build/CMakeCache.txt")
    mpiexec=${mpiexec:-mpirun}
    rm -rf "$qdir"
    mkdir -p "$qdir"
    for np in 1 2; do
        step "${names[$((np - 1))]}"
        echo "$mpiexec --oversubscribe -n $np $build/moeq quantize --device cuda --progress 0 --model $tiny" \
            "--recipe $recipe --out $qdir/cuda-np$np.h5"
        rc=0
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
            "$mpiexec" --oversubscribe -n "$np" "$build/moeq" quantize --device cuda --progress 0 \
            --model "$tiny" --recipe "$recipe" --out "$qdir/cuda-np$np.h5" || rc=$?
        [ "$rc" -eq 0 ] || fail "FAILED (exit $rc)" "moeq quantize --device cuda on $np rank(s) failed" "its output is above"
        step_end "ok: $(du -h "$qdir/cuda-np$np.h5" | cut -f1) artifact"
    done
    step "${names[2]}"
    cmp "$qdir/cuda-np1.h5" "$qdir/cuda-np2.h5" ||
        fail FAILED "the CUDA artifacts of 1 and 2 ranks differ" "both are in $qdir"
    echo "identical: $(sha256sum "$qdir/cuda-np1.h5" | cut -c1-16)... ($qdir)"
    step_end ok
}
