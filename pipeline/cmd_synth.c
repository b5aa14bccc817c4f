// cmd_synth.c: `moeq synth [options] OUT`: write a synthetic MoE checkpoint (HF layout: config.json,
// sharded safetensors, index) with realistic weight statistics, deterministic from --seed.
// Thin: option parsing, a rate-limited progress line and a summary; the work is io/synth.c. The --arch
// values and the defaults table of --help come from the architecture registry (io/arch_desc.c).
// Not here: the statistics model (documented in io/synth.h) and the tensor table (io/arch.c).
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "arch_desc.h" // defines: moeq_arch_desc, moeq_arch_desc_list (the synthesizable families)
#include "cli.h"
#include "clock.h" // defines: moeq_now_s
#include "synth.h" // defines: moeq_synth_opts, moeq_synth_write

enum {
    OPT_ARCH = 256,
    OPT_LAYERS,
    OPT_HIDDEN,
    OPT_INTER,
    OPT_EXPERTS,
    OPT_SHARED,
    OPT_DENSE,
    OPT_DENSE_INTER,
    OPT_TOPK,
    OPT_HEADS,
    OPT_KV_HEADS,
    OPT_HEAD_DIM,
    OPT_VOCAB,
    OPT_MTP,
    OPT_DTYPE,
    OPT_SHARD_SIZE,
    OPT_SEED,
    OPT_FORCE,
    OPT_DRY_RUN,
    OPT_SPARSE,
    OPT_PRESET,
};

static const struct option k_longopts[] = {
    {"arch", required_argument, NULL, OPT_ARCH},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"intermediate", required_argument, NULL, OPT_INTER},
    {"experts", required_argument, NULL, OPT_EXPERTS},
    {"shared-experts", required_argument, NULL, OPT_SHARED},
    {"dense-layers", required_argument, NULL, OPT_DENSE},
    {"dense-intermediate", required_argument, NULL, OPT_DENSE_INTER},
    {"top-k", required_argument, NULL, OPT_TOPK},
    {"heads", required_argument, NULL, OPT_HEADS},
    {"kv-heads", required_argument, NULL, OPT_KV_HEADS},
    {"head-dim", required_argument, NULL, OPT_HEAD_DIM},
    {"vocab", required_argument, NULL, OPT_VOCAB},
    {"mtp-layers", required_argument, NULL, OPT_MTP},
    {"dtype", required_argument, NULL, OPT_DTYPE},
    {"shard-size", required_argument, NULL, OPT_SHARD_SIZE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"force", no_argument, NULL, OPT_FORCE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"sparse", no_argument, NULL, OPT_SPARSE},
    {"preset", required_argument, NULL, OPT_PRESET},
    {NULL, 0, NULL, 0},
};

static int int_opt(const char *name, const char *arg, long lo, long hi, int *out) {
    long v;
    if (moeq_cli_int("synth", name, arg, lo, hi, &v)) return 1;
    *out = (int)v;
    return 0;
}

typedef struct {
    moeq_synth_opts o;
    int dry_run;
    const char *geometry_opt; // the first option that sets geometry (conflicts with --preset)
} synth_args;

