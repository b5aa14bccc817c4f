#!/usr/bin/env bash
# The README's test command: install what is missing, build (warnings are errors), run every test.
#   scripts/test.sh                 all tests
#   scripts/test.sh -L unit         only one label (unit, mpi, e2e, gpu, ...); arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-slurm --with-torch # tests/slurm runs a real Slurm; test_ct_export loads the export in torch
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "${BUILD_DIR:-build}"
# Two tests at a time, as the ASan job: the suite's MPI tests mostly wait on I/O and each other, and CI's
# two cores finish it in 540 s (90 tests, on a 2-core VM also building another tree) where one at a time
# took 795 s for the 76 tests of the previous CI run. CTEST_PARALLEL_LEVEL=1 runs them one by one.
ctest --output-on-failure --timeout 900 -j"${CTEST_PARALLEL_LEVEL:-2}" "$@"
