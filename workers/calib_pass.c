// calib_pass.c: classes, rows and Hessians of the layer-streaming calibration pass (calib_pass.h).
#include "calib_pass.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"     // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "arch_desc.h" // defines: moeq_arch_desc (tensor names)
#include "method.h"    // defines: moeq_method_get (needs_calibration)
#include "plan.h"      // defines: moeq_plan, moeq_cost_model

int moeq_calib_n_classes(const moeq_model_config *cfg) {
    return MOEQ_CIN_EXPERT0 + 2 * cfg->n_experts;
}

const char *moeq_calib_class_name(int cls) {
    static const char *const names[] = {"attn_in",   "attn_out", "ffn_in",   "shared_act",
                                        "dense_act", "head_in",  "q_latent", "kv_latent"};
    if (cls < 0) return "none";
    if (cls < MOEQ_CIN_EXPERT0) return names[cls];
    return (cls - MOEQ_CIN_EXPERT0) % 2 ? "expert_act" : "expert_x";
}

int64_t moeq_calib_class_cols(const moeq_model_config *c, int cls) {
    switch (cls) {
    case MOEQ_CIN_ATTN_OUT:
        return moeq_model_attn_out_cols(c);
    case MOEQ_CIN_Q_LATENT:
        return c->q_lora_rank;
    case MOEQ_CIN_KV_LATENT:
        return c->kv_lora_rank;
    case MOEQ_CIN_SHARED_ACT:
        return c->shared_intermediate;
    case MOEQ_CIN_DENSE_ACT:
        return c->dense_intermediate;
    default:
        break;
    }
    if (MOEQ_CIN_IS_EXPERT_ACT(cls)) return c->moe_intermediate;
    return c->hidden;
}

int moeq_calib_class_round(int cls) {
    switch (cls) {
    case MOEQ_CIN_ATTN_IN:
        return 0;
    case MOEQ_CIN_Q_LATENT:
    case MOEQ_CIN_KV_LATENT:
        return 1;
    case MOEQ_CIN_ATTN_OUT:
        return 2;
    default:
        return 3;
    }
}

// Class of "<prefix>.<proj>.weight" for the three projections of an MLP: gate/up -> in, down -> act.
static int mlp_class(const char *rest, const char *prefix, const moeq_arch_proj *names, int in, int act) {
    const size_t n = strlen(prefix);
    if (strncmp(rest, prefix, n) || rest[n] != '.') return -1;
    const moeq_proj projs[3] = {MOEQ_PROJ_GATE, MOEQ_PROJ_UP, MOEQ_PROJ_DOWN};
    for (int k = 0; k < 3; k++) {
        char want[128];
        snprintf(want, sizeof want, "%s.weight", moeq_arch_proj_name(names, projs[k]));
        if (!strcmp(rest + n + 1, want)) return projs[k] == MOEQ_PROJ_DOWN ? act : in;
    }
    return -1;
}