static int on_opt(int opt, const char *arg, void *ctx) {
    synth_args *a = ctx;
    moeq_synth_opts *o = &a->o;
    const long BIG = 1L << 24;
    if (opt >= OPT_ARCH && opt <= OPT_SHARD_SIZE && !a->geometry_opt)
        for (const struct option *lo = k_longopts; lo->name; lo++)
            if (lo->val == opt) a->geometry_opt = lo->name;
    switch (opt) {
    case OPT_ARCH:
        o->arch = moeq_synth_arch_from_name(arg);
        if (o->arch == MOEQ_ARCH_COUNT) {
            char list[256];
            fprintf(stderr, "moeq synth: --arch '%s' is not known (%s)\n", arg,
                    moeq_arch_desc_list(moeq_arch_desc_is_synth, 0, ", ", ", ", list, sizeof list));
            return 1;
        }
        return 0;
    case OPT_LAYERS:
        return int_opt("--layers", arg, 1, MOEQ_MAX_LAYERS - 16, &o->n_layers);
    case OPT_HIDDEN:
        return int_opt("--hidden", arg, 8, 1L << 20, &o->hidden);
    case OPT_INTER:
        return int_opt("--intermediate", arg, 1, 1L << 22, &o->intermediate);
    case OPT_EXPERTS:
        return int_opt("--experts", arg, 1, 1L << 16, &o->n_experts);
    case OPT_SHARED:
        return int_opt("--shared-experts", arg, 0, 64, &o->n_shared_experts);
    case OPT_DENSE:
        return int_opt("--dense-layers", arg, 0, MOEQ_MAX_LAYERS, &o->n_dense_layers);
    case OPT_DENSE_INTER:
        return int_opt("--dense-intermediate", arg, 1, 1L << 22, &o->dense_intermediate);
    case OPT_TOPK:
        return int_opt("--top-k", arg, 1, 1L << 16, &o->top_k);
    case OPT_HEADS:
        return int_opt("--heads", arg, 1, 65536, &o->n_heads);
    case OPT_KV_HEADS:
        return int_opt("--kv-heads", arg, 1, 65536, &o->n_kv_heads);
    case OPT_HEAD_DIM:
        return int_opt("--head-dim", arg, 1, 4096, &o->head_dim);
    case OPT_VOCAB:
        return int_opt("--vocab", arg, 1, BIG, &o->vocab);
    case OPT_MTP:
        return int_opt("--mtp-layers", arg, 0, 8, &o->n_mtp_layers);
    case OPT_DTYPE:
        if (!strcmp(arg, "bf16"))
            o->dtype = MOEQ_DTYPE_BF16;
        else if (!strcmp(arg, "f16") || !strcmp(arg, "fp16"))
            o->dtype = MOEQ_DTYPE_F16;
        else if (!strcmp(arg, "f32") || !strcmp(arg, "fp32"))
            o->dtype = MOEQ_DTYPE_F32;
        else if (!strcmp(arg, "fp8") || !strcmp(arg, "f8_e4m3"))
            o->dtype = MOEQ_DTYPE_F8_E4M3;
        else {
            fprintf(stderr, "moeq synth: --dtype '%s' is not one of bf16, f16, f32, fp8\n", arg);
            return 1;
        }
        return 0;
    case OPT_SHARD_SIZE: {
        unsigned long long v;
        if (moeq_cli_u64("synth", "--shard-size", arg, &v)) return 1;
        if (v < 1) {
            fprintf(stderr, "moeq synth: --shard-size must be at least 1 byte\n");
            return 1;
        }
        o->shard_size = v;
        return 0;
    }
    case OPT_SEED: {
        unsigned long long v;
        if (moeq_cli_u64("synth", "--seed", arg, &v)) return 1;
        o->seed = v;
        return 0;
    }
    case OPT_FORCE:
        o->force = 1;
        return 0;
    case OPT_DRY_RUN:
        a->dry_run = 1;
        return 0;
    case OPT_SPARSE:
        o->sparse = 1;
        return 0;
    case OPT_PRESET:
        o->preset = moeq_synth_preset_from_name(arg);
        if (o->preset == MOEQ_SYNTH_PRESET_COUNT) {
            fprintf(stderr, "moeq synth: --preset '%s' is not known (presets: %s)\n", arg,
                    moeq_synth_preset_list());
            return 1;
        }
        return 0;
    default:
        return 1;
    }
}

typedef struct {
    double t0, last;
} progress_state;

enum { PROGRESS_SECS = 3 };

