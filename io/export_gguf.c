// export_gguf.c: `moeq export --format gguf` (export_gguf.h; mapping and refusals in docs/EXPORT.md). Builds
// the GGUF tensor list from the artifact's table of contents (names from gguf_names.c, one stacked tensor per
// (layer, projection) of routed experts), refuses what llama.cpp cannot run before writing anything, then
// streams every tensor in row panels: pread from the artifact, xxh3 against the recorded dataset checksum,
// convert (dtype, q/k row permutation, MLA kv_b split) and hand to the GGUF writer (gguf.c).
// Not here: the key/values (export_gguf_keys.c; the tokenizer: gguf_tokenizer.c), the LoRA adapter of MiLo
// compensators (export_gguf_lora.c: written before the base, renamed with it).
//
// Letters: R rows (out features), C cols (in features), E experts, hd head dim.
#include "export_gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"            // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "artifact_scan.h"    // defines: moeq_artifact_scan, moeq_artifact_toc
#include "clock.h"            // defines: moeq_now_s
#include "export_gguf_impl.h" // defines: moeq_export_gguf_keys
#include "export_impl.h"      // defines: moeq_export_check_complete
#include "gguf.h"             // defines: moeq_gguf_writer, moeq_gguf_kvs
#include "gguf_names.h"       // defines: moeq_gguf_tensor_name
#include "log.h"              // defines: MOEQ_LOG
#include "model_config.h"     // defines: moeq_config_parse
#include "sysio.h"            // defines: moeq_pread_full, moeq_fsync_dir

#define HINT "\n---> HINT: "

// ---- the GGUF tensor list ----

enum { PART_ALL = 0, PART_K_B = 1, PART_V_B = 2 }; // MLA kv_b_proj split

typedef struct gitem {
    char name[64];
    int ndim;
    int64_t ne[MOEQ_GGUF_MAX_DIMS];
    uint32_t type; // ggml type written
    uint64_t bytes;
    int quant;      // a llama.cpp block type: codes copied
    int n_src;      // 1, or E (stack)
    int *src;       // (n_src) artifact tensor indices, slot order
    int scale_src;  // FP8 stored as it came: its weight_scale_inv tensor; -1 otherwise
    int perm_heads; // > 0: q/k rows permuted, in this many heads
    int part;       // PART_*
    int file;
} gitem;

typedef struct glist {
    int n, cap;
    gitem *it;
} glist;

static void glist_free(glist *l) {
    for (int i = 0; i < l->n; i++) moeq_free(&l->it[i].src);
    moeq_free(&l->it);
    l->n = l->cap = 0;
}

static gitem *glist_add(glist *l) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 64;
        gitem *it = MOEQ_CALLOC((size_t)cap, sizeof *it, "gguf tensor list");
        if (!it) return NULL;
        if (l->n) memcpy(it, l->it, (size_t)l->n * sizeof *it);
        moeq_free(&l->it);
        l->it = it;
        l->cap = cap;
    }
    gitem *g = &l->it[l->n++];
    memset(g, 0, sizeof *g);
    g->scale_src = -1;
    return g;
}

static int find_item(const glist *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->it[i].name, name)) return i;
    return -1;
}

static int ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

// The ggml type of a tensor stored as it came (convert_hf_to_gguf.py's rules), or -1 (unsupported dtype).
static int raw_type(const char *gname, int ndim_out, moeq_dtype dt, int f32_all) {
    if (dt != MOEQ_DTYPE_F32 && dt != MOEQ_DTYPE_F16 && dt != MOEQ_DTYPE_BF16 && dt != MOEQ_DTYPE_F8_E4M3)
        return -1;
    if (f32_all || ndim_out <= 1 || ends_with(gname, "_norm.weight") || !ends_with(gname, ".weight") ||
        strstr(gname, ".ffn_gate_inp.") || strstr(gname, ".ffn_gate_inp_shexp."))
        return MOEQ_GGML_TYPE_F32;
    return dt == MOEQ_DTYPE_F32   ? MOEQ_GGML_TYPE_F32
           : dt == MOEQ_DTYPE_F16 ? MOEQ_GGML_TYPE_F16
                                  : MOEQ_GGML_TYPE_BF16;
}

int moeq_export_gguf_type(const moeq_model_config *cfg, const char *name, int ndim, moeq_dtype dtype,
                          int quantized, int format, int outtype_f32) {
    char gname[64];
    int slot = -1;
    moeq_status st = moeq_gguf_tensor_name(cfg, name, gname, sizeof gname, &slot);
    if (st != MOEQ_OK) {
        moeq_error_clear();
        return -1;
    }
    if (quantized) return moeq_qtype_ggml_id(format); // build_one: -1 for moeq's grouped formats
    return raw_type(gname, slot >= 0 ? 3 : ndim, dtype, outtype_f32);
}

