#!/bin/bash
# infer_variants.sh: on the GPU machine, after scripts/gpu-check.sh: builds moeq-bench-infer with each
# compile-time variant of the qgemm kernel (kernels/infer_cuda.cu: MOEQ_INFER_PREFETCH, MOEQ_INFER_MINB) in its
# own build dir and prints one compact line per shape × batch.
# Usage: bash kernels/dev/infer_variants.sh OUTDIR [bench args]
# Dependencies: the env.sh that gpu-check.sh --deps unpacked (build-gpu/deps/, or MOEQ_DEPS_ENV=path/env.sh),
# else the node's own packages.
set -e
out=$1; shift
deps_env=${MOEQ_DEPS_ENV:-build-gpu/deps/moeq-gpu-deps/env.sh}
if [ -f "$deps_env" ]; then
    # shellcheck disable=SC1090
    . "$deps_env"
elif [ -n "${MOEQ_DEPS_ENV:-}" ]; then
    echo "infer_variants: MOEQ_DEPS_ENV=$MOEQ_DEPS_ENV does not exist" >&2
    exit 1
fi
i=0
for flags in "-DMOEQ_INFER_MINB=1" "-DMOEQ_INFER_MINB=6"; do
    i=$((i + 1))
    cmake -S . -B build-v$i -DMOEQ_KERNELS_ONLY=ON -DMOEQ_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_CUDA_FLAGS=$flags" > /dev/null
    cmake --build build-v$i -j16 --target moeq-bench-infer > /dev/null
    ./build-v$i/bench/moeq-bench-infer --device cuda "$@" > "$out/v$i.json"
    echo "== variant $i: $flags"
    grep '"shape"' "$out/v$i.json" | sed -E 's/.*"shape": "([^"]*)".*"batch": ([0-9]+), "ours_us": ([0-9.]+), "ours_rank0_us": ([0-9.]+).*"baseline_us": ([0-9.]+).*"speedup": ([0-9.]+).*/\1 B=\2 ours=\3 r0=\4 cublas=\5 x\6/'
done
