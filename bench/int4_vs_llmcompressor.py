"""int4_vs_llmcompressor.py: issue 23's quality benchmark (item 5): moeq's integer 4-bit formats against
llm-compressor's GPTQ W4A16 and RTN W4A16 and against HQQ 4-bit, on the test models, CPU. Run from the
repository root with the venv of bench/requirements-llmc.txt (bench/README.md):

  /work/.llmc-venv/bin/python bench/int4_vs_llmcompressor.py [--models mixtral-tiny,mixtral-mini]
      [--sequences 128] [--seqlen 256] [--threads 2] [--ranks 2] [--moeq build/moeq] [--no-peers] [--no-moeq]
      [--work DIR] [--out bench/results/int4-vs-llmcompressor.json]

1. Calibration and perplexity as bench/gptq_vs_gptqmodel.py (imported): scripts/calib-text.sh ids (128 x 256),
   the models' README protocol in transformers fp32, checked against reference.json first.
2. Peers, from the bf16 checkpoint with fp32 computation, on the tensors moeq quantizes (attention q/k/v/o and
   the routed experts; the counts are checked against moeq eval's):
   - llm-compressor `oneshot` (its own process): GPTQModifier and QuantizationModifier (RTN), scheme W4A16
     (symmetric int4, group 128), targets Linear, ignore lm_head and the routers, its defaults otherwise;
     the saved compressed checkpoint is decompressed by compressed-tensors and also loaded by transformers.
   - HQQ (the `hqq` package): HQQLinear with BaseQuantizeConfig(nbits=4, group_size=64 | 128), its default
     optimiser, compute dtype fp16 (its default), dequantized by HQQLinear.dequantize().
   Per row: bits/weight as stored, perplexity increase over the bf16 checkpoint, relative Frobenius weight
   error sqrt(sum ||W - deq||^2 / sum ||W||^2) over all quantized tensors (fp64), wall seconds.
3. moeq: `moeq quantize` (format i4s / i4 / q4, group 128 or 64; rtn, search, gptq with --calib, gptq clip,
   hqq) and `moeq eval --json` (perplexity.quantized, weights.overall.rel_fro, bits_per_weight).
4. `moeq export --format compressed-tensors` of the i4s gptq artifact, loaded by transformers: its perplexity
   must equal moeq eval's within 1e-4 relative (recorded, and the script exits 1 when it does not).
Writes one JSON and prints a Markdown table.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gptq_hf  # noqa: E402
import gptq_vs_gptqmodel as gvg  # noqa: E402

# llm-compressor's Mixtral examples ignore lm_head and the routers; transformers 5 names the MoE block `mlp`
# (its router is no Linear there, so nothing is matched by the second regex; kept for older layouts)
LLMC_IGNORE = ["lm_head", "re:.*block_sparse_moe.gate$", "re:.*mlp.gate$"]
# moeq rows: (label, format, group, method, recipe extra)
MOEQ_ROWS = [("rtn", "i4s", 128, "rtn", ""), ("search", "i4s", 128, "search", ""),
             ("gptq", "i4s", 128, "gptq", ""), ("gptq clip", "i4s", 128, "gptq", ", gptq: {clip: true}"),
             ("gptq", "i4", 128, "gptq", ""), ("hqq", "q4", 128, "hqq", ""), ("hqq", "q4", 64, "hqq", "")]
HQQ_GROUPS = (128, 64)
EXPORT_TOL = 1e-4


# ---------------------------------------------------------------------------------------------------------------
# weights: the checkpoint's quantized tensors and the error against them
# ---------------------------------------------------------------------------------------------------------------
def canonical(name):
    """The checkpoint's tensor name of a peer's module name (llm-compressor: block_sparse_moe.experts.E.gate_proj,
    GPTQModel-style mlp.experts.E.w1, ...): model.layers.L.block_sparse_moe.experts.E.w1|w2|w3.weight."""
    name = name[:-len(".weight")] if name.endswith(".weight") else name
    m = gptq_hf.EXPERT.match(name)
    if m:
        w = {"gate": "w1", "up": "w3", "down": "w2"}[gptq_hf.PROJ[m.group(3)]]
        return f"model.layers.{m.group(1)}.block_sparse_moe.experts.{m.group(2)}.{w}.weight"
    return name + ".weight"


def targets(model_dir):
    """{name: fp32 [out, in]} of what moeq quantizes by default: attention q/k/v/o and the routed experts."""
    from safetensors import safe_open
    idx = json.load(open(os.path.join(model_dir, "model.safetensors.index.json")))["weight_map"]
    out = {}
    for shard in sorted(set(idx.values())):
        with safe_open(os.path.join(model_dir, shard), "pt") as f:
            for k in f.keys():
                if (".self_attn." in k and k.endswith("_proj.weight")) or gptq_hf.EXPERT.match(k[:-len(".weight")]):
                    out[k] = f.get_tensor(k).float()
    return out


def weight_error(ref, deq):
    """sqrt(sum ||W - D||^2 / sum ||W||^2) in fp64 over every tensor; deq's names must be ref's."""
    assert sorted(ref) == sorted(deq), f"quantized tensors differ from moeq's set: {sorted(set(ref) ^ set(deq))[:4]}"
    err = sum(float((ref[k].double() - deq[k].double()).pow(2).sum()) for k in ref)
    return math.sqrt(err / sum(float(ref[k].double().pow(2).sum()) for k in ref))


def evaluate(model_dir, work, weights, val_ids, base, ref):
    """Perplexity of the bf16 checkpoint with `weights` ({checkpoint name: fp32}) put in, and the weight error."""
    m = gptq_hf.load_fp32(model_dir, work)
    n = gptq_hf.set_weights(m, {k[:-len(".weight")]: v for k, v in weights.items()})
    ce, ppl, _, _ = gptq_hf.perplexity(m, val_ids)
    return {"modules": n, "params": sum(v.numel() for v in weights.values()), "ce_nats": ce, "perplexity": ppl,
            "increase_pct": round(100 * (ppl / base - 1), 4), "rel_fro": weight_error(ref, weights)}


# ---------------------------------------------------------------------------------------------------------------
# llm-compressor (own process: load_quantizable_moe and oneshot patch transformers' Mixtral)
# ---------------------------------------------------------------------------------------------------------------
def llmc_quantize(ckpt, ids_path, seqlen, modifier, out, threads):
    """oneshot with GPTQModifier ("gptq") or QuantizationModifier ("rtn") of ckpt in fp32; saves the compressed
    checkpoint in OUT/ckpt, its decompression in OUT/dequantized.safetensors and OUT/info.json."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    from llmcompressor import oneshot
    from llmcompressor.modeling.moe.linearize import load_quantizable_moe
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    torch.set_num_threads(threads)
    t0 = time.time()
    with load_quantizable_moe():  # the fused [E, 2I, H] experts as one Linear per expert and projection
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    kw = {"targets": "Linear", "scheme": "W4A16", "ignore": LLMC_IGNORE}
    t1 = time.time()
    if modifier == "gptq":
        from datasets import Dataset
        calib = gptq_hf.read_ids(ids_path, seqlen)
        ds = Dataset.from_dict({"input_ids": calib, "attention_mask": [[1] * len(s) for s in calib]})
        oneshot(model=model, dataset=ds, recipe=GPTQModifier(**kw), max_seq_length=seqlen,
                num_calibration_samples=len(calib))
        cal = {"sequences": len(calib), "seqlen": seqlen}
    else:
        oneshot(model=model, recipe=QuantizationModifier(**kw))
        cal = None
    t2 = time.time()
    d = os.path.join(out, "ckpt")
    model.save_pretrained(d, save_compressed=True)
    t3 = time.time()
    weights, info = decompress(d)
    save_file(weights, os.path.join(out, "dequantized.safetensors"))
    info.update({"load_s": round(t1 - t0, 2), "quantize_s": round(t2 - t1, 2), "save_s": round(t3 - t2, 2),
                 "calibration": cal})
    json.dump(info, open(os.path.join(out, "info.json"), "w"), indent=1)