static int is_quantized(const moeq_artifact_tensor *t) {
    return t->method != MOEQ_METHOD_NONE;
}

// A short list of names for messages: "a, b, c and 7 more".
typedef struct namelist {
    char buf[640];
    int n;
} namelist;
static void nl_add(namelist *l, const char *name) {
    const size_t len = strlen(l->buf);
    if (l->n < 4 && len + strlen(name) + 3 < sizeof l->buf)
        snprintf(l->buf + len, sizeof l->buf - len, "%s%s", l->n ? ", " : "", name);
    l->n++;
}
static const char *nl_str(namelist *l) {
    if (l->n > 4) {
        const size_t len = strlen(l->buf);
        snprintf(l->buf + len, sizeof l->buf - len, " and %d more", l->n - 4);
    }
    return l->buf;
}

typedef struct build_ctx {
    const moeq_export_gguf_opts *o;
    const moeq_artifact_toc *toc;
    const moeq_model_config *cfg;
    glist *l;
    namelist grouped, compensated, badtype, kvb;
    int n_skipped;
    int *used; // (n_tensors) 1 when exported
} build_ctx;

// The scale tensor of an FP8 weight stored as it came: "<name>_scale_inv".
static int fp8_scale_of(const moeq_artifact_toc *toc, const char *name) {
    char s[1024];
    snprintf(s, sizeof s, "%s_scale_inv", name);
    for (int i = 0; i < toc->n_tensors; i++)
        if (!strcmp(toc->t[i].name, s)) return i;
    return -1;
}

