"""gguf_vs_llama_quantize.py: moeq's GGUF files against llama.cpp's own quantizer, in llama.cpp, same run.

For each llama.cpp file type (--ftypes, e.g. Q3_K_M):
  1. peer: llama.cpp's `llama_model_quantize` (what `llama-quantize` runs, through llama-cpp-python) turns an
     unquantized GGUF of the model (moeq's `method: none` export, BF16 as the checkpoint) into that type;
     its per-tensor type mix is read back with the gguf package;
  2. moeq: a recipe giving every tensor the SAME type as the peer's file (rules per layer and projection,
     target: gguf), quantized twice: `method: rtn` (llama.cpp's algorithm as moeq reproduces it; its tensor
     bytes are compared with the peer's: equal bytes prove the reproduction on this model) and `method: search`
     (moeq's searched quantizer where the type has one, rtn elsewhere), each exported with
     `moeq export --format gguf`;
  3. all three files are run in llama.cpp (tests/python/llama_eval.py: moeq eval's perplexity protocol) on
     the same tokens; sizes in bytes.
Prints one JSON object (machine, inputs, figures). Usage (from the repository root, after scripts/build.sh):
  build-venv/bin/python bench/gguf_vs_llama_quantize.py --model ../shared/models/mixtral-mini \
      [--ftypes Q2_K,Q3_K_S,Q3_K_M,Q4_K_M] [--max-tokens 32768] [--ranks 2] [--work DIR] [--moeq BIN]
"""
import argparse
import ctypes
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOEQ = os.path.join(ROOT, "build", "moeq")
LLAMA_EVAL = os.path.join(ROOT, "tests", "python", "llama_eval.py")

# GGUF tensor name -> a moeq recipe match (class, proj, layer); names of llama.cpp's `llama` architecture
# (Mixtral). Tensors left out here (norms, router) are unquantized by both.
GGUF_MATCH = [
    (r"blk\.(\d+)\.attn_q\.weight", "attention", "q"),
    (r"blk\.(\d+)\.attn_k\.weight", "attention", "k"),
    (r"blk\.(\d+)\.attn_v\.weight", "attention", "v"),
    (r"blk\.(\d+)\.attn_output\.weight", "attention", "o"),
    (r"blk\.(\d+)\.ffn_gate_exps\.weight", "routed_expert", "gate"),
    (r"blk\.(\d+)\.ffn_up_exps\.weight", "routed_expert", "up"),
    (r"blk\.(\d+)\.ffn_down_exps\.weight", "routed_expert", "down"),
    (r"token_embd\.weight", "embedding", None),
    (r"output\.weight", "lm_head", None),
]
SEARCHED = {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"gguf_vs_llama_quantize: {' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return r.stdout


def mpirun(ranks):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return ["mpirun", "-n", str(ranks)], env


def quantize(model, recipe_text, out, work, ranks):
    path = os.path.join(work, os.path.basename(out) + ".yaml")
    with open(path, "w") as f:
        f.write(recipe_text)
    pre, env = mpirun(ranks)
    run(pre + [MOEQ, "quantize", "-q", "--progress", "0", "--force", "--model", model, "--recipe", path,
               "--out", out], env=env)


def export(art, gguf_path):
    if os.path.exists(gguf_path):
        os.unlink(gguf_path)
    run([MOEQ, "export", "-q", "--format", "gguf", "--progress", "0", art, gguf_path])


def gguf_types(path):
    import gguf
    r = gguf.GGUFReader(path)
    return {t.name: (t.tensor_type.name.lower().replace("_k", "_K"), bytes(t.data.tobytes())) for t in r.tensors}


def recipe_for(types, method):
    """A moeq recipe giving each tensor the type it has in the peer's file."""
    lines = ["version: 1", "target: gguf", "defaults: {method: none}", "rules:"]
    for name, (ty, _) in sorted(types.items()):
        if ty in ("f32", "f16", "bf16"):
            continue
        for pat, cls, proj in GGUF_MATCH:
            m = re.fullmatch(pat, name)
            if not m:
                continue
            meth = method if (method == "rtn" or ty in SEARCHED) else "rtn"
            match = f"class: {cls}" + (f", proj: {proj}" if proj else "") + (
                f', layers: "{m.group(1)}"' if m.groups() else "")
            lines.append(f"  - match: {{{match}}}")
            lines.append(f"    set: {{method: {meth}, format: {ty}}}")
            break
        else:
            sys.exit(f"gguf_vs_llama_quantize: no recipe match for the peer's tensor {name} ({ty})")
    return "\n".join(lines) + "\n"


def llama_quantize(src, dst, ftype_name):
    import llama_cpp
    ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype_name)
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 1
    t = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc:
        sys.exit(f"gguf_vs_llama_quantize: llama_model_quantize({ftype_name}) returned {rc}")
    return time.time() - t


