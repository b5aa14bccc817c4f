// cmd_inspect.c: `moeq inspect DIR`: the model geometry and a per-class summary of a checkpoint
// (tensors, parameters, bytes), as an aligned table or --json. Works on real checkpoints and on
// metadata-only directories (config.json [+ index] [+ shard-sizes.tsv]), where it reports what is planned.
// `moeq inspect ARTIFACT.h5 --dequant NAME --out F` writes one stored tensor as moeq dequantizes it.
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "artifact_scan.h" // defines: moeq_artifact_scan, moeq_artifact_toc
#include "cli.h"
#include "quant.h" // defines: moeq_qmat, moeq_qmat_alloc_format, moeq_qmat_dequantize_cpu
#include <xxhash.h>

typedef struct {
    int json;
    int tensors;
    const char *dequant, *out;
} inspect_opts;

static int on_opt(int opt, const char *arg, void *ctx) {
    inspect_opts *o = ctx;
    if (opt == 'j')
        o->json = 1;
    else if (opt == 't')
        o->tensors = 1;
    else if (opt == 'd')
        o->dequant = arg;
    else if (opt == 'o')
        o->out = arg;
    else
        return 1;
    return 0;
}

// Tensor `name` of the artifact as fp32 (R, C) row-major, little-endian, into out: deq(Q) of a quantized
// tensor (its base: a MiLo compensator U V is not added), the decoded values of one stored as it came.
static moeq_status dequant_tensor(const char *artifact, const char *name, const char *out, int64_t *R_out,
                                  int64_t *C_out) {
    moeq_artifact_toc *toc = NULL;
    MOEQ_TRY(moeq_artifact_scan(artifact, &toc));
    int ti = -1;
    for (int i = 0; i < toc->n_tensors && ti < 0; i++)
        if (!strcmp(toc->t[i].name, name)) ti = i;
    moeq_status st = ti < 0 ? MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no tensor '%s'", artifact, name) : MOEQ_OK;
    const moeq_artifact_tensor *t = ti >= 0 ? &toc->t[ti] : NULL;
    if (st == MOEQ_OK && (t->ndim < 1 || t->ndim > 2))
        st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (1 or 2 supported)", artifact,
                       name, t->ndim);
    if (st == MOEQ_OK && t->failure)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' is recorded as %s", artifact, name, t->failure);
    const int64_t R = t && t->ndim == 2 ? t->shape[0] : 1,
                  C = t ? (t->ndim == 2 ? t->shape[1] : t->shape[0]) : 0;
    int fd = -1;
    float *w = NULL;
    void *raw[MOEQ_DS_COUNT] = {0};
    moeq_qmat q = {0};
    if (st == MOEQ_OK) st = moeq_open_read(artifact, &fd);
    if (st == MOEQ_OK) {
        w = MOEQ_MALLOC((size_t)(R * C) * sizeof *w, name);
        if (!w) st = MOEQ_ERR_NOMEM;
    }
    for (int k = 0; st == MOEQ_OK && k < t->n_ds; k++) { // each plane, checked against its recorded xxh3
        const moeq_artifact_dsinfo *d = &toc->ds[t->first_ds + k];
        raw[d->ds] = MOEQ_MALLOC(d->bytes ? (size_t)d->bytes : 1, name);
        if (!raw[d->ds]) st = MOEQ_ERR_NOMEM;
        if (st == MOEQ_OK) st = moeq_pread_full(fd, raw[d->ds], (size_t)d->bytes, d->offset, artifact);
        if (st == MOEQ_OK && XXH3_64bits(raw[d->ds], (size_t)d->bytes) != d->xxh3)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: tensor '%s' dataset %s: checksum differs from the recorded one", artifact,
                           name, moeq_ds_name((moeq_ds)d->ds));
    }
    if (st == MOEQ_OK && t->method == MOEQ_METHOD_NONE) {
        st = raw[MOEQ_DS_DATA] ? moeq_decode_cpu(t->source_dtype, raw[MOEQ_DS_DATA], w, R * C)
                               : MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has no data", artifact, name);
    } else if (st == MOEQ_OK) {
        const int fmt = t->format ? (int)t->format : t->bits;
        const moeq_qtype_traits *tr = moeq_qtype_get(fmt);
        st = moeq_qmat_alloc_format(&q, fmt, R, C, tr && tr->block ? tr->block : t->group);
        if (st == MOEQ_OK && q.codes && raw[MOEQ_DS_CODES])
            memcpy(q.codes, raw[MOEQ_DS_CODES], (size_t)toc->ds[t->first_ds].bytes);
        for (int d = MOEQ_DS_SCALE; st == MOEQ_OK && d <= MOEQ_DS_ZERO; d++) {
            void *dst = d == MOEQ_DS_SCALE ? (void *)q.scale : q.izero ? (void *)q.izero : (void *)q.zero;
            for (int k = 0; dst && k < t->n_ds; k++)
                if (toc->ds[t->first_ds + k].ds == d)
                    memcpy(dst, raw[d], (size_t)toc->ds[t->first_ds + k].bytes);
        }
        if (st == MOEQ_OK)
            st = tr && tr->dequantize ? tr->dequantize(&q, w) : moeq_qmat_dequantize_cpu(&q, w);
    }
    if (st == MOEQ_OK) st = moeq_write_file(out, w, (size_t)(R * C) * sizeof *w);
    moeq_qmat_free(&q);
    for (int d = 0; d < MOEQ_DS_COUNT; d++) moeq_free(&raw[d]);
    moeq_free(&w);
    if (fd >= 0) close(fd);
    moeq_artifact_toc_free(&toc);
    *R_out = R, *C_out = C;
    return st;
}