static moeq_status build_one(build_ctx *b, int ti) {
    const moeq_artifact_toc *toc = b->toc;
    const moeq_artifact_tensor *t = &toc->t[ti];
    if (t->c.cls == MOEQ_TC_FP8_SCALE) { // consumed by its weight, or dropped with a quantized one
        b->n_skipped++;
        return MOEQ_OK;
    }
    char gname[64];
    int slot = -1;
    moeq_status st = moeq_gguf_tensor_name(b->cfg, t->name, gname, sizeof gname, &slot);
    if (st == MOEQ_ERR_UNSUPPORTED) {
        moeq_error_clear();
        b->n_skipped++;
        return MOEQ_OK;
    }
    if (st != MOEQ_OK) return MOEQ_FAIL(st, "%s: %s", toc->path, moeq_error_detail());
    // what it can be written as
    uint32_t type;
    int quant = 0;
    if (is_quantized(t)) {
        const int gid = moeq_qtype_ggml_id(t->format);
        if (gid < 0) {
            nl_add(&b->grouped, t->name);
            return MOEQ_OK;
        }
        if (t->rank > 0 && !b->o->no_compensators && !b->o->lora) {
            nl_add(&b->compensated, t->name);
            return MOEQ_OK;
        }
        type = (uint32_t)gid;
        quant = 1;
    } else {
        const int nd_out = slot >= 0 ? 3 : t->ndim;
        const int rt = raw_type(gname, nd_out, t->source_dtype, b->o->outtype_f32);
        if (rt < 0) {
            nl_add(&b->badtype, t->name);
            return MOEQ_OK;
        }
        type = (uint32_t)rt;
    }
    if (t->ndim < 1 || t->ndim > 2)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: tensor '%s': %d dimensions (GGUF export takes 1-D and 2-D)", toc->path, t->name,
                         t->ndim);
    const int64_t R = t->ndim == 2 ? t->shape[0] : 1, C = t->ndim == 2 ? t->shape[1] : t->shape[0];
    const int is_kvb = ends_with(gname, ".attn_kv_b.weight");
    if (is_kvb && quant) {
        nl_add(&b->kvb, t->name);
        return MOEQ_OK;
    }
    b->used[ti] = 1;
    if (slot >= 0) { // a routed expert: its slot of the stack
        int k = find_item(b->l, gname);
        gitem *g;
        if (k < 0) {
            if (!(g = glist_add(b->l))) return MOEQ_ERR_NOMEM;
            snprintf(g->name, sizeof g->name, "%s", gname);
            g->ndim = 3, g->ne[0] = C, g->ne[1] = R, g->ne[2] = b->cfg->n_experts, g->ne[3] = 1;
            g->type = type, g->quant = quant, g->n_src = b->cfg->n_experts;
            g->src = MOEQ_MALLOC((size_t)g->n_src * sizeof *g->src, "expert stack");
            if (!g->src) return MOEQ_ERR_NOMEM;
            for (int e = 0; e < g->n_src; e++) g->src[e] = -1;
        } else {
            g = &b->l->it[k];
            const moeq_artifact_tensor *o = NULL;
            for (int e = 0; e < g->n_src && !o; e++)
                if (g->src[e] >= 0) o = &toc->t[g->src[e]];
            if (g->type != type || g->ne[0] != C || g->ne[1] != R)
                return MOEQ_FAIL(
                    MOEQ_ERR_UNSUPPORTED,
                    "%s: %s: experts of one stack differ: '%s' is %s %" PRId64 "x%" PRId64
                    ", '%s' is %s %" PRId64 "x%" PRId64
                    ": llama.cpp stores the experts of a layer and projection as one tensor of "
                    "one type" HINT
                    "quantize every expert of a (layer, projection) into the same llama.cpp type "
                    "(recipe `target: gguf`)",
                    toc->path, gname, o ? o->name : "?", moeq_ggml_type_name(g->type), g->ne[1], g->ne[0],
                    t->name, moeq_ggml_type_name(type), R, C);
        }
        g->src[slot] = ti;
        return MOEQ_OK;
    }
    gitem *g = glist_add(b->l);
    if (!g) return MOEQ_ERR_NOMEM;
    snprintf(g->name, sizeof g->name, "%s", gname);
    g->type = type, g->quant = quant, g->n_src = 1;
    g->src = MOEQ_MALLOC(sizeof *g->src, "tensor source");
    if (!g->src) return MOEQ_ERR_NOMEM;
    g->src[0] = ti;
    g->ndim = t->ndim, g->ne[0] = C, g->ne[1] = t->ndim == 2 ? R : 1, g->ne[2] = g->ne[3] = 1;
    if (!quant && t->source_dtype == MOEQ_DTYPE_F8_E4M3) {
        g->scale_src = fp8_scale_of(toc, t->name);
        if (g->scale_src < 0)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: FP8 tensor '%s' has no '%s_scale_inv' in the artifact",
                             toc->path, t->name, t->name);
    }
    if (moeq_gguf_permutes_qk(b->cfg) &&
        (ends_with(gname, ".attn_q.weight") || ends_with(gname, ".attn_k.weight")))
        g->perm_heads = ends_with(gname, ".attn_q.weight") ? b->cfg->n_heads : b->cfg->n_kv_heads;
    if (g->perm_heads && (R % g->perm_heads || (R / g->perm_heads) % 2))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': %" PRId64 " rows do not split into %d heads of even size",
                         toc->path, t->name, R, g->perm_heads);
    if (is_kvb) { // llama.cpp's MLA: attn_k_b [nope, kv_lora, H] (k rows transposed), attn_v_b [kv_lora, v,
                  // H]
        const int H = b->cfg->n_heads, nope = b->cfg->qk_nope_head_dim, v = b->cfg->v_head_dim;
        if (R != (int64_t)H * (nope + v))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s': %" PRId64 " rows, expected heads x (nope + v) = %d", toc->path,
                             t->name, R, H * (nope + v));
        gitem kb = *g;
        moeq_gguf_kv_b_names(atoi(gname + 4), kb.name, g->name,
                             sizeof g->name); // gname: blk.L.attn_kv_b.weight
        kb.part = PART_K_B, kb.ndim = 3, kb.ne[0] = nope, kb.ne[1] = C, kb.ne[2] = H;
        kb.src = MOEQ_MALLOC(sizeof *kb.src, "tensor source");
        if (!kb.src) return MOEQ_ERR_NOMEM;
        kb.src[0] = ti;
        g->part = PART_V_B, g->ndim = 3, g->ne[0] = C, g->ne[1] = v, g->ne[2] = H;
        gitem *k2 = glist_add(b->l); // (g may move)
        if (!k2) {
            moeq_free(&kb.src);
            return MOEQ_ERR_NOMEM;
        }
        *k2 = kb;
        const gitem tmp = b->l->it[b->l->n - 2]; // keep convert's order: k_b, then v_b
        b->l->it[b->l->n - 2] = b->l->it[b->l->n - 1];
        b->l->it[b->l->n - 1] = tmp;
    }
    return MOEQ_OK;
}

