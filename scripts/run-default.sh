#!/usr/bin/env bash
# The README's main-job command: install what is missing, build, and run moeq on the embedded default,
# the tiny real Mixtral-layout MoE in ../shared/models/mixtral-tiny (override with MODEL=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
MODEL=${MODEL:-../shared/models/mixtral-tiny}
echo "== moeq inspect $MODEL"
build/moeq inspect "$MODEL"
