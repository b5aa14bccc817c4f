// cmd_export.c: `moeq export ARTIFACT OUT_DIR` and `moeq export --format gguf ARTIFACT OUT.gguf`: options and
// the summary; the exports themselves are io/export.c and io/export_gguf.c (layout: docs/EXPORT.md). Single
// process, no MPI: export is I/O-bound and reads only the artifact.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "export.h"
#include "export_gguf.h"

typedef struct {
    moeq_export_opts o;
    moeq_export_gguf_opts g;
    int gguf; // --format gguf
} x_ctx;

// "50000000000", "50GB", "512MB", "64MiB", "1.5GiB": decimal (kB, MB, GB, TB) or binary (KiB ... TiB) units.
static int parse_size(const char *arg, uint64_t *out) {
    static const struct {
        const char *u;
        double f;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"kB", 1e3},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"TB", 1e12},
                 {"KiB", 1024.0},
                 {"MiB", 1048576.0},
                 {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0}};
    char *end = NULL;
    double v = strtod(arg, &end);
    if (!end || end == arg || !(v > 0)) return 1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].u)) {
            const double b = v * units[i].f;
            if (b < 1 || b > 1e18) return 1;
            *out = (uint64_t)b;
            return 0;
        }
    return 1;
}

static int on_opt(int opt, const char *arg, void *ctx) {
    x_ctx *c = ctx;
    long v;
    switch (opt) {
    case 's':
        if (parse_size(arg, &c->o.shard_size)) {
            fprintf(
                stderr,
                "moeq export: --shard-size needs a byte count such as 50000000000, 5GB or 512MiB, got '%s'\n",
                arg);
            return 1;
        }
        return 0;
    case 'f':
        c->o.force = 1;
        return 0;
    case 'p':
        if (moeq_cli_int("export", "--progress", arg, 0, 86400, &v)) return 1;
        c->o.progress_s = (double)v;
        return 0;
    case 'F':
        if (strcmp(arg, "hf") && strcmp(arg, "gguf") && strcmp(arg, "compressed-tensors")) {
            fprintf(stderr, "moeq export: --format takes hf, gguf or compressed-tensors, got '%s'\n", arg);
            return 1;
        }
        c->gguf = !strcmp(arg, "gguf");
        c->o.format = !strcmp(arg, "compressed-tensors") ? MOEQ_EXPORT_FORMAT_CT : MOEQ_EXPORT_FORMAT_HF;
        return 0;
    case 'o':
        if (strcmp(arg, "f32") && strcmp(arg, "auto")) {
            fprintf(stderr, "moeq export: --outtype takes auto or f32, got '%s'\n", arg);
            return 1;
        }
        c->g.outtype_f32 = !strcmp(arg, "f32");
        return 0;
    case 'L':
        c->g.lora = arg;
        return 0;
    case 'N':
        c->g.no_compensators = 1;
        return 0;
    case 'T':
        c->g.tokenizer = arg;
        return 0;
    case 'G':
        c->g.tokenizer_from = arg;
        return 0;
    case 'n':
        c->g.name = arg;
        return 0;
    default:
        return 1;
    }
}