static moeq_status build_list(build_ctx *b) {
    for (int i = 0; i < b->toc->n_tensors; i++) MOEQ_TRY(build_one(b, i));
    const char *p = b->toc->path;
    if (b->grouped.n)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: %d tensor(s) are quantized in formats with no GGUF type (moeq's grouped q2..q8, integer "
            "i2..i8s), which llama.cpp cannot run: %s" HINT
            "quantize them into a llama.cpp block type (format: q4_K, q6_K, q8_0, ...; recipe "
            "`target: gguf`), or export as safetensors (moeq export ARTIFACT DIR)",
            p, b->grouped.n, nl_str(&b->grouped));
    if (b->compensated.n)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: %d tensor(s) carry a MiLo low-rank compensator, which a GGUF model has no place "
            "for: %s" HINT "--lora FILE writes the compensators as a llama.cpp LoRA adapter beside the base; "
            "--no-compensators exports the quantized base alone (the U V term is dropped: the error is "
            "larger than the artifact's)",
            p, b->compensated.n, nl_str(&b->compensated));
    if (b->badtype.n)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: tensor(s) stored in a dtype GGUF export does not convert (F32, F16, BF16, FP8 "
                         "E4M3 only): %s",
                         p, nl_str(&b->badtype));
    if (b->kvb.n)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: MLA kv_b_proj quantized: %s: llama.cpp's deepseek2 loads it split per head with "
            "the k rows transposed (attn_k_b), which moves weights across the quantization "
            "blocks" HINT "keep kv_b_proj unquantized in the recipe (it is small)",
            p, nl_str(&b->kvb));
    for (int i = 0; i < b->l->n; i++) {
        gitem *g = &b->l->it[i];
        for (int e = 0; e < g->n_src; e++)
            if (g->src[e] < 0)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %s: expert %d is missing from the artifact", p,
                                 g->name, e);
        g->bytes = moeq_gguf_tensor_bytes(g->type, g->ndim, g->ne);
        if (g->bytes == 0)
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                             "%s: %s: %" PRId64 " columns are not whole blocks of type %s (%d weights)", p,
                             g->name, g->ne[0], moeq_ggml_type_name(g->type), moeq_ggml_type_block(g->type));
        if (g->quant) { // the codes plane is exactly the GGUF rows
            const moeq_artifact_dsinfo *d = moeq_artifact_toc_ds(b->toc, g->src[0], MOEQ_DS_CODES);
            const uint64_t per = g->bytes / (uint64_t)g->n_src;
            if (!d || d->bytes != per)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %s: codes plane of %llu bytes, the %s rows need %llu",
                                 p, b->toc->t[g->src[0]].name, d ? (unsigned long long)d->bytes : 0ull,
                                 moeq_ggml_type_name(g->type), (unsigned long long)per);
        }
    }
    return MOEQ_OK;
}

// ---- streaming ----

typedef struct wctx {
    const moeq_export_gguf_opts *o;
    const moeq_artifact_toc *toc;
    const moeq_model_config *cfg;
    int fd; // the artifact
    size_t chunk;
    unsigned char *in, *out;
    float *f;
    size_t in_cap, out_cap, f_cap;
    XXH3_state_t *h;
    moeq_gguf_writer *w;
    uint64_t done, total;
    int items_done, n_items, file, n_files;
    double t0, next;
} wctx;

static size_t ggml_elem_size(uint32_t type) {
    return type == MOEQ_GGML_TYPE_F32 ? 4 : 2;
}

// n floats -> out in ggml type `type` (F32, F16, BF16).
static void encode(const float *f, int64_t n, uint32_t type, void *out) {
    if (type == MOEQ_GGML_TYPE_F32) {
        memcpy(out, f, (size_t)n * 4);
    } else {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++)
            o[i] = type == MOEQ_GGML_TYPE_F16 ? moeq_f32_to_f16(f[i]) : moeq_f32_to_bf16(f[i]);
    }
}

static void progress(wctx *c, int force) {
    const double now = moeq_now_s();
    if (c->o->progress_s <= 0 || (!force && now < c->next)) return;
    c->next = now + c->o->progress_s;
    const double el = now - c->t0, mib = (double)c->done / 1048576.0;
    MOEQ_LOG(MOEQ_LOG_INFO, "export gguf: %.1f of %.1f MiB (%.1f%%), %d/%d tensors, file %d/%d, %.1f MiB/s",
             mib, (double)c->total / 1048576.0, c->total ? 100.0 * (double)c->done / (double)c->total : 100.0,
             c->items_done, c->n_items, c->file + 1, c->n_files, el > 0 ? mib / el : 0.0);
}

static moeq_status checksum_fail(const wctx *c, const moeq_artifact_tensor *t, const moeq_artifact_dsinfo *d,
                                 uint64_t h) {
    return MOEQ_FAIL(
        MOEQ_ERR_FORMAT,
        "%s: tensor '%s' dataset %s: checksum %016llx, recorded %016llx: the bytes changed after "
        "quantization (corrupted)" HINT "copy the artifact again, or quantize again; nothing was "
        "exported",
        c->toc->path, t->name, moeq_ds_name((moeq_ds)d->ds), (unsigned long long)h,
        (unsigned long long)d->xxh3);
}