int moeq_calib_class_of(const moeq_model_config *c, const char *name, int *layer) {
    *layer = -1;
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch);
    if (!d) return -1;
    if (!strcmp(name, "lm_head.weight")) return MOEQ_CIN_HEAD_IN;
    int l = -1, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &used) != 1 || used == 0 || l < 0 || l >= c->n_layers)
        return -1;
    *layer = l;
    const char *rest = name + used;
    static const struct {
        const char *suffix;
        int cls;
    } attn[] = {{"self_attn.q_proj.weight", MOEQ_CIN_ATTN_IN},
                {"self_attn.k_proj.weight", MOEQ_CIN_ATTN_IN},
                {"self_attn.v_proj.weight", MOEQ_CIN_ATTN_IN},
                {"self_attn.o_proj.weight", MOEQ_CIN_ATTN_OUT},
                {"self_attn.q_a_proj.weight", MOEQ_CIN_ATTN_IN}, // MLA
                {"self_attn.kv_a_proj_with_mqa.weight", MOEQ_CIN_ATTN_IN},
                {"self_attn.q_b_proj.weight", MOEQ_CIN_Q_LATENT},
                {"self_attn.kv_b_proj.weight", MOEQ_CIN_KV_LATENT}};
    for (size_t k = 0; k < sizeof attn / sizeof attn[0]; k++)
        if (!strcmp(rest, attn[k].suffix)) return attn[k].cls;
    char buf[192];
    if (moeq_config_layer_is_moe(c, l)) {
        snprintf(buf, sizeof buf, "%s.weight", d->router);
        if (!strcmp(rest, buf)) return MOEQ_CIN_FFN_IN;
        if (d->shared_gate) {
            snprintf(buf, sizeof buf, "%s.weight", d->shared_gate);
            if (!strcmp(rest, buf)) return MOEQ_CIN_FFN_IN;
        }
        if (d->shared_expert) {
            const int k =
                mlp_class(rest, d->shared_expert, d->mlp_proj, MOEQ_CIN_FFN_IN, MOEQ_CIN_SHARED_ACT);
            if (k >= 0) return k;
        }
        const size_t n = strlen(d->experts);
        int e = -1, u2 = 0;
        if (!strncmp(rest, d->experts, n) && sscanf(rest + n, ".%d%n", &e, &u2) == 1 && e >= 0 &&
            e < c->n_experts) {
            char prefix[192];
            snprintf(prefix, sizeof prefix, "%s.%d", d->experts, e);
            return mlp_class(rest, prefix, d->expert_proj, MOEQ_CIN_EXPERT_X(e), MOEQ_CIN_EXPERT_ACT(e));
        }
        return -1;
    }
    return d->dense_mlp ? mlp_class(rest, d->dense_mlp, d->mlp_proj, MOEQ_CIN_FFN_IN, MOEQ_CIN_DENSE_ACT)
                        : -1;
}

moeq_status moeq_calib_rows_append(moeq_calib_rows *r, const float *x, int64_t n, int64_t cols) {
    if (n <= 0) return MOEQ_OK;
    if (r->cols && r->cols != cols)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "calibration rows: width %lld, appending %lld", (long long)r->cols,
                         (long long)cols);
    r->cols = cols;
    if (r->n + n > r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        while (cap < r->n + n) cap *= 2;
        float *nx = realloc(r->x, (size_t)cap * (size_t)cols * sizeof(float));
        if (!nx)
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "calibration rows: out of memory for %lld x %lld",
                             (long long)cap, (long long)cols);
        r->x = nx, r->cap = cap;
    }
    memcpy(r->x + r->n * cols, x, (size_t)(n * cols) * sizeof(float));
    r->n += n;
    return MOEQ_OK;
}

void moeq_calib_rows_free(moeq_calib_rows *r) {
    free(r->x);
    memset(r, 0, sizeof *r);
}

// work (2, n, I) holds silu(gate·x)·(up·x) in its first half; without y the down projection is not run.
moeq_status moeq_calib_ffn_act(const moeq_ffn_weights *f, const float *x, int64_t n, int64_t H, float *y,
                               moeq_calib_rows *out) {
    if (n == 0) return MOEQ_OK;
    float *work = MOEQ_MALLOC((size_t)(2 * n * f->inter) * sizeof(float), "calibration ffn rows");
    if (!work) return MOEQ_ERR_NOMEM;
    moeq_status st = y ? moeq_swiglu_ffn_cpu(f, x, n, H, y, work) : moeq_swiglu_act_cpu(f, x, n, H, work);
    if (st == MOEQ_OK && out) st = moeq_calib_rows_append(out, work, n, f->inter);
    moeq_free(&work);
    return st;
}

