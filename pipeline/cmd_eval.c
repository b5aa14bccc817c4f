// cmd_eval.c: `moeq eval`: options, MPI start/stop, and the distributed evaluation (eval_run.c).
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_run.h"

typedef struct {
    moeq_eval_opts o;
} e_ctx;

static int on_opt(int opt, const char *arg, void *ctx) {
    e_ctx *c = ctx;
    long v;
    unsigned long long u;
    switch (opt) {
    case 'm': c->o.model_dir = arg; return 0;
    case 't': c->o.text_path = arg; return 0;
    case 'J': c->o.json_path = arg; return 0;
    case 'P': c->o.plot_path = arg; return 0;
    case 'L': c->o.dump_logits_path = arg; return 0;
    case 'S': c->o.stream = 1; return 0;
    case 'A':
        if (strcmp(arg, "ggml") && strcmp(arg, "none")) {
            fprintf(stderr, "moeq eval: --act-quant takes ggml or none, got '%s'\n", arg);
            return 1;
        }
        c->o.act_quant_ggml = !strcmp(arg, "ggml");
        return 0;
    case 'E':
        return moeq_cli_real("eval", "--max-rel-error", arg, 0, HUGE_VAL, &c->o.max_rel_error);
    case 'I':
        return moeq_cli_real("eval", "--max-ppl-increase", arg, 0, HUGE_VAL, &c->o.max_ppl_increase);
    case 'n':
        if (moeq_cli_int("eval", "--probe-tokens", arg, 1, 1 << 20, &v)) return 1;
        c->o.probe_tokens = v;
        return 0;
    case 's':
        if (moeq_cli_u64("eval", "--seed", arg, &u)) return 1;
        c->o.seed = u;
        return 0;
    case 'p':
        if (moeq_cli_int("eval", "--progress", arg, 0, 86400, &v)) return 1;
        c->o.progress_s = (double)v;
        return 0;
    default: return 1;
    }
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},         {"text", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'J'},          {"plot", required_argument, NULL, 'P'},
        {"max-rel-error", required_argument, NULL, 'E'}, {"max-ppl-increase", required_argument, NULL, 'I'},
        {"probe-tokens", required_argument, NULL, 'n'},  {"seed", required_argument, NULL, 's'},
        {"progress", required_argument, NULL, 'p'},      {"dump-logits", required_argument, NULL, 'L'},
        {"act-quant", required_argument, NULL, 'A'},     {"stream", no_argument, NULL, 'S'},
        {0, 0, 0, 0},
    };
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided); // the work queue's coordinator thread
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    moeq_log_init(rank, MOEQ_LOG_INFO);
    e_ctx c = {.o = {.max_rel_error = -1, .max_ppl_increase = -1, .probe_tokens = 512, .seed = 0, .progress_s = 10}};
    moeq_cli_common common = {0};
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) return MOEQ_EXIT_FAILURE; // rank 0 prints help and results
    int r =
        moeq_cli_parse(&moeq_cmd_eval, argc, argv, "m:t:J:P:E:I:n:s:p:L:A:S", longopts, on_opt, &c, &common);
    if (r == 0 && (!c.o.model_dir || optind != argc - 1)) {
        if (rank == 0)
            fprintf(stderr, "moeq eval: --model DIR and exactly one ARTIFACT.h5 operand are required\n"
                            "---> HINT: moeq eval --help\n");
        r = 2;
    }
    int code;
    if (r == 1) code = MOEQ_EXIT_OK;
    else if (r) code = MOEQ_EXIT_USAGE;
    else {
        c.o.artifact = argv[optind];
        c.o.quiet = common.quiet;
        if (common.quiet) c.o.progress_s = 0;
        if (common.verbose) moeq_log_init(rank, MOEQ_LOG_DBG);
        code = moeq_eval_run(&c.o);
    }
    MPI_Finalize();
    return code;
}

