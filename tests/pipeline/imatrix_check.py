#!/usr/bin/env python3
# imatrix_check.py: the Python side of test_imatrix_e2e.sh (run with build-venv's python: numpy, h5py, gguf).
#   names IMATRIX.gguf MODEL       the file as the gguf package reads it: llama-imatrix's keys, and for every
#                                  linear weight of MODEL the tensors NAME.in_sum2 [cols, matrices] and
#                                  NAME.counts [1, matrices] under gguf's own name map of the HF names
#   dat IMATRIX.gguf OUT.dat [SKIP]  the same statistics in llama.cpp's legacy .dat form (as
#                                  save_imatrix_legacy writes it: value / count * ncall), without the entries
#                                  whose name starts with SKIP
#   dump ARTIFACT.h5 OUT.npz       (system python: h5py) every quantized tensor's codes plane (its GGUF blocks)
#                                  and format, for werr (build-venv's numpy cannot load Debian's h5py)
#   werr CODES.npz MODEL IMATRIX.gguf   the importance-weighted relative error of every quantized tensor,
#                                  sum_ij imp_j (w_ij - deq_ij)^2 / sum_ij imp_j w_ij^2, imp = in_sum2 / counts
#                                  of the tensor's row; prints "mean <m>" and one line per tensor
import json
import struct
import sys

import numpy as np


def reader(path):
    import gguf
    r = gguf.GGUFReader(path)
    t = {x.name: np.array(x.data, dtype=np.float64).reshape([int(d) for d in reversed(x.shape)]) for x in r.tensors}
    return r, t


def field_str(r, k):
    f = r.fields[k]
    return bytes(f.parts[f.data[0]]).decode()


def hf_names(model):
    return sorted(json.load(open(model + "/model.safetensors.index.json"))["weight_map"])


def gguf_name(model, hf):
    # gguf's tensor name map for llama (Mixtral): the reference for llama.cpp's names
    import gguf
    cfg = json.load(open(model + "/config.json"))
    m = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    base = hf[:-len(".weight")]
    slot = -1
    parts = base.split(".")
    if "experts" in parts:  # model.layers.L.block_sparse_moe.experts.E.wN -> stacked, slot E
        i = parts.index("experts")
        slot = int(parts[i + 1])
        base = ".".join(parts[:i + 1] + parts[i + 2:])
    name = m.get_name(base)
    return (name + ".weight" if name else None), slot


def cmd_names(path, model):
    r, t = reader(path)
    assert field_str(r, "general.type") == "imatrix", "general.type"
    for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        assert k in r.fields, k
    cfg = json.load(open(model + "/config.json"))
    E, H = cfg["num_local_experts"], cfg["hidden_size"]
    want = {}
    for hf in hf_names(model):
        if not hf.startswith("model.layers.") or "norm" in hf:
            continue
        g, slot = gguf_name(model, hf)
        assert g, hf
        want[g] = E if slot >= 0 else 1
    got = sorted({n.rsplit(".", 1)[0] for n in t})
    assert got == sorted(want), (got, sorted(want))
    for g, nmat in want.items():
        s, c = t[g + ".in_sum2"], t[g + ".counts"]
        assert s.shape[0] == nmat and c.shape == (nmat, 1), (g, s.shape, c.shape)
        assert (c > 0).all() and (s >= 0).all(), g
    print("ok: %d entries, names and shapes as llama.cpp's imatrix writes them" % len(want))


def cmd_dat(path, out, skip=None):
    r, t = reader(path)
    chunk = int(r.fields["imatrix.chunk_size"].parts[-1][0])
    names = sorted({n.rsplit(".", 1)[0] for n in t if not (skip and n.startswith(skip))})
    with open(out, "wb") as f:
        f.write(struct.pack("<i", len(names)))
        for n in names:
            s, c = t[n + ".in_sum2"], t[n + ".counts"][:, 0]
            ncall = int((c.max() + chunk - 1) // chunk)
            vals = (s / c[:, None] * ncall).astype(np.float32).ravel()
            b = n.encode()
            f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, vals.size) + vals.tobytes())
        f.write(struct.pack("<i", int(r.fields["imatrix.chunk_count"].parts[-1][0])))
        ds = b"calibration.txt"
        f.write(struct.pack("<i", len(ds)) + ds)


def source(model, name):
    idx = json.load(open(model + "/model.safetensors.index.json"))["weight_map"]
    raw = open(model + "/" + idx[name], "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(raw[8:8 + n])[name]
    a, b = meta["data_offsets"]
    assert meta["dtype"] == "BF16", meta
    w = (np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return w.reshape(meta["shape"]).astype(np.float64)


def cmd_dump(h5, out):
    import h5py
    f = h5py.File(h5, "r")
    arrs = {}
    for tab in f["tables"].values():
        for row in tab[()]:
            if row["bits"] <= 0:
                continue
            codes = f[row["location"].decode()]["codes"]
            slot = int(row["slot"])
            arrs[row["name"].decode()] = np.asarray(codes[slot] if slot >= 0 else codes[()], dtype=np.uint8)
            arrs["format:" + row["name"].decode()] = np.frombuffer(row["format"], dtype=np.uint8)
    np.savez(out, **arrs)


def cmd_werr(npz, model, path):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    _, t = reader(path)
    z = np.load(npz)
    errs = []
    for name in z.files:
        if name.startswith("format:"):
            continue
        g, slot = gguf_name(model, name)
        s, c = t[g + ".in_sum2"], t[g + ".counts"][:, 0]
        k = max(slot, 0)
        imp = s[k] / c[k] if c[k] > 0 else np.ones(s.shape[1])
        typ = GGMLQuantizationType[bytes(z["format:" + name]).decode().upper()]
        w = source(model, name)
        deq = dequantize(z[name].reshape(w.shape[0], -1), typ).reshape(w.shape)
        errs.append((name, float(((w - deq) ** 2 * imp).sum() / ((w ** 2) * imp).sum())))
    print("mean %.9g" % np.mean([e for _, e in errs]))
    for n, e in sorted(errs):
        print("%s %.9g" % (n, e))


if __name__ == "__main__":
    {"names": cmd_names, "dat": cmd_dat, "dump": cmd_dump, "werr": cmd_werr}[sys.argv[1]](*sys.argv[2:])
