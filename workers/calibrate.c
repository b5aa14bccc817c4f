// calibrate.c: importance statistics from the CPU forward pass (calibrate.h). The forward pass taps each
// layer's attention inputs, the residual stream entering the FFN sub-block and the routing; the FFN inputs
// are rebuilt here from those (post_attention_layernorm, then per expert the tokens routed to it through
// gate/up and SwiGLU for down_proj's input), with the same kernels (kernels/forward.h). What llama.cpp's
// tools/imatrix collects (its collect_imatrix callback), computed from moeq's fp32 forward; no code from it.
#include "calibrate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch_desc.h"  // defines: moeq_arch_desc_get, moeq_arch_proj_name
#include "gguf_names.h" // defines: moeq_gguf_tensor_name
#include "moeq_io.h"

// Indices into c->s of one layer's weights (-1: none).
typedef struct layer_idx {
    int q, k, v, o;
    int router;
    int experts; // expert e's gate, up, down: experts + 3e + {0, 1, 2}
    int shared;  // gate, up, down: shared + {0, 1, 2}
    int shared_gate;
    int dense; // gate, up, down: dense + {0, 1, 2}
} layer_idx;

typedef struct calib_impl {
    layer_idx *li; // [L]
} calib_impl;

static moeq_status add_stat(moeq_calib *c, int *cap, int64_t n_cols, int *idx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static moeq_status add_stat(moeq_calib *c, int *cap, int64_t n_cols, int *idx, const char *fmt, ...) {
    if (c->n == *cap) {
        const int nc = *cap ? 2 * *cap : 64;
        moeq_calib_stat *s = realloc(c->s, sizeof *s * (size_t)nc);
        if (!s) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "calibrate: out of memory for %d statistics", nc);
        c->s = s, *cap = nc;
    }
    moeq_calib_stat *s = &c->s[c->n];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->n_cols = n_cols;
    if (!(s->sums = MOEQ_CALLOC((size_t)n_cols, sizeof *s->sums, s->name))) return MOEQ_ERR_NOMEM;
    if (idx) *idx = c->n;
    c->n++;
    return MOEQ_OK;
}

static moeq_status add_ffn(moeq_calib *c, int *cap, int64_t H, int64_t I, const char *prefix,
                           const moeq_arch_proj *names, int *first) {
    MOEQ_TRY(add_stat(c, cap, H, first, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_GATE)));
    MOEQ_TRY(add_stat(c, cap, H, NULL, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_UP)));
    return add_stat(c, cap, I, NULL, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_DOWN));
}

void moeq_calib_free(moeq_calib **pc) {
    moeq_calib *c = pc ? *pc : NULL;
    if (!c) return;
    for (int i = 0; i < c->n; i++) moeq_free(&c->s[i].sums);
    free(c->s);
    c->s = NULL;
    calib_impl *x = (calib_impl *)(c + 1);
    moeq_free(&x->li);
    moeq_free(pc);
}

moeq_status moeq_calib_new(const moeq_model *m, moeq_calib **out) {
    *out = NULL;
    const moeq_model_config *cfg = &m->cfg;
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch); // the model loaded: a family with a forward
    if (d && d->attention != MOEQ_ATTN_GQA)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "moeq calibrate: %s has multi-head latent attention, and the importance matrix is "
                         "collected for q/k/v/o_proj attention only (Mixtral, Qwen2-MoE)\n---> HINT: its "
                         "forward pass runs in `moeq eval` and `moeq quantize --calib`",
                         cfg->model_type);
    moeq_calib *c = MOEQ_CALLOC(1, sizeof *c + sizeof(calib_impl), "calibration statistics");
    if (!c) return MOEQ_ERR_NOMEM;
    c->m = m;
    calib_impl *x = (calib_impl *)(c + 1);
    moeq_status st = (x->li = MOEQ_CALLOC((size_t)cfg->n_layers, sizeof *x->li, "calibration layers"))
                         ? MOEQ_OK
                         : MOEQ_ERR_NOMEM;
    int cap = 0;
    const int64_t H = cfg->hidden, qd = (int64_t)cfg->n_heads * cfg->head_dim;
    for (int l = 0; l < cfg->n_layers && st == MOEQ_OK; l++) {
        layer_idx *li = &x->li[l];
        const moeq_layer_weights *L = &m->layers[l];
        *li = (layer_idx){-1, -1, -1, -1, -1, -1, -1, -1, -1};
        char p[96], q[192];
        snprintf(p, sizeof p, "model.layers.%d", l);
        if (st == MOEQ_OK) st = add_stat(c, &cap, H, &li->q, "%s.self_attn.q_proj.weight", p);
        if (st == MOEQ_OK) st = add_stat(c, &cap, H, &li->k, "%s.self_attn.k_proj.weight", p);
        if (st == MOEQ_OK) st = add_stat(c, &cap, H, &li->v, "%s.self_attn.v_proj.weight", p);
        if (st == MOEQ_OK) st = add_stat(c, &cap, qd, &li->o, "%s.self_attn.o_proj.weight", p);
        if (st != MOEQ_OK) break;
        if (!L->is_moe) {
            snprintf(q, sizeof q, "%s.%s", p, d->dense_mlp);
            st = add_ffn(c, &cap, H, L->dense.inter, q, d->mlp_proj, &li->dense);
            continue;
        }
        st = add_stat(c, &cap, H, &li->router, "%s.%s.weight", p, d->router);
        for (int e = 0; e < cfg->n_experts && st == MOEQ_OK; e++) {
            snprintf(q, sizeof q, "%s.%s.%d", p, d->experts, e);
            st = add_ffn(c, &cap, H, L->moe.experts[e].inter, q, d->expert_proj, e ? NULL : &li->experts);
        }
        if (st == MOEQ_OK && L->moe.shared) {
            snprintf(q, sizeof q, "%s.%s", p, d->shared_expert);
            st = add_ffn(c, &cap, H, L->moe.shared->inter, q, d->mlp_proj, &li->shared);
            if (st == MOEQ_OK && L->moe.shared_gate)
                st = add_stat(c, &cap, H, &li->shared_gate, "%s.%s.weight", p, d->shared_gate);
        }
    }
    if (st != MOEQ_OK) {
        moeq_calib_free(&c);
        return st;
    }
    *out = c;
    return MOEQ_OK;
}

