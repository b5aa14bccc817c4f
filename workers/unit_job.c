// unit_job.c: one work unit on one rank (see unit_job.h): read -> decode -> quantize -> measure -> pwrite
// at the planned offsets -> fdatasync. Pass-through tensors are copied in bounded chunks; quantized
// ones are processed one tensor at a time. Every byte written is also hashed (xxh3) on the way out, so
// the checksums in the result are those of the bytes on disk.
#include "unit_job.h"
#include "clock.h" // defines: moeq_now_s
#include "stage.h" // defines: moeq_stage_take, moeq_stage_release, moeq_stage_push_unit

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

// Writes one dataset's bytes and folds them into the tensor's running checksum and the dataset's own.
static moeq_status put(moeq_unit_ctx *x, const moeq_artifact_entry *e, moeq_ds d, const void *buf, uint64_t n,
                       XXH3_state_t *all, moeq_tensor_result *r) {
    if (n != e->ds[d].bytes)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s' dataset %s: %llu bytes produced, %llu planned", e->name,
                         moeq_ds_name(d), (unsigned long long)n, (unsigned long long)e->ds[d].bytes);
    double t0 = moeq_now_s();
    MOEQ_TRY(moeq_pwrite_full(x->out_fd, buf, (size_t)n, e->offset[d], x->out_path));
    x->seconds_write += moeq_now_s() - t0;
    x->bytes_written += n;
    XXH3_64bits_update(all, buf, (size_t)n);
    r->ds_checksum[d] = XXH3_64bits(buf, (size_t)n);
    return MOEQ_OK;
}

static moeq_status copy_through(moeq_unit_ctx *x, const moeq_tensor_info *t, const moeq_artifact_entry *e,
                                XXH3_state_t *all, moeq_tensor_result *r) {
    const moeq_st_file *f = x->cat->shards[t->shard];
    const uint64_t total = e->ds[MOEQ_DS_DATA].bytes, chunk = MOEQ_PLAN_STREAM_CHUNK;
    if (total != t->nbytes)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': %llu source bytes, %llu planned", t->name,
                         (unsigned long long)t->nbytes, (unsigned long long)total);
    unsigned char *buf = MOEQ_MALLOC((size_t)(total < chunk ? (total ? total : 1) : chunk), t->name);
    XXH3_state_t *one = XXH3_createState();
    moeq_status st = (buf && one) ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "copy of '%s'", t->name);
    if (st == MOEQ_OK) XXH3_64bits_reset(one);
    for (uint64_t done = 0; done < total && st == MOEQ_OK;) {
        uint64_t n = total - done < chunk ? total - done : chunk;
        double t0 = moeq_now_s();
        st = moeq_st_read_raw(f, t->st, done, n, buf);
        x->seconds_read += moeq_now_s() - t0;
        x->bytes_read += n;
        if (st != MOEQ_OK) break;
        t0 = moeq_now_s();
        st = moeq_pwrite_full(x->out_fd, buf, (size_t)n, e->offset[MOEQ_DS_DATA] + done, x->out_path);
        x->seconds_write += moeq_now_s() - t0;
        x->bytes_written += n;
        XXH3_64bits_update(all, buf, (size_t)n);
        XXH3_64bits_update(one, buf, (size_t)n);
        done += n;
    }
    if (st == MOEQ_OK) r->ds_checksum[MOEQ_DS_DATA] = r->source_xxh3 = XXH3_64bits_digest(one);
    if (st == MOEQ_OK) st = moeq_catalog_source_stamp(x->cat, x->plan->t[r->tensor].cat, &r->source_stamp);
    if (one) XXH3_freeState(one);
    moeq_free(&buf);
    return st;
}

static const moeq_kernel_ops *ops_of(const moeq_unit_ctx *x) {
    return x->ops ? x->ops : &moeq_kernel_ops_cpu;
}

static void host_buffers_free(moeq_unit_ctx *x) {
    const moeq_kernel_ops *ops = ops_of(x);
    ops->host_free(x->w), ops->host_free(x->recon), ops->host_free(x->raw);
    x->w = x->recon = NULL;
    x->raw = NULL;
    x->host_floats = x->raw_cap = 0;
}

