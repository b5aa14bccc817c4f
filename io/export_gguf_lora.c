// export_gguf_lora.c: the MiLo compensators of an artifact as a llama.cpp LoRA adapter (export_gguf_lora.h;
// docs/EXPORT.md). Lists the compensated tensors with their GGUF names (gguf_names.c), refuses those
// llama.cpp cannot apply an adapter to, then per tensor: pread its U/V planes (and int3 scales), xxh3 against
// the artifact's record, dequantize (kernels/lowrank.h), permute U's rows as the base's q/k rows, write
// lora_a = V, lora_b = U with the GGUF writer (gguf.c). Called by export_gguf.c before the base is written.
//
// Letters: R rows (out features), C cols (in features), r rank, hd head dim.
#include "export_gguf_lora.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"      // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "dtype.h"      // defines: moeq_f16_exact_cpu, moeq_f32_to_f16
#include "gguf.h"       // defines: moeq_gguf_writer, moeq_gguf_kvs
#include "gguf_names.h" // defines: moeq_gguf_tensor_name, moeq_gguf_arch_name, moeq_gguf_permutes_qk
#include "lowrank.h"    // defines: moeq_factor_dequantize_cpu
#include "sysio.h"      // defines: moeq_open_read, moeq_pread_full

#define HINT "\n---> HINT: "

static int ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

// deepseek2 (llama.cpp src/models/deepseek2.cpp) multiplies these with ggml_mul_mat, not build_lora_mm.
static const char *const k_deepseek2_plain[] = {
    ".attn_q_a.weight",  ".attn_q_b.weight", ".attn_q.weight",  ".attn_kv_a_mqa.weight",
    ".attn_kv_b.weight", ".attn_k_b.weight", ".attn_v_b.weight"};

const char *moeq_gguf_lora_refusal(const char *arch, const char *gname, int slot) {
    if (slot >= 0)
        return "a routed expert: llama.cpp stores the experts of a layer and projection as one stacked "
               "tensor, and moeq writes no adapter for stacks (recipe: rank 0 on routed experts)";
    if (!strcmp(gname, "token_embd.weight"))
        return "the token embedding: llama.cpp's embedding LoRA takes its factors in another layout, which "
               "moeq does not write";
    if (arch && !strcmp(arch, "deepseek2")) {
        if (!strcmp(gname, "output.weight"))
            return "llama.cpp's deepseek2 multiplies the output head without its LoRA hook (the adapter "
                   "would be "
                   "ignored)";
        for (size_t i = 0; i < sizeof k_deepseek2_plain / sizeof *k_deepseek2_plain; i++)
            if (ends_with(gname, k_deepseek2_plain[i]))
                return "llama.cpp's deepseek2 multiplies the MLA projections without its LoRA hook (the "
                       "adapter "
                       "would be ignored)";
    }
    return NULL;
}

// ---- the pairs ----

typedef struct lpair {
    int ti;         // artifact tensor
    char name[64];  // GGUF base tensor name
    int perm_heads; // > 0: U's rows permuted in this many heads
    uint32_t type_a, type_b;
} lpair;

// A short list of names for messages: "a (why), b and 7 more".
typedef struct namelist {
    char buf[1024];
    int n;
} namelist;
static void nl_add(namelist *l, const char *name, const char *why) {
    const size_t len = strlen(l->buf);
    if (l->n < 3 && len + strlen(name) + strlen(why) + 8 < sizeof l->buf)
        snprintf(l->buf + len, sizeof l->buf - len, "%s%s (%s)", l->n ? ", " : "", name, why);
    l->n++;
}
static const char *nl_str(namelist *l) {
    if (l->n > 3) {
        const size_t len = strlen(l->buf);
        snprintf(l->buf + len, sizeof l->buf - len, " and %d more", l->n - 3);
    }
    return l->buf;
}

