#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input with libFuzzer under ASan+UBSan (clang), each for FUZZ_SECONDS
# (default 60), starting from the seed corpus in fuzz/corpus/<name>/. A crasher is written to
# fuzz/regressions/<name>/ (commit it: ctest replays it from then on) and makes this script fail.
#   scripts/fuzz.sh                      every harness: safetensors, config, recipe, index
#   FUZZ_SECONDS=600 FUZZ_SEED=0 scripts/fuzz.sh recipe   (seed 0: a random seed; default 1, reproducible)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
need=()
for p in clang libclang-rt-14-dev libomp-14-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config recipe index)
CC=clang cmake -S . -B build-fuzz -DMOEQ_FUZZ=ON -DMOEQ_CUDA=OFF -DMOEQ_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
total=0 rc=0
for t in "${targets[@]}"; do
    work=build-fuzz/corpus-$t
    mkdir -p "$work"
    set +e
    build-fuzz/fuzz/fuzz_$t -max_total_time="${FUZZ_SECONDS:-60}" -seed="${FUZZ_SEED:-1}" -print_final_stats=1 -max_len=65536 \
        -artifact_prefix="fuzz/regressions/$t/" "$work" "fuzz/corpus/$t" >"build-fuzz/fuzz-$t.log" 2>&1
    r=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build-fuzz/fuzz-$t.log" | tail -1)
    echo "fuzz_$t: ${execs:-?} executions in ${FUZZ_SECONDS:-60} s, exit $r"
    total=$((total + ${execs:-0}))
    if [ $r -ne 0 ]; then
        tail -40 "build-fuzz/fuzz-$t.log"
        rc=1
    fi
done
echo "fuzzing: $total executions, $([ $rc -eq 0 ] && echo "no crash" || echo "CRASHES: see fuzz/regressions")"
exit $rc
