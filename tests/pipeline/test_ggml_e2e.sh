#!/usr/bin/env bash
# End-to-end: llama.cpp's block types as moeq formats (kernels/ggml_quant.h). On mixtral-tiny: q8_0 with
# method rtn (llama.cpp's own algorithm) costs < 0.1% perplexity; the artifact's codes of an expert, read by
# h5py and decoded by the `gguf` package (llama.cpp's Python reader), reproduce the error moeq recorded for it;
# MiLo alternating with the q4_0 quantizer has a lower error than q4_0 alone; a format whose block does not
# divide a tensor's rows (q4_K on 128 columns) is refused at plan time naming the tensor (exit 3). On
# mixtral-mini, method search's q3_K is below llama.cpp's algorithm's error on every tensor.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
venv="$MOEQ_SOURCE_DIR/build-venv/bin/python"
[ -x "$venv" ] || fail "no $venv: run scripts/install-deps.sh (it installs the gguf package there)"
head -c 4000 "$tiny/val.txt" >"$tmp/text.txt"
q() { # q NAME METHOD FORMAT [EXTRA]: quantize mixtral-tiny into $tmp/NAME.h5, eval it into $tmp/NAME.json
    printf 'version: 1\ndefaults: {method: %s, format: %s%s}\n' "$2" "$3" "${4:-}" >"$tmp/$1.yaml"
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/$1.yaml" --out "$tmp/$1.h5" ||
        fail "quantize $1"
    "$MPIEXEC" -n 2 "$MOEQ" eval -q --progress 0 --model "$tiny" "$tmp/$1.h5" --text "$tmp/text.txt" \
        --json "$tmp/$1.json" || fail "eval $1"
}
q q8 rtn q8_0
jq -e '.integrity.ok and .perplexity.increase < 0.001' "$tmp/q8.json" >/dev/null ||
    fail "q8_0: perplexity increase $(jq .perplexity.increase "$tmp/q8.json") (>= 0.1%)"
# the bytes as a GGUF reader sees them: h5py reads the codes of expert 3 of layer 1's down projection
t=model.layers.1.block_sparse_moe.experts.3.w2.weight
"${MOEQ_PYTHON:-/usr/bin/python3}" - "$tmp/q8.h5" "$t" "$tmp/blocks.bin" "$tmp/recorded.txt" <<'PY' || fail "h5py"
import sys
import h5py
f = h5py.File(sys.argv[1], "r")
row = [r for r in f["tables/routed_expert"][()] if r["name"].decode() == sys.argv[2]][0]
assert row["format"] == b"q8_0" and row["method"] == b"rtn", row
codes = f[row["location"].decode()]["codes"]
codes[int(row["slot"])].tofile(sys.argv[3])
open(sys.argv[4], "w").write("%r %d %d\n" % (float(row["rel_fro_error"]), row["shape"][0], row["shape"][1]))
PY
"$venv" - "$tiny" "$t" "$tmp/blocks.bin" "$tmp/recorded.txt" <<'PY' || fail "the gguf package's decoding differs from what moeq recorded"
import json, struct, sys
import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
model, name, blocks, recorded = sys.argv[1:5]
err, R, C = open(recorded).read().split()
err, R, C = float(err), int(R), int(C)
index = json.load(open(model + "/model.safetensors.index.json"))["weight_map"]
raw = open(model + "/" + index[name], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
meta = json.loads(raw[8:8 + n])[name]
assert meta["dtype"] == "BF16", meta
a, b = meta["data_offsets"]
w = (np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
w = w.reshape(R, C).astype(np.float64)
deq = dequantize(np.fromfile(blocks, dtype=np.uint8).reshape(R, -1), GGMLQuantizationType.Q8_0).reshape(R, C)
got = np.linalg.norm(w - deq) / np.linalg.norm(w)
print("gguf-decoded relative error %.9g, recorded by moeq %.9g" % (got, err))
assert abs(got - err) <= 1e-6 * err, (got, err)
PY
# MiLo alternating with q4_0's quantizer: lower error than q4_0 alone
q r4 rtn q4_0
q m4 milo q4_0 ", rank: 8, rounds: 3"
e() { jq "[.weights.by_class[] | select(.class == \"routed_expert.down\") | .rel_fro][0]" "$1"; }
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if b < 0.95 * a else 1)" \
    "$(e "$tmp/r4.json")" "$(e "$tmp/m4.json")" || fail "milo q4_0 $(e "$tmp/m4.json") not below rtn q4_0 $(e "$tmp/r4.json")"
# method search on mixtral-mini (rows multiples of 256): q3_K with moeq's searched quantizer against
# llama.cpp's algorithm (method rtn), the errors recorded in the artifacts' tables
mini="$MOEQ_SHARED_DIR/models/mixtral-mini"
for m in rtn search; do
    printf 'version: 1\ndefaults: {method: %s, format: q3_K}\n' "$m" >"$tmp/k3-$m.yaml"
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/k3-$m.yaml" --out "$tmp/k3-$m.h5" ||
        fail "quantize mixtral-mini q3_K $m"
done
"${MOEQ_PYTHON:-/usr/bin/python3}" - "$tmp/k3-rtn.h5" "$tmp/k3-search.h5" <<'PY' || fail "method search: not below llama.cpp's error"
import sys
import h5py
def errs(path):
    f = h5py.File(path, "r")
    return {r["name"]: (r["rel_fro_error"], r["method"]) for t in f["tables"].values() for r in t[()] if r["bits"] > 0}
a, b = errs(sys.argv[1]), errs(sys.argv[2])
assert a.keys() == b.keys() and len(a) == 112, len(a)
assert all(v[1] == b"rtn" for v in a.values()) and all(v[1] == b"search" for v in b.values())
worse = [n for n in a if b[n][0] > a[n][0]]
ra = sum(v[0] for v in a.values()) / len(a)
rb = sum(v[0] for v in b.values()) / len(b)
print("q3_K mean relative error: rtn (llama.cpp's algorithm) %.5f, search %.5f (ratio %.4f)" % (ra, rb, rb / ra))
assert not worse, worse[:3]      # never worse on a tensor (it is never worse on a block)
assert rb < 0.97 * ra, (ra, rb)
PY
# a block that does not divide the rows: refused at plan time, the tensor named
printf 'version: 1\ndefaults: {method: rtn, format: q4_K}\n' >"$tmp/k.yaml"
set +e
"$MOEQ" plan --model "$tiny" --recipe "$tmp/k.yaml" >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 3 ] && grep -q "tensor 'model.layers.0.*format q4_K stores blocks of 256 weights" "$tmp/err" ||
    { cat "$tmp/err"; fail "q4_K on 128 columns: exit 3 naming the tensor expected (got $rc)"; }
echo PASS