typedef struct {
    int64_t count, params;
    uint64_t bytes;
} class_sum;

static void human_count(int64_t n, char *out, size_t cap) {
    if (n >= 1000000000LL)
        snprintf(out, cap, "%.2f B", n / 1e9);
    else if (n >= 1000000LL)
        snprintf(out, cap, "%.2f M", n / 1e6);
    else if (n >= 1000LL)
        snprintf(out, cap, "%.1f K", n / 1e3);
    else
        snprintf(out, cap, "%lld", (long long)n);
}

static void summarize(const moeq_catalog *c, class_sum *sum, class_sum *total, int *n_moe_layers) {
    memset(sum, 0, sizeof(class_sum) * MOEQ_TC_COUNT);
    memset(total, 0, sizeof *total);
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        class_sum *s = &sum[t->c.cls];
        s->count++;
        s->params += t->numel;
        s->bytes += t->nbytes;
        total->count++;
        total->bytes += t->nbytes;
        if (t->c.cls != MOEQ_TC_FP8_SCALE) total->params += t->numel;
    }
    *n_moe_layers = 0;
    for (int l = 0; l < moeq_config_n_layers_total(&c->cfg); l++)
        *n_moe_layers += moeq_config_layer_is_moe(&c->cfg, l);
}

static int print_json(const moeq_catalog *c, const inspect_opts *o) {
    class_sum sum[MOEQ_TC_COUNT], total;
    int n_moe;
    summarize(c, sum, &total, &n_moe);
    const moeq_model_config *g = &c->cfg;
    uint64_t shard_total = 0;
    for (int i = 0; i < c->n_shards; i++) shard_total += c->shard_sizes[i];
    json_t *classes = json_object();
    for (int k = 0; k < MOEQ_TC_COUNT; k++)
        if (sum[k].count)
            json_object_set_new(classes, moeq_tclass_name((moeq_tclass)k),
                                json_pack("{s:I,s:I,s:I}", "tensors", (json_int_t)sum[k].count, "parameters",
                                          (json_int_t)sum[k].params, "bytes", (json_int_t)sum[k].bytes));
    json_t *root = json_pack(
        "{s:s,s:s,s:s,s:s,s:b,s:{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:s},"
        "s:{s:i,s:I},s:o,s:{s:I,s:I,s:I}}",
        "checkpoint", c->dir, "architecture", moeq_arch_name(g->arch), "model_type", g->model_type, "class",
        g->architecture, "has_data", c->has_data, "geometry", "layers", moeq_config_n_layers_total(g),
        "moe_layers", n_moe, "mtp_layers", g->n_mtp_layers, "hidden", g->hidden, "vocab", g->vocab, "heads",
        g->n_heads, "kv_heads", g->n_kv_heads, "head_dim", g->head_dim, "routed_experts", g->n_experts,
        "shared_experts", g->n_shared_experts, "top_k", g->top_k, "expert_intermediate", g->moe_intermediate,
        "shared_intermediate", g->shared_intermediate, "dense_intermediate", g->dense_intermediate,
        "weight_dtype", moeq_dtype_name(g->weight_dtype), "torch_dtype", moeq_dtype_name(g->torch_dtype),
        "shards", "count", c->n_shards, "bytes", (json_int_t)shard_total, "classes", classes, "total",
        "tensors", (json_int_t)total.count, "parameters", (json_int_t)total.params, "bytes",
        (json_int_t)total.bytes);
    if (!root) {
        fprintf(stderr, "moeq inspect: internal error building JSON\n");
        return MOEQ_EXIT_FAILURE;
    }
    if (o->tensors) {
        json_t *arr = json_array();
        for (int i = 0; i < c->n_tensors; i++) {
            const moeq_tensor_info *t = &c->t[i];
            json_t *shape = json_array();
            for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
            json_array_append_new(
                arr, json_pack("{s:s,s:s,s:i,s:i,s:s,s:s,s:o,s:s?,s:I,s:I}", "name", t->name, "class",
                               moeq_tclass_name(t->c.cls), "layer", t->c.layer, "expert", t->c.expert, "proj",
                               moeq_proj_name(t->c.proj), "dtype", moeq_dtype_name(t->dtype), "shape", shape,
                               "shard", t->shard >= 0 ? c->shard_names[t->shard] : NULL, "offset",
                               (json_int_t)t->offset, "bytes", (json_int_t)t->nbytes));
        }
        json_object_set_new(root, "tensors", arr);
    }
    moeq_cli_json_schema(root, MOEQ_SCHEMA_INSPECT);
    json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
    return MOEQ_EXIT_OK;
}

