"""gguf_export_check.py: checks a `moeq export --format gguf` result with the gguf package (llama.cpp's own
Python reader): every key is one of gguf's Keys (or tokenizer.* / split.*); the tensor names are exactly
gguf's mapping of the checkpoint's HF names (experts merged into their stack); shapes are the HF shapes
reversed ([C, R, E] for stacks); types: block types for quantized tensors, F32 for 1-D tensors and routers,
the source dtype otherwise (or F32 everywhere with `f32`); values: gguf.quants.dequantize of every tensor
equals `moeq inspect ARTIFACT --dequant NAME` bit for bit (attn_q/attn_k rows un-permuted for llama);
split files carry split.no / split.count / split.tensors.count as llama.cpp's loader reads them.

usage: gguf_export_check.py MOEQ ARTIFACT MODEL_DIR FIRST.gguf N_FILES [f32] [sample]
(sample: the values of the first and last expert of each stack only, every other tensor in full)
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize


def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)


def hf_tensors(model):
    """name -> (dtype, shape) from the safetensors headers of the checkpoint."""
    with open(os.path.join(model, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for s in shards:
        with open(os.path.join(model, s), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        out.update({k: (v["dtype"], v["shape"]) for k, v in hdr.items() if k != "__metadata__"})
    return out


def key_templates():
    out = set()
    for group in vars(gguf.Keys).values():
        if isinstance(group, type):
            out.update(v for k, v in vars(group).items() if isinstance(v, str) and not k.startswith("_"))
    return out


def main():
    moeq, art, model, first, n_files = sys.argv[1:6]
    n_files, f32, sample = int(n_files), "f32" in sys.argv[6:], "sample" in sys.argv[6:]
    files = [first] if n_files == 1 else [first.replace("-00001-of-", "-%05d-of-" % (i + 1)) for i in range(n_files)]
    readers = [gguf.GGUFReader(f) for f in files]
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    # keys
    kv = {k: f for k, f in readers[0].fields.items() if not k.startswith("GGUF.")}
    arch = kv["general.architecture"].contents()
    templates = key_templates()
    for k in kv:
        ok = k in templates or k.replace(arch + ".", "{arch}.", 1) in templates or k.startswith("tokenizer.")
        check(ok, f"key {k} is not a gguf key")
    for k in ["general.file_type", "general.quantization_version", "general.alignment", "general.name",
              f"{arch}.block_count", f"{arch}.expert_count", f"{arch}.embedding_length"]:
        check(k in kv, f"key {k} missing")
    check(kv[f"{arch}.block_count"].contents() == cfg["num_hidden_layers"], "block_count")
    check("tokenizer.ggml.tokens" in kv, "no tokenizer keys")
    tensors = {}
    for i, r in enumerate(readers):
        if n_files > 1:
            f = r.fields
            check(f["split.no"].contents() == i and f["split.count"].contents() == n_files,
                  f"{files[i]}: split.no {f['split.no'].contents()} split.count {f['split.count'].contents()}")
            check(f["split.no"].types[0] == gguf.GGUFValueType.UINT16, "split.no must be uint16")
            check(f["split.tensors.count"].types[0] == gguf.GGUFValueType.INT32, "split.tensors.count int32")
        for t in r.tensors:
            check(t.name not in tensors, f"tensor {t.name} twice")
            tensors[t.name] = t
    if n_files > 1:
        check(readers[0].fields["split.tensors.count"].contents() == len(tensors), "split.tensors.count")
    # names: gguf's mapping of every HF name
    tmap = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], cfg["num_hidden_layers"])
    hf = hf_tensors(model)
    want = {}  # gguf name -> [(hf name, slot)]
    for name in hf:
        slot, key = -1, name
        m = re.match(r"(.*\.experts)\.(\d+)\.(\w+\.weight)$", name)
        if m:
            key, slot = f"{m.group(1)}.{m.group(3)}", int(m.group(2))
        g = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
        check(g is not None, f"gguf cannot map {name}")
        want.setdefault(g, []).append((name, slot))
    check(set(want) == set(tensors), f"names: gguf maps {sorted(set(want) - set(tensors))[:5]} missing, "
          f"{sorted(set(tensors) - set(want))[:5]} extra")
    heads = {"attn_q": cfg["num_attention_heads"], "attn_k": cfg["num_key_value_heads"]}
    n_quant = n_values = 0
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "w.bin")
        for g, srcs in sorted(want.items()):
            t = tensors[g]
            srcs.sort(key=lambda x: x[1])
            dtype, shape = hf[srcs[0][0]]
            ne = list(reversed(shape)) + ([len(srcs)] if srcs[0][1] >= 0 else [])
            check([int(x) for x in t.shape] == ne, f"{g}: shape {list(t.shape)}, expected {ne}")
            quant = t.tensor_type not in (Q.F32, Q.F16, Q.BF16)
            if not quant:
                if f32 or len(shape) == 1 or ".ffn_gate_inp." in g:
                    check(t.tensor_type == Q.F32, f"{g}: {t.tensor_type.name}, expected F32")
                else:
                    check(t.tensor_type.name == dtype, f"{g}: {t.tensor_type.name}, source {dtype}")
            n_quant += quant
            if t.tensor_type == Q.BF16:
                vals = (np.asarray(t.data).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                vals = dequantize(t.data, t.tensor_type)
            vals = np.asarray(vals, dtype=np.float32).reshape(list(reversed(ne)))
            if len(srcs) == 1 and srcs[0][1] < 0:
                vals = vals[None]
            for e, (name, slot) in enumerate(srcs):
                if sample and 0 < e < len(srcs) - 1:
                    continue
                subprocess.run([moeq, "inspect", art, "--dequant", name, "--out", out], check=True,
                               capture_output=True)
                mine = np.fromfile(out, dtype=np.float32).reshape(vals[e].shape)
                got = vals[e]
                stem = g.split(".")[2] if g.startswith("blk.") else ""
                if arch == "llama" and stem in heads:  # llama.cpp's interleaved rope: undo LlamaModel.permute
                    H = heads[stem]
                    got = got.reshape(H, -1, 2, got.shape[-1]).swapaxes(1, 2).reshape(got.shape)
                if not np.array_equal(got.view(np.uint32), mine.view(np.uint32)):
                    bad = np.argwhere(got.view(np.uint32) != mine.view(np.uint32))[0]
                    sys.exit(f"FAIL: {g} slot {slot} ({name}): gguf {got[tuple(bad)]} != moeq {mine[tuple(bad)]} "
                             f"at {tuple(bad)}")
                n_values += 1
    print(f"{files[0]}: {len(tensors)} tensors in {n_files} file(s) ({n_quant} quantized), {len(kv)} keys; "
          f"{n_values} HF tensors equal bit for bit")


if __name__ == "__main__":
    main()