// The CPU backend's work arrays: fp32 weights and reconstruction, (n) floats each at least.
static moeq_status host_work(moeq_unit_ctx *x, size_t n, const char *name) {
    if (n <= x->host_floats) return MOEQ_OK;
    const moeq_kernel_ops *ops = ops_of(x);
    ops->host_free(x->w), ops->host_free(x->recon);
    x->w = ops->host_alloc(n * sizeof(float), name);
    x->recon = x->w ? ops->host_alloc(n * sizeof(float), name) : NULL;
    x->host_floats = x->w && x->recon ? n : 0;
    return x->host_floats ? MOEQ_OK : MOEQ_ERR_NOMEM; // the detail names the tensor and the size
}

void moeq_unit_ctx_finish(moeq_unit_ctx *x) {
    if (x->stage) {
        moeq_stage_stats st;
        moeq_stage_stats_get(x->stage, &st);
        x->seconds_read += st.seconds_read;
        x->bytes_read += st.bytes_read;
    }
    host_buffers_free(x);
}

// Tensor i's stored bytes (and its block scale's) as the kernels see them (*src): taken from the read-ahead
// stage (*it, to release once src is no longer used), or read now into the context's raw buffer.
static moeq_status read_raw(moeq_unit_ctx *x, int i, const moeq_tensor_info *t, moeq_raw_tensor *src,
                            moeq_staged *it) {
    const int c = x->plan->t[i].cat;
    const double t0 = moeq_now_s();
    moeq_status st;
    if (x->stage) {
        st = moeq_stage_take(x->stage, i, it);
        if (st == MOEQ_OK) st = moeq_catalog_raw_view(x->cat, c, it->raw, it->scale_raw, src);
    } else {
        const uint64_t rb = moeq_catalog_raw_bytes(x->cat, c);
        const uint64_t sb = t->scale >= 0 ? moeq_catalog_raw_bytes(x->cat, t->scale) : 0;
        const size_t off = ((size_t)rb + 63) & ~(size_t)63, need = off + (size_t)sb;
        st = MOEQ_OK;
        if (need > x->raw_cap) {
            const moeq_kernel_ops *ops = ops_of(x);
            ops->host_free(x->raw);
            x->raw = ops->host_alloc(need, t->name);
            x->raw_cap = x->raw ? need : 0;
            if (!x->raw) st = MOEQ_ERR_NOMEM;
        }
        unsigned char *buf = x->raw;
        if (st == MOEQ_OK) st = moeq_catalog_read_raw(x->cat, c, buf);
        if (st == MOEQ_OK && sb) st = moeq_catalog_read_raw(x->cat, t->scale, buf + off);
        if (st == MOEQ_OK) st = moeq_catalog_raw_view(x->cat, c, buf, sb ? buf + off : NULL, src);
        x->seconds_read += moeq_now_s() - t0;
        x->bytes_read += rb + sb;
    }
    x->seconds_read_wait += moeq_now_s() - t0;
    return st;
}

// After a numeric failure: are the stored weights themselves non-finite (NaN or Inf in the checkpoint, or in
// an FP8 block scale)? Then the failure is the input's, not the method's: r says so (MOEQ_ERR_FORMAT, the
// first bad element; the coordinator adds shard and tensor, which do not fit the result's message) and the
// run refuses to seal (pipeline/quantize_run.c). Decodes once more, on the host, only on this failure path.
static void source_nonfinite(const moeq_tensor_info *t, const moeq_raw_tensor *src, moeq_tensor_result *r) {
    float *w = MOEQ_MALLOC(sizeof(float) * (size_t)src->R * (size_t)src->C, t->name); // (R, C)
    int64_t row = -1, col = -1;
    if (w && moeq_raw_decode_cpu(src, w) == MOEQ_OK &&
        moeq_check_finite_cpu(w, src->R, src->C, t->name, &row, &col) == MOEQ_ERR_NUMERIC) {
        snprintf(r->message, sizeof r->message,
                 MOEQ_RESULT_NONFINITE_SOURCE "%g at row %lld, col %lld (%s%s)",
                 (double)w[row * src->C + col], (long long)row, (long long)col, moeq_dtype_name(t->dtype),
                 src->block_scale ? " with block scales" : "");
        r->status = MOEQ_ERR_FORMAT;
    }
    moeq_free(&w);
}

