#!/usr/bin/env bash
# End-to-end: the format-2 artifact as docs/ARTIFACT.md describes it, read by h5py and h5dump (not moeq):
# the tables' columns exactly, a tensor of each method (none, rtn, hqq, milo) with the settings it reads and
# the "not applicable" values for the rest, stacks and slots, every plane's bytes equal to the export's;
# and a shape mismatch with config.json prints every dimension of a 3-D shape.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
doc="$MOEQ_SOURCE_DIR/docs/ARTIFACT.md"

# ---- a 3-D tensor where config.json implies 2-D: every dimension in the message ----
mkdir "$tmp/m3"
for f in "$tiny"/*; do ln -s "$f" "$tmp/m3/"; done
s1=model-00001-of-00002.safetensors t=model.layers.0.block_sparse_moe.experts.0.w1.weight
rm "$tmp/m3/$s1" && cp "$tiny/$s1" "$tmp/m3/$s1" && chmod u+w "$tmp/m3/$s1"
n=$(od -An -tu8 -N8 "$tmp/m3/$s1" | tr -d ' ')
# the same bytes as [3, 128, 128] instead of [384, 128]; the header keeps its length (metadata out, spaces in)
head -c $((8 + n)) "$tmp/m3/$s1" | tail -c "$n" | jq -c --arg t "$t" 'del(.__metadata__) | .[$t].shape = [3, 128, 128]' |
    tr -d '\n' >"$tmp/hdr"
[ "$(wc -c <"$tmp/hdr")" -le "$n" ] || fail "fixture: the new header is longer"
printf '%*s' $((n - $(wc -c <"$tmp/hdr"))) '' >>"$tmp/hdr"
dd if="$tmp/hdr" of="$tmp/m3/$s1" bs=1 seek=8 conv=notrunc status=none
set +e
"$MOEQ" inspect "$tmp/m3" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] || { cat "$tmp/err"; fail "3-D shape: exit 3 expected (got $rc)"; }
grep -q "tensor '$t' has shape \[3, 128, 128\] but config.json implies \[384, 128\]" "$tmp/err" ||
    { cat "$tmp/err"; fail "the shape mismatch message must print every dimension"; }

# ---- one artifact with all four methods ----
cat >"$tmp/mix.yaml" <<'YAML'
version: 1
defaults: {method: milo, bits: 3, group: 64, rank: 8, rounds: 2}
rules:
  - match: {class: attention}
    set: {method: rtn}
  - match: {class: routed_expert, proj: down}
    set: {method: hqq}
YAML
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/mix.yaml" --out "$tmp/mix.h5" || fail "quantize"

"$MOEQ" export -q "$tmp/mix.h5" "$tmp/mix-hf" || fail "export"
# h5py (Debian's python3-h5py, not moeq) reads the format-2 artifact: every table has docs/ARTIFACT.md's
# columns, exactly; each method's row holds the settings it reads and the "not applicable" values for the
# rest; every tensor's location and slot agree with its stack (the `experts` attribute, [E, ...] datasets);
# and every plane, read by h5py from its group or stack slice, is byte for byte what `moeq export` wrote.
"${MOEQ_PYTHON:-/usr/bin/python3}" - "$tmp/mix.h5" "$doc" "$tmp/mix-hf" <<'PY' || fail "h5py reading format 2"
import json, math, re, struct, sys, glob
import h5py
art, doc, hf = sys.argv[1:4]
f = h5py.File(art, "r")
assert f.attrs["moeq_format_version"] == 2, f.attrs["moeq_format_version"]
# the columns the doc lists: backticked names in the first cell of the "| column | type | meaning |" table
text = open(doc).read()
table = text[text.index("| column | type | meaning |"):].split("\n\n")[0].splitlines()[2:]
want = [n for line in table for n in re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])]
assert len(want) >= 30, want
exported = {}
for shard in glob.glob(hf + "/*.safetensors"):
    b = open(shard, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            exported[k] = b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
part = {"codes": "qweight", "scale": "scales", "zero": "zeros", "U": "lowrank_u", "V": "lowrank_v"}
rows = {}
for cls in f["tables"]:
    t = f["tables"][cls]
    assert list(t.dtype.names) == want, (cls, t.dtype.names, want)
    for r in t[()]:
        rows[r["name"].decode()] = r
assert len(rows) == f.attrs["n_tensors"], (len(rows), f.attrs["n_tensors"])
planes = 0
for name, r in rows.items():
    assert r["status"] == b"ok" and r["checksum"] != 0, name
    loc, slot = r["location"].decode(), int(r["slot"])
    g = f[loc]
    if slot < 0:
        assert loc == "/tensors/" + name, (name, loc)
    else:
        assert loc.startswith("/experts/%d/%s" % (r["layer"], r["proj"].decode())), (name, loc)
        assert g.attrs["experts"][slot] == r["expert"], name
        assert list(g.attrs["experts"]) == sorted(g.attrs["experts"]), loc
    for ds in g:
        d = g[ds]
        if slot >= 0:
            assert d.shape[0] == len(g.attrs["experts"]), (loc, ds)
        raw = d[slot] if slot >= 0 else d[()]
        mod = name[:-len(".weight")] if name.endswith(".weight") else name
        key = name if ds == "data" else mod + "." + part[ds]
        if ds == "data" and d.dtype.itemsize == 4 and r["source_dtype"] == b"BF16":
            import numpy as np  # h5py widens the custom bfloat16 to float32: its top 16 bits
            raw = (np.ascontiguousarray(raw).view(np.uint32) >> 16).astype(np.uint16)
        assert raw.tobytes() == exported[key], (name, ds, key)
        planes += 1
    nd = int(r["ndim"])
    assert list(r["shape"][nd:]) == [0] * (8 - nd), name
def na(r, method):  # the values where the method does not read a setting (docs/ARTIFACT.md)
    q = method != "none"
    assert r["method"].decode() == method
    assert (r["bits"] > 0) == q and (r["group"] > 0) == q and (r["bits_per_weight"] > 0) == q
    assert (r["rank"] > 0) == (method == "milo") and (r["rounds"] > 0) == (method == "milo")
    assert r["compensator"] == (b"fp16" if method == "milo" else b"none")
    hqq = method in ("hqq", "milo")
    assert all(math.isnan(x) != hqq for x in r["hqq_lp_beta_kappa"])
    assert all((x >= 0) == hqq for x in r["hqq_iters_early_stop"])
    assert all((x >= 0) == (method == "milo") for x in r["svd_oversample_power_iters"])
    assert (r["best_round"] >= 0) == (method == "milo")
na(rows["model.norm.weight"], "none")
na(rows["model.layers.1.self_attn.q_proj.weight"], "rtn")
na(rows["model.layers.1.block_sparse_moe.experts.2.w2.weight"], "hqq")
na(rows["model.layers.1.block_sparse_moe.experts.2.w1.weight"], "milo")
# a 1-D tensor's shape: ndim 1, [128]; the expert's [384, 128]
assert rows["model.norm.weight"]["ndim"] == 1 and rows["model.norm.weight"]["shape"][0] == 128
assert list(rows["model.layers.0.block_sparse_moe.experts.0.w1.weight"]["shape"][:2]) == [384, 128]
print("h5py: %d tensors, %d planes, %d stacks" % (len(rows), planes, sum(len(f["experts"][l]) for l in f["experts"])))
PY
# h5dump prints the stacks and the tables without moeq
h5dump -H "$tmp/mix.h5" >"$tmp/h" && h5dump -d /tables/norm "$tmp/mix.h5" >"$tmp/norm" || fail "h5dump"
grep -q 'GROUP "/experts/0/gate"\|GROUP "gate"' "$tmp/h" && grep -q 'DATASET "codes"' "$tmp/h" || fail "h5dump: no stack"
grep -q '"model.norm.weight' "$tmp/norm" || { cat "$tmp/norm"; fail "h5dump: the norm table"; }
echo PASS
