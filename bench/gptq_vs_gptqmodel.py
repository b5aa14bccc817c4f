"""gptq_vs_gptqmodel.py: issue 22's benchmark (item 6): GPTQ by GPTQModel (and by moeq, once `method: gptq`
exists) on the test models, same calibration ids, and llama.cpp's q3_K with an importance matrix from the same
calibration text. Run from the repository root with the venv of bench/requirements-gptq.txt (bench/README.md):

  /work/.torch-venv/bin/python bench/gptq_vs_gptqmodel.py [--models mixtral-tiny,mixtral-mini]
      [--settings 2g64,3g128a,4g128,3g128] [--sequences 128] [--seqlen 256] [--threads 2] [--ranks 2]
      [--llama-model mixtral-mini] [--llama-ftypes Q3_K_S,Q3_K_M,Q3_K_pure] [--llama-tools /work/.llama-tools/bin]
      [--no-gptqmodel] [--gptqmodel-asym] [--no-llama] [--no-moeq] [--moeq-formats q,i{b}s,i{b}] [--reuse]
      [--work DIR] [--out bench/results/gptq-vs-gptqmodel.json]

1. Calibration: scripts/calib-text.sh (Debian's license texts mapped into the models' 65-char vocabulary, not
   the evaluation text) gives sequences*seqlen characters; ids.bin holds their char ids (little-endian uint32,
   what `moeq quantize --calib` reads), the windows are its consecutive seqlen-id runs. Both hashes recorded.
2. Perplexity: the models' README protocol (reference.json) in transformers' MixtralForCausalLM, fp32; checked
   first against reference.json (fp32 master and bf16 checkpoint, |ΔCE| <= 1e-6, asserted).
3. Per model and setting: GPTQModel's GPTQ on CPU (bench/gptq_hf.py, its own process), wall time, bits/weight
   (codes + scales + zeros as issue 22's table; with g_idx too), perplexity of its dequantized weights.
   moeq's GPTQ: moeq_gptq() below (the hook), skipped while `moeq quantize --help-recipe` lists no gptq.
4. llama.cpp (bench/gptq_llama.py): q3_K files from llama-quantize with an importance matrix from llama-imatrix
   on the same calibration text, without one, and with moeq calibrate's; perplexity in llama.cpp.
Writes one JSON and prints a Markdown table.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gptq_hf  # noqa: E402
import gptq_llama  # noqa: E402

# name: (bits, group, act_order); act_order "desc_act" = GPTQ's act-order (g_idx), "gar" = GPTQModel's default
# group-aware reordering, "off" = neither; moeq gets the same order (moeq_recipe).
SETTINGS = {"2g64": (2, 64, "gar"), "3g128a": (3, 128, "desc_act"), "4g128": (4, 128, "gar"),
            "3g128": (3, 128, "off")}
CE_TOL = 1e-6


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def mpirun(ranks):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return (["mpirun", "-n", str(ranks)] if ranks > 1 else []), env


def calibration(work, model, sequences, seqlen):
    txt = os.path.join(work, "calib.txt")
    subprocess.run([os.path.join(ROOT, "scripts", "calib-text.sh"), txt, str(sequences * seqlen)], check=True,
                   stdout=subprocess.DEVNULL)
    ids = gptq_hf.char_ids(model, open(txt, encoding="utf-8", newline="").read())
    bin_path = os.path.join(work, "ids.bin")
    import numpy as np
    np.asarray(ids, dtype="<u4").tofile(bin_path)
    return txt, bin_path, ids, {"source": "scripts/calib-text.sh (/usr/share/common-licenses)",
                                "sequences": sequences, "seqlen": seqlen, "text_sha256": sha256(txt),
                                "ids_sha256": sha256(bin_path)}


# ---------------------------------------------------------------------------------------------------------------
# moeq's side (the hook): fills in once `method: gptq` exists (issue 22 items 1-3).
# ---------------------------------------------------------------------------------------------------------------
def moeq_recipe(bits=None, group=None, order="gar", fmt=None, clip=None):
    """The recipe moeq's GPTQ runs with (configs/README.md syntax): method gptq, bits and group (or a storage
    format, e.g. q3_K), and the column order GPTQModel used: "desc_act" -> gptq.act_order, "gar" -> moeq's
    default gptq.group_order (GPTQModel's act_group_aware), "off" -> natural order."""
    gguf = bool(fmt) and "_" in fmt  # llama.cpp's block types (q3_K): fixed blocks, no group
    size = (f"format: {fmt}" if gguf else f"format: {fmt}, group: {group}") if fmt else f"bits: {bits}, group: {group}"
    opts = {"desc_act": "act_order: true", "gar": "act_order: false", "off": "act_order: false, group_order: false"}
    return (f"version: 1\n{'target: gguf' + chr(10) if gguf else ''}"
            f"defaults: {{method: gptq, {size}, gptq: {{{opts[order]}{'' if clip is None else ', clip: ' + str(clip).lower()}}}}}\n")


def moeq_has_gptq(moeq):
    r = subprocess.run([moeq, "quantize", "--help-recipe"], capture_output=True, text=True)
    return r.returncode == 0 and "gptq" in r.stdout


def moeq_gptq(moeq, model, ids_bin, work, ranks, bits=None, group=None, order="gar", fmt=None, llama_base=None,
              threads=2):
    """`moeq quantize --model M --recipe R --calib ids.bin --out A.h5`, then `moeq eval --model M A.h5 --json
    E.json`; returns the row (perplexity from E.json, docs/EVAL.md), or a row with "skipped". With fmt (a
    llama.cpp block type) and llama_base (the F32 GGUF's perplexity in llama.cpp): also exported to GGUF and
    measured in llama.cpp, as the llama-quantize files are (E.json's figure kept as moeq_eval_perplexity)."""
    fmt, _, extra = (fmt or "").partition(":")  # "i4s:clip" / "i4s:noclip": gptq.clip true / false (else auto)
    fmt, clip = fmt or None, {"clip": True, "noclip": False}.get(extra)
    gguf = bool(fmt) and "_" in fmt
    tag = fmt if gguf else f"{bits}g{group}{'a' if order == 'desc_act' else ''}"  # GPTQModel's setting names
    # the storage format: q<b> (fp16 scale and fractional fp16 zero), i<b>s (GPTQModel's sym=True format: fp16
    # scale, zero 2^(b-1)), i<b> (integer zero), or a llama.cpp type
    form = (fmt or f"q{bits}") + ("" if clip is None else " clip" if clip else " noclip")
    row = {"quantizer": "moeq gptq" if gguf else f"moeq gptq {form}", "setting": tag, "format": form,
           "recipe": moeq_recipe(bits, group, order, fmt, clip)}
    if not moeq_has_gptq(moeq):
        row["skipped"] = "`moeq quantize --help-recipe` lists no method gptq (issue 22 items 1-3 not merged)"
        print(f"gptq_vs_gptqmodel: moeq {tag}: skipped: {row['skipped']}", file=sys.stderr)
        return row
    d = os.path.join(work, "moeq-" + os.path.basename(os.path.normpath(model)))
    os.makedirs(d, exist_ok=True)
    stem = tag if gguf else f"{tag}-{form.replace(' ', '-')}"
    rec, art, ev = (os.path.join(d, f"{stem}.{x}") for x in ("yaml", "h5", "eval.json"))
    with open(rec, "w") as f:
        f.write(row["recipe"])
    pre, env = mpirun(ranks)
    t = time.time()
    r = subprocess.run(pre + [moeq, "quantize", "-q", "--progress", "0", "--force", "--model", model, "--recipe",
                              rec, "--calib", ids_bin, "--out", art], capture_output=True, text=True, env=env)
    row["wall_s"] = round(time.time() - t, 2)
    if r.returncode:
        row["error"] = f"moeq quantize: exit {r.returncode}: {r.stderr[-1500:]}"
        return row
    r = subprocess.run(pre + [moeq, "eval", "--model", model, art, "--json", ev], capture_output=True, text=True,
                       env=env)
    if r.returncode:
        row["error"] = f"moeq eval: exit {r.returncode}: {r.stderr[-1500:]}"
        return row
    e = json.load(open(ev))
    p = e["perplexity"]
    row.update({"bits_per_weight": round(e["bits_per_weight"], 4), "perplexity": p["quantized"]["perplexity"],
                "original_perplexity": p["original"]["perplexity"], "increase_pct": round(100 * p["increase"], 4)})
    if fmt and llama_base:  # against llama.cpp's files: the same engine, so exported and run in llama.cpp too
        g = os.path.join(d, f"{tag}.gguf")
        gptq_llama.run([moeq, "export", "-q", "--format", "gguf", "--force", art, g])
        row["moeq_eval_perplexity"] = row["perplexity"]
        row["perplexity"], _ = gptq_llama.perplexity(g, model, threads, os.path.join(d, f"{tag}.llama-eval.log"))
        row["bits_per_weight"], row["types"] = gptq_llama.gguf_bits(g)
        row["increase_pct"] = round(100 * (row["perplexity"] / llama_base - 1), 4)
        row["ftype"], row["imatrix"] = fmt, "moeq gptq (ids.bin)"
    return row


# ---------------------------------------------------------------------------------------------------------------
def reference_check(model, work, val_ids):
    """The fp32 protocol against reference.json, both weight sets; returns the checkpoint's CE/perplexity."""
    ref = json.load(open(os.path.join(model, "reference.json")))
    out = {}
    for key, master in (("fp32", True), ("bf16", False)):
        m = gptq_hf.load_fp32(model, work, master)
        ce, ppl, scored, windows = gptq_hf.perplexity(m, val_ids)
        want = ref[key]["ce_nats_per_char"]
        assert abs(ce - want) <= CE_TOL, f"{model}: {key} CE {ce} vs reference.json {want}: protocol broken"
        out[key] = {"ce_nats": ce, "perplexity": ppl, "reference_ce": want, "ce_diff": ce - want}
    out["scored_tokens"], out["windows"] = scored, windows
    return out


def gptqmodel_row(model, work, ids_bin, seqlen, name, threads, base, val_ids, sym=True):
    """GPTQModel's GPTQ at setting name: sym=True (its default, zero 2^(bits-1)) or False (an integer zero per
    group, "GPTQModel gptq asym": the same bytes, the format moeq's i<b> is)."""
    bits, group, act = SETTINGS[name]
    d = os.path.join(work, "gptqmodel-" + os.path.basename(os.path.normpath(model)), name + ("" if sym else "-asym"))
    os.makedirs(d, exist_ok=True)
    ckpt = gptq_hf.staging_dir(model, work)
    t = time.time()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gptq_hf.py"), "quantize", ckpt, ids_bin,
                        str(seqlen), str(bits), str(group), act, d, str(threads), "sym" if sym else "asym"],
                       capture_output=True, text=True, cwd=d)  # GPTQModel writes a logs/ folder into its cwd
    wall = time.time() - t
    with open(os.path.join(d, "gptqmodel.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode:
        sys.exit(f"gptq_vs_gptqmodel: GPTQModel {name} on {model}: exit {r.returncode}\n{r.stderr[-3000:]}")
    info = json.load(open(os.path.join(d, "info.json")))
    from safetensors.torch import load_file
    m = gptq_hf.load_fp32(model, work)
    n = gptq_hf.set_weights(m, load_file(os.path.join(d, "dequantized.safetensors")))
    ce, ppl, _, _ = gptq_hf.perplexity(m, val_ids)
    row = {"quantizer": "GPTQModel gptq" + ("" if sym else " asym"), "setting": name, "bits": bits, "group": group, "act_order": act,
           "modules": n, "bits_per_weight": info["bits_per_weight"],
           "bits_per_weight_with_g_idx": info["bits_per_weight_with_g_idx"], "ce_nats": ce, "perplexity": ppl,
           "increase_pct": round(100 * (ppl / base["bf16"]["perplexity"] - 1), 4),
           "increase_vs_fp32_pct": round(100 * (ppl / base["fp32"]["perplexity"] - 1), 4),
           "wall_s": round(wall, 2), "quantize_s": info["quantize_s"], "config": info["config"]}
    print(json.dumps(row), file=sys.stderr)
    return row


def machine(threads):
    import torch
    import transformers
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    v = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        from importlib.metadata import version
        v["gptqmodel"] = version("gptqmodel")
    except Exception:  # noqa: BLE001 (not installed: --no-gptqmodel runs)
        v["gptqmodel"] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "versions": v}


def table(result):
    lines = ["| model | quantizer | setting | bits/weight | perplexity | increase | wall s |", "|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        lines.append(f"| {m['name']} | unquantized (bf16 checkpoint, fp32 compute) | - | 16 | "
                     f"{m['reference']['bf16']['perplexity']:.5f} | - | - |")
        for r in m["runs"]:
            if "skipped" in r or "error" in r:
                lines.append(f"| {m['name']} | {r['quantizer']} | {r['setting']} | - | - | "
                             f"{'skipped' if 'skipped' in r else 'error'} | - |")
                continue
            lines.append(f"| {m['name']} | {r['quantizer']} | {r['setting']} | {r['bits_per_weight']:.2f} | "
                         f"{r['perplexity']:.5f} | {r['increase_pct']:+.3f}% | {r['wall_s']:.0f} |")
    lq = result.get("llama_cpp")
    if lq:
        lines.append(f"| {lq['model']} | llama.cpp F32 GGUF (in llama.cpp) | - | 32 | {lq['base']['perplexity']:.5f} | - | - |")
        for r in lq["runs"]:
            if r["quantizer"] == "moeq gptq" and "perplexity" not in r:
                lines.append(f"| {lq['model']} | moeq gptq | {r['setting']} | - | - | "
                             f"{'skipped' if 'skipped' in r else 'error'} | - |")
                continue
            if "error" in r:
                lines.append(f"| {lq['model']} | llama-quantize | {r['ftype']} imatrix {r['imatrix']} | - | - | refused | - |")
                continue
            lines.append(f"| {lq['model']} | {r['quantizer']} | {r['ftype']} imatrix {r['imatrix']} | "
                         f"{r['bits_per_weight']:.2f} | {r['perplexity']:.5f} | {r['increase_pct']:+.3f}% | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mixtral-tiny,mixtral-mini")
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(ROOT), "shared", "models"))
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--llama-model", default="mixtral-mini")
    ap.add_argument("--llama-ftypes", default="Q3_K_S,Q3_K_M,Q3_K_pure")
    ap.add_argument("--llama-tools", default="/work/.llama-tools/bin")
    ap.add_argument("--no-gptqmodel", action="store_true")
    ap.add_argument("--gptqmodel-asym", action="store_true", help="also GPTQModel with sym=False (an integer zero "
                    "per group: the bytes of its default format and of moeq's i{b}); with --reuse, only the "
                    "settings that have no such row yet")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--no-moeq", action="store_true")
    ap.add_argument("--moeq-formats", default="q,i{b}s", help="moeq's formats per setting: q = q<bits> (fp16 "
                    "fractional zero), i{b}s = GPTQModel's sym format, i{b} = integer zero; ':clip' / ':noclip' set gptq.clip (default auto)")
    ap.add_argument("--moeq", default=os.path.join(ROOT, "build", "moeq"))
    ap.add_argument("--work")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "gptq-vs-gptqmodel.json"))
    ap.add_argument("--reuse", action="store_true", help="keep the models (and the llama.cpp part) that --out "
                    "already holds from a run with the same calibration hash; run only the rest")
    a = ap.parse_args()
    # moeq's storage formats per setting: q{b} (fp16 fractional zero) and i{b}s (GPTQModel's own format)
    moeq_formats = [None if f == "q" else f for f in a.moeq_formats.split(",") if f]
    import torch
    torch.set_num_threads(a.threads)
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="moeq-gptq-bench-"))
    os.makedirs(work, exist_ok=True)
    moeq = os.path.abspath(a.moeq)
    models = [os.path.join(a.models_dir, m) for m in a.models.split(",")]
    t0 = time.time()
    calib_txt, ids_bin, ids, calib = calibration(work, models[0], a.sequences, a.seqlen)
    result = {"benchmark": "gptq_vs_gptqmodel", "machine": machine(a.threads), "work": work,
              "calibration": calib, "protocol": "README of the models: val.txt, windows of 256, fp32 "
              "MixtralForCausalLM (transformers); increase_pct against the bf16 checkpoint (what is quantized, "
              "what moeq eval's 'original' is), increase_vs_fp32_pct against the fp32 master", "models": []}
    old = {}
    if a.reuse and os.path.exists(a.out):
        prev = json.load(open(a.out))
        if prev.get("calibration", {}).get("ids_sha256") == calib["ids_sha256"]:
            old = {m["name"]: m for m in prev.get("models", [])}
            if "llama_cpp" in prev:
                old["llama_cpp"] = prev["llama_cpp"]
    for model in models:
        if os.path.basename(model) in old:  # the peers' rows kept; moeq's rows run again (unless --no-moeq)
            entry = old[os.path.basename(model)]
            val_ids = None
            runs = []
            for name in [x for x in a.settings.split(",") if x]:
                bits, group, act = SETTINGS[name]
                now = set() if a.no_moeq else {(f.format(b=bits) if f else f"q{bits}").replace(":", " ")
                                               for f in moeq_formats}
                mine = [r for r in entry["runs"] if r["setting"] == name]
                # the peers' rows, and moeq's rows in formats this run does not measure again, kept
                runs += [r for r in mine if not r["quantizer"].startswith("moeq")]
                for sym in ((True, False) if a.gptqmodel_asym else (True,)) if not a.no_gptqmodel else ():
                    if any(r["quantizer"] == "GPTQModel gptq" + ("" if sym else " asym") for r in mine):
                        continue  # kept; a missing peer row is measured
                    if val_ids is None:
                        val_ids = gptq_hf.char_ids(model, open(os.path.join(model, "val.txt"), encoding="utf-8",
                                                               newline="").read())
                    runs.append(gptqmodel_row(model, work, ids_bin, a.seqlen, name, a.threads, entry["reference"],
                                              val_ids, sym=sym))
                runs += [r for r in mine if r["quantizer"].startswith("moeq") and r.get("format", f"q{bits}") not in now]
                if not a.no_moeq:
                    runs += [moeq_gptq(moeq, model, ids_bin, work, a.ranks, bits, group, act, fmt=f.format(b=bits) if f else None)
                             for f in moeq_formats]
            entry["runs"] = runs
            result["models"].append(entry)
            write(result, a.out)
            continue
        val_ids = gptq_hf.char_ids(model, open(os.path.join(model, "val.txt"), encoding="utf-8", newline="").read())
        assert gptq_hf.char_ids(model, open(calib_txt, encoding="utf-8", newline="").read()) == ids
        entry = {"name": os.path.basename(model), "path": model, "reference": reference_check(model, work, val_ids),
                 "runs": []}
        for name in [x for x in a.settings.split(",") if x]:
            bits, group, act = SETTINGS[name]
            if not a.no_gptqmodel:
                entry["runs"] += [gptqmodel_row(model, work, ids_bin, a.seqlen, name, a.threads,
                                                entry["reference"], val_ids, sym)
                                  for sym in ((True, False) if a.gptqmodel_asym else (True,))]
            if not a.no_moeq:
                entry["runs"] += [moeq_gptq(moeq, model, ids_bin, work, a.ranks, bits, group, act,
                                            fmt=f.format(b=bits) if f else None) for f in moeq_formats]
        result["models"].append(entry)
        write(result, a.out)
    if not a.no_llama and "llama_cpp" in old:
        result["llama_cpp"] = lq = old["llama_cpp"]
        if not a.no_moeq:  # llama.cpp's rows kept, moeq's q3_K run again
            model = os.path.join(a.models_dir, a.llama_model)
            lq["runs"] = [r for r in lq["runs"] if r.get("quantizer") != "moeq gptq"]
            lq["runs"].append(moeq_gptq(moeq, model, ids_bin, work, a.ranks, fmt="q3_K",
                                        llama_base=lq["base"]["perplexity"], threads=a.threads))
    elif not a.no_llama:
        model = os.path.join(a.models_dir, a.llama_model)
        lq, rows = gptq_llama.q3k_peer(moeq, model, work, calib_txt, ids, a.sequences, a.seqlen, a.llama_tools,
                                       a.llama_ftypes.split(","), a.threads, mpirun(a.ranks))
        if not a.no_moeq:
            rows.append(moeq_gptq(moeq, model, ids_bin, work, a.ranks, fmt="q3_K",
                                  llama_base=lq["base"]["perplexity"], threads=a.threads))
        lq["model"], lq["runs"] = os.path.basename(model), rows
        result["llama_cpp"] = lq
    result["wall_s"] = round(time.time() - t0, 1)
    write(result, a.out)
    print(table(result))


def write(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