static int print_table(const moeq_catalog *c, const inspect_opts *o) {
    class_sum sum[MOEQ_TC_COUNT], total;
    int n_moe;
    summarize(c, sum, &total, &n_moe);
    const moeq_model_config *g = &c->cfg;
    uint64_t shard_total = 0;
    for (int i = 0; i < c->n_shards; i++) shard_total += c->shard_sizes[i];
    char b1[32], b2[32];
    printf("checkpoint      %s\n", c->dir);
    printf("architecture    %s (model_type %s, %s)\n", moeq_arch_name(g->arch), g->model_type,
           g->architecture[0] ? g->architecture : "-");
    printf("layers          %d (%d MoE, %d dense%s)\n", moeq_config_n_layers_total(g), n_moe,
           moeq_config_n_layers_total(g) - n_moe, g->n_mtp_layers ? ", incl. MTP" : "");
    printf("hidden          %d   vocab %d   heads %d (kv %d, head_dim %d)\n", g->hidden, g->vocab, g->n_heads,
           g->n_kv_heads, g->head_dim);
    printf("experts         %d routed + %d shared per MoE layer, top-%d, expert FFN %d", g->n_experts,
           g->n_shared_experts, g->top_k, g->moe_intermediate);
    if (g->shared_intermediate) printf(", shared FFN %d", g->shared_intermediate);
    if (g->dense_intermediate && n_moe < moeq_config_n_layers_total(g))
        printf(", dense FFN %d", g->dense_intermediate);
    printf("\n");
    if (g->weight_dtype == MOEQ_DTYPE_F8_E4M3)
        printf("weights         F8_E4M3 with %dx%d float32 block scales (others %s)\n", g->fp8_block[0],
               g->fp8_block[1], moeq_dtype_name(g->torch_dtype));
    else
        printf("weights         %s\n", moeq_dtype_name(g->weight_dtype));
    moeq_cli_human_bytes(shard_total, b1, sizeof b1);
    printf("shards          %d (%s)%s\n", c->n_shards, shard_total ? b1 : "sizes unknown",
           c->has_data ? "" : "   [metadata only: tensors planned from config.json, no data read]");
    printf("\n%-15s %9s %14s %12s %8s\n", "class", "tensors", "parameters", "bytes", "params%");
    for (int k = 0; k < MOEQ_TC_COUNT; k++) {
        if (!sum[k].count) continue;
        human_count(sum[k].params, b1, sizeof b1);
        moeq_cli_human_bytes(sum[k].bytes, b2, sizeof b2);
        printf("%-15s %9lld %14s %12s %7.2f%%\n", moeq_tclass_name((moeq_tclass)k), (long long)sum[k].count,
               b1, b2,
               k == MOEQ_TC_FP8_SCALE
                   ? 0.0
                   : 100.0 * (double)sum[k].params / (double)(total.params ? total.params : 1));
    }
    human_count(total.params, b1, sizeof b1);
    moeq_cli_human_bytes(total.bytes, b2, sizeof b2);
    printf("%-15s %9lld %14s %12s\n", "total", (long long)total.count, b1, b2);
    printf("parameters      %lld (FP8 scales excluded)\n", (long long)total.params);
    if (o->tensors) {
        printf("\n%-64s %-14s %5s %6s %-5s %-8s %-16s %s\n", "tensor", "class", "layer", "expert", "proj",
               "dtype", "shape", "shard");
        for (int i = 0; i < c->n_tensors; i++) {
            const moeq_tensor_info *t = &c->t[i];
            char shape[48];
            if (t->ndim == 2)
                snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
            else
                snprintf(shape, sizeof shape, "[%lld]", (long long)(t->ndim ? t->shape[0] : 1));
            printf("%-64s %-14s %5d %6d %-5s %-8s %-16s %s\n", t->name, moeq_tclass_name(t->c.cls),
                   t->c.layer, t->c.expert, moeq_proj_name(t->c.proj), moeq_dtype_name(t->dtype), shape,
                   t->shard >= 0 ? c->shard_names[t->shard] : "-");
        }
    }
    return MOEQ_EXIT_OK;
}