static moeq_status list_pairs(const moeq_artifact_toc *toc, const moeq_model_config *cfg, const char *arch,
                              lpair **out, int *n_out) {
    int n = 0;
    for (int i = 0; i < toc->n_tensors; i++) n += toc->t[i].method != MOEQ_METHOD_NONE && toc->t[i].rank > 0;
    if (!n)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: no tensor carries a MiLo compensator (rank > 0): there is no adapter to write" HINT
            "drop --lora, or quantize with method milo and a rank",
            toc->path);
    lpair *p = MOEQ_CALLOC((size_t)n, sizeof *p, "lora tensors");
    if (!p) return MOEQ_ERR_NOMEM;
    namelist refused = {0};
    int k = 0;
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        if (t->method == MOEQ_METHOD_NONE || t->rank <= 0) continue;
        int slot = -1;
        char gname[64];
        moeq_status st = moeq_gguf_tensor_name(cfg, t->name, gname, sizeof gname, &slot);
        if (st == MOEQ_ERR_UNSUPPORTED) { // dropped from the base too (MTP layers)
            moeq_error_clear();
            continue;
        }
        if (st != MOEQ_OK) {
            moeq_free(&p);
            return MOEQ_FAIL(st, "%s: %s", toc->path, moeq_error_detail());
        }
        const char *why = moeq_gguf_lora_refusal(arch, gname, slot);
        if (!why && t->ndim != 2) why = "not a 2-D weight";
        if (why) {
            nl_add(&refused, t->name, why);
            continue;
        }
        lpair *q = &p[k++];
        q->ti = i;
        snprintf(q->name, sizeof q->name, "%s", gname);
        if (moeq_gguf_permutes_qk(cfg) &&
            (ends_with(gname, ".attn_q.weight") || ends_with(gname, ".attn_k.weight")))
            q->perm_heads = ends_with(gname, ".attn_q.weight") ? cfg->n_heads : cfg->n_kv_heads;
        const int64_t R = t->shape[0];
        if (q->perm_heads && (R % q->perm_heads || (R / q->perm_heads) % 2)) {
            moeq_free(&p);
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s': %" PRId64 " rows do not split into %d heads of even size",
                             toc->path, t->name, R, q->perm_heads);
        }
    }
    if (refused.n) {
        moeq_free(&p);
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: %d compensated tensor(s) cannot be part of a llama.cpp LoRA adapter: %s" HINT
            "quantize them without a compensator (rank: 0; recipe `target: gguf` refuses it), or "
            "--no-compensators to drop every compensator",
            toc->path, refused.n, nl_str(&refused));
    }
    if (!k) {
        moeq_free(&p);
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: every compensated tensor is one llama.cpp has no counterpart for: no adapter to "
            "write" HINT "drop --lora",
            toc->path);
    }
    *out = p;
    *n_out = k;
    return MOEQ_OK;
}

// ---- reading a factor ----

static moeq_status read_ds(moeq_lora_reader *c, int ti, moeq_ds d, void **buf, size_t *cap) {
    const moeq_artifact_tensor *t = &c->toc->t[ti];
    const moeq_artifact_dsinfo *di = moeq_artifact_toc_ds(c->toc, ti, d);
    if (!di)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' (rank %d) has no %s plane", c->toc->path, t->name,
                         t->rank, moeq_ds_name(d));
    if (MOEQ_RESERVE(buf, cap, (size_t)di->bytes, t->name)) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_pread_full(c->fd, *buf, (size_t)di->bytes, di->offset, c->toc->path);
    if (st != MOEQ_OK) return MOEQ_FAIL(st, "tensor '%s': %s", t->name, moeq_error_detail());
    const uint64_t h = XXH3_64bits(*buf, (size_t)di->bytes);
    if (h != di->xxh3)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s' dataset %s: checksum %016llx, recorded %016llx: the bytes changed "
                         "after quantization (corrupted)" HINT "copy the artifact again, or quantize again; "
                         "nothing was exported",
                         c->toc->path, t->name, moeq_ds_name(d), (unsigned long long)h,
                         (unsigned long long)di->xxh3);
    return MOEQ_OK;
}

moeq_status moeq_lora_read_factor(moeq_lora_reader *c, int ti, int which, float *x, int64_t n) {
    const moeq_artifact_tensor *t = &c->toc->t[ti];
    if (c->fd < 0) MOEQ_TRY(moeq_open_read(c->toc->path, &c->fd));
    MOEQ_TRY(read_ds(c, ti, which ? MOEQ_DS_V : MOEQ_DS_U, (void **)&c->raw, &c->raw_cap));
    const uint16_t *sc = NULL;
    if (t->compensator == MOEQ_FACTOR_INT3) {
        MOEQ_TRY(read_ds(c, ti, which ? MOEQ_DS_V_SCALE : MOEQ_DS_U_SCALE, (void **)&c->sc, &c->sc_cap));
        sc = c->sc;
    }
    const int64_t cb = moeq_factor_code_bytes(t->compensator, n);
    if (cb < 0 || (uint64_t)cb != moeq_artifact_toc_ds(c->toc, ti, which ? MOEQ_DS_V : MOEQ_DS_U)->bytes)
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT, "%s: tensor '%s': %s plane of %llu bytes, rank %d needs %lld", c->toc->path,
            t->name, which ? "V" : "U",
            (unsigned long long)moeq_artifact_toc_ds(c->toc, ti, which ? MOEQ_DS_V : MOEQ_DS_U)->bytes,
            t->rank, (long long)cb);
    moeq_status st = moeq_factor_dequantize_cpu(t->compensator, c->raw, sc, n, x);
    return st == MOEQ_OK ? st
                         : MOEQ_FAIL(st, "%s: tensor '%s': %s", c->toc->path, t->name, moeq_error_detail());
}