const moeq_command moeq_cmd_eval = {
    .name = "eval",
    .summary = "verify an artifact and measure its error: weights, MoE blocks, perplexity (under mpirun/srun)",
    .usage = "[mpirun -n N] moeq eval --model DIR ARTIFACT.h5 [--text FILE] [--json OUT.json] [--plot OUT.png]\n"
             "       [--max-rel-error X] [--max-ppl-increase X] [--probe-tokens N] [--seed S] [--progress SECONDS]\n"
             "       [--dump-logits FILE] [--act-quant ggml|none] [--stream]\n\n"
             "The distributed validation pass over an artifact of `moeq quantize` (report schema: docs/EVAL.md).\n"
             "The plan is rebuilt from the artifact's own recipe and the model, and must have the artifact's\n"
             "digest; the work is split by the same units as quantization, each rank rereading only its share:\n"
             "  1. integrity: every dataset's xxh3 against the recorded one, every planned tensor present, the\n"
             "     artifact complete; a changed byte is named (tensor and dataset) and eval exits 3\n"
             "  2. weight error of deq(Q) + U·V against the source (FP8 sources dequantized): relative Frobenius,\n"
             "     SQNR, max abs, per tensor, per class (routed experts by projection) and per layer\n"
             "  3. MoE-block output error per MoE layer: seeded Gaussian probes (and, with --text, the real hidden\n"
             "     states of the text's first window) through the real router and experts, original vs quantized:\n"
             "     relative output error and the fraction of tokens whose top-k expert set changed\n"
             "  4. perplexity (Mixtral, Qwen2-MoE, DeepSeek-V3/Kimi-K2) of the original and of the dequantized model on non-overlapping\n"
             "     windows of 256 tokens; default text: the model's val.txt (the protocol of reference.json, which\n"
             "     the original must reproduce to 1e-6)\n"
             "Every number is identical for any number of ranks.\n\n"
             "Options:\n"
             "  -m, --model DIR          the checkpoint the artifact was quantized from\n"
             "  -t, --text FILE          text for perplexity and hidden-state probes (char tokenizer.json)\n"
             "  -J, --json FILE          write the report as JSON (docs/EVAL.md)\n"
             "  -P, --plot FILE          write a PNG (gnuplot): error heatmap by layer and class, error vs bits per\n"
             "                           weight, MoE block error by layer\n"
             "  -E, --max-rel-error X    exit 6 when a quantized tensor's relative Frobenius error exceeds X\n"
             "  -I, --max-ppl-increase X exit 6 when perplexity(quantized) / perplexity(original) - 1 exceeds X\n"
             "  -n, --probe-tokens N     Gaussian probe tokens per MoE layer (default 512)\n"
             "  -s, --seed S             probe seed (default 0)\n"
             "  -p, --progress S         progress line every S seconds on rank 0 (default 10; 0 = none)\n"
             "      --dump-logits FILE   write the quantized model's logits of every perplexity window: float32\n"
             "                           (tokens, vocab) row-major, token order (for comparing with other engines:\n"
             "                           tests/python/llama_eval.py --ref-logits)\n"
             "      --act-quant ggml     the quantized model as llama.cpp's CPU backend serves its GGUF export:\n"
             "                           the input of every linear layer rounded to its weight type's vec_dot_type\n"
             "                           (q8_0 for q4_0/q5_0/q8_0/iq4_nl, q8_1 for q4_1/q5_1, q8_K for k-quants and\n"
             "                           iq4_xs, bf16/f16 for BF16/F16 tensors; F32 routers and norms: none), then\n"
             "                           multiplied with the dequantized weights (docs/EVAL.md). Default none: fp32\n"
             "      --stream             perplexity layer by layer over the ranks, each holding one layer of each\n"
             "                           model without the routed experts it does not own (for models that fit\n"
             "                           no rank; the same numbers as the default pass); no block probes\n\n"
             "Exit codes: 0 ok; 3 corrupted, incomplete or foreign artifact, missing files; 6 threshold exceeded.\n\n"
             "Example:\n"
             "  mpirun -n 3 moeq eval --model ../shared/models/mixtral-tiny out/tiny.h5 --json out/tiny.eval.json \\\n"
             "      --plot out/tiny.eval.png",
    .run = run,
};