// "synth: 1.20 GiB / 3.40 GiB (35%), 410.2 MiB/s, 5 s left", at most every PROGRESS_SECS seconds.
static void on_progress(uint64_t done, uint64_t total, void *user) {
    progress_state *p = user;
    const double t = moeq_now_s();
    if (t - p->last < PROGRESS_SECS || done >= total) return;
    p->last = t;
    char a[32], b[32];
    moeq_cli_human_bytes(done, a, sizeof a);
    moeq_cli_human_bytes(total, b, sizeof b);
    const double rate = (double)done / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
    fprintf(stderr, "moeq synth: %s / %s (%.0f%%), %.1f MiB/s, %.0f s left\n", a, b,
            total ? 100.0 * (double)done / (double)total : 100.0, rate / 1048576.0,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}

// How the shard sizes compare with the published checkpoint's (deepseek-r1), or how balanced they are.
static void print_shard_sizes(const moeq_synth_layout *l) {
    char first[64], last[64], a[32], b[32], c[32];
    moeq_synth_layout_shard_name(l, 0, first, sizeof first);
    moeq_synth_layout_shard_name(l, l->n_shards - 1, last, sizeof last);
    printf("shards          %d: %s ... %s\n", l->n_shards, first, last);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int s = 0; s < l->n_shards; s++) {
        lo = l->shard_bytes[s] < lo ? l->shard_bytes[s] : lo;
        hi = l->shard_bytes[s] > hi ? l->shard_bytes[s] : hi;
    }
    moeq_cli_human_bytes(lo, a, sizeof a);
    moeq_cli_human_bytes(hi, b, sizeof b);
    moeq_cli_human_bytes(l->file_bytes, c, sizeof c);
    printf("shard files     %s in all (%llu B), smallest %s, largest %s\n", c,
           (unsigned long long)l->file_bytes, a, b);
    if (!l->real_bytes) return;
    uint64_t real = 0, max_dev = 0, sum_dev = 0;
    int worst = 0, close = 0;
    for (int s = 0; s < l->n_shards; s++) {
        const uint64_t x = l->shard_bytes[s], y = l->real_bytes[s], d = x > y ? x - y : y - x;
        real += y;
        sum_dev += d;
        close += d < (64u << 10);
        if (d > max_dev) max_dev = d, worst = s;
    }
    const double diff = (double)l->file_bytes - (double)real;
    moeq_synth_layout_shard_name(l, worst, first, sizeof first);
    printf("vs published    %llu B in the real shards: ours %+.0f B (%+.4f%%); per shard |ours - real|: max "
           "%.2f MiB (%s: %llu vs %llu B), mean %.2f MiB; %d of %d shards within 64 KiB\n",
           (unsigned long long)real, diff, 100.0 * diff / (double)real, (double)max_dev / 1048576.0, first,
           (unsigned long long)l->shard_bytes[worst], (unsigned long long)l->real_bytes[worst],
           (double)sum_dev / l->n_shards / 1048576.0, close, l->n_shards);
}

// The effective geometry, as an aligned table (--dry-run).
static void print_plan(const char *out, const moeq_synth_opts *o, const moeq_synth_layout *l) {
    const moeq_model_config *c = &l->cfg;
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch);
    int n_moe = 0;
    for (int k = 0; k < moeq_config_n_layers_total(c); k++) n_moe += moeq_config_layer_is_moe(c, k);
    char b[32], s[32];
    moeq_cli_human_bytes(l->total_size, b, sizeof b);
    moeq_cli_human_bytes(o->shard_size, s, sizeof s);
    printf("output          %s (dry run: nothing written)\n", out);
    if (o->preset != MOEQ_SYNTH_PRESET_NONE)
        printf("preset          %s: %s\n", moeq_synth_preset_name(o->preset),
               moeq_synth_preset_source(o->preset));
    printf("architecture    %s (%s)\n", c->model_type, c->architecture);
    printf("layers          %d (%d MoE, %d dense, %d MTP)\n", moeq_config_n_layers_total(c), n_moe,
           moeq_config_n_layers_total(c) - n_moe, c->n_mtp_layers);
    printf("hidden          %d   vocab %d   heads %d (kv %d, head_dim %d)\n", c->hidden, c->vocab, c->n_heads,
           c->n_kv_heads, c->head_dim);
    if (d && d->attention == MOEQ_ATTN_MLA)
        printf("MLA             q_lora %d, kv_lora %d, qk_nope %d, qk_rope %d, v %d\n", c->q_lora_rank,
               c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim);
    printf("experts         %d routed + %d shared, top-%d, expert FFN %d, shared FFN %d, dense FFN %d\n",
           c->n_experts, c->n_shared_experts, c->top_k, c->moe_intermediate, c->shared_intermediate,
           c->dense_intermediate);
    if (d && d->grouped_topk)
        printf("routing         n_group %d, topk_group %d, routed_scaling_factor %g, %s\n", c->n_group,
               c->topk_group, c->routed_scaling_factor, c->scoring_func);
    if (c->weight_dtype == MOEQ_DTYPE_F8_E4M3)
        printf("weights         F8_E4M3, %dx%d float32 block scales; others %s\n", c->fp8_block[0],
               c->fp8_block[1], moeq_dtype_name(c->torch_dtype));
    else
        printf("weights         %s\n", moeq_dtype_name(c->weight_dtype));
    printf("tensors         %d (%.3f B parameters), %s of data (%llu B)\n", l->n_tensors,
           (double)l->n_params / 1e9, b, (unsigned long long)l->total_size);
    if (o->preset == MOEQ_SYNTH_PRESET_NONE)
        printf("shards          %d of at most %s\n", l->n_shards, s);
    else
        print_shard_sizes(l);
    printf("data            %s\n", o->sparse ? "none: every tensor a file hole (--sparse)" : "generated");
    printf("seed            %llu\n", (unsigned long long)o->seed);
}