// F16 when every value is one (no information lost), F32 otherwise.
static uint32_t exact_type(const float *x, int64_t n) {
    return moeq_f16_exact_cpu(x, n) ? MOEQ_GGML_TYPE_F16 : MOEQ_GGML_TYPE_F32;
}

static moeq_status put(moeq_gguf_writer *w, const float *x, int64_t n, uint32_t type, void *tmp) {
    if (type == MOEQ_GGML_TYPE_F32) return moeq_gguf_writer_write(w, x, (size_t)n * 4);
    uint16_t *h = tmp;
    for (int64_t i = 0; i < n; i++) h[i] = moeq_f32_to_f16(x[i]);
    return moeq_gguf_writer_write(w, h, (size_t)n * 2);
}

// U's rows in llama.cpp's q/k order (as export_gguf.c permutes the base's rows): in each head of hd rows,
// row 2i + j <- row j·hd/2 + i.
static void permute_rows(const float *u, float *dst, int64_t R, int64_t r, int heads) {
    const int64_t hd = R / heads, half = hd / 2;
    for (int h = 0; h < heads; h++)
        for (int64_t i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * hd + 2 * i + j) * (size_t)r,
                       u + (size_t)(h * hd + j * half + i) * (size_t)r, (size_t)r * sizeof *u);
}

// ---- the file ----

