// cmd_calibrate.c: `moeq calibrate --model DIR --text F --out imatrix.gguf`: llama.cpp's importance matrix
// from moeq's own fp32 forward pass (workers/calibrate.h) over a text, written in llama-imatrix's GGUF form
// (io/imatrix.h) under llama.cpp's tensor names, so that `moeq quantize --imatrix` and llama-quantize
// --imatrix both read it. Single process, no MPI (OpenMP inside the forward pass): the text is what llama.cpp
// calibrates with, a few hundred thousand tokens at most.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h" // defines: moeq_now_s
#include "moeq_worker.h"

typedef struct {
    const char *model, *text, *out;
    long ctx, chunks;
    int force;
} cal_opts;

static int on_opt(int opt, const char *arg, void *ctx) {
    cal_opts *o = ctx;
    switch (opt) {
    case 'm':
        o->model = arg;
        return 0;
    case 't':
        o->text = arg;
        return 0;
    case 'o':
        o->out = arg;
        return 0;
    case 'c':
        return moeq_cli_int("calibrate", "--ctx", arg, 2, 1 << 20, &o->ctx);
    case 'n':
        return moeq_cli_int("calibrate", "--chunks", arg, 1, 1 << 30, &o->chunks);
    case 'f':
        o->force = 1;
        return 0;
    default:
        return 1;
    }
}

static moeq_status calibrate(const cal_opts *o, int quiet) {
    moeq_catalog *cat = NULL;
    moeq_model *m = NULL;
    moeq_tokenizer *tk = NULL;
    moeq_calib *cal = NULL;
    moeq_imatrix *im = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", o->model);
    moeq_status st = moeq_catalog_open(o->model, &cat);
    if (st == MOEQ_OK && !cat->has_data)
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no shards (metadata only); calibrate runs the model",
                       o->model);
    if (st == MOEQ_OK) st = moeq_tokenizer_load_char(tok_path, &tk);
    if (st == MOEQ_OK) st = moeq_tokenizer_encode_file(tk, o->text, &ids, &n);
    int64_t n_chunks = st == MOEQ_OK ? n / o->ctx : 0; // llama-imatrix: whole chunks only
    if (st == MOEQ_OK && n_chunks < 1)
        st = MOEQ_FAIL(MOEQ_ERR_ARG,
                       "%s: %lld tokens, fewer than one chunk of --ctx %ld\n---> HINT: a longer "
                       "text, or a smaller --ctx",
                       o->text, (long long)n, o->ctx);
    if (st == MOEQ_OK && o->chunks > 0 && o->chunks < n_chunks) n_chunks = o->chunks;
    if (st == MOEQ_OK) st = moeq_model_load_catalog(cat, &m);
    if (st == MOEQ_OK) st = moeq_calib_new(m, &cal);
    const double t0 = moeq_now_s();
    for (int64_t k = 0; k < n_chunks && st == MOEQ_OK; k++) {
        st = moeq_calib_add(cal, ids + k * o->ctx, o->ctx);
        if (!quiet)
            MOEQ_LOG(MOEQ_LOG_INFO, "calibrate: chunk %lld/%lld (%lld tokens), %.1f s", (long long)k + 1,
                     (long long)n_chunks, (long long)o->ctx, moeq_now_s() - t0);
    }
    if (st == MOEQ_OK) st = moeq_calib_to_imatrix(cal, o->text, &im);
    if (st == MOEQ_OK && o->force) unlink(o->out);
    if (st == MOEQ_OK) st = moeq_imatrix_write(o->out, im);
    if (st == MOEQ_OK && !quiet)
        printf("moeq calibrate: %s: %d entries (llama.cpp names), %lld chunks of %ld tokens of %s\n", o->out,
               im->n, (long long)n_chunks, o->ctx, o->text);
    moeq_imatrix_free(&im);
    moeq_calib_free(&cal);
    moeq_model_free(&m);
    moeq_free(&ids);
    moeq_tokenizer_free(&tk);
    moeq_catalog_close(&cat);
    return st;
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"text", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"ctx", required_argument, NULL, 'c'},
        {"chunks", required_argument, NULL, 'n'},
        {"force", no_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    cal_opts o = {.ctx = 512};
    moeq_cli_common common = {0};
    int r = moeq_cli_parse(&moeq_cmd_calibrate, argc, argv, "m:t:o:c:n:f", longopts, on_opt, &o, &common);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    if (!o.model || !o.text || !o.out || optind != argc) {
        fprintf(stderr,
                "moeq calibrate: --model, --text and --out are required (no operands)\n---> HINT: moeq "
                "calibrate --help\n");
        return MOEQ_EXIT_USAGE;
    }
    if (!o.force && access(o.out, F_OK) == 0) {
        fprintf(stderr, "moeq calibrate: %s exists\n---> HINT: choose another --out, or pass --force\n",
                o.out);
        return MOEQ_EXIT_EXISTS;
    }
    const moeq_status st = calibrate(&o, common.quiet);
    return st == MOEQ_OK ? MOEQ_EXIT_OK : moeq_cli_fail("calibrate", st);
}

const moeq_command moeq_cmd_calibrate = {
    .name = "calibrate",
    .summary = "an importance matrix (llama.cpp's imatrix.gguf) from moeq's forward pass over a text",
    .usage =
        "moeq calibrate --model DIR --text FILE --out IMATRIX.gguf [--ctx N] [--chunks N] [--force]\n\n"
        "Runs the model's fp32 forward pass (CPU; Mixtral and Qwen2-MoE; not DeepSeek's MLA) over "
        "the\n"
        "text in independent chunks of --ctx tokens (whole chunks only, as llama-imatrix) and sums, for the\n"
        "input of every linear layer, the squares of each column over the tokens: attention q/k/v and o, "
        "the\n"
        "router, each routed expert over the tokens routed to it (one count per token), shared experts and\n"
        "dense MLPs over every token. Writes them as llama-imatrix does (GGUF: NAME.in_sum2 [cols, "
        "matrices],\n"
        "NAME.counts [1, matrices] under llama.cpp's tensor names, routed experts stacked: row e = expert "
        "e;\n"
        "imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size), so both `moeq quantize --imatrix` and\n"
        "llama-quantize --imatrix read it. One process, no MPI (OpenMP threads inside the forward pass).\n"
        "The text is encoded with the model's tokenizer.json (the test models' character vocabulary).\n\n"
        "Options:\n"
        "  -m, --model DIR      checkpoint directory (config.json, safetensors, tokenizer.json)\n"
        "  -t, --text FILE      calibration text (UTF-8)\n"
        "  -o, --out FILE       the imatrix to write (GGUF); refused when it exists unless --force\n"
        "  -c, --ctx N          tokens per chunk (default 512, llama-imatrix's)\n"
        "  -n, --chunks N       at most N chunks (default: every whole chunk of the text)\n"
        "  -f, --force          replace --out\n\n"
        "Example:\n"
        "  moeq calibrate --model ../shared/models/mixtral-mini --text ../shared/models/mixtral-mini/val.txt "
        "\\\n"
        "      --ctx 256 --out mini.imatrix.gguf\n"
        "  moeq quantize --model ../shared/models/mixtral-mini --recipe R.yaml --imatrix mini.imatrix.gguf "
        "--out A.h5",
    .run = run,
};
