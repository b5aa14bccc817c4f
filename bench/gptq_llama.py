"""gptq_llama.py: the llama.cpp side of bench/gptq_vs_gptqmodel.py: q3_K files made by llama.cpp's own tools
(llama-imatrix, llama-quantize; scripts/build-llama-tools.sh builds them from the llama.cpp that build-venv's
llama_cpp module runs) from moeq's unquantized F32 GGUF export, with and without an importance matrix from the
benchmark's calibration text, measured in llama.cpp (tests/python/llama_eval.py, moeq eval's protocol on the
model's val.txt). Also: whether llama-quantize accepts the importance matrix `moeq calibrate` writes.
"""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA_EVAL = os.path.join(ROOT, "tests", "python", "llama_eval.py")
BUILD_VENV_PY = os.path.join(ROOT, "build-venv", "bin", "python")
# the tensors GPTQModel quantizes (attention and routed experts), by their GGUF names
GPTQ_SET = re.compile(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate_exps|ffn_up_exps|ffn_down_exps)\.weight")


# Q3_K_pure: every tensor llama-quantize quantizes in q3_K (no k-quant mixture), the embedding and the output
# layer kept as the checkpoint's bf16: what a moeq recipe `format: q3_K` on attention and experts exports
FTYPE_ARGS = {"Q3_K_pure": ["--pure", "--token-embedding-type", "bf16", "--output-tensor-type", "bf16", "Q3_K"]}


def run(cmd, log=None, env=None, check=True):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log:
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    if check and r.returncode:
        sys.exit(f"gptq_llama: {' '.join(cmd)}: exit {r.returncode}\n{(r.stdout + r.stderr)[-3000:]}")
    return r, time.time() - t


def gguf_bits(path):
    """bits/weight over the attention and routed-expert tensors (the set GPTQ quantizes), and their types."""
    import gguf
    r = gguf.GGUFReader(path)
    nbits = nw = 0
    types = {}
    for t in r.tensors:
        if GPTQ_SET.fullmatch(t.name):
            nbits += 8 * int(t.n_bytes)
            nw += int(t.n_elements)
            ty = t.tensor_type.name
            types[ty] = types.get(ty, 0) + 1
    return round(nbits / nw, 4), types


def perplexity(gguf_path, model, threads, log):
    r, secs = run([BUILD_VENV_PY, LLAMA_EVAL, gguf_path, "--text", os.path.join(model, "val.txt"),
                   "--tokenizer", os.path.join(model, "tokenizer.json"), "--threads", str(threads)], log=log)
    return json.loads(r.stdout)["perplexity"], secs


def check_tokenization(gguf_path, calib_txt, ids):
    """llama-imatrix tokenizes the calibration text with the GGUF's vocabulary: it must give the same ids as the
    char tokenizer (moeq's export: one token per character, no BOS), else the two peers saw different inputs."""
    code = ("import sys, llama_cpp as L\n"
            "m = L.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n"
            "t = m.tokenize(open(sys.argv[2], 'rb').read(), add_bos=False, special=False)\n"
            "print(' '.join(map(str, t)))\n")
    r, _ = run([BUILD_VENV_PY, "-c", code, gguf_path, calib_txt])
    got = [int(x) for x in r.stdout.split()]
    return got == ids


def compare_imatrix(a_path, b_path):
    """Two GGUF importance matrices of one model: same entries? the largest difference of the per-column mean
    squares (in_sum2 / counts) relative to the entry's largest, and how many counts (tokens per expert) differ."""
    import gguf
    import numpy as np
    a, b = ({t.name: np.array(t.data, dtype=np.float64) for t in gguf.GGUFReader(p).tensors} for p in (a_path, b_path))
    if sorted(a) != sorted(b):
        return {"same_entries": False, "only_llama": sorted(set(a) - set(b))[:8], "only_moeq": sorted(set(b) - set(a))[:8]}
    worst, counts_diff = 0.0, 0
    for n in a:
        if n.endswith(".in_sum2"):
            c = n[:-len("in_sum2")] + "counts"
            ma, mb = (x[n] / np.maximum(x[c], 1).reshape(-1, *([1] * (x[n].ndim - 1))) for x in (a, b))
            worst = max(worst, float(np.abs(ma - mb).max() / np.abs(ma).max()))
            counts_diff += int((a[c] != b[c]).sum())
    return {"same_entries": True, "entries": len(a) // 2, "max_rel_diff_mean_squares": worst,
            "counts_differing": counts_diff}


