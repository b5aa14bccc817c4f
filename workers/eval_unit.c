// eval_unit.c: one unit of `moeq eval` on one rank (see eval_unit.h): pread -> verify xxh3 -> decode
// deq(Q) + U·V -> compare with the source weights in fp64 (kernels/metrics.h). Tensors stored as they came
// are compared byte for byte with the source (an exact copy has error 0). Does not run the forward pass
// (forward_model.c) and never writes.
#include "eval_unit.h"
#include "clock.h" // defines: moeq_now_s

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml_blocks.h" // defines: moeq_block_q4_1, moeq_block_q5_1 (their mins, for --act-quant)
#include "moeq_kernels.h" // defines: moeq_qlayout_make, the formats' dequantizers, moeq_factor_dequantize_cpu, metrics

moeq_status moeq_eval_decode(const moeq_artifact_entry *e, const moeq_plan_tensor *pt,
                             void *const bufs[MOEQ_DS_COUNT], float *out) {
    if (pt->q.method == MOEQ_METHOD_NONE) {
        const moeq_dtype dt = e->source_dtype;
        if (dt != MOEQ_DTYPE_F32 && dt != MOEQ_DTYPE_F16 && dt != MOEQ_DTYPE_BF16)
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                             "tensor '%s': stored as %s, which eval does not decode to fp32", e->name,
                             moeq_dtype_name(dt));
        return moeq_decode_cpu(dt, bufs[MOEQ_DS_DATA], out, pt->R * pt->C);
    }
    const int64_t R = pt->R, C = pt->C, r = pt->q.rank;
    moeq_qlayout l;
    MOEQ_TRY(moeq_qsettings_layout(&pt->q, R, C, &l));
    moeq_qmat q = {.bits = pt->q.bits, .type = pt->q.format, .R = R, .C = C, .G = l.G};
    moeq_qmat_set_planes(&q, bufs[MOEQ_DS_CODES], bufs[MOEQ_DS_SCALE], bufs[MOEQ_DS_ZERO]);
    MOEQ_TRY(moeq_qtype_get(l.type)->dequantize(&q, out)); // the format's reference dequantizer
    if (r <= 0) return MOEQ_OK;
    const moeq_factor_type ft = pt->q.compensator;
    float *u = MOEQ_MALLOC((size_t)(R * r) * sizeof(float), e->name);
    float *v = MOEQ_MALLOC((size_t)(r * C) * sizeof(float), e->name);
    moeq_status st = (u && v) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(ft, bufs[MOEQ_DS_U], bufs[MOEQ_DS_U_SCALE], R * r, u);
    if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(ft, bufs[MOEQ_DS_V], bufs[MOEQ_DS_V_SCALE], r * C, v);
    if (st == MOEQ_OK) moeq_lowrank_add_cpu(out, u, v, R, C, r); // the CPU quantize's call: same bits
    moeq_free(&u);
    moeq_free(&v);
    return st;
}

static void free_bufs(void *bufs[MOEQ_DS_COUNT]) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) moeq_free(&bufs[d]);
}

// Reads every present dataset of e into new buffers.
static moeq_status read_all(int fd, const char *path, const moeq_artifact_entry *e,
                            void *bufs[MOEQ_DS_COUNT]) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        bufs[d] = NULL;
        if (!e->ds[d].present) continue;
        bufs[d] = MOEQ_MALLOC((size_t)(e->ds[d].bytes ? e->ds[d].bytes : 1), e->name);
        if (!bufs[d]) return MOEQ_ERR_NOMEM;
        MOEQ_TRY(moeq_artifact_read_dataset(fd, path, e, (moeq_ds)d, bufs[d]));
    }
    return MOEQ_OK;
}

