#!/usr/bin/env bash
# The README's test command: install what is missing, build (warnings are errors), run every test.
#   scripts/test.sh                 all tests
#   scripts/test.sh -L unit         only one label (unit, mpi, e2e, gpu, ...); arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