static moeq_status write_all(const moeq_artifact_toc *toc, const char *arch, lpair *p, int n, float alpha,
                             const char *partial, moeq_gguf_lora_stats *s) {
    moeq_gguf_kvs kvs = {0};
    moeq_status st = moeq_gguf_kvs_set_str(&kvs, "general.architecture", arch);
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(&kvs, "general.type", "adapter");
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(&kvs, "general.name", "moeq MiLo compensators");
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(&kvs, "adapter.type", "lora");
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_f32(&kvs, "adapter.lora.alpha", alpha);
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_u32(&kvs, "general.alignment", MOEQ_GGUF_ALIGNMENT);
    moeq_gguf_tdesc *td = MOEQ_CALLOC((size_t)(2 * n), sizeof *td, "lora tensors");
    char(*names)[80] = MOEQ_CALLOC((size_t)(2 * n), sizeof *names, "lora tensor names");
    moeq_lora_reader c = {.toc = toc, .fd = -1};
    float *x = NULL, *y = NULL;
    void *tmp = NULL;
    int64_t big = 0;
    if (st == MOEQ_OK && (!td || !names)) st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_open_read(toc->path, &c.fd);
    for (int i = 0; i < n; i++) {
        const moeq_artifact_tensor *t = &toc->t[p[i].ti];
        const int64_t R = t->shape[0], C = t->shape[1], r = t->rank;
        if (R * r > big) big = R * r;
        if (r * C > big) big = r * C;
    }
    if (st == MOEQ_OK) {
        x = MOEQ_MALLOC((size_t)big * sizeof *x, "lora factor");
        y = MOEQ_MALLOC((size_t)big * sizeof *y, "lora factor");
        tmp = MOEQ_MALLOC((size_t)big * 2, "lora factor");
        if (!x || !y || !tmp) st = MOEQ_ERR_NOMEM;
    }
    // types: fp16 factors are F16; int3 ones F16 only when every value is exact (a first read of each)
    for (int i = 0; i < n && st == MOEQ_OK; i++) {
        lpair *q = &p[i];
        const moeq_artifact_tensor *t = &toc->t[q->ti];
        const int64_t R = t->shape[0], C = t->shape[1], r = t->rank;
        q->type_a = q->type_b = MOEQ_GGML_TYPE_F16;
        if (t->compensator != MOEQ_FACTOR_FP16) {
            st = moeq_lora_read_factor(&c, q->ti, 1, x, r * C);
            if (st == MOEQ_OK) q->type_a = exact_type(x, r * C);
            if (st == MOEQ_OK) st = moeq_lora_read_factor(&c, q->ti, 0, x, R * r);
            if (st == MOEQ_OK) q->type_b = exact_type(x, R * r);
        }
        snprintf(names[2 * i], sizeof names[0], "%s.lora_a", q->name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.lora_b", q->name);
        td[2 * i] = (moeq_gguf_tdesc){.name = names[2 * i], .ndim = 2, .ne = {C, r, 1, 1}, .type = q->type_a};
        td[2 * i + 1] =
            (moeq_gguf_tdesc){.name = names[2 * i + 1], .ndim = 2, .ne = {r, R, 1, 1}, .type = q->type_b};
        for (int k = 0; k < 2; k++) {
            td[2 * i + k].bytes = moeq_gguf_tensor_bytes(td[2 * i + k].type, 2, td[2 * i + k].ne);
            if (td[2 * i + k].type == MOEQ_GGML_TYPE_F16)
                s->n_f16++;
            else
                s->n_f32++;
        }
    }
    moeq_gguf_writer *w = NULL;
    if (st == MOEQ_OK) {
        unlink(partial); // a crashed run's leftover
        st = moeq_gguf_writer_open(partial, &kvs, 2 * n, td, &w);
    }
    if (st == MOEQ_OK) s->file_bytes = moeq_gguf_file_bytes(&kvs, 2 * n, td);
    for (int i = 0; i < n && st == MOEQ_OK; i++) {
        const moeq_artifact_tensor *t = &toc->t[p[i].ti];
        const int64_t R = t->shape[0], C = t->shape[1], r = t->rank;
        st = moeq_lora_read_factor(&c, p[i].ti, 1, x, r * C); // lora_a = V (r, C): ne = [C, r]
        if (st == MOEQ_OK) st = put(w, x, r * C, p[i].type_a, tmp);
        if (st == MOEQ_OK)
            st = moeq_lora_read_factor(&c, p[i].ti, 0, x, R * r); // lora_b = U (R, r): ne = [r, R]
        const float *u = x;
        if (st == MOEQ_OK && p[i].perm_heads) {
            permute_rows(x, y, R, r, p[i].perm_heads);
            u = y;
        }
        if (st == MOEQ_OK) st = put(w, u, R * r, p[i].type_b, tmp);
    }
    if (st == MOEQ_OK)
        st = moeq_gguf_writer_close(&w);
    else
        moeq_gguf_writer_abort(&w);
    moeq_lora_reader_free(&c);
    moeq_free(&x);
    moeq_free(&y);
    moeq_free(&tmp);
    moeq_free(&td);
    moeq_free(&names);
    moeq_gguf_kvs_free(&kvs);
    return st;
}

moeq_status moeq_gguf_lora_write(const moeq_artifact_toc *toc, const moeq_model_config *cfg, const char *path,
                                 int force, moeq_gguf_lora *out) {
    memset(out, 0, sizeof *out);
    const char *arch = moeq_gguf_arch_name(cfg);
    if (!arch)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: the model's family has no llama.cpp architecture",
                         toc->path);
    struct stat sb;
    if (!force && stat(path, &sb) == 0)
        return MOEQ_FAIL(MOEQ_ERR_EXISTS, "%s exists" HINT "--force replaces it", path);
    lpair *p = NULL;
    int n = 0;
    MOEQ_TRY(list_pairs(toc, cfg, arch, &p, &n));
    moeq_gguf_lora_stats *s = &out->stats;
    s->rank_min = s->rank_max = toc->t[p[0].ti].rank;
    for (int i = 1; i < n; i++) {
        const int r = toc->t[p[i].ti].rank;
        if (r < s->rank_min) s->rank_min = r;
        if (r > s->rank_max) s->rank_max = r;
    }
    s->n_pairs = n;
    s->alpha =
        s->rank_min == s->rank_max ? (float)s->rank_min : 0.0f; // scale alpha / r = 1, or 1 for alpha 0
    out->path = MOEQ_STRDUP(path);
    const size_t len = strlen(path) + sizeof ".partial";
    out->partial = MOEQ_MALLOC(len, "lora path");
    moeq_status st = out->path && out->partial ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        snprintf(out->partial, len, "%s.partial", path);
        st = write_all(toc, arch, p, n, s->alpha, out->partial, s);
    }
    moeq_free(&p);
    if (st != MOEQ_OK) {
        moeq_free(&out->partial); // the writer removed it
        moeq_gguf_lora_free(out);
    }
    return st;
}

void moeq_lora_reader_free(moeq_lora_reader *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    moeq_free(&c->raw);
    moeq_free(&c->sc);
}

moeq_status moeq_gguf_lora_commit(moeq_gguf_lora *l) {
    if (!l->partial) return MOEQ_OK;
    if (rename(l->partial, l->path) != 0) {
        const moeq_status st =
            MOEQ_FAIL(MOEQ_ERR_IO, "rename %s -> %s: %s", l->partial, l->path, strerror(errno));
        unlink(l->partial);
        return st;
    }
    moeq_free(&l->partial);
    return MOEQ_OK;
}

void moeq_gguf_lora_abort(moeq_gguf_lora *l) {
    if (l->partial) unlink(l->partial);
    moeq_gguf_lora_free(l);
}

void moeq_gguf_lora_free(moeq_gguf_lora *l) {
    moeq_free(&l->path);
    moeq_free(&l->partial);
}
