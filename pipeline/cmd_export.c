// cmd_export.c: `moeq export ARTIFACT OUT_DIR`: options and the summary; the export itself is io/export.c
// (layout: docs/EXPORT.md). Single process, no MPI: export is I/O-bound and reads only the artifact.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "export.h"

typedef struct {
    moeq_export_opts o;
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
    default:
        return 1;
    }
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"shard-size", required_argument, NULL, 's'},
        {"force", no_argument, NULL, 'f'},
        {"progress", required_argument, NULL, 'p'},
        {0, 0, 0, 0},
    };
    x_ctx c = {.o = {.progress_s = 5, .moeq_version = MOEQ_VERSION " (" MOEQ_GIT_HASH ")"}};
    moeq_cli_common common = {0};
    int r = moeq_cli_parse(&moeq_cmd_export, argc, argv, "s:fp:", longopts, on_opt, &c, &common);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
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
    return MOEQ_EXIT_OK;
}

const moeq_command moeq_cmd_export = {
    .name = "export",
    .summary = "write an artifact as a HuggingFace-style sharded safetensors checkpoint",
    .usage =
        "moeq export [--shard-size BYTES] [--force] [--progress SECONDS] ARTIFACT.h5 OUT_DIR\n\n"
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
        "Exit codes: 0 ok; 3 incomplete, failed-tensor, corrupted or truncated artifact (tensor named);\n"
        "4 I/O error; 7 OUT_DIR not empty (use --force).\n\n"
        "Example:\n"
        "  moeq export out/tiny.h5 out/tiny-hf --shard-size 2MB\n"
        "  moeq export /scratch/kimi-k2-milo3.h5 /scratch/kimi-k2-milo3-hf     # 50 GB shards",
    .run = run,
};