// --help: fixed text around the two parts the registry writes (the --arch values and the defaults table)
static const char k_usage_head[] =
    "moeq synth [options] OUT\n"
    "\n"
    "Writes OUT/config.json (the HF keys of the architecture), OUT/model-0000k-of-0000n.safetensors\n"
    "and OUT/model.safetensors.index.json. Weights have realistic statistics: heavy tails, log-normal\n"
    "per-row and per-column scales, ~0.5% outlier input columns (x8..20); norms ~ 1 + 0.05 N; small\n"
    "routers and biases. Every tensor is a function of (seed, tensor name) only: the same seed gives\n"
    "identical tensors whatever the shard size or thread count (OMP_NUM_THREADS). OUT is created; an\n"
    "existing non-empty OUT is refused unless --force.\n"
    "\n"
    "Options (default in brackets; '-' = the architecture's default, listed below):\n";
static const char k_usage_options[] =
    "  --layers L            decoder layers [-]\n"
    "  --hidden H            hidden size [-]\n"
    "  --intermediate I      routed expert FFN width (moe_intermediate_size; Mixtral intermediate_size) "
    "[-]\n"
    "  --experts E           routed experts per MoE layer [-]\n"
    "  --top-k K             experts per token, 1..E [-, at most E]\n"
    "  --shared-experts N    qwen2_moe: one shared expert of N x I width; deepseek_v3: n_shared_experts\n"
    "                        (fused, N x I wide) [-]\n"
    "  --dense-layers K      first K layers dense: deepseek_v3 first_k_dense_replace, qwen "
    "mlp_only_layers\n"
    "                        [-, at most L-1]\n"
    "  --dense-intermediate D  width of dense MLPs (intermediate_size) [3 x H]\n"
    "  --heads N             attention heads [-]\n"
    "  --kv-heads N          KV heads (GQA), dividing --heads; deepseek_v3 (MLA) uses --heads [-]\n"
    "  --head-dim D          mixtral/qwen3_moe: head_dim [H / heads]; deepseek_v3: qk_nope = v = D,\n"
    "                        rope = D/2 [H / heads, 8..128]; qwen2_moe/olmoe derive it (H / heads)\n"
    "  --vocab V             vocabulary size [-]\n"
    "  --mtp-layers N        deepseek_v3 num_nextn_predict_layers [0]\n"
    "  --dtype T             bf16 | f16 | f32 | fp8 [bf16]; fp8 = DeepSeek/Kimi block FP8 (deepseek_v3\n"
    "                        only): E4M3 linears with a float32 weight_scale_inv per 128x128 block\n"
    "                        (absmax/448 of the fp32 weight); other tensors bf16\n"
    "  --shard-size BYTES    most tensor bytes per shard; a larger tensor gets a shard alone "
    "[4000000000]\n"
    "  --seed S              random seed [1234]\n"
    "  --force               replace the checkpoint files in a non-empty OUT (other files are kept)\n"
    "  --dry-run             print the geometry, tensor/shard counts and bytes; write nothing\n"
    "  --sparse              write headers, index and config.json exactly as without it, but no tensor\n"
    "                        data: every data region is a file hole (reads as zeros), so a 1 TB\n"
    "                        checkpoint takes a few tens of MB of disk; for scale tests of the catalog,\n"
    "                        plan and scheduler, which read headers only\n"
    "  --preset P            a published checkpoint's full geometry, config.json and shards:\n"
    "                        deepseek-r1  config.json verbatim from "
    "itounagi0116/DeepSeek-R1@f06d0a751d30,\n"
    "                                     163 shards model-000NN-of-000163 cut to the published sizes\n"
    "                        kimi-k2      Kimi-K2-Instruct geometry (model_type kimi_k2, 384 experts,\n"
    "                                     no MTP layer), 61 equal shards model-N-of-61\n"
    "                        Use with --sparse (~1 TB otherwise) or --dry-run (which compares the shard\n"
    "                        sizes with the published ones). Geometry options (--arch ... --shard-size)\n"
    "                        conflict with a preset: exit 2; --seed, --force, --sparse, --dry-run "
    "combine.\n"
    "\n"
    "Architecture defaults (layers, hidden, intermediate, experts, top-k, shared, dense, heads, "
    "kv-heads,\n"
    "vocab):\n";