def decompress(ckpt_dir):
    """Every module of a pack-quantized checkpoint through compressed-tensors' PackedQuantizationCompressor
    (the scheme of its one config group); returns ({checkpoint name: fp32}, info with the stored bits)."""
    import torch
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors import safe_open
    qc = json.load(open(os.path.join(ckpt_dir, "config.json")))["quantization_config"]
    groups = list(qc["config_groups"].values())
    assert len(groups) == 1 and qc["format"] == "pack-quantized", f"{ckpt_dir}: {len(groups)} groups, {qc['format']}"
    scheme = QuantizationScheme(**groups[0])
    sd = {}
    for f in sorted(os.listdir(ckpt_dir)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(ckpt_dir, f), "pt") as s:
                sd.update({k: s.get_tensor(k) for k in s.keys()})
    out, bits, bits16, params = {}, 0, 0, 0
    for key in sorted(k for k in sd if k.endswith(".weight_packed")):
        mod = key[:-len(".weight_packed")]
        part = {k[len(mod) + 1:]: v for k, v in sd.items() if k.startswith(mod + ".weight_")}
        w = PackedQuantizationCompressor.decompress(part, scheme)["weight"]
        out[canonical(mod)] = w.to(torch.float32).contiguous()
        params += w.numel()  # stored bits: codes, scales, zero points, g_idx (weight_shape's 16 bytes left out)
        bits += 8 * sum(v.numel() * v.element_size() for k, v in part.items() if k != "weight_shape")
        bits16 += 8 * sum(v.numel() * (2 if k == "weight_scale" else v.element_size()) for k, v in part.items()
                          if k != "weight_shape")
    return out, {"modules": len(out), "bits_per_weight": round(bits / params, 4),
                 "bits_per_weight_16bit_scales": round(bits16 / params, 4),
                 "scale_dtype": str(sd[key[:-len("packed")] + "scale"].dtype), "quantization_config": qc}