// --dequant A,B,... --out DIR: DIR/A.f32, DIR/B.f32, ... (one process for many tensors: tests).
static int dequant_many(const char *artifact, const char *names, const char *dir) {
    char *list = MOEQ_STRDUP(names), *save = NULL;
    moeq_status st = list ? MOEQ_OK : MOEQ_ERR_NOMEM;
    int n = 0;
    for (char *name = list ? strtok_r(list, ",", &save) : NULL; name && st == MOEQ_OK;
         name = strtok_r(NULL, ",", &save), n++) {
        char file[1100];
        snprintf(file, sizeof file, "%s/%s.f32", dir, name);
        int64_t R = 0, C = 0;
        st = dequant_tensor(artifact, name, file, &R, &C);
    }
    moeq_free(&list);
    if (st != MOEQ_OK) return moeq_cli_fail("inspect", st);
    printf("moeq inspect: %s: %d tensors as NAME.f32 (float32, little-endian, row-major)\n", dir, n);
    return MOEQ_EXIT_OK;
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"tensors", no_argument, NULL, 't'},
        {"dequant", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {0, 0, 0, 0},
    };
    inspect_opts o = {0};
    int r = moeq_cli_parse(&moeq_cmd_inspect, argc, argv, "jtd:o:", longopts, on_opt, &o, NULL);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    if (o.dequant || o.out) {
        if (!o.dequant || !o.out || optind != argc - 1) {
            fprintf(stderr, "moeq inspect: --dequant NAME and --out FILE go together, with one ARTIFACT.h5\n"
                            "---> HINT: moeq inspect --help\n");
            return MOEQ_EXIT_USAGE;
        }
        if (strchr(o.dequant, ',')) // NAME,NAME,...: one file per name in the directory --out
            return dequant_many(argv[optind], o.dequant, o.out);
        int64_t R = 0, C = 0;
        moeq_status st = dequant_tensor(argv[optind], o.dequant, o.out, &R, &C);
        if (st != MOEQ_OK) return moeq_cli_fail("inspect", st);
        printf("moeq inspect: %s: %s as %lld x %lld float32 (little-endian, row-major)\n", o.out, o.dequant,
               (long long)R, (long long)C);
        return MOEQ_EXIT_OK;
    }
    if (optind != argc - 1) {
        fprintf(stderr,
                "moeq inspect: expected one CHECKPOINT_DIR operand\n---> HINT: moeq inspect --help\n");
        return MOEQ_EXIT_USAGE;
    }
    moeq_catalog *c = NULL;
    moeq_status st = moeq_catalog_open(argv[optind], &c);
    if (st != MOEQ_OK) return moeq_cli_fail("inspect", st);
    int rc = o.json ? print_json(c, &o) : print_table(c, &o);
    moeq_catalog_close(&c);
    return rc;
}

const moeq_command moeq_cmd_inspect = {
    .name = "inspect",
    .summary = "show a checkpoint's geometry and per-class tensor summary",
    .usage =
        "moeq inspect [--json] [--tensors] CHECKPOINT_DIR\n"
        "moeq inspect ARTIFACT.h5 --dequant NAME --out FILE\n\n"
        "Reads config.json and the safetensors header(s) of a HuggingFace checkpoint (sharded with\n"
        "model.safetensors.index.json, or a single model.safetensors) and prints the model geometry and,\n"
        "per tensor class (embedding, attention, router, shared_expert, routed_expert, dense_mlp, norm,\n"
        "lm_head, fp8_scale), the number of tensors, parameters and bytes. Only headers are read.\n"
        "A directory with config.json and no shards (optionally an index and shard-sizes.tsv) is\n"
        "reported from metadata: the tensors the architecture implies, without data.\n"
        "Every tensor is checked: dtype x shape = bytes, offsets inside the file and not overlapping,\n"
        "each index entry present in its shard, shapes as config.json implies, FP8 scales present.\n\n"
        "Options:\n"
        "  -j, --json       machine-readable JSON on stdout\n"
        "  -t, --tensors    also list every tensor (name, class, layer, expert, proj, dtype, shape, shard)\n"
        "  -d, --dequant NAME  with an artifact: write HF tensor NAME as moeq dequantizes it (deq(Q), the\n"
        "                   base without a MiLo compensator; a tensor stored as it came: its values) to\n"
        "  -o, --out FILE   FILE as float32, little-endian, row-major (R x C); planes checksum-verified;\n"
        "                   with --dequant A,B,... FILE is a directory that gets A.f32, B.f32, ...\n\n"
        "Example:\n"
        "  moeq inspect ../shared/models/mixtral-tiny\n"
        "  moeq inspect --json ../shared/fixtures/real-metadata/deepseek-r1",
    .run = run,
};