static const char k_usage_tail[] =
    "\n"
    "A progress line (bytes written / total, rate, time left) goes to stderr every 3 s unless -q; a\n"
    "summary line (apparent size and blocks on disk) goes to stdout. Bad combinations (fp8 without "
    "deepseek_v3, top-k > experts, shared\n"
    "experts in mixtral...) exit 2 with a hint; a non-empty OUT without --force exits 7.\n"
    "\n"
    "Examples:\n"
    "  moeq synth --arch deepseek_v3 --layers 2 --dtype fp8 --shard-size 4000000 /tmp/ds-tiny\n"
    "  moeq synth --arch mixtral --layers 32 --hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 "
    "\\\n"
    "             --vocab 32000 /scratch/mixtral-8x7b-synth        (Mixtral-8x7B geometry, ~93 GB)\n"
    "  moeq synth --dry-run --arch deepseek_v3 --layers 61 --dense-layers 3 --mtp-layers 1 \\\n"
    "             --hidden 7168 --intermediate 2048 --dense-intermediate 18432 --experts 256 --top-k 8 "
    "\\\n"
    "             --heads 128 --head-dim 128 --vocab 129280 --dtype fp8 /scratch/ds-v3-synth\n"
    "             (DeepSeek-V3/R1 geometry: 684.5 B parameters, 688 GB like the real FP8 checkpoint;\n"
    "             drop --dry-run to write it)\n"
    "  moeq synth --sparse --preset kimi-k2 /scratch/kimi-k2-sparse\n"
    "             (Kimi-K2: 139,583 tensors in 61 shards, 958.5 GiB apparent, ~30 MiB on disk, ~1 s)\n"
    "  moeq synth --dry-run --preset deepseek-r1 /scratch/r1   (shard sizes against the published ones)";
static char k_usage[8192]; // usage_init: the text moeq_cli_parse prints for --help

// One line per synthesizable family: its defaults in the order of the table's heading.
static size_t usage_defaults(char *buf, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < moeq_arch_desc_count() && n < cap; i++) {
        const moeq_arch_desc *d = moeq_arch_desc_at(i);
        if (!d->synth) continue;
        const moeq_synth_sizes *s = &d->synth->sizes;
        int w = snprintf(buf + n, cap - n, "  %-12s %d, %d, %d, %d, %d, %d, %d, %d, %d, %d%s\n", d->name,
                         s->layers, s->hidden, s->inter, s->experts, s->top_k, s->shared, s->dense, s->heads,
                         s->kv_heads, s->vocab, d->synth->help_note);
        n += w > 0 ? (size_t)w : 0;
    }
    return n < cap ? n : cap;
}

