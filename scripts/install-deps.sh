#!/usr/bin/env bash
# Installs whatever moeq needs that is missing: Debian 12 packages, then the Python test tools from PyPI into
# a virtual environment, build-venv/ (the `gguf` package: llama.cpp's own dequantizers, the reference of
# tests/kernels/test_ggml_gguf.py). Idempotent: does nothing when all are present. Used by both README
# commands and by CI. Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail
PKGS=(cmake make gcc pkg-config git
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libcmocka-dev libopenblas-dev liblapacke-dev libjansson-dev libyaml-dev libxxhash-dev
      gnuplot-nox jq python3-h5py python3-venv xz-utils
      slurmctld slurmd slurm-client munge)
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
# Python test tools, pinned (the versions the tests were written against), in build-venv/ beside the builds
PYPKGS=(gguf==0.19.0)
venv="$(cd "$(dirname "$0")/.." && pwd)/build-venv"
if ! "$venv/bin/python" -c "import gguf" 2>/dev/null ||
    [ "$("$venv/bin/pip" freeze 2>/dev/null | grep -c -x -F -f <(printf '%s\n' "${PYPKGS[@]}"))" -ne ${#PYPKGS[@]} ]; then
    echo "install-deps: installing ${PYPKGS[*]} into $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${PYPKGS[@]}"
else
    echo "install-deps: ${PYPKGS[*]} present in $venv"
fi