def perplexity(gguf_path, model, max_tokens):
    out = run([sys.executable, LLAMA_EVAL, gguf_path, "--text", os.path.join(model, "val.txt"), "--tokenizer",
               os.path.join(model, "tokenizer.json"), "--max-tokens", str(max_tokens)])
    return json.loads(out)["perplexity"]


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ftypes", default="Q2_K,Q3_K_S,Q3_K_M,Q4_K_M")
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--work")
    ap.add_argument("--moeq", help="the moeq binary (default: build/moeq)")
    a = ap.parse_args()
    global MOEQ
    MOEQ = os.path.abspath(a.moeq or MOEQ)
    model = os.path.abspath(a.model)
    work = a.work or tempfile.mkdtemp(prefix="moeq-gguf-bench-")
    os.makedirs(work, exist_ok=True)

    quantize(model, "version: 1\ndefaults: {method: none}\n", os.path.join(work, "base.h5"), work, a.ranks)
    base = os.path.join(work, "base.gguf")
    export(os.path.join(work, "base.h5"), base)
    result = {"benchmark": "gguf_vs_llama_quantize", "machine": machine(), "model": model,
              "tokens": a.max_tokens, "protocol": "llama.cpp perplexity, moeq eval's windows (llama_eval.py)",
              "unquantized": {"bytes": os.path.getsize(base), "perplexity": perplexity(base, model, a.max_tokens)},
              "types": []}
    for ft in a.ftypes.split(","):
        peer = os.path.join(work, f"peer-{ft}.gguf")
        if os.path.exists(peer):
            os.unlink(peer)
        secs = llama_quantize(base, peer, ft)
        ptypes = gguf_types(peer)
        row = {"ftype": ft, "peer": {"bytes": os.path.getsize(peer), "seconds": round(secs, 2),
                                     "perplexity": perplexity(peer, model, a.max_tokens)}}
        mix = {}
        for n, (t, _) in ptypes.items():
            mix[t] = mix.get(t, 0) + 1
        row["peer"]["type_counts"] = mix
        for method in ("rtn", "search"):
            art = os.path.join(work, f"moeq-{method}-{ft}.h5")
            t = time.time()
            quantize(model, recipe_for(ptypes, method), art, work, a.ranks)
            secs = time.time() - t
            g = os.path.join(work, f"moeq-{method}-{ft}.gguf")
            export(art, g)
            mtypes = gguf_types(g)
            same_types = all(mtypes.get(n, ("?",))[0] == ty for n, (ty, _) in ptypes.items())
            same_bytes = sum(1 for n, (ty, b) in ptypes.items() if n in mtypes and mtypes[n][1] == b)
            row["moeq_" + method] = {"bytes": os.path.getsize(g), "seconds_quantize": round(secs, 2),
                                     "perplexity": perplexity(g, model, a.max_tokens),
                                     "same_types_as_peer": same_types,
                                     "tensors_byte_identical_to_peer": f"{same_bytes}/{len(ptypes)}"}
        base_ppl = result["unquantized"]["perplexity"]
        for k in ("peer", "moeq_rtn", "moeq_search"):
            row[k]["increase_pct"] = round(100 * (row[k]["perplexity"] / base_ppl - 1), 4)
        result["types"].append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
