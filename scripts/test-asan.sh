#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (leak checking on; the MPI
# stack's and HDF5's exit-time allocations are suppressed by tests/lsan.supp), in build-asan/.
# CUDA is off here: sanitizers instrument host C only, and no GPU is needed to find host bugs.
#   scripts/test-asan.sh            every test
#   scripts/test-asan.sh -R quant   arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build-asan scripts/build.sh -DMOEQ_SANITIZE=ON -DMOEQ_CUDA=OFF
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd build-asan
ctest --output-on-failure --timeout 1200 "$@"
