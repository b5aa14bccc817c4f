#!/usr/bin/env bash
# Builds the Apptainer image of moeq, moeq.sif (or $1), from apptainer/moeq.def and a `git archive` of HEAD
# (committed files only: no build trees, no virtual environments). Further arguments go to `apptainer
# build`, e.g. --build-arg cuda=1 for the CUDA backend. Needs apptainer (or singularity) on PATH: Debian 12
# does not package either (apt-cache policy apptainer singularity-container: no candidate); install
# Apptainer's release .deb from https://github.com/apptainer/apptainer/releases, or use a cluster's module.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-moeq.sif}")
[ $# -gt 0 ] && shift
tool=$(command -v apptainer || command -v singularity || true)
if [ -z "$tool" ]; then
    echo "build-container: neither apptainer nor singularity is on PATH" >&2
    echo "---> HINT: Debian 12 has no package for them: install Apptainer's .deb from" \
         "https://github.com/apptainer/apptainer/releases (or module load apptainer), then run this again" >&2
    exit 2
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
git -C "$root" archive --format=tar -o "$ctx/moeq-src.tar" HEAD
git -C "$root" rev-parse --short=12 HEAD >"$ctx/moeq-version" # what the archive holds
cp "$root/apptainer/moeq.def" "$ctx/"
cd "$ctx" # %files paths are relative to here
"$tool" build "$@" "$out" moeq.def
echo "build-container: $out ($("$tool" exec "$out" moeq --version | head -1))"