def q3k_peer(moeq, model, work, calib_txt, ids, nchunks, ctx, tools, ftypes, threads, mpirun):
    """Returns the rows of llama.cpp's q3_K peer and the `moeq calibrate` compatibility check."""
    imatrix_bin = os.path.join(tools, "llama-imatrix")
    quant_bin = os.path.join(tools, "llama-quantize")
    for b in (imatrix_bin, quant_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"gptq_llama: no {b}: run scripts/build-llama-tools.sh (or pass --llama-tools DIR)")
    d = os.path.join(work, "llama-" + os.path.basename(os.path.normpath(model)))
    os.makedirs(d, exist_ok=True)
    rec = os.path.join(d, "none.yaml")
    with open(rec, "w") as f:
        f.write("version: 1\ndefaults: {method: none}\n")
    base_h5, base = os.path.join(d, "base.h5"), os.path.join(d, "base-f32.gguf")
    pre, env = mpirun
    run(pre + [moeq, "quantize", "-q", "--progress", "0", "--force", "--model", model, "--recipe", rec,
               "--out", base_h5], env=env)
    run([moeq, "export", "-q", "--format", "gguf", "--outtype", "f32", "--force", base_h5, base])
    out = {"tools": tools, "base": {"file": "moeq export --format gguf --outtype f32 of method none",
                                    "bytes": os.path.getsize(base)},
           "tokenization_matches_char_ids": check_tokenization(base, calib_txt, ids)}
    out["base"]["perplexity"], _ = perplexity(base, model, threads, os.path.join(d, "eval-base.log"))

    imx = os.path.join(d, "llama.imatrix.gguf")
    r, secs = run([imatrix_bin, "-m", base, "-f", calib_txt, "-o", imx, "-c", str(ctx), "-b", str(ctx),
                   "--chunks", str(nchunks), "-t", str(threads), "--no-ppl"], log=os.path.join(d, "imatrix.log"))
    out["imatrix"] = {"command": f"llama-imatrix -c {ctx} --chunks {nchunks} --no-ppl", "wall_s": round(secs, 2)}

    mimx = os.path.join(d, "moeq.imatrix.gguf")
    _, secs = run([moeq, "calibrate", "--model", model, "--text", calib_txt, "--ctx", str(ctx), "--chunks",
                   str(nchunks), "--out", mimx], log=os.path.join(d, "moeq-calibrate.log"))
    out["moeq_calibrate"] = {"command": f"moeq calibrate --ctx {ctx} --chunks {nchunks}", "wall_s": round(secs, 2)}

    out["moeq_calibrate"]["against_llama_imatrix"] = compare_imatrix(imx, mimx)

    rows = []
    for ft in ftypes:
        for label, matrix in (("none", None), ("llama-imatrix", imx), ("moeq-calibrate", mimx)):
            dst = os.path.join(d, f"{ft}-{label}.gguf")
            cmd = [quant_bin] + (["--imatrix", matrix] if matrix else []) + FTYPE_ARGS.get(ft, [ft])
            cmd[-1:-1] = [base, dst]
            cmd.append(str(threads))
            r, secs = run(cmd, log=os.path.join(d, f"quantize-{ft}-{label}.log"), check=False)
            row = {"peer": "llama.cpp", "quantizer": "llama-quantize", "ftype": ft, "imatrix": label,
                   "wall_s": round(secs, 2)}
            if r.returncode:
                row["error"] = (r.stdout + r.stderr)[-1500:]
                rows.append(row)
                continue
            row["bits_per_weight"], row["types"] = gguf_bits(dst)
            row["file_bytes"] = os.path.getsize(dst)
            row["perplexity"], row["eval_s"] = perplexity(dst, model, threads, os.path.join(d, f"eval-{ft}-{label}.log"))
            row["eval_s"] = round(row["eval_s"], 2)
            row["increase_pct"] = round(100 * (row["perplexity"] / out["base"]["perplexity"] - 1), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    accepted = [r for r in rows if r["imatrix"] == "moeq-calibrate"]
    out["moeq_calibrate"]["accepted_by_llama_quantize"] = all("error" not in r for r in accepted)
    return out, rows
