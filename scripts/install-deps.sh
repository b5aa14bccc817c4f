#!/usr/bin/env bash
# Installs whatever moeq needs that is missing: Debian 12 packages, then the Python test tools from PyPI into
# a virtual environment, build-venv/: the `gguf` package (llama.cpp's own dequantizers, the reference of
# tests/kernels/test_ggml_gguf.py) and llama-cpp-python (llama.cpp itself, built from its bundled source:
# tests/python/llama_eval.py runs moeq's GGUF files in it). Idempotent: does nothing when all are present.
# Used by both README commands and by CI. Needs root (or sudo) only when a Debian package is missing.
#   scripts/install-deps.sh               build, run and test moeq (the main job's install: no Slurm daemons)
#   scripts/install-deps.sh --with-slurm  also Slurm's daemons and munge, for tests/slurm (scripts/test.sh)
#   scripts/install-deps.sh --runtime     only what building (-DMOEQ_BUILD_TESTS=OFF) and running need: no
#                                         test tools, no PyPI (the container's %post, apptainer/post.sh)
#   scripts/install-deps.sh --with-torch  also build-venv-torch/: torch, transformers, compressed-tensors and
#                                         PEFT from tests/requirements-torch.txt (3 GB; test_ct_export is
#                                         registered only when CMake finds this venv)
#   scripts/install-deps.sh --list ...   print the Debian packages those options need, install nothing
# MOEQ_DEPS_SLURM=1 is the same as --with-slurm.
set -euo pipefail
slurm=${MOEQ_DEPS_SLURM:-0} runtime=0 list=0 torch=0
for a in "$@"; do
    case "$a" in
        --with-slurm) slurm=1 ;;
        --runtime) runtime=1 ;;
        --list) list=1 ;;
        --with-torch) torch=1 ;;
        *) echo "install-deps: unknown option '$a' (--with-slurm, --with-torch, --runtime, --list)" >&2; exit 2 ;;
    esac
done
PKGS=(cmake make gcc g++ pkg-config git
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
      libopenblas-dev liblapacke-dev libjansson-dev libyaml-dev libxxhash-dev gnuplot-nox)
[ "$runtime" = 1 ] || PKGS+=(hdf5-tools libcmocka-dev jq python3-h5py python3-venv xz-utils)
[ "$slurm" = 1 ] && PKGS+=(slurmctld slurmd slurm-client munge)
[ "$list" = 1 ] && { printf '%s\n' "${PKGS[@]}"; exit 0; }
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
else
    echo "install-deps: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "$runtime" = 1 ] && exit 0
root="$(cd "$(dirname "$0")/.." && pwd)"
# --with-torch: the loaders of the compressed-tensors export (test_ct_export), in their own venv: PyPI's torch
# brings its CUDA libraries (about 3.1 GB; the test runs on the CPU). Downloaded in the background while
# llama.cpp compiles below (network against CPU), waited for at the end.
torch_venv() {
    local tvenv="$root/build-venv-torch" req="$root/tests/requirements-torch.txt"
    if "$tvenv/bin/python" -c "import torch, transformers, compressed_tensors, peft" 2>/dev/null &&
        [ "$("$tvenv/bin/python" -m pip freeze 2>/dev/null | grep -c -x -F -f <(grep -E '^[A-Za-z]' "$req"))" -eq \
            "$(grep -c -E '^[A-Za-z]' "$req")" ]; then
        echo "install-deps: tests/requirements-torch.txt present in $tvenv"
        return 0
    fi
    echo "install-deps: installing tests/requirements-torch.txt into $tvenv (about 3 GB: minutes)"
    [ -x "$tvenv/bin/python" ] || /usr/bin/python3 -m venv "$tvenv"
    "$tvenv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
}
tpid=""
if [ "$torch" = 1 ]; then
    torch_venv &
    tpid=$!
fi
# Python test tools, pinned (the versions the tests were written against), in build-venv/ beside the builds
PYPKGS=(gguf==0.19.0 llama_cpp_python==0.3.36)
venv="$root/build-venv"
if ! "$venv/bin/python" -c "import gguf, llama_cpp" 2>/dev/null ||
    [ "$("$venv/bin/python" -m pip freeze 2>/dev/null | grep -c -x -F -f <(printf '%s\n' "${PYPKGS[@]}"))" -ne ${#PYPKGS[@]} ]; then
    echo "install-deps: installing ${PYPKGS[*]} into $venv (llama.cpp compiles from source: minutes)"
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
    # llama-cpp-python compiles llama.cpp: only libllama and libggml's CPU backend, for this machine's CPU
    # (GGML_NATIVE, the default); no multimodal library, tools, server, tests, examples, nor llama-common
    # (scripts/llama-cpp-min.cmake says why that one needs more than a CMake option).
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
    CMAKE_ARGS+=" -DLLAMA_BUILD_SERVER=OFF -DCMAKE_PROJECT_INCLUDE=$root/scripts/llama-cpp-min.cmake"
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PYPKGS[@]}"
else
    echo "install-deps: ${PYPKGS[*]} present in $venv"
fi
if [ -n "$tpid" ] && ! wait "$tpid"; then
    echo "install-deps: installing tests/requirements-torch.txt into $root/build-venv-torch failed" >&2
    exit 1
fi