// The FP8 block scales of tensor si (F32 data plane), whole: (ceil(R/B), ceil(C/B)).
static moeq_status read_scale(wctx *c, int si, float **out, size_t *n) {
    const moeq_artifact_tensor *t = &c->toc->t[si];
    const moeq_artifact_dsinfo *d = moeq_artifact_toc_ds(c->toc, si, MOEQ_DS_DATA);
    if (!d || t->source_dtype != MOEQ_DTYPE_F32)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: tensor '%s': FP8 block scales must be stored F32",
                         c->toc->path, t->name);
    float *s = MOEQ_MALLOC(d->bytes ? (size_t)d->bytes : 1, t->name);
    if (!s) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_pread_full(c->fd, s, (size_t)d->bytes, d->offset, c->toc->path);
    if (st == MOEQ_OK && XXH3_64bits(s, (size_t)d->bytes) != d->xxh3)
        st = checksum_fail(c, t, d, XXH3_64bits(s, (size_t)d->bytes));
    if (st != MOEQ_OK) {
        moeq_free(&s);
        return st;
    }
    *out = s;
    *n = (size_t)(d->bytes / 4);
    return MOEQ_OK;
}

// One source tensor (one slot of g) in row panels: pread, hash, convert, permute, write.
static moeq_status write_source(wctx *c, const gitem *g, int ti) {
    const moeq_artifact_tensor *t = &c->toc->t[ti];
    const moeq_artifact_dsinfo *d = moeq_artifact_toc_ds(c->toc, ti, g->quant ? MOEQ_DS_CODES : MOEQ_DS_DATA);
    if (!d)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has no %s plane", c->toc->path, t->name,
                         g->quant ? "codes" : "data");
    const int64_t R = t->ndim == 2 ? t->shape[0] : 1, C = t->ndim == 2 ? t->shape[1] : t->shape[0];
    const size_t in_row = (size_t)(d->bytes / (uint64_t)R);
    const int same = g->quant || (t->source_dtype == MOEQ_DTYPE_F32 && g->type == MOEQ_GGML_TYPE_F32) ||
                     (t->source_dtype == MOEQ_DTYPE_F16 && g->type == MOEQ_GGML_TYPE_F16) ||
                     (t->source_dtype == MOEQ_DTYPE_BF16 && g->type == MOEQ_GGML_TYPE_BF16);
    const size_t out_row = g->quant ? in_row : (size_t)C * ggml_elem_size(g->type);
    float *scale = NULL;
    size_t n_scale = 0;
    int64_t B = 0;
    if (g->scale_src >= 0) {
        MOEQ_TRY(read_scale(c, g->scale_src, &scale, &n_scale));
        B = c->cfg->fp8_block[0] > 0 ? c->cfg->fp8_block[0] : 128;
    }
    int64_t panel = g->perm_heads ? R / g->perm_heads : B ? B : (int64_t)(c->chunk / (in_row ? in_row : 1));
    if (panel < 1) panel = 1;
    if (!g->perm_heads && B && panel < B) panel = B;
    // in: the source rows, and the q/k permutation's destination when they were converted (rows of out_row)
    moeq_status st = MOEQ_OK;
    if (MOEQ_RESERVE(&c->in, &c->in_cap, (size_t)panel * (in_row > out_row ? in_row : out_row),
                     "export panel") ||
        MOEQ_RESERVE(&c->out, &c->out_cap, (size_t)panel * out_row, "export panel") ||
        (!same && MOEQ_RESERVE(&c->f, &c->f_cap, (size_t)panel * (size_t)C * sizeof(float), "export panel")))
        st = MOEQ_ERR_NOMEM;
    XXH3_64bits_reset(c->h);
    for (int64_t r0 = 0; r0 < R && st == MOEQ_OK; r0 += panel) {
        const int64_t nr = R - r0 < panel ? R - r0 : panel;
        st = moeq_pread_full(c->fd, c->in, (size_t)nr * in_row, d->offset + (uint64_t)r0 * in_row,
                             c->toc->path);
        if (st != MOEQ_OK) {
            st = MOEQ_FAIL(st, "tensor '%s': %s", t->name, moeq_error_detail());
            break;
        }
        XXH3_64bits_update(c->h, c->in, (size_t)nr * in_row);
        const unsigned char *rows = c->in;
        if (!same) {
            if (scale)
                st = moeq_fp8_block_dequant_rows_cpu(c->in, scale, R, C, B, r0, nr, c->f);
            else
                st = moeq_decode_cpu(t->source_dtype, c->in, c->f, nr * C);
            if (st != MOEQ_OK) break;
            encode(c->f, nr * C, g->type, c->out);
            rows = c->out;
        }
        if (g->perm_heads) { // HF rotate_half -> llama.cpp's interleaved pairs: row 2i+j <- row j*hd/2+i
            unsigned char *dst = rows == c->out ? c->in : c->out;
            const int64_t half = nr / 2;
            for (int64_t i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                    memcpy(dst + (size_t)(2 * i + j) * out_row, rows + (size_t)(j * half + i) * out_row,
                           out_row);
            rows = dst;
        }
        st = moeq_gguf_writer_write(c->w, rows, (size_t)nr * out_row);
        c->done += (uint64_t)nr * in_row;
        progress(c, 0);
    }
    moeq_free(&scale);
    (void)n_scale;
    if (st != MOEQ_OK) return st;
    const uint64_t h = XXH3_64bits_digest(c->h);
    return h == d->xxh3 ? MOEQ_OK : checksum_fail(c, t, d, h);
}

