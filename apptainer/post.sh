#!/usr/bin/env bash
# apptainer/post.sh SRC [PREFIX]: the %post of apptainer/moeq.def as a plain script, so that it runs (and is
# tested) on any Debian 12 without Apptainer: installs what building and running moeq need
# (scripts/install-deps.sh --runtime: no test tools, no Slurm daemons), builds SRC in Release without the
# tests and installs it into PREFIX (default /usr/local). MOEQ_CUDA=1: also Debian's CUDA toolkit
# (nvidia-cuda-toolkit, non-free) and the CUDA backend. MOEQ_VERSION_STAMP: the version recorded in
# artifacts (a git archive has no .git). Needs root (apt-get) unless the packages are present.
# MOEQ_POST_BUILD_DIR: where to build (default SRC/build-container; removed afterwards).
set -euo pipefail
src=$(cd "${1:?usage: apptainer/post.sh SRC [PREFIX]}" && pwd)
prefix=${2:-/usr/local}
build=${MOEQ_POST_BUILD_DIR:-$src/build-container}
export DEBIAN_FRONTEND=noninteractive
"$src/scripts/install-deps.sh" --runtime
cuda=OFF
if [ "${MOEQ_CUDA:-0}" = 1 ]; then
    if ! dpkg-query -W -f='${Status}' nvidia-cuda-toolkit 2>/dev/null | grep -q "install ok installed"; then
        sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' \
            /etc/apt/sources.list.d/debian.sources
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit
    fi
    cuda=ON
fi
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMOEQ_BUILD_TESTS=OFF -DMOEQ_CUDA=$cuda \
    ${MOEQ_VERSION_STAMP:+-DMOEQ_VERSION_STAMP="$MOEQ_VERSION_STAMP"} >/dev/null
cmake --build "$build" -j "$(nproc)" --target moeq $([ $cuda = ON ] && echo moeq_cuda)
cmake --install "$build" --prefix "$prefix"
rm -rf "$build"
"$prefix/bin/moeq" --version
