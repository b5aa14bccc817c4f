#!/usr/bin/env bash
# Configures and builds moeq into ${BUILD_DIR:-build}. Extra CMake arguments pass through, e.g.
#   scripts/build.sh -DMOEQ_SANITIZE=ON      BUILD_DIR=build-asan scripts/build.sh -DMOEQ_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DMOEQ_WERROR=ON "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