static void usage_init(void) {
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    char archs[256];
    moeq_arch_desc_list(moeq_arch_desc_is_synth, 0, " | ", " | ", archs, sizeof archs);
    const size_t cap = sizeof k_usage;
    int w = snprintf(k_usage, cap, "%s  --arch A              %s [%s]\n%s", k_usage_head, archs,
                     moeq_arch_name(o.arch), k_usage_options);
    size_t n = w > 0 && (size_t)w < cap ? (size_t)w : cap - 1;
    n += usage_defaults(k_usage + n, cap - n);
    if (n < cap) snprintf(k_usage + n, cap - n, "%s", k_usage_tail);
}

static int run(int argc, char **argv) {
    synth_args a = {.dry_run = 0};
    moeq_synth_opts_init(&a.o);
    usage_init();
    moeq_synth_opts o;
    moeq_cli_common common = {0};
    int rc = moeq_cli_parse(&moeq_cmd_synth, argc, argv, "", k_longopts, on_opt, &a, &common);
    o = a.o;
    if (rc == 1) return MOEQ_EXIT_OK;
    if (rc) return MOEQ_EXIT_USAGE;
    if (optind != argc - 1) {
        fprintf(stderr,
                "moeq synth: expected one output directory OUT, got %d operands\n---> HINT: moeq synth "
                "--help shows an example\n",
                argc - optind);
        return MOEQ_EXIT_USAGE;
    }
    const char *out = argv[optind];
    if (o.preset != MOEQ_SYNTH_PRESET_NONE && a.geometry_opt) {
        fprintf(
            stderr,
            "moeq synth: --preset %s fixes the whole geometry (config.json, tensors, shards); --%s conflicts "
            "with it\n---> HINT: drop --%s, or drop --preset and give the geometry yourself\n",
            moeq_synth_preset_name(o.preset), a.geometry_opt, a.geometry_opt);
        return MOEQ_EXIT_USAGE;
    }
    if (a.dry_run) {
        moeq_synth_layout *l = NULL;
        moeq_status st = moeq_synth_layout_build(&o, &l);
        if (st != MOEQ_OK) return moeq_cli_fail("synth", st);
        print_plan(out, &o, l);
        moeq_synth_layout_free(&l);
        return MOEQ_EXIT_OK;
    }
    progress_state ps = {moeq_now_s(), moeq_now_s()};
    if (!common.quiet) {
        o.progress = on_progress;
        o.progress_user = &ps;
    }
    moeq_synth_result r;
    moeq_status st = moeq_synth_write(out, &o, &r);
    if (st != MOEQ_OK) return moeq_cli_fail("synth", st);
    const double dt = moeq_now_s() - ps.t0;
    char b[32], d[32];
    moeq_cli_human_bytes(r.file_bytes, b, sizeof b);
    moeq_cli_human_bytes(r.disk_bytes, d, sizeof d);
    const moeq_model_config *cfg = &r.cfg;
    char how[48] = "";
    if (o.preset != MOEQ_SYNTH_PRESET_NONE || o.sparse)
        snprintf(how, sizeof how, " (%s%s%s)", o.preset ? "preset " : "",
                 o.preset ? moeq_synth_preset_name(o.preset) : "",
                 o.sparse ? (o.preset ? ", sparse" : "sparse") : "");
    printf("wrote %s%s: %s, %d layers, %d experts (top-%d), hidden %d, %s; %d tensors, %.3f B parameters, "
           "%d shard%s, %s apparent, %s on disk, in %.1f s, seed %llu\n",
           out, how, cfg->model_type, cfg->n_layers, cfg->n_experts, cfg->top_k, cfg->hidden,
           moeq_dtype_name(cfg->weight_dtype), r.n_tensors, (double)r.n_params / 1e9, r.n_shards,
           r.n_shards == 1 ? "" : "s", b, d, dt, (unsigned long long)o.seed);
    return MOEQ_EXIT_OK;
}

const moeq_command moeq_cmd_synth = {
    .name = "synth",
    .summary = "write a synthetic MoE checkpoint (HF layout, any size) for tests and benchmarks",
    .usage = k_usage,
    .run = run,
};
