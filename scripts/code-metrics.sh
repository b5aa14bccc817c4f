#!/usr/bin/env bash
# Size figures of the C/CUDA sources, for reviews of structural changes (the registries issue reports them
# before and after): lines per layer, the largest files, the longest functions (lizard, from PyPI, in a
# venv under ${METRICS_VENV:-build/metrics-venv}), and how many pairs `duplicates` finds when it is on PATH.
#   scripts/code-metrics.sh            this checkout
#   scripts/code-metrics.sh DIR        another checkout (e.g. a `git worktree` of the base commit)
#   TOP=25 scripts/code-metrics.sh     longer lists
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "${1:-$here}" && pwd)
top=${TOP:-15}
venv=${METRICS_VENV:-$here/build/metrics-venv}
if [ ! -x "$venv/bin/lizard" ]; then
    python3 -m venv "$venv" >/dev/null
    "$venv/bin/pip" install -q lizard >/dev/null
fi
cd "$repo"
layers="kernels io schedulers workers pipeline"
echo "== $repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "-- lines of C/CUDA per layer (.c .h .cu .cuh)"
for l in $layers; do
    printf '  %-11s %6d lines in %3d files\n' "$l" \
        "$(find "$l" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -exec cat {} + | wc -l)" \
        "$(find "$l" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | wc -l)"
done
echo "-- the $top largest source files of the layers"
find $layers -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -exec wc -l {} + |
    grep -v ' total$' | sort -rn | head -n "$top" | awk '{printf "  %5d %s\n", $1, $2}'
echo "-- the $top longest functions of the layers (lines from signature to closing brace)"
"$venv/bin/python" - "$top" $layers <<'PY'
import sys, os, lizard
top, dirs = int(sys.argv[1]), sys.argv[2:]
files = [os.path.join(r, f) for d in dirs for r, _, fs in os.walk(d) for f in fs
         if f.endswith((".c", ".h", ".cu", ".cuh"))]
fns = []
for path in sorted(files):
    # lizard has no CUDA reader: read .cu/.cuh as C++ (kernels' __global__ etc. parse as qualifiers)
    with open(path, encoding="utf-8", errors="replace") as fh:
        code = fh.read()
    name = path + (".cpp" if path.endswith((".cu", ".cuh")) else "")
    for f in lizard.analyze_file.analyze_source_code(name, code).function_list:
        fns.append((f.end_line - f.start_line + 1, f.nloc, path, f.start_line, f.name))
fns.sort(key=lambda x: (-x[0], x[2], x[3]))
for length, nloc, path, line, name in fns[:top]:
    print(f"  {length:4d} lines ({nloc:3d} code)  {path}:{line}  {name}")
print(f"  functions: {len(fns)}, over 100 lines: {sum(1 for f in fns if f[0] > 100)}, "
      f"over 60 lines: {sum(1 for f in fns if f[0] > 60)}")
PY
if command -v duplicates >/dev/null; then
    echo "-- duplicates (whole tree)"
    duplicates --seconds 120 | head -n 1 | sed 's/^/  /'
fi