int moeq_result_nonfinite_source(const moeq_tensor_result *r) {
    return r->status == MOEQ_ERR_FORMAT &&
           strncmp(r->message, MOEQ_RESULT_NONFINITE_SOURCE, strlen(MOEQ_RESULT_NONFINITE_SOURCE)) == 0;
}

static moeq_status quantize_one(moeq_unit_ctx *x, int i, const moeq_tensor_info *t,
                                const moeq_plan_tensor *pt, const moeq_artifact_entry *e, XXH3_state_t *all,
                                moeq_tensor_result *r) {
    const int64_t R = pt->R, C = pt->C;
    const moeq_kernel_ops *ops = ops_of(x);
    moeq_status st = ops->tensor_needs_work ? host_work(x, (size_t)R * (size_t)C, t->name) : MOEQ_OK;
    const moeq_tq_work work = {.w = x->w, .recon = x->recon};
    moeq_qtensor q = {0};
    moeq_staged it = {0};
    moeq_raw_tensor src;
    void *bufs[MOEQ_DS_COUNT] = {0};
    for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++)
        if (e->ds[d].present && !(bufs[d] = MOEQ_MALLOC((size_t)e->ds[d].bytes, t->name)))
            st = MOEQ_ERR_NOMEM;
    if (st != MOEQ_OK) goto done;
    for (int d = 0; d < MOEQ_PLANE_COUNT; d++) q.plane[d] = bufs[d]; // datasets = planes (io/artifact.c)
    q.best_round = -1;
    st = read_raw(x, i, t, &src, &it);
    if (st == MOEQ_OK) st = moeq_catalog_source_stamp(x->cat, pt->cat, &r->source_stamp);
    if (st != MOEQ_OK) goto done;
    // the source's identity, from the bytes just read (journaled: --resume rechecks it)
    r->source_xxh3 = moeq_catalog_source_hash(src.data, moeq_raw_tensor_bytes(&src), src.block_scale,
                                              moeq_raw_tensor_scale_bytes(&src));
    const double t0 = moeq_now_s();
    // calibration inputs: --imatrix's vector; --calib's Hessian, or, for a calibrated method whose Hessian
    // summed fewer than gptq.min_inputs inputs (a routed expert few tokens reached), its weight-space
    // fallback
    moeq_qsettings qset = pt->q;
    moeq_calib_in calib = {.importance = x->importance ? x->importance[i] : NULL,
                           .hessian = x->hessian ? x->hessian[i] : NULL};
    const int64_t n_in = x->calib_rows ? x->calib_rows[i] : -1;
    const moeq_method_traits *mt = moeq_method_get(pt->q.method);
    if (mt && mt->needs_calibration) {
        r->calib_inputs = n_in < 0 ? 0 : n_in > INT32_MAX ? INT32_MAX : (int32_t)n_in;
        if (!calib.hessian || n_in < pt->q.gptq_min_inputs) {
            qset.method = moeq_method_fallback(&pt->q);
            calib.hessian = NULL;
        }
    }
    moeq_status qs = moeq_quantize_tensor(ops, &qset, t->name, &src, &calib, &work, &q, r);
    x->seconds_compute += moeq_now_s() - t0;
    if (qs != MOEQ_OK) {
        // A numeric failure belongs to this tensor: recorded, not fatal. The datasets get zeros so that
        // their bytes (and checksums) are defined. Non-finite source weights are told apart (bad input).
        if (qs != MOEQ_ERR_NUMERIC) {
            st = qs;
            goto done;
        }
        r->status = MOEQ_ERR_NUMERIC;
        snprintf(r->message, sizeof r->message, "%s", moeq_error_detail());
        source_nonfinite(t, &src, r); // or bad input: MOEQ_ERR_FORMAT
        for (int d = 0; d < MOEQ_DS_COUNT; d++)
            if (bufs[d]) memset(bufs[d], 0, (size_t)e->ds[d].bytes);
        r->rel_fro_error = r->sqnr_db = r->max_abs_error = r->nmse = NAN;
    }
    r->best_round = q.best_round;
    for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++)
        if (e->ds[d].present) st = put(x, e, (moeq_ds)d, bufs[d], e->ds[d].bytes, all, r);