static moeq_status eval_tensor(moeq_eval_ctx *x, int i, moeq_eval_result *r) {
    const moeq_plan_tensor *pt = &x->plan->t[i];
    const moeq_tensor_info *t = &x->cat->t[pt->cat];
    const moeq_artifact_entry *e = &x->entries[i];
    const moeq_artifact_record *rec = &x->rec[i];
    void *bufs[MOEQ_DS_COUNT] = {0};
    float *w = NULL, *a = NULL;
    void *src = NULL;
    r->recorded_rel_fro = rec->rel_fro_error;
    double t0 = moeq_now_s();
    moeq_status st = read_all(x->fd, x->path, e, bufs);
    x->seconds_read += moeq_now_s() - t0;
    if (st != MOEQ_OK) goto done;
    for (int d = 0; d < MOEQ_DS_COUNT; d++) r->bytes += e->ds[d].present ? e->ds[d].bytes : 0;
    x->bytes_read += r->bytes;
    t0 = moeq_now_s();
    int bad = -1;
    if (moeq_artifact_verify_buffers(x->path, e, rec, bufs, &bad) !=
        MOEQ_OK) { // integrity: this tensor's result
        r->status = MOEQ_ERR_FORMAT;
        r->bad_ds = bad;
        snprintf(r->message, sizeof r->message, "%s", moeq_error_detail());
        goto done;
    }
    if (strcmp(rec->status, "ok") != 0) {
        r->status = MOEQ_ERR_NUMERIC;
        snprintf(r->message, sizeof r->message, "tensor '%s' is recorded as %s", e->name, rec->status);
        goto done;
    }
    if (pt->q.method == MOEQ_METHOD_NONE) { // stored as it came: the bytes must be the source's
        src = MOEQ_MALLOC((size_t)(t->nbytes ? t->nbytes : 1), t->name);
        if (!src) {
            st = MOEQ_ERR_NOMEM;
            goto done;
        }
        double t1 = moeq_now_s();
        st = moeq_st_read_raw(x->cat->shards[t->shard], t->st, 0, t->nbytes, src);
        x->seconds_read += moeq_now_s() - t1;
        if (st != MOEQ_OK) goto done;
        const int same =
            t->nbytes == e->ds[MOEQ_DS_DATA].bytes && !memcmp(src, bufs[MOEQ_DS_DATA], (size_t)t->nbytes);
        r->rel_fro = r->nmse = r->max_abs = r->err2 = 0;
        r->sqnr_db = INFINITY;
        if (!same && rec->source_xxh3 &&
            moeq_catalog_source_hash(src, (size_t)t->nbytes, NULL, 0) != rec->source_xxh3) {
            r->status = MOEQ_ERR_MISMATCH; // the source moved, not the artifact
            snprintf(
                r->message, sizeof r->message,
                "stored as it came, and the source checkpoint's bytes differ from those it was copied from");
        } else if (!same) {
            r->status = MOEQ_ERR_FORMAT;
            r->bad_ds = MOEQ_DS_DATA;
            snprintf(r->message, sizeof r->message,
                     "%s: tensor '%s' dataset data: stored as it came, but its bytes "
                     "differ from the source checkpoint's",
                     x->path, e->name);
        }
        goto done;
    }
    const size_t n = (size_t)(pt->R * pt->C);
    w = MOEQ_MALLOC(n * sizeof(float), t->name);
    a = MOEQ_MALLOC(n * sizeof(float), t->name);
    if (!w || !a) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    double t1 = moeq_now_s();
    st = moeq_catalog_read_f32(x->cat, pt->cat, w); // FP8 sources: block scales applied by the catalog
    x->seconds_read += moeq_now_s() - t1;
    if (st != MOEQ_OK) goto done;
    st = moeq_eval_decode(e, pt, bufs, a);
    moeq_err_metrics m;
    if (st == MOEQ_OK) st = moeq_metrics_error_cpu(w, a, pt->R, pt->C, &m);
    if (st != MOEQ_OK) goto done;
    r->rel_fro = m.rel_fro;
    if (x->rel_tol >= 0 && isfinite(rec->rel_fro_error) &&
        !moeq_eval_error_agrees(m.rel_fro, rec->rel_fro_error, x->rel_tol)) {
        r->status = MOEQ_ERR_MISMATCH;
        uint64_t h = 0;
        const int src_changed = rec->source_xxh3 &&
                                moeq_catalog_source_rehash(x->cat, pt->cat, &h) == MOEQ_OK &&
                                h != rec->source_xxh3;
        snprintf(r->message, sizeof r->message,
                 "weight error %.6g recomputed, %.6g recorded (tolerance %.0e relative): %s", m.rel_fro,
                 rec->rel_fro_error, x->rel_tol,
                 src_changed        ? "the source bytes differ from those it was quantized from"
                 : rec->source_xxh3 ? "same source bytes: the recorded figures were changed"
                                    : "another source, or changed figures (no source hash recorded)");
    }
    r->sqnr_db = m.sqnr_db;
    r->max_abs = m.max_abs;
    r->nmse = m.nmse;
    r->err2 = m.fro_err * m.fro_err;
    r->ref2 = m.fro_ref * m.fro_ref;
done: // an exact copy (method none) keeps ref2 = 0: its error adds nothing to any aggregate
    x->seconds_compute += moeq_now_s() - t0;
    free_bufs(bufs);
    moeq_free(&w);
    moeq_free(&a);
    moeq_free(&src);
    return st;
}