moeq_status moeq_calib_layer_rows(const moeq_model *m, int layer, const float *x, int n_seq, int64_t T,
                                  const unsigned char *want, moeq_calib_rows *rows) {
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden, qd = moeq_model_attn_out_cols(c), K = c->top_k, E = c->n_experts;
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch);
    const int mla = d && d->attention == MOEQ_ATTN_MLA;
    const int64_t Qr = mla && c->q_lora_rank > 0 ? c->q_lora_rank : 0, Ckv = mla ? c->kv_lora_rank : 0;
    const moeq_layer_weights *L = &m->layers[layer];
    float *buf =
        MOEQ_MALLOC((size_t)(T * (3 * H + qd + Qr + Ckv) + T * H) * sizeof(float), "calibration layer taps");
    int32_t *topk = MOEQ_MALLOC((size_t)(T * K) * sizeof(int32_t), "calibration top-k");
    if (!buf || !topk) {
        moeq_free(&buf);
        moeq_free(&topk);
        return MOEQ_ERR_NOMEM;
    }
    float *xs = buf, *attn_in = xs + T * H, *attn_out = attn_in + T * H, *ffn_in = attn_out + T * qd;
    float *q_lat = ffn_in + T * H, *kv_lat = q_lat + T * Qr; // MLA (T, Qr), (T, C)
    float *sel = kv_lat + T * Ckv;                           // (T, H): one expert's rows of one sequence
    moeq_status st = MOEQ_OK;
    for (int s = 0; s < n_seq && st == MOEQ_OK; s++) {
        memcpy(xs, x + (int64_t)s * T * H, (size_t)(T * H) * sizeof(float));
        const moeq_layer_taps taps = {.attn_in = attn_in,
                                      .attn_out = attn_out,
                                      .ffn_in = ffn_in,
                                      .topk = topk,
                                      .q_latent = Qr ? q_lat : NULL,
                                      .kv_latent = Ckv ? kv_lat : NULL};
        st = moeq_model_layer_forward(m, layer, xs, T, &taps);
        if (st == MOEQ_OK && want[MOEQ_CIN_ATTN_IN])
            st = moeq_calib_rows_append(&rows[MOEQ_CIN_ATTN_IN], attn_in, T, H);
        if (st == MOEQ_OK && want[MOEQ_CIN_ATTN_OUT])
            st = moeq_calib_rows_append(&rows[MOEQ_CIN_ATTN_OUT], attn_out, T, qd);
        if (st == MOEQ_OK && want[MOEQ_CIN_FFN_IN])
            st = moeq_calib_rows_append(&rows[MOEQ_CIN_FFN_IN], ffn_in, T, H);
        if (st == MOEQ_OK && Qr && want[MOEQ_CIN_Q_LATENT])
            st = moeq_calib_rows_append(&rows[MOEQ_CIN_Q_LATENT], q_lat, T, Qr);
        if (st == MOEQ_OK && Ckv && want[MOEQ_CIN_KV_LATENT])
            st = moeq_calib_rows_append(&rows[MOEQ_CIN_KV_LATENT], kv_lat, T, Ckv);
        if (!L->is_moe) {
            if (st == MOEQ_OK && want[MOEQ_CIN_DENSE_ACT])
                st = moeq_calib_ffn_act(&L->dense, ffn_in, T, H, NULL, &rows[MOEQ_CIN_DENSE_ACT]);
            continue;
        }
        if (st == MOEQ_OK && want[MOEQ_CIN_SHARED_ACT] && L->moe.shared)
            st = moeq_calib_ffn_act(L->moe.shared, ffn_in, T, H, NULL, &rows[MOEQ_CIN_SHARED_ACT]);
        for (int64_t e = 0; e < E && st == MOEQ_OK; e++) {
            const int wx = want[MOEQ_CIN_EXPERT_X(e)], wa = want[MOEQ_CIN_EXPERT_ACT(e)];
            if (!wx && !wa) continue;
            int64_t n = 0; // rows of tokens routed to e, token order (one per slot: top-k ids are distinct)
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < K; j++)
                    if (topk[t * K + j] == e)
                        memcpy(sel + (n++) * H, ffn_in + t * H, (size_t)H * sizeof(float));
            if (wx) st = moeq_calib_rows_append(&rows[MOEQ_CIN_EXPERT_X(e)], sel, n, H);
            if (st == MOEQ_OK && wa)
                st = moeq_calib_ffn_act(&L->moe.experts[e], sel, n, H, NULL, &rows[MOEQ_CIN_EXPERT_ACT(e)]);
        }
    }
    moeq_free(&buf);
    moeq_free(&topk);
    return st;
}

#define CALIB_CHUNK 512

void moeq_hessian_acc_free(moeq_hessian_acc *a) {
    moeq_free(&a->acc), moeq_free(&a->buf), moeq_free(&a->part);
}

moeq_status moeq_hessian_acc_init(moeq_hessian_acc *a, int64_t C) {
    memset(a, 0, sizeof *a);
    a->C = C;
    a->acc = MOEQ_CALLOC((size_t)(C * C), sizeof(double), "Hessian accumulator");
    a->buf = MOEQ_MALLOC((size_t)(CALIB_CHUNK * C) * sizeof(float), "Hessian chunk rows");
    a->part = MOEQ_MALLOC((size_t)(C * C) * sizeof(float), "Hessian chunk");
    if (a->acc && a->buf && a->part) return MOEQ_OK;
    moeq_hessian_acc_free(a);
    return MOEQ_ERR_NOMEM;
}

