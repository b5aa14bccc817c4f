"""Every llama.cpp block type moeq stores decodes to the same floats in moeq and in the `gguf` package
(llama.cpp's own numpy dequantizers, PyPI), bit for bit: random blocks (any field value) and blocks moeq's
quantizer made. Usage: test_ggml_gguf.py GGML_DUMP (the C program tests/kernels/ggml_dump.c)."""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, GGML_QUANT_SIZES
from gguf.quants import dequantize

dump = sys.argv[1]
with tempfile.TemporaryDirectory() as d:
    lines = subprocess.run([dump, d], check=True, capture_output=True, text=True).stdout.split("\n")
    bad = 0
    types = []
    for line in filter(None, lines):
        name, gid, k, rows = line.split()
        qt = GGMLQuantizationType(int(gid))
        assert qt.name.lower() == name.lower(), (name, qt.name)
        k, rows = int(k), int(rows)
        qk, bb = GGML_QUANT_SIZES[qt]
        blocks = np.fromfile(os.path.join(d, name + ".blocks"), dtype=np.uint8).reshape(rows, k // qk * bb)
        ours = np.fromfile(os.path.join(d, name + ".f32"), dtype=np.float32).reshape(rows, k)
        ref = dequantize(blocks, qt).astype(np.float32).reshape(rows, k)
        same = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
        if not same.all():
            r, c = np.argwhere(~same)[0]
            print(f"FAIL {name}: {np.count_nonzero(~same)} of {same.size} values differ; first at row {r} col {c}: "
                  f"moeq {ours[r, c]!r} gguf {ref[r, c]!r}")
            bad += 1
        else:
            print(f"ok   {name}: {rows} rows of {k} ({rows * k // qk} blocks) identical")
        types.append(name)
print(f"{len(types)} types checked against gguf: {' '.join(types)}")
sys.exit(1 if bad or not types else 0)