done:
    if (x->stage && it.item_) moeq_stage_release(x->stage, &it);
    for (int d = 0; d < MOEQ_DS_COUNT; d++) moeq_free(&bufs[d]);
    return st;
}

moeq_status moeq_unit_job_run(moeq_unit_ctx *x, int u, moeq_tensor_result *res) {
    const moeq_unit *un = &x->plan->u[u];
    XXH3_state_t *all = XXH3_createState();
    if (!all) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
    moeq_status st = MOEQ_OK;
    // The stage reads the quantized tensors (a no-op when the unit was pushed ahead, queue.h's prefetch).
    if (x->stage) (void)moeq_stage_push_unit(x->stage, u); // on failure, take pushes it again and says why
    // Kernel readahead of every tensor of the unit (and its FP8 scales) now: the kernel reads tensor k+1
    // while we compute on tensor k (measured: 0.5 -> 2+ GB/s of cold reads of ~10 MB tensors,
    // bench/README.md); pass-through tensors are read by this thread, in chunks. With a stage, its reader
    // announces the quantized tensors itself, within its budget: only the pass-through ones are left here.
    for (int k = 0; k < un->count; k++) {
        if (x->stage && x->plan->t[un->first + k].q.method != MOEQ_METHOD_NONE) continue;
        const moeq_tensor_info *t = &x->cat->t[x->plan->t[un->first + k].cat];
        if (t->st) moeq_st_prefetch(x->cat->shards[t->shard], t->st);
        if (t->scale >= 0 && x->cat->t[t->scale].st)
            moeq_st_prefetch(x->cat->shards[x->cat->t[t->scale].shard], x->cat->t[t->scale].st);
    }
    // the unit's tensors in plan order; with x->defer, the deferred ones after the others
    for (int kk = 0; kk < (x->defer ? 2 : 1) * un->count && st == MOEQ_OK; kk++) {
        const int k = kk % un->count, i = un->first + k;
        if (x->defer && (kk < un->count) == (x->defer[i] != 0)) continue;
        const moeq_plan_tensor *pt = &x->plan->t[i];
        const moeq_tensor_info *t = &x->cat->t[pt->cat];
        const moeq_artifact_entry *e = &x->entries[i];
        moeq_tensor_result *r = &res[k];
        memset(r, 0, sizeof *r);
        r->tensor = (uint32_t)i;
        r->status = MOEQ_OK;
        r->best_round = -1;
        r->kurtosis = r->outlier_score = NAN;
        XXH3_64bits_reset(all);
        if (pt->q.method == MOEQ_METHOD_NONE)
            st = copy_through(x, t, e, all, r);
        else
            st = quantize_one(x, i, t, pt, e, all, r);
        r->checksum = XXH3_64bits_digest(all);
        if (st == MOEQ_OK && x->tensor_done && !(x->defer && x->defer[i])) {
            const int have = pt->q.method != MOEQ_METHOD_NONE && r->status == MOEQ_OK &&
                             ops_of(x)->tensor_needs_work; // recon is in host memory
            st = x->tensor_done(x->tensor_done_arg, i, have ? x->recon : NULL);
        }
    }
    XXH3_freeState(all);
    if (st == MOEQ_OK) {
        double t0 = moeq_now_s();
        char what[48];
        snprintf(what, sizeof what, "after unit %d", u);
        st = moeq_fsync(x->out_fd, x->out_path, what);
        x->seconds_write += moeq_now_s() - t0;
        if (st == MOEQ_OK) moeq_crashpoint("unit-durable");
    }
    return st;
}