// part = Xcᵀ Xc of m rows, added to the double accumulator: the inner dimension (rows) is never split
// across threads by OpenBLAS, so the same chunk gives the same bits.
static void chunk_add(moeq_hessian_acc *a, const float *x, int64_t m) {
    const int64_t C = a->C;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)C, (int)m, 1.0f, x, (int)C, x, (int)C,
                0.0f, a->part, (int)C);
    for (int64_t i = 0; i < C * C; i++) a->acc[i] += a->part[i];
}

moeq_status moeq_hessian_acc_add(moeq_hessian_acc *a, const float *x, int64_t n) {
    const int64_t C = a->C;
    a->n += n;
    while (n > 0) {
        if (a->carry == 0 && n >= CALIB_CHUNK) { // whole chunks straight from x
            chunk_add(a, x, CALIB_CHUNK);
            x += CALIB_CHUNK * C, n -= CALIB_CHUNK;
            continue;
        }
        const int64_t take = n < CALIB_CHUNK - a->carry ? n : CALIB_CHUNK - a->carry;
        memcpy(a->buf + a->carry * C, x, (size_t)(take * C) * sizeof(float));
        a->carry += take, x += take * C, n -= take;
        if (a->carry == CALIB_CHUNK) chunk_add(a, a->buf, CALIB_CHUNK), a->carry = 0;
    }
    return MOEQ_OK;
}

moeq_status moeq_hessian_acc_finish(moeq_hessian_acc *a, float *H) {
    if (a->carry) chunk_add(a, a->buf, a->carry), a->carry = 0;
    for (int64_t i = 0; i < a->C * a->C; i++) H[i] = (float)a->acc[i];
    moeq_hessian_acc_free(a);
    return MOEQ_OK;
}

moeq_status moeq_calib_hessian(const float *x, int64_t n, int64_t C, float *H) {
    moeq_hessian_acc a;
    MOEQ_TRY(moeq_hessian_acc_init(&a, C));
    moeq_hessian_acc_add(&a, x, n);
    return moeq_hessian_acc_finish(&a, H);
}

// ---- the pass's cost ----

int moeq_plan_needs_calib(const moeq_plan *p) {
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_method_traits *mt = moeq_method_get(p->t[i].q.method);
        if (mt && mt->needs_calibration) return 1;
    }
    return 0;
}

