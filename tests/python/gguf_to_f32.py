"""gguf_to_f32.py IN.gguf OUT.gguf: a copy of a (single-file) GGUF with every tensor in F32: the quantized
ones (llama.cpp's block types) decoded by the `gguf` package's dequantizers (gguf.quants.dequantize:
llama.cpp's own formulas in numpy, bit for bit equal to moeq's, tests/kernels/test_ggml_gguf.py), F16/BF16
widened. Every key/value is copied (general.file_type set to 0, all F32).

Why: llama.cpp's CPU backend multiplies quantized weights with activations that it first quantizes itself
(q8_0 / q8_K blocks), so llama.cpp on a quantized GGUF and moeq's fp32 forward pass over the dequantized
weights differ by more than summation order. Run on this copy, llama.cpp computes with exactly the weights
moeq's forward pass uses, in fp32: logits and perplexity then agree to fp32 rounding, which checks every
quantized byte, shape, name and key of the export through llama.cpp itself
(tests/pipeline/test_gguf_llama_e2e.sh).
Run with build-venv/bin/python (the gguf package, PyPI).
"""
import sys

import numpy as np
import gguf
from gguf.quants import dequantize

FLOATS = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16)


class Writer(gguf.GGUFWriter):
    """GGUFWriter that also writes empty arrays (llama.cpp reads them; e.g. tokenizer.ggml.merges of a char
    vocabulary), which the gguf package's writer refuses."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None):
        if vtype == gguf.GGUFValueType.ARRAY and len(val) == 0 and sub_type is not None:
            return (self._pack("I", vtype) if add_vtype else b"") + self._pack("I", sub_type) + self._pack("Q", 0)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n")[0])
    src, dst = sys.argv[1:3]
    try:
        r = gguf.GGUFReader(src)
    except (OSError, ValueError) as e:
        print(f"gguf_to_f32: {src}: {e}", file=sys.stderr)
        sys.exit(3)
    arch = r.fields[gguf.Keys.General.ARCHITECTURE].contents()
    w = Writer(dst, arch)
    for f in r.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vt = f.types[0]
        # an array's element type from the file (parts: key length, key, type, element type, length, ...):
        # f.types has none for an empty array
        sub = gguf.GGUFValueType(int(f.parts[3][0])) if vt == gguf.GGUFValueType.ARRAY else None
        val = 0 if f.name == gguf.Keys.General.FILE_TYPE else f.contents()
        w.add_key_value(f.name, val, vt, sub_type=sub)
    n_deq = 0
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # numpy order: ne reversed
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            a = np.asarray(t.data, dtype=np.float32).reshape(shape)
        elif t.tensor_type in FLOATS:
            a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        else:
            a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
            n_deq += 1
        w.add_tensor(t.name, np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{dst}: {len(r.tensors)} tensors, {n_deq} dequantized to F32")


if __name__ == "__main__":
    main()