// MLA kv_b_proj (R = H (nope + v), C = kv_lora) stored as it came, as attn_k_b [nope, C, H] (each head's
// nope rows transposed) or attn_v_b [C, v, H] (each head's v rows): the whole matrix in fp32.
static moeq_status write_kvb(wctx *c, const gitem *g) {
    const int ti = g->src[0];
    const moeq_artifact_tensor *t = &c->toc->t[ti];
    const moeq_artifact_dsinfo *d = moeq_artifact_toc_ds(c->toc, ti, MOEQ_DS_DATA);
    const int64_t R = t->shape[0], C = t->shape[1];
    const int H = c->cfg->n_heads, nope = c->cfg->qk_nope_head_dim, v = c->cfg->v_head_dim;
    if (!d) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has no data", c->toc->path, t->name);
    float *scale = NULL; // FP8 (DeepSeek-V3/R1, Kimi-K2 checkpoints): decoded with its block scales
    size_t n_scale = 0;
    if (g->scale_src >= 0) MOEQ_TRY(read_scale(c, g->scale_src, &scale, &n_scale));
    unsigned char *raw = MOEQ_MALLOC((size_t)d->bytes, t->name);
    float *w = MOEQ_MALLOC((size_t)(R * C) * sizeof(float), t->name);
    float *row = MOEQ_MALLOC((size_t)(C > nope ? C : nope) * sizeof(float) + 16, t->name);
    unsigned char *o = MOEQ_MALLOC((size_t)(C > nope ? C : nope) * 4 + 16, t->name);
    moeq_status st = raw && w && row && o ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_pread_full(c->fd, raw, (size_t)d->bytes, d->offset, c->toc->path);
    if (st == MOEQ_OK && XXH3_64bits(raw, (size_t)d->bytes) != d->xxh3)
        st = checksum_fail(c, t, d, XXH3_64bits(raw, (size_t)d->bytes));
    if (st == MOEQ_OK)
        st = scale ? moeq_fp8_block_dequant_rows_cpu(
                         raw, scale, R, C, c->cfg->fp8_block[0] > 0 ? c->cfg->fp8_block[0] : 128, 0, R, w)
                   : moeq_decode_cpu(t->source_dtype, raw, w, R * C);
    const size_t es = ggml_elem_size(g->type);
    for (int h = 0; h < H && st == MOEQ_OK; h++) {
        const float *head = w + (size_t)h * (size_t)(nope + v) * (size_t)C;
        if (g->part == PART_K_B) {
            for (int64_t col = 0; col < C && st == MOEQ_OK; col++) { // ne[1] = C: one row of nope values
                for (int n = 0; n < nope; n++) row[n] = head[(size_t)n * (size_t)C + (size_t)col];
                encode(row, nope, g->type, o);
                st = moeq_gguf_writer_write(c->w, o, (size_t)nope * es);
            }
        } else {
            for (int vi = 0; vi < v && st == MOEQ_OK; vi++) {
                encode(head + (size_t)(nope + vi) * (size_t)C, C, g->type, o);
                st = moeq_gguf_writer_write(c->w, o, (size_t)C * es);
            }
        }
    }
    if (st == MOEQ_OK && g->part == PART_K_B) c->done += d->bytes;
    moeq_free(&raw);
    moeq_free(&w);
    moeq_free(&row);
    moeq_free(&o);
    moeq_free(&scale);
    return st;
}

static moeq_status write_item(wctx *c, const gitem *g) {
    if (g->part != PART_ALL)
        MOEQ_TRY(write_kvb(c, g));
    else
        for (int e = 0; e < g->n_src; e++) MOEQ_TRY(write_source(c, g, g->src[e]));
    c->items_done++;
    return MOEQ_OK;
}

// ---- files ----

void moeq_export_gguf_split_name(const char *out, int i, int n, char *buf, size_t cap) {
    size_t len = strlen(out);
    if (len > 5 && !strcmp(out + len - 5, ".gguf")) len -= 5;
    snprintf(buf, cap, "%.*s-%05d-of-%05d.gguf", (int)len, out, i + 1, n);
}

static uint64_t tinfo_bytes(const gitem *g) {
    return 8 + strlen(g->name) + 4 + 8 * (uint64_t)g->ndim + 4 + 8;
}

