"""test_gguf_interop.py: moeq's GGUF core (io/gguf.c) against the `gguf` package (PyPI, llama.cpp's own
Python reader/writer): a file moeq wrote (gguf_tool write) read by gguf.GGUFReader gives the same keys, value
types, values, tensor names, ggml types, shapes (ne, innermost first), aligned offsets and bytes; a file
gguf.GGUFWriter wrote (every value type, an alignment of 64, f32 / f16 / q4_K / q8_0 tensors) read by moeq
(gguf_tool dump) gives what was written.

usage: build-venv/bin/python test_gguf_interop.py GGUF_TOOL
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V


def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)


def content(t, n):
    return bytes((37 * t + 11 * j + 3) % 256 for j in range(n))


def moeq_reads(tool, path):
    out = subprocess.run([tool, "dump", path], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def moeq_wrote(tool, d):
    path = os.path.join(d, "moeq.gguf")
    subprocess.run([tool, "write", path], check=True)
    r = gguf.GGUFReader(path)
    want = {
        "general.architecture": (V.STRING, None, "llama"),
        "llama.block_count": (V.UINT32, None, 2),
        "test.i32": (V.INT32, None, -123456),
        "test.u16": (V.UINT16, None, 513),
        "test.u64": (V.UINT64, None, 0xFEDCBA9876543210),
        "test.f32": (V.FLOAT32, None, float(np.float32(1e-5))),
        "test.bool": (V.BOOL, None, True),
        "test.i8": (V.INT8, None, -7),
        "test.f64": (V.FLOAT64, None, 0.1),
        "test.arr_u16": (V.ARRAY, V.UINT16, [1, 65535]),
        "test.arr_i32": (V.ARRAY, V.INT32, [-1, 2, -3]),
        "test.arr_f32": (V.ARRAY, V.FLOAT32, [0.5, -1.25]),
        "test.arr_u64": (V.ARRAY, V.UINT64, [1, 2**64 - 1]),
        "test.arr_bool": (V.ARRAY, V.BOOL, [True, False]),
        "test.arr_str": (V.ARRAY, V.STRING, ["<unk>", "\u2581the", ""]),
    }
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    check(keys == list(want), f"gguf reads keys {keys}")
    check(r.fields["GGUF.version"].contents() == 3, "version")
    for k, (t, elem, v) in want.items():
        f = r.fields[k]
        check(f.types[0] == t, f"{k}: type {f.types}")
        if elem is not None:
            check(f.types[-1] == elem, f"{k}: element type {f.types}")
        got = f.contents()
        check(got == v, f"{k}: gguf reads {got!r}, moeq wrote {v!r}")
    tensors = [
        ("token_embd.weight", Q.F32, [8, 3]),
        ("blk.0.ffn_down_exps.weight", Q.Q8_0, [64, 2, 2]),
        ("blk.0.ffn_up_exps.weight", Q.Q3_K, [256, 2, 2]),
        ("output_norm.weight", Q.BF16, [5]),
        ("blk.0.attn_q.weight", Q.F16, [4, 3]),
    ]
    check(len(r.tensors) == len(tensors), "tensor count")
    for i, (t, (name, typ, ne)) in enumerate(zip(r.tensors, tensors)):
        check(t.name == name, f"tensor {i}: {t.name}")
        check(t.tensor_type == typ, f"{name}: type {t.tensor_type!r}")
        check([int(x) for x in t.shape] == ne, f"{name}: shape {list(t.shape)}")
        check(t.data_offset % 32 == 0, f"{name}: offset {t.data_offset}")
        check(t.data.tobytes() == content(i, t.n_bytes), f"{name}: bytes differ")
    # moeq reads its own file the same way
    m = moeq_reads(tool, path)
    check([e["key"] for e in m["kv"]] == list(want), "moeq keys")
    for i, t in enumerate(r.tensors):
        check(bytes.fromhex(m["tensors"][i]["hex"]) == t.data.tobytes(), f"moeq bytes of {t.name}")
        check(m["tensors"][i]["offset"] == t.data_offset, f"moeq offset of {t.name}")
    print(f"gguf.GGUFReader reads moeq's file: {len(want)} keys, {len(tensors)} tensors")


def gguf_wrote(tool, d):
    path = os.path.join(d, "py.gguf")
    w = gguf.GGUFWriter(path, "qwen3moe")
    w.add_custom_alignment(64)
    w.add_uint8("p.u8", 250)
    w.add_int8("p.i8", -100)
    w.add_uint16("p.u16", 60000)
    w.add_int16("p.i16", -20000)
    w.add_uint32("p.u32", 4000000000)
    w.add_int32("p.i32", -2000000000)
    w.add_float32("p.f32", 0.3)
    w.add_uint64("p.u64", 2**63 + 5)
    w.add_int64("p.i64", -(2**62))
    w.add_float64("p.f64", -1e300)
    w.add_bool("p.bool", False)
    w.add_string("p.str", "h\u00e9llo")
    w.add_array("p.arr_i32", [1, -2, 3])
    w.add_array("p.arr_f32", [0.25, 8.0])
    w.add_array("p.arr_str", ["a", "\u00fcber", ""])
    rng = np.random.default_rng(1)
    f32 = rng.standard_normal((3, 7)).astype(np.float32)
    f16 = rng.standard_normal((2, 5)).astype(np.float16)
    q4k = rng.integers(0, 256, (2, 3, 144), dtype=np.uint8)  # [E=2, R=3, one q4_K block per row]
    q80 = rng.integers(0, 256, (4, 2 * 34), dtype=np.uint8)
    w.add_tensor("a.f32", f32)
    w.add_tensor("b.f16", f16)
    w.add_tensor("blk.1.ffn_gate_exps.weight", q4k, raw_dtype=Q.Q4_K)
    w.add_tensor("c.q8_0", q80, raw_dtype=Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    m = moeq_reads(tool, path)
    check(m["alignment"] == 64, f"alignment {m['alignment']}")
    kv = {e["key"]: e for e in m["kv"]}
    want = [
        ("general.architecture", "string", "qwen3moe"),
        ("general.alignment", "uint32", 64),
        ("p.u8", "uint8", 250),
        ("p.i8", "int8", -100),
        ("p.u16", "uint16", 60000),
        ("p.i16", "int16", -20000),
        ("p.u32", "uint32", 4000000000),
        ("p.i32", "int32", -2000000000),
        ("p.f32", "float32", float(np.float32(0.3))),
        ("p.u64", "uint64", str(2**63 + 5)),
        ("p.i64", "int64", -(2**62)),
        ("p.f64", "float64", -1e300),
        ("p.bool", "bool", False),
        ("p.str", "string", "h\u00e9llo"),
        ("p.arr_i32", "array", [1, -2, 3]),
        ("p.arr_f32", "array", [0.25, 8.0]),
        ("p.arr_str", "array", ["a", "\u00fcber", ""]),
    ]
    check([e["key"] for e in m["kv"]] == [k for k, _, _ in want], f"moeq reads keys {list(kv)}")
    for k, t, v in want:
        check(kv[k]["type"] == t, f"{k}: moeq reads type {kv[k]['type']}")
        check(kv[k]["value"] == v, f"{k}: moeq reads {kv[k]['value']!r}, gguf wrote {v!r}")
    check(kv["p.arr_i32"]["elem"] == "int32" and kv["p.arr_str"]["elem"] == "string", "array element types")
    want_t = [
        ("a.f32", 0, [7, 3], f32.tobytes()),
        ("b.f16", 1, [5, 2], f16.tobytes()),
        ("blk.1.ffn_gate_exps.weight", 12, [256, 3, 2], q4k.tobytes()),
        ("c.q8_0", 8, [64, 4], q80.tobytes()),
    ]
    check(len(m["tensors"]) == len(want_t), "tensor count")
    for t, (name, typ, ne, data) in zip(m["tensors"], want_t):
        check(t["name"] == name and t["type"] == typ and t["ne"] == ne, f"tensor {t['name']} {t['type']} {t['ne']}")
        check(t["offset"] % 64 == 0, f"{name}: offset {t['offset']}")
        check(bytes.fromhex(t["hex"]) == data, f"{name}: bytes differ")
    print(f"moeq reads gguf.GGUFWriter's file: {len(want)} keys, {len(want_t)} tensors")


def main():
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        moeq_wrote(tool, d)
        gguf_wrote(tool, d)
    print("ok")


if __name__ == "__main__":
    main()