moeq_status moeq_eval_unit_run(moeq_eval_ctx *x, int u, moeq_eval_result *res) {
    const moeq_unit *un = &x->plan->u[u];
    moeq_status st = MOEQ_OK;
    for (int k = 0; k < un->count && st == MOEQ_OK; k++) {
        const int i = un->first + k;
        moeq_eval_result *r = &res[k];
        memset(r, 0, sizeof *r);
        r->tensor = (uint32_t)i;
        r->status = MOEQ_OK;
        r->bad_ds = -1;
        r->quantized = x->plan->t[i].q.method != MOEQ_METHOD_NONE;
        r->numel = x->plan->t[i].R * x->plan->t[i].C;
        r->rel_fro = r->sqnr_db = r->max_abs = r->nmse = NAN;
        st = eval_tensor(x, i, r);
    }
    return st;
}

// ---- artifact-backed tensor provider ----

moeq_status moeq_artifact_source_init(moeq_artifact_source *s, const moeq_catalog *cat, const moeq_plan *plan,
                                      const moeq_artifact_entry *entries, int fd, const char *path) {
    memset(s, 0, sizeof *s);
    s->cat = cat, s->plan = plan, s->entries = entries, s->fd = fd, s->path = path;
    s->plan_of_cat = MOEQ_MALLOC(sizeof(int) * (size_t)(cat->n_tensors ? cat->n_tensors : 1), "plan index");
    if (!s->plan_of_cat) return MOEQ_ERR_NOMEM;
    for (int i = 0; i < cat->n_tensors; i++) s->plan_of_cat[i] = -1;
    for (int i = 0; i < plan->n_tensors; i++) s->plan_of_cat[plan->t[i].cat] = i;
    return MOEQ_OK;
}

void moeq_artifact_source_free(moeq_artifact_source *s) {
    if (s) moeq_free(&s->plan_of_cat);
}

moeq_status moeq_artifact_tensor_fn(void *ctx, const char *name, float *dst, int64_t numel) {
    const moeq_artifact_source *s = ctx;
    const int c = moeq_catalog_find(s->cat, name);
    const int i = c >= 0 ? s->plan_of_cat[c] : -1;
    if (i < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: tensor '%s' is not in the artifact", s->path, name);
    const moeq_plan_tensor *pt = &s->plan->t[i];
    if (pt->R * pt->C != numel)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has %lld elements, the model needs %lld", s->path,
                         name, (long long)(pt->R * pt->C), (long long)numel);
    void *bufs[MOEQ_DS_COUNT] = {0};
    moeq_status st = read_all(s->fd, s->path, &s->entries[i], bufs);
    if (st == MOEQ_OK) st = moeq_eval_decode(&s->entries[i], pt, bufs, dst);
    free_bufs(bufs);
    return st;
}