// Assigns each item a file: at most shard_size bytes each (a larger tensor gets a file alone).
static int plan_files(glist *l, uint64_t shard_size, uint64_t header0) {
    if (!shard_size) return 1;
    int f = 0;
    uint64_t size = header0 + 64;
    int in_file = 0;
    for (int i = 0; i < l->n; i++) {
        const uint64_t add = tinfo_bytes(&l->it[i]) + (l->it[i].bytes + 31) / 32 * 32;
        if (in_file && size + add > shard_size) {
            f++;
            size = 200; // a later file's header: the split keys alone
            in_file = 0;
        }
        l->it[i].file = f;
        size += add;
        in_file++;
    }
    return f + 1;
}

moeq_status moeq_export_gguf_run(const moeq_export_gguf_opts *o, moeq_export_gguf_stats *stats) {
    const double t0 = moeq_now_s();
    moeq_export_gguf_stats s;
    memset(&s, 0, sizeof s);
    if (o->lora && o->no_compensators)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "--lora and --no-compensators exclude each other");
    if (o->lora && !strcmp(o->lora, o->out))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "--lora %s: the adapter needs a file of its own, not OUT", o->lora);
    if (o->tokenizer && o->tokenizer_from)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "--tokenizer and --tokenizer-from exclude each other");
    moeq_artifact_toc *toc = NULL;
    moeq_status st = moeq_artifact_scan(o->artifact, &toc);
    if (st == MOEQ_OK) st = moeq_export_check_complete(toc);
    moeq_model_config cfg;
    char where[1100];
    snprintf(where, sizeof where, "%s: source config.json", o->artifact);
    if (st == MOEQ_OK)
        st = moeq_config_parse(where, toc->info->source_config ? toc->info->source_config : "", &cfg);
    glist l = {0};
    build_ctx b = {.o = o, .toc = toc, .cfg = &cfg, .l = &l};
    if (st == MOEQ_OK) {
        b.used = MOEQ_CALLOC((size_t)toc->n_tensors + 1, sizeof *b.used, "export tensors");
        st = b.used ? build_list(&b) : MOEQ_ERR_NOMEM;
    }
    // keys: general.*, the family's, the tokenizer's (export_gguf_keys.c)
    moeq_gguf_kvs kvs = {0};
    if (st == MOEQ_OK) {
        for (int i = 0; i < l.n; i++) {
            s.n_by_type[l.it[i].type]++;
            s.bytes_by_type[l.it[i].type] += l.it[i].bytes;
            s.tensor_bytes += l.it[i].bytes;
            s.n_weights += (uint64_t)(l.it[i].ne[0] * l.it[i].ne[1] * l.it[i].ne[2] * l.it[i].ne[3]);
        }
        st = moeq_export_gguf_keys(o, toc, &cfg, &s, &kvs);
    }
    // files
    int n_files = 1;
    char **paths = NULL, **partials = NULL;
    if (st == MOEQ_OK) {
        n_files = plan_files(&l, o->shard_size, moeq_gguf_header_bytes(&kvs, 0, NULL));
        if (n_files > 65535)
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "--shard-size %" PRIu64 ": %d files, more than GGUF splits allow",
                           o->shard_size, n_files);
        paths = MOEQ_CALLOC((size_t)n_files, sizeof *paths, "gguf files");
        partials = MOEQ_CALLOC((size_t)n_files, sizeof *partials, "gguf files");
        if (st == MOEQ_OK && (!paths || !partials)) st = MOEQ_ERR_NOMEM;
        for (int f = 0; f < n_files && st == MOEQ_OK; f++) {
            char buf[4096];
            if (n_files == 1)
                snprintf(buf, sizeof buf, "%s", o->out);
            else
                moeq_export_gguf_split_name(o->out, f, n_files, buf, sizeof buf);
            paths[f] = MOEQ_STRDUP(buf);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ".partial");
            partials[f] = MOEQ_STRDUP(buf);
            if (!paths[f] || !partials[f]) st = MOEQ_ERR_NOMEM;
            struct stat sb;
            if (st == MOEQ_OK && !o->force && stat(paths[f], &sb) == 0)
                st = MOEQ_FAIL(MOEQ_ERR_EXISTS, "%s exists" HINT "--force replaces it", paths[f]);
        }
    }
    moeq_gguf_lora lora = {0}; // the adapter: written first (its refusals before any file), renamed first
    if (st == MOEQ_OK && o->lora) st = moeq_gguf_lora_write(toc, &cfg, o->lora, o->force, &lora);
    wctx c = {.o = o,
              .toc = toc,
              .cfg = &cfg,
              .fd = -1,
              .chunk = o->chunk_bytes ? o->chunk_bytes : (size_t)64 << 20,
              .n_items = l.n,
              .n_files = n_files,
              .t0 = t0,
              .next = t0 + o->progress_s};
    if (st == MOEQ_OK) {
        c.h = XXH3_createState();
        if (!c.h) st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
    }
    if (st == MOEQ_OK) st = moeq_open_read(toc->path, &c.fd);
    for (int i = 0; i < l.n; i++)
        if (!l.it[i].part || l.it[i].part == PART_K_B)
            for (int e = 0; e < l.it[i].n_src; e++) {
                const moeq_artifact_dsinfo *d =
                    moeq_artifact_toc_ds(toc, l.it[i].src[e], l.it[i].quant ? MOEQ_DS_CODES : MOEQ_DS_DATA);
                c.total += d ? d->bytes : 0;
            }
    int written = 0;
    for (int f = 0; f < n_files && st == MOEQ_OK; f++) {
        c.file = f;
        int first = -1, n = 0;
        for (int i = 0; i < l.n; i++)
            if (l.it[i].file == f) {
                if (first < 0) first = i;
                n++;
            }
        moeq_gguf_kvs split = {0};
        const moeq_gguf_kvs *fk = &kvs;
        if (n_files > 1) {
            fk = &split;
            for (int k = 0; f == 0 && k < kvs.n && st == MOEQ_OK; k++)
                st = moeq_gguf_kvs_set_value(&split, kvs.kv[k].key, &kvs.kv[k].val);
            if (st == MOEQ_OK) st = moeq_gguf_kvs_set_u16(&split, "split.no", (uint16_t)f);
            if (st == MOEQ_OK) st = moeq_gguf_kvs_set_u16(&split, "split.count", (uint16_t)n_files);
            if (st == MOEQ_OK) st = moeq_gguf_kvs_set_i32(&split, "split.tensors.count", l.n);
        }
        moeq_gguf_tdesc *td = MOEQ_CALLOC((size_t)(n ? n : 1), sizeof *td, "gguf tensors");
        if (st == MOEQ_OK && !td) st = MOEQ_ERR_NOMEM;
        for (int k = 0; k < n && st == MOEQ_OK; k++) {
            const gitem *g = &l.it[first + k];
            td[k] = (moeq_gguf_tdesc){.name = g->name, .ndim = g->ndim, .type = g->type, .bytes = g->bytes};
            memcpy(td[k].ne, g->ne, sizeof td[k].ne);
        }
        if (st == MOEQ_OK) {
            unlink(partials[f]); // a crashed run's leftover
            st = moeq_gguf_writer_open(partials[f], fk, n, td, &c.w);
        }
        if (st == MOEQ_OK) s.file_bytes += moeq_gguf_file_bytes(fk, n, td);
        for (int k = 0; k < n && st == MOEQ_OK; k++) st = write_item(&c, &l.it[first + k]);
        if (st == MOEQ_OK)
            st = moeq_gguf_writer_close(&c.w);
        else
            moeq_gguf_writer_abort(&c.w);
        if (st == MOEQ_OK) written = f + 1;
        moeq_free(&td);
        moeq_gguf_kvs_free(&split);
    }
    // commit: every file complete, then the renames (the adapter first: the base appears last)
    if (st == MOEQ_OK) st = moeq_gguf_lora_commit(&lora);
    for (int f = 0; f < n_files && st == MOEQ_OK; f++)
        if (rename(partials[f], paths[f]) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "rename %s -> %s: %s", partials[f], paths[f], strerror(errno));
    if (st == MOEQ_OK) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", o->out);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        st = moeq_fsync_dir(dir);
    } else {
        for (int f = 0; f < written && partials; f++) unlink(partials[f]);
        moeq_gguf_lora_abort(&lora);
    }
    moeq_gguf_lora_free(&lora);
    progress(&c, st == MOEQ_OK);
    if (c.fd >= 0) close(c.fd);
    if (c.h) XXH3_freeState(c.h);
    moeq_free(&c.in);
    moeq_free(&c.out);
    moeq_free(&c.f);
    for (int f = 0; f < n_files; f++) {
        if (paths) moeq_free(&paths[f]);
        if (partials) moeq_free(&partials[f]);
    }
    moeq_free(&paths);
    moeq_free(&partials);
    if (st == MOEQ_OK) {
        s.n_tensors = l.n;
        s.n_skipped = b.n_skipped;
        for (int i = 0; i < toc->n_tensors; i++) s.n_source += b.used[i];
        s.n_files = n_files;
        s.seconds = moeq_now_s() - t0;
        s.lora = lora.stats;
        if (stats) *stats = s;
    }
    moeq_free(&b.used);
    moeq_gguf_kvs_free(&kvs);
    glist_free(&l);
    moeq_artifact_toc_free(&toc);
    return st;
}