moeq_status moeq_calib_estimate_make(const moeq_catalog *c, const moeq_plan *p, const moeq_cost_model *cm,
                                     int n_ranks, int n_seqs, int64_t T, moeq_calib_estimate *o) {
    memset(o, 0, sizeof *o);
    const moeq_model_config *cfg = &c->cfg;
    const int L = cfg->n_layers, R = n_ranks > 0 ? n_ranks : 1;
    const int64_t H = cfg->hidden, E = cfg->n_experts > 0 ? cfg->n_experts : 1, K = cfg->top_k;
    const double N = (double)n_seqs * (double)T, n_loc = ceil((double)n_seqs / R);
    const int64_t own = (E + R - 1) / R; // experts per rank
    o->tokens = (int64_t)N;
    double *dense = calloc((size_t)L + 1, sizeof(double)), *expert = calloc((size_t)L + 1, sizeof(double));
    double *round_sum = calloc((size_t)(3 * L + 3), sizeof(double)),
           *round_max = calloc((size_t)(3 * L + 3), sizeof(double));
    if (!dense || !expert || !round_sum || !round_max) {
        free(dense), free(expert), free(round_sum), free(round_max);
        return MOEQ_ERR_NOMEM;
    }
    double hess_flops_total = 0, hess_flops_max = 0, attn_params = 0, ffn_params = 0, seq_rows = 0;
    int64_t widest_token_cols = 0;
    for (int i = 0; i < p->n_tensors; i++) { // parameters per layer: routed experts apart
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_unit *u = &p->u[pt->unit];
        const double n = (double)c->t[pt->cat].numel;
        if (u->layer < 0) continue;
        if (u->kind == MOEQ_UNIT_EXPERT)
            expert[u->layer] += n;
        else
            dense[u->layer] += n;
        if (u->kind == MOEQ_UNIT_ATTENTION)
            attn_params += n / L;
        else if (u->kind == MOEQ_UNIT_EXPERT)
            ffn_params += n * (double)K / (double)E / L;
        else
            ffn_params += n / L;
        const moeq_method_traits *mt = moeq_method_get(pt->q.method);
        if (!mt || !mt->needs_calibration) continue;
        const double rows = u->kind == MOEQ_UNIT_EXPERT ? N * (double)K / (double)E : N;
        const double hf = 2.0 * rows * (double)pt->C * (double)pt->C;
        int layer = -1, cls = moeq_calib_class_of(cfg, c->t[pt->cat].name, &layer);
        const int first = !(i > 0 && p->t[i - 1].unit == pt->unit && cls >= 0 &&
                            cls == moeq_calib_class_of(cfg, c->t[p->t[i - 1].cat].name, &layer));
        if (first) hess_flops_total += hf, hess_flops_max = hf > hess_flops_max ? hf : hess_flops_max;
        if (pt->q.gptq_sequential && MOEQ_CIN_IS_EXPERT_ACT(cls)) {
            // a routed expert's down rebuilt after its gate and up (quantize_calib.c): their forward over
            // its rows again, and the Hessian once more
            hess_flops_total += hf + 4.0 * rows * (double)pt->C * (double)H;
            seq_rows = rows;
        }
        if (pt->C > o->max_cols) o->max_cols = pt->C;
        if (u->kind != MOEQ_UNIT_EXPERT && pt->C > widest_token_cols) widest_token_cols = pt->C;
        const int rnd = u->kind == MOEQ_UNIT_ATTENTION ? (cls == MOEQ_CIN_ATTN_OUT ? 1 : 0) : 2;
        const int slot = (u->layer >= 0 ? u->layer : L) * 3 + rnd;
        const double tc = moeq_cost_tensor(cm, pt, 0); // GPTQ runs on the CPU (no GPU port yet)
        round_sum[slot] += tc, round_max[slot] = fmax(round_max[slot], tc);
    }
    double wmax = 0, emax = 0;
    for (int l = 0; l < L; l++) {
        const double per_expert = expert[l] / (double)E;
        wmax = fmax(wmax, 4.0 * (dense[l] + (double)own * per_expert));
        emax = fmax(emax, per_expert);
    }
    const double inter = emax / (3.0 * (double)H); // a routed expert's width, from its parameters
    o->weights_bytes = wmax;
    o->states_bytes =
        4.0 * n_loc * (double)T * (double)H * 4.0; // x, its copy, post-attention state, FFN input
    o->rows_bytes = 4.0 * ((double)own * N * (double)K / (double)E * ((double)H + inter) +
                           n_loc * (double)T * (double)(widest_token_cols > H ? widest_token_cols : H) * 2.0 +
                           2.0 * seq_rows * inter); // gptq.sequential: one expert's activations, twice
    o->hessian_bytes = (double)o->max_cols * (double)o->max_cols * (8.0 + 4.0 + 4.0 + 2.0 * 8.0 + 4.0);
    o->mem_per_rank = o->weights_bytes + o->states_bytes + o->rows_bytes + o->hessian_bytes;
    const double flops = cm->gemm_flops > 0 ? cm->gemm_flops : 1e11;
    const double scores =
        2.0 * (double)T * (double)cfg->n_heads * (double)cfg->head_dim; // q·k and p·v, causal half
    o->forward_s =
        (double)L * N * (4.0 * (2.0 * attn_params + scores) + 2.0 * 2.0 * ffn_params) / (double)R / flops;
    o->hessian_s = fmax(hess_flops_total / (double)R, hess_flops_max) / flops;
    for (int k = 0; k < 3 * L + 3; k++) o->units_s += fmax(round_max[k], round_sum[k] / (double)R);
    o->total_s = o->forward_s + o->hessian_s + o->units_s;
    o->exchange_bytes = 2.0 * 2.0 * (double)L * N * (double)K * (double)H * 4.0;
    free(dense), free(expert), free(round_sum), free(round_max);
    return MOEQ_OK;
}