static int run_gguf(x_ctx *c, const char *artifact, const char *out, int quiet) {
    c->g.artifact = artifact;
    c->g.out = out;
    c->g.shard_size = c->o.shard_size; // 0: one file
    c->g.force = c->o.force;
    c->g.progress_s = quiet ? 0 : c->o.progress_s;
    moeq_export_gguf_stats s;
    moeq_status st = moeq_export_gguf_run(&c->g, &s);
    if (st != MOEQ_OK) return moeq_cli_fail("export", st);
    char b1[32], types[512] = "";
    moeq_cli_human_bytes(s.file_bytes, b1, sizeof b1);
    for (int t = 0; t < 64; t++)
        if (s.n_by_type[t]) {
            char one[96], hb[32];
            moeq_cli_human_bytes(s.bytes_by_type[t], hb, sizeof hb);
            snprintf(one, sizeof one, "%s%s %d (%s)", types[0] ? ", " : "", moeq_ggml_type_name((uint32_t)t),
                     s.n_by_type[t], hb);
            if (strlen(types) + strlen(one) < sizeof types) strcat(types, one);
        }
    printf("moeq export: %s: %d GGUF tensors from %d artifact tensors (%d without a llama.cpp counterpart "
           "skipped) in %d file(s), %s, %.3f bits per weight; %s; file type %d%s%s; %.2f s, every "
           "checksum verified\n",
           out, s.n_tensors, s.n_source, s.n_skipped, s.n_files, b1,
           s.n_weights ? 8.0 * (double)s.tensor_bytes / (double)s.n_weights : 0.0, types, s.file_type,
           s.has_tokenizer ? "" : ", NO tokenizer", c->g.no_compensators ? ", MiLo compensators dropped" : "",
           s.seconds);
    if (c->g.lora && s.lora.n_pairs) {
        char b2[32];
        moeq_cli_human_bytes(s.lora.file_bytes, b2, sizeof b2);
        printf("moeq export: %s: LoRA adapter of %d compensated tensors (rank %d..%d, adapter.lora.alpha %g: "
               "update exactly U V), %d F16 + %d F32 tensors, %s\n",
               c->g.lora, s.lora.n_pairs, s.lora.rank_min, s.lora.rank_max, (double)s.lora.alpha,
               s.lora.n_f16, s.lora.n_f32, b2);
    }
    return MOEQ_EXIT_OK;
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"shard-size", required_argument, NULL, 's'},
        {"force", no_argument, NULL, 'f'},
        {"progress", required_argument, NULL, 'p'},
        {"format", required_argument, NULL, 'F'},
        {"outtype", required_argument, NULL, 'o'},
        {"lora", required_argument, NULL, 'L'},
        {"no-compensators", no_argument, NULL, 'N'},
        {"tokenizer", required_argument, NULL, 'T'},
        {"tokenizer-from", required_argument, NULL, 'G'},
        {"name", required_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    x_ctx c = {.o = {.progress_s = 5, .moeq_version = MOEQ_VERSION " (" MOEQ_GIT_HASH ")"}};
    moeq_cli_common common = {0};
    int r = moeq_cli_parse(&moeq_cmd_export, argc, argv, "s:fp:", longopts, on_opt, &c, &common);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    if (!c.gguf && (c.g.outtype_f32 || c.g.lora || c.g.no_compensators || c.g.tokenizer ||
                    c.g.tokenizer_from || c.g.name)) {
        fprintf(stderr,
                "moeq export: --outtype, --lora, --no-compensators, --tokenizer, --tokenizer-from and "
                "--name apply to --format gguf\n---> HINT: moeq export --help\n");
        return MOEQ_EXIT_USAGE;
    }
    if (c.gguf && optind == argc - 2) return run_gguf(&c, argv[optind], argv[optind + 1], common.quiet);
    if (optind != argc - 2) {
        fprintf(
            stderr,
            "moeq export: expected two operands, ARTIFACT.h5 and OUT_DIR\n---> HINT: moeq export --help\n");
        return MOEQ_EXIT_USAGE;
    }
    c.o.artifact = argv[optind];
    c.o.out_dir = argv[optind + 1];
    if (common.quiet) c.o.progress_s = 0;
    moeq_export_stats s;
    moeq_status st = moeq_export_run(&c.o, &s);
    if (st != MOEQ_OK) return moeq_cli_fail("export", st);
    char b1[32], b2[32];
    moeq_cli_human_bytes(s.file_bytes, b1, sizeof b1);
    moeq_cli_human_bytes(s.artifact_bytes, b2, sizeof b2);
    printf("moeq export: %s: %d tensors (%d quantized, %d with low-rank compensators) as %d safetensors "
           "tensors in "
           "%d shard(s), %s (artifact %s), %.2f s, %.1f MiB/s, every checksum verified\n",
           c.o.out_dir, s.n_tensors, s.n_quantized, s.n_lowrank, s.n_entries, s.n_shards, b1, b2, s.seconds,
           s.seconds > 0 ? (double)s.total_size / 1048576.0 / s.seconds : 0.0);
    if (c.o.format == MOEQ_EXPORT_FORMAT_CT) {
        moeq_cli_human_bytes(s.adapter_bytes, b1, sizeof b1);
        printf(
            "moeq export: compressed-tensors pack-quantized; %d file(s) copied from the source directory; ",
            s.n_extra);
        if (s.n_adapter)
            printf("PEFT LoRA adapter of the compensators in %s/" MOEQ_EXPORT_ADAPTER_DIR
                   "/: %d modules, rank up to %d, %s\n",
                   c.o.out_dir, s.n_adapter, s.adapter_rank_max, b1);
        else
            printf("no compensators, no adapter\n");
    }
    return MOEQ_EXIT_OK;
}

