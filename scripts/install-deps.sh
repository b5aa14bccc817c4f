#!/usr/bin/env bash
# Installs whatever moeq needs that is missing (Debian 12 packages). Idempotent: does nothing when all are
# present. Used by both README commands and by CI. Needs root (or sudo) only when something is missing.
set -euo pipefail
PKGS=(cmake make gcc pkg-config git
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libcmocka-dev libopenblas-dev liblapacke-dev libjansson-dev libyaml-dev libxxhash-dev
      gnuplot-nox jq python3-h5py xz-utils
      slurmctld slurmd slurm-client munge)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