def llmc_row(model, work, ids_bin, seqlen, modifier, threads, val_ids, base, ref, pythons):
    d = os.path.join(work, "llmc-" + os.path.basename(os.path.normpath(model)), modifier)
    os.makedirs(d, exist_ok=True)
    t = time.time()
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "llmc", gptq_hf.staging_dir(model, work),
                        ids_bin, str(seqlen), modifier, d, str(threads)], capture_output=True, text=True, cwd=d)
    wall = time.time() - t
    with open(os.path.join(d, "llmc.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    name = f"llm-compressor {'GPTQModifier' if modifier == 'gptq' else 'QuantizationModifier (RTN)'}"
    if r.returncode:
        return {"quantizer": name, "error": f"exit {r.returncode}: {r.stderr[-2000:]}"}
    info = json.load(open(os.path.join(d, "info.json")))
    from safetensors.torch import load_file
    row = {"quantizer": name, "format": "W4A16 (int4 sym, g128)", "group": 128,
           "bits_per_weight": info["bits_per_weight"], "scale_dtype": info["scale_dtype"],
           "bits_per_weight_16bit_scales": info["bits_per_weight_16bit_scales"]}
    row.update(evaluate(model, work, load_file(os.path.join(d, "dequantized.safetensors")), val_ids, base, ref))
    row.update({"wall_s": round(wall, 2), "quantize_s": info["quantize_s"],
                "config": info["quantization_config"]["config_groups"], "ignore": info["quantization_config"]["ignore"]})
    # the same checkpoint as a user loads it: transformers' compressed-tensors integration (this venv's and the
    # tests' transformers)
    row["transformers_load"] = load_ct_all(os.path.join(d, "ckpt"), model, pythons, threads, row["perplexity"])
    print(json.dumps({k: v for k, v in row.items() if k != "config"}), file=sys.stderr)
    return row


def load_ct(ckpt_dir, val_ids):
    """Perplexity of a compressed-tensors checkpoint loaded by transformers (fp32), by its compressed path and
    else with CompressedTensorsConfig(dequantize=True); a load that leaves weights missing (newly initialised)
    counts as failed. {"perplexity", "how"} or {"error"} (each path's reason)."""
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig
    errors = []
    for how in ("compressed", "dequantize=True"):
        kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if how != "compressed" else {}
        try:
            m, info = AutoModelForCausalLM.from_pretrained(ckpt_dir, dtype=torch.float32, output_loading_info=True,
                                                           **kw)
        except Exception as e:  # noqa: BLE001 (recorded: which loader path failed and why)
            errors.append(f"{how}: {type(e).__name__}: {str(e)[:300]}")
            continue
        if info["missing_keys"]:
            miss = sorted(info["missing_keys"])
            errors.append(f"{how}: {len(miss)} weights missing (newly initialised), e.g. {miss[:2]}; "
                          f"{len(info['unexpected_keys'])} checkpoint tensors unused, e.g. "
                          f"{sorted(info['unexpected_keys'])[:2]}")
            continue
        try:  # transformers 5.17 leaves the ignored routers in the checkpoint's bf16: the fp32 forward fails
            _, ppl, _, _ = gptq_hf.perplexity(m.eval(), val_ids)
        except RuntimeError as e:
            errors.append(f"{how}: loaded, forward failed: {str(e)[:300]}")
            continue
        return {"perplexity": ppl, "how": how}
    return {"error": "; ".join(errors)}


def load_ct_all(ckpt_dir, model, pythons, threads, want):
    """load_ct in each venv's python (its own process: transformers versions differ); {version: result} with
    relative_diff against the perplexity `want`."""
    out = {}
    for i, py in enumerate(pythons):
        j = os.path.join(ckpt_dir, f"load-ct-{i}.json")
        r = subprocess.run([py, os.path.abspath(__file__), "load-ct", ckpt_dir, model, j, str(threads)],
                           capture_output=True, text=True)
        res = json.load(open(j)) if r.returncode == 0 else {"error": f"{py}: exit {r.returncode}: {r.stderr[-800:]}"}
        if "perplexity" in res:
            res["relative_diff"] = res["perplexity"] / want - 1
        out[f"transformers {res.pop('transformers', '?')} ({py})"] = res
    return out


# ---------------------------------------------------------------------------------------------------------------
# HQQ (in this process: it patches nothing)
# ---------------------------------------------------------------------------------------------------------------
def hqq_row(model, work, group, threads, val_ids, base, ref):
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
    torch.set_num_threads(threads)
    cfg = BaseQuantizeConfig(nbits=4, group_size=group)
    t = time.time()
    deq, bits = {}, 0
    for name, w in ref.items():
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data.copy_(w)
        q = HQQLinear(lin, cfg, compute_dtype=torch.float16, device="cpu")
        deq[name] = q.dequantize().float()
        bits += 8 * sum(x.numel() * x.element_size() for x in (q.W_q, q.meta["scale"], q.meta["zero"]))
    wall = time.time() - t
    row = {"quantizer": "HQQ (hqq package)", "format": f"4-bit, g{group}, fp16 scale and zero", "group": group,
           "bits_per_weight": round(bits / sum(w.numel() for w in ref.values()), 4),
           "config": cfg["weight_quant_params"]}
    row.update(evaluate(model, work, deq, val_ids, base, ref))
    row["wall_s"] = round(wall, 2)
    print(json.dumps(row), file=sys.stderr)
    return row


# ---------------------------------------------------------------------------------------------------------------
# moeq
# ---------------------------------------------------------------------------------------------------------------
def moeq_row(moeq, model, ids_bin, seqlen, sequences, work, ranks, label, fmt, group, method, extra):
    d = os.path.join(work, "moeq-" + os.path.basename(os.path.normpath(model)))
    os.makedirs(d, exist_ok=True)
    stem = f"{fmt}-g{group}-{label.replace(' ', '-')}"
    rec, art, ev = (os.path.join(d, f"{stem}.{x}") for x in ("yaml", "h5", "eval.json"))
    recipe = f"version: 1\ndefaults: {{method: {method}, format: {fmt}, group: {group}{extra}}}\n"
    with open(rec, "w") as f:
        f.write(recipe)
    row = {"quantizer": f"moeq {label}", "format": fmt, "group": group, "recipe": recipe}
    pre, env = gvg.mpirun(ranks)
    cal = ["--calib", ids_bin, "--calib-seqs", str(sequences), "--calib-len", str(seqlen)] if method == "gptq" else []
    t = time.time()
    r = subprocess.run(pre + [moeq, "quantize", "-q", "--progress", "0", "--force", "--model", model, "--recipe", rec,
                              "--out", art] + cal, capture_output=True, text=True, env=env)
    row["wall_s"] = round(time.time() - t, 2)
    if r.returncode:
        row["error"] = f"moeq quantize: exit {r.returncode}: {r.stderr[-1500:]}"
        return row
    r = subprocess.run(pre + [moeq, "eval", "--progress", "0", "--model", model, art, "--json", ev],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        row["error"] = f"moeq eval: exit {r.returncode}: {r.stderr[-1500:]}"
        return row
    e = json.load(open(ev))
    p, w = e["perplexity"], e["weights"]["overall"]
    row.update({"artifact": art, "bits_per_weight": round(e["bits_per_weight"], 4), "modules": w["tensors"],
                "params": w["params"], "perplexity": p["quantized"]["perplexity"],
                "original_perplexity": p["original"]["perplexity"], "increase_pct": round(100 * p["increase"], 4),
                "rel_fro": w["rel_fro"]})
    print(json.dumps({k: v for k, v in row.items() if k != "recipe"}), file=sys.stderr)
    return row


def export_check(moeq, row, model, pythons, threads):
    """`moeq export --format compressed-tensors` of row's artifact, loaded by transformers in each venv: its
    perplexity against moeq eval's (row["perplexity"]); agree: every load within EXPORT_TOL, at least one."""
    out = row["artifact"][:-len(".h5")] + "-ct"
    r = subprocess.run([moeq, "export", "-q", "--force", "--format", "compressed-tensors", row["artifact"], out],
                       capture_output=True, text=True)
    res = {"artifact": os.path.basename(row["artifact"]), "moeq_eval_perplexity": row["perplexity"]}
    if r.returncode:
        return dict(res, error=f"moeq export: exit {r.returncode}: {r.stderr[-1500:]}", agree=False)
    res["loads"] = load_ct_all(out, model, pythons, threads, row["perplexity"])
    ok = [x for x in res["loads"].values() if "perplexity" in x]
    res["agree"] = bool(ok) and all(abs(x["relative_diff"]) <= EXPORT_TOL for x in ok)
    return res


# ---------------------------------------------------------------------------------------------------------------
def machine(threads):
    from importlib.metadata import version
    m = gvg.machine(threads)
    m["versions"].pop("gptqmodel", None)
    for p in ("llmcompressor", "compressed-tensors", "hqq"):
        m["versions"][p] = version(p)
    return m


def table(result):
    lines = ["| model | quantizer | format | bits/weight | weight rel. error | perplexity | increase | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        lines.append(f"| {m['name']} | unquantized (bf16 checkpoint, fp32 compute) | bf16 | 16 | 0 | "
                     f"{m['reference']['bf16']['perplexity']:.5f} | - | - |")
        for r in m["runs"]:
            fmt = r.get("format", "-")
            if fmt in ("i4s", "i4", "q4"):
                fmt = f"{fmt} g{r['group']}"
            if "error" in r:
                lines.append(f"| {m['name']} | {r['quantizer']} | {fmt} | - | - | - | error | - |")
                continue
            lines.append(f"| {m['name']} | {r['quantizer']} | {fmt} | {r['bits_per_weight']:.3f} | {r['rel_fro']:.5f} "
                         f"| {r['perplexity']:.5f} | {r['increase_pct']:+.3f}% | {r['wall_s']:.0f} |")
        x = m.get("export", {})
        for venv, ld in x.get("loads", {}).items():
            ver = venv.split(" (")[0]
            lines.append(f"| {m['name']} | moeq export --format compressed-tensors of {x['artifact']}, loaded by {ver} "
                         + (f"| | | | {ld['perplexity']:.5f} | {ld['relative_diff']:+.1e} rel. to moeq eval | |"
                            if "perplexity" in ld else "| | | | - | failed (JSON) | |"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mixtral-tiny,mixtral-mini")
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(ROOT), "shared", "models"))
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--moeq", default=os.path.join(ROOT, "build", "moeq"))
    ap.add_argument("--ct-python", default=os.path.join(ROOT, "build-venv-torch", "bin", "python"),
                    help="a second python whose transformers loads the compressed-tensors checkpoints too (the tests' "
                    "venv, tests/requirements-torch.txt); '' for none")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-moeq", action="store_true")
    ap.add_argument("--work")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "int4-vs-llmcompressor.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="moeq-llmc-bench-"))
    os.makedirs(work, exist_ok=True)
    moeq = os.path.abspath(a.moeq)
    pythons = [sys.executable] + ([a.ct_python] if a.ct_python else [])
    models = [os.path.join(a.models_dir, m) for m in a.models.split(",")]
    t0 = time.time()
    calib_txt, ids_bin, ids, calib = gvg.calibration(work, models[0], a.sequences, a.seqlen)
    result = {"benchmark": "int4_vs_llmcompressor", "machine": machine(a.threads), "work": work,
              "calibration": calib, "protocol": "README of the models: val.txt, windows of 256, fp32 "
              "MixtralForCausalLM (transformers); increase_pct against the bf16 checkpoint; rel_fro = "
              "sqrt(sum ||W - deq||^2 / sum ||W||^2) over the quantized tensors (fp64)", "models": []}
    failed = []
    for model in models:
        val_ids = gptq_hf.char_ids(model, open(os.path.join(model, "val.txt"), encoding="utf-8", newline="").read())
        assert gptq_hf.char_ids(model, open(calib_txt, encoding="utf-8", newline="").read()) == ids
        entry = {"name": os.path.basename(model), "path": model, "reference": gvg.reference_check(model, work, val_ids),
                 "runs": []}
        base = entry["reference"]["bf16"]["perplexity"]
        ref = targets(model)
        entry["quantized_tensors"] = {"modules": len(ref), "params": sum(w.numel() for w in ref.values())}
        if not a.no_peers:
            for modifier in ("gptq", "rtn"):
                entry["runs"].append(llmc_row(model, work, ids_bin, a.seqlen, modifier, a.threads, val_ids, base, ref,
                                              pythons))
            entry["runs"] += [hqq_row(model, work, g, a.threads, val_ids, base, ref) for g in HQQ_GROUPS]
        if not a.no_moeq:
            for spec in MOEQ_ROWS:
                entry["runs"].append(moeq_row(moeq, model, ids_bin, a.seqlen, a.sequences, work, a.ranks, *spec))
            gptq = next(r for r in entry["runs"] if r["quantizer"] == "moeq gptq" and r["format"] == "i4s")
            if "error" not in gptq:
                entry["export"] = export_check(moeq, gptq, model, pythons, a.threads)
                if not entry["export"].get("agree"):
                    failed.append(f"{entry['name']}: export perplexity: {entry['export']}")
        for r in entry["runs"]:  # every row on the same tensors as moeq
            if "error" not in r and (r["modules"], r["params"]) != (len(ref), entry["quantized_tensors"]["params"]):
                failed.append(f"{entry['name']}: {r['quantizer']}: {r['modules']} tensors, {r['params']} weights")
            if "error" in r:
                failed.append(f"{entry['name']}: {r['quantizer']}: {r['error'][:300]}")
        result["models"].append(entry)
        gvg.write(result, a.out)
    result["wall_s"] = round(time.time() - t0, 1)
    result["failed"] = failed
    gvg.write(result, a.out)
    print(table(result))
    if failed:
        sys.exit("int4_vs_llmcompressor: " + "\n".join(failed))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "llmc":
        ckpt, ids, seqlen, modifier, out, threads = sys.argv[2:8]
        llmc_quantize(ckpt, ids, int(seqlen), modifier, out, int(threads))
    elif len(sys.argv) > 1 and sys.argv[1] == "load-ct":
        ckpt, model, out, threads = sys.argv[2:6]
        import torch
        import transformers
        torch.set_num_threads(int(threads))
        res = load_ct(ckpt, gptq_hf.char_ids(model, open(os.path.join(model, "val.txt"), encoding="utf-8",
                                                          newline="").read()))
        res["transformers"] = transformers.__version__
        json.dump(res, open(out, "w"), indent=1)
    else:
        main()