const moeq_command moeq_cmd_export = {
    .name = "export",
    .summary = "write an artifact as HuggingFace-style safetensors, or as GGUF for llama.cpp",
    .usage =
        "moeq export [--format hf|compressed-tensors] [--shard-size BYTES] [--force] [--progress S] "
        "ARTIFACT.h5 OUT_DIR\n"
        "moeq export --format gguf [--outtype auto|f32] [--no-compensators | --lora A.gguf] [--tokenizer "
        "FILE |\n"
        "            --tokenizer-from F.gguf] [--name NAME] [--shard-size BYTES] [--force] ARTIFACT.h5 "
        "OUT.gguf\n\n"
        "Writes the quantized model of a complete artifact into OUT_DIR as HuggingFace-style sharded\n"
        "safetensors (layout, names and the dequantization formula: docs/EXPORT.md):\n"
        "  <module>.qweight (U8 packed codes), <module>.scales, <module>.zeros (F16), and for MiLo\n"
        "  <module>.lowrank_u / .lowrank_v (+ .lowrank_u_scales / .lowrank_v_scales for int3 factors), each\n"
        "  a byte-identical copy of an artifact dataset; tensors stored as they came under their own name\n"
        "  and dtype; config.json = the source config + quantization_config (quant_method \"moeq\");\n"
        "  model.safetensors.index.json; shards model-0000k-of-0000n.safetensors.\n"
        "Data is streamed in 64 MiB chunks (memory does not grow with the model) and every dataset's and\n"
        "tensor's checksum is verified on the way. Files are staged in OUT_DIR/" MOEQ_EXPORT_STAGING "/ and\n"
        "moved into OUT_DIR only when all are complete (config.json last): a failure leaves OUT_DIR as it "
        "was\n(an OUT_DIR the export created is removed again).\n"
        "Single process: no mpirun needed.\n\n"
        "Options:\n"
        "  -s, --shard-size BYTES   most bytes per shard file, header included (default 50GB = 50000000000,\n"
        "                           the Hugging Face Hub's per-file limit); units kB MB GB TB or KiB MiB "
        "GiB\n"
        "                           TiB; a tensor larger than this gets a shard alone\n"
        "  -f, --force              write into a non-empty OUT_DIR: files of the same names are replaced,\n"
        "                           shards of an earlier export removed, other files kept\n"
        "  -p, --progress S         progress line on stderr every S seconds (default 5; 0 = none)\n\n"
        "GGUF (--format gguf; docs/EXPORT.md \"GGUF\"): a file llama.cpp runs. Tensors in a llama.cpp block\n"
        "type (q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, iq4_xs) are written byte for byte; the routed experts of "
        "a\n"
        "layer and projection as one tensor blk.L.ffn_{gate,up,down}_exps [C, R, E]; tensors stored as they\n"
        "came keep BF16/F16/F32 (FP8 -> BF16), 1-D tensors, norms and routers F32 (as "
        "convert_hf_to_gguf.py).\n"
        "Refused (exit 3, tensors named): moeq's grouped HQQ/RTN formats, experts of one stack in different\n"
        "formats, MiLo compensators (unless --lora or --no-compensators).\n"
        "  -F, --format FMT         hf (default), gguf or compressed-tensors\n"
        "      --outtype auto|f32   gguf: f32 writes every tensor not in a block type as F32 (default auto)\n"
        "      --no-compensators    gguf: export the quantized base of MiLo-compensated tensors alone\n"
        "      --lora FILE          gguf: also write the MiLo compensators U V as a llama.cpp LoRA adapter\n"
        "                           (lora_a = V, lora_b = U, exact values, scale 1: llama.cpp --lora FILE\n"
        "                           runs deq(Q) + U V); attention, shared experts, dense MLPs; compensated\n"
        "                           routed experts are refused; FILE and OUT appear together (FILE first)\n"
        "      --tokenizer FILE     gguf: tokenizer.json to convert (default: the recorded source dir's)\n"
        "      --tokenizer-from F   gguf: copy the tokenizer.* keys of another GGUF of the model\n"
        "      --name NAME          gguf: general.name (default: the source directory's name)\n"
        "  With gguf, --shard-size splits into OUT-00001-of-0000N.gguf (llama.cpp's gguf-split naming;\n"
        "  default: one file) and --force replaces existing files.\n\n"
        "compressed-tensors (--format compressed-tensors; docs/EXPORT.md \"compressed-tensors\"): the\n"
        "checkpoint llm-compressor writes for W4A16/W8A16 (vLLM, SGLang, transformers): per quantized "
        "Linear\n"
        "<module>.weight_packed (int32), .weight_scale (F32), .weight_zero_point (asymmetric), "
        ".weight_shape;\n"
        "config.json with quantization_config (config_groups, ignore); tokenizer and generation_config.json\n"
        "copied from the source directory; MiLo compensators as a PEFT LoRA adapter in OUT_DIR/adapter/.\n"
        "Refused (exit 3, tensor named): formats other than the integer ones (i4, i4s, i8, ...): HQQ's\n"
        "fractional zero, llama.cpp block types; FP8 tensors stored as they came.\n\n"
        "Exit codes: 0 ok; 3 incomplete, failed-tensor, corrupted or truncated artifact (tensor named);\n"
        "4 I/O error; 7 OUT_DIR not empty (use --force).\n\n"
        "Example:\n"
        "  moeq export out/tiny.h5 out/tiny-hf --shard-size 2MB\n"
        "  moeq export --format gguf out/tiny-q4k.h5 out/tiny-q4k.gguf\n"
        "  moeq export --format compressed-tensors out/tiny-i4.h5 out/tiny-i4-ct\n"
        "  moeq export --format gguf out/tiny-milo.h5 out/tiny-milo.gguf --lora out/tiny-milo-lora.gguf\n"
        "  moeq export /scratch/kimi-k2-milo3.h5 /scratch/kimi-k2-milo3-hf     # 50 GB shards",
    .run = run,
};