const moeq_calib_stat *moeq_calib_find(const moeq_calib *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->s[i].name, name)) return &c->s[i];
    return NULL;
}

// s->sums[j] += sum over the n rows of x[r, j]^2; s->count += n.
static void accumulate(moeq_calib_stat *s, const float *x, int64_t n) {
    for (int64_t r = 0; r < n; r++) {
        const float *row = x + r * s->n_cols;
        for (int64_t j = 0; j < s->n_cols; j++) s->sums[j] += (double)row[j] * row[j];
    }
    s->count += (double)n;
}

// One SwiGLU FFN's three statistics on inputs xs (n, H): gate and up see xs, down the activation
// silu(xs·gateᵀ) * (xs·upᵀ). g, u: (n, I) work.
static moeq_status ffn_stats(moeq_calib_stat *s3, const moeq_ffn_weights *w, const float *xs, int64_t n,
                             int64_t H, float *g, float *u) {
    if (n == 0) return MOEQ_OK;
    const int64_t I = w->inter;
    accumulate(&s3[0], xs, n);
    accumulate(&s3[1], xs, n);
    MOEQ_TRY(moeq_linear_cpu(xs, H, w->gate, NULL, n, H, I, 0, g, I));
    MOEQ_TRY(moeq_linear_cpu(xs, H, w->up, NULL, n, H, I, 0, u, I));
    for (int64_t i = 0; i < n * I; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    accumulate(&s3[2], g, n);
    return MOEQ_OK;
}

moeq_status moeq_calib_add(moeq_calib *c, const int32_t *tokens, int64_t T) {
    const moeq_model *m = c->m;
    const moeq_model_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layers, H = cfg->hidden, K = cfg->top_k, E = cfg->n_experts;
    const int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t imax =
        cfg->dense_intermediate > cfg->moe_intermediate ? cfg->dense_intermediate : cfg->moe_intermediate;
    if (cfg->shared_intermediate > imax) imax = cfg->shared_intermediate;
    const calib_impl *x = (const calib_impl *)(c + 1);
    const size_t n_floats = (size_t)(L * T * (3 * H + qd) + T * H * 2 + 2 * T * imax);
    float *buf = MOEQ_MALLOC(n_floats * sizeof(float), "calibration activations");
    int32_t *topk = MOEQ_MALLOC((size_t)(L * T * K) * sizeof(int32_t), "calibration routing");
    if (!buf || !topk) {
        moeq_free(&buf), moeq_free(&topk);
        return MOEQ_ERR_NOMEM;
    }
    float *attn_in = buf, *attn_out = attn_in + L * T * H, *moe_in = attn_out + L * T * qd;
    float *h = moe_in + L * T * H, *xs = h + T * H, *g = xs + T * H, *u = g + T * imax;
    const moeq_forward_taps taps = {.moe_in = moe_in, .topk = topk, .attn_in = attn_in, .attn_out = attn_out};
    moeq_status st = moeq_model_forward(m, tokens, T, NULL, &taps);
    for (int64_t l = 0; l < L && st == MOEQ_OK; l++) {
        const layer_idx *li = &x->li[l];
        const moeq_layer_weights *Lw = &m->layers[l];
        accumulate(&c->s[li->q], attn_in + l * T * H, T);
        accumulate(&c->s[li->k], attn_in + l * T * H, T);
        accumulate(&c->s[li->v], attn_in + l * T * H, T);
        accumulate(&c->s[li->o], attn_out + l * T * qd, T);
        st = moeq_rmsnorm_cpu(moe_in + l * T * H, Lw->ffn_norm, T, H, (float)cfg->rms_norm_eps, h);
        if (st != MOEQ_OK) break;
        if (!Lw->is_moe) {
            st = ffn_stats(&c->s[li->dense], &Lw->dense, h, T, H, g, u);
            continue;
        }
        accumulate(&c->s[li->router], h, T);
        const int32_t *tk = topk + l * T * K;
        for (int64_t e = 0; e < E && st == MOEQ_OK; e++) {
            int64_t n = 0; // the tokens routed to e (a token picks an expert once)
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < K; j++)
                    if (tk[t * K + j] == e) {
                        memcpy(xs + n * H, h + t * H, (size_t)H * sizeof(float));
                        n++;
                        break;
                    }
            st = ffn_stats(&c->s[li->experts + 3 * e], &Lw->moe.experts[e], xs, n, H, g, u);
        }
        if (st == MOEQ_OK && li->shared >= 0)
            st = ffn_stats(&c->s[li->shared], Lw->moe.shared, h, T, H, g, u);
        if (st == MOEQ_OK && li->shared_gate >= 0) accumulate(&c->s[li->shared_gate], h, T);
    }
    moeq_free(&buf), moeq_free(&topk);
    if (st == MOEQ_OK) {
        if (c->n_chunks == 0) c->chunk_size = T;
        c->n_chunks++;
    }
    return st;
}

