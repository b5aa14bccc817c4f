# common.sh: sourced first by the end-to-end shell tests: strict mode, Open MPI allowed as root and
# oversubscribed, $MPIEXEC, a temporary directory $tmp removed on exit, and fail().
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIEXEC=${MPIEXEC:-mpirun}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# plane_offset ARTIFACT TENSOR PLANE: the file offset of a tensor's plane (codes, scale, ..., data) in a
# format-2 artifact, read with h5py: its table row's location and slot (a stacked expert's slice).
plane_offset() {
    "${MOEQ_PYTHON:-/usr/bin/python3}" - "$@" <<'PY'
import sys
import h5py
f = h5py.File(sys.argv[1], "r")
for t in f["tables"].values():
    for r in t.fields(["name", "location", "slot"])[()]:
        if r["name"].decode() == sys.argv[2]:
            d, slot = f[r["location"].decode()][sys.argv[3]], int(r["slot"])
            off = d.id.get_offset()
            print(off + slot * (d.id.get_storage_size() // d.shape[0]) if slot >= 0 else off)
            sys.exit(0)
sys.exit("no tensor " + sys.argv[2])
PY
}