moeq_status moeq_artifact_tensor_block_mins(void *ctx, const char *name, float *dst, int64_t n) {
    const moeq_artifact_source *s = ctx;
    const int c = moeq_catalog_find(s->cat, name);
    const int i = c >= 0 ? s->plan_of_cat[c] : -1;
    if (i < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: tensor '%s' is not in the artifact", s->path, name);
    const moeq_plan_tensor *pt = &s->plan->t[i];
    const int fmt = pt->q.method != MOEQ_METHOD_NONE ? (int)pt->q.format : -1;
    const int64_t bb = fmt == MOEQ_QTYPE_Q4_1   ? (int64_t)sizeof(moeq_block_q4_1)
                       : fmt == MOEQ_QTYPE_Q5_1 ? (int64_t)sizeof(moeq_block_q5_1)
                                                : 0; // d, m (fp16) lead both blocks
    if (!bb || pt->C % 32 || pt->R * (pt->C / 32) != n)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': no q4_1/q5_1 blocks of %lld mins", s->path, name,
                         (long long)n);
    void *bufs[MOEQ_DS_COUNT] = {0};
    moeq_status st = read_all(s->fd, s->path, &s->entries[i], bufs);
    if (st == MOEQ_OK && !bufs[MOEQ_DS_CODES])
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has no codes", s->path, name);
    if (st == MOEQ_OK) {
        const unsigned char *codes = bufs[MOEQ_DS_CODES];
        for (int64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, codes + k * bb + 2, sizeof h);
            dst[k] = moeq_f16_to_f32(h);
        }
    }
    free_bufs(bufs);
    return st;
}

moeq_status moeq_artifact_tensor_factors(void *ctx, const char *name, float *w, int64_t numel, int64_t *rank,
                                         float **u, float **v, int *f16_u, int *f16_v) {
    const moeq_artifact_source *s = ctx;
    *rank = 0, *u = *v = NULL, *f16_u = *f16_v = 0;
    const int c = moeq_catalog_find(s->cat, name);
    const int i = c >= 0 ? s->plan_of_cat[c] : -1;
    if (i < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: tensor '%s' is not in the artifact", s->path, name);
    const moeq_plan_tensor *pt = &s->plan->t[i];
    const int64_t R = pt->R, C = pt->C, r = pt->q.method != MOEQ_METHOD_NONE ? pt->q.rank : 0;
    if (r <= 0) return MOEQ_OK;
    if (R * C != numel)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has %lld elements, the model needs %lld", s->path,
                         name, (long long)(R * C), (long long)numel);
    moeq_plan_tensor base = *pt;
    base.q.rank = 0; // moeq_eval_decode: deq(Q) without U·V
    void *bufs[MOEQ_DS_COUNT] = {0};
    moeq_status st = read_all(s->fd, s->path, &s->entries[i], bufs);
    if (st == MOEQ_OK) st = moeq_eval_decode(&s->entries[i], &base, bufs, w);
    float *uu = st == MOEQ_OK ? MOEQ_MALLOC((size_t)(R * r) * sizeof(float), name) : NULL;
    float *vv = st == MOEQ_OK ? MOEQ_MALLOC((size_t)(r * C) * sizeof(float), name) : NULL;
    if (st == MOEQ_OK && (!uu || !vv)) st = MOEQ_ERR_NOMEM;
    const moeq_factor_type ft = pt->q.compensator;
    if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(ft, bufs[MOEQ_DS_U], bufs[MOEQ_DS_U_SCALE], R * r, uu);
    if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(ft, bufs[MOEQ_DS_V], bufs[MOEQ_DS_V_SCALE], r * C, vv);
    free_bufs(bufs);
    if (st != MOEQ_OK) {
        moeq_free(&uu);
        moeq_free(&vv);
        return st;
    }
    *rank = r, *u = uu, *v = vv;
    // the GGUF LoRA export writes a factor F16 exactly when this holds (export_gguf_lora.c)
    *f16_u = moeq_f16_exact_cpu(uu, R * r), *f16_v = moeq_f16_exact_cpu(vv, r * C);
    return MOEQ_OK;
}