moeq_status moeq_calib_to_imatrix(const moeq_calib *c, const char *dataset, moeq_imatrix **out) {
    *out = NULL;
    const moeq_model_config *cfg = &c->m->cfg;
    moeq_imatrix *im = MOEQ_CALLOC(1, sizeof *im, "imatrix");
    if (!im) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    im->chunk_count = c->n_chunks;
    im->chunk_size = (uint32_t)c->chunk_size;
    if (dataset) {
        im->datasets = MOEQ_CALLOC(1, sizeof *im->datasets, "imatrix datasets");
        if (!im->datasets || !(im->datasets[0] = MOEQ_STRDUP(dataset))) st = MOEQ_ERR_NOMEM;
        if (st == MOEQ_OK) im->n_datasets = 1;
    }
    char gname[256];
    for (int i = 0; i < c->n && st == MOEQ_OK; i++) {
        const moeq_calib_stat *s = &c->s[i];
        int slot = -1;
        moeq_status ns = moeq_gguf_tensor_name(cfg, s->name, gname, sizeof gname, &slot);
        if (ns == MOEQ_ERR_UNSUPPORTED) continue; // llama.cpp has no such tensor
        if (ns != MOEQ_OK) {
            st = ns;
            break;
        }
        const int64_t n_mat = slot >= 0 ? cfg->n_experts : 1;
        moeq_imatrix_entry *e = NULL;
        for (int k = 0; k < im->n && !e; k++)
            if (!strcmp(im->e[k].name, gname)) e = &im->e[k];
        if (!e && !(e = moeq_imatrix_add(im, gname, s->n_cols, n_mat))) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        if (e->n_cols != s->n_cols || e->n_mat != n_mat || slot >= n_mat) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "calibrate: '%s' (%s, slot %d) does not fit the entry's %lld x %lld",
                           s->name, gname, slot, (long long)e->n_mat, (long long)e->n_cols);
            break;
        }
        const int64_t r = slot >= 0 ? slot : 0;
        memcpy(e->sums + r * s->n_cols, s->sums, (size_t)s->n_cols * sizeof(double));
        e->counts[r] = s->count;
    }
    if (st == MOEQ_OK) { // name order (find's bsearch), as the file is written
        for (int i = 1; i < im->n; i++)
            for (int j = i; j > 0 && strcmp(im->e[j - 1].name, im->e[j].name) > 0; j--) {
                moeq_imatrix_entry t = im->e[j];
                im->e[j] = im->e[j - 1], im->e[j - 1] = t;
            }
        st = moeq_imatrix_normalize(im);
    }
    if (st != MOEQ_OK) {
        moeq_imatrix_free(&im);
        return st;
    }
    *out = im;
    return MOEQ_OK;
}
