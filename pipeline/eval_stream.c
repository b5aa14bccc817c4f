// eval_stream.c: `moeq eval --stream`: the perplexity of the original and the quantized model layer by layer
// over the ranks, for models that fit no rank (eval_stream.h). The windows of the perplexity protocol are
// the sequences, sharded over the ranks as the calibration pass shards its own (the full windows, then the
// shorter last one as a group of its own); for each layer every rank loads it without the routed experts it
// does not own, first from the checkpoint then from the artifact, and runs both models' hidden states through
// it (pipeline/calib_layer.h: experts on their owners, the one-process forward's bits); at the end the final
// norm, lm_head and cross-entropy of each window, summed in window order as moeq_eval_perplexity_windows
// does. The perplexities are those of the in-memory pass bit for bit (tests/pipeline/test_eval_stream.sh).
// Memory per rank: one layer of each model at a time (without the experts it does not own) and the hidden
// states of its windows.
#include "eval_stream.h"

#include <stdlib.h>
#include <string.h>

#include "calib_layer.h" // defines: moeq_dist_layer_forward
#include "run_common.h"

#define WINDOW 256 // the protocol's window (eval_run.c's PPL_WINDOW)

// One group of windows of equal length: [g0, g0 + n) globally, this rank's [seq0, seq0 + n_loc).
typedef struct win_group {
    int64_t first_window, n_seqs, T;
    int seq0, n_loc;
    float *xo, *xq; // (n_loc, T, H) the original and the quantized model's hidden states
} win_group;

typedef struct tensor_src {
    const moeq_catalog *cat;
    moeq_artifact_source *art; // NULL: the checkpoint
} tensor_src;

static moeq_status src_fn(void *ctx, const char *name, float *dst, int64_t numel) {
    const tensor_src *t = ctx;
    return t->art ? moeq_artifact_tensor_fn(t->art, name, dst, numel)
                  : moeq_catalog_tensor_fn((void *)t->cat, name, dst, numel);
}

static moeq_status load(const ev_state *s, moeq_artifact_source *art, int layer, const int *owner,
                        moeq_model **out) {
    const moeq_model_config *c = &s->cat->cfg;
    unsigned char *mine = calloc((size_t)c->n_experts + 1, 1);
    if (!mine) return MOEQ_ERR_NOMEM;
    for (int e = 0; e < c->n_experts; e++) mine[e] = owner[e] == s->rank;
    moeq_model_sel sel = {.layer0 = layer, .layer1 = layer + 1, .experts = mine};
    if (layer < 0) sel = (moeq_model_sel){.model_level = 1};
    tensor_src t = {s->cat, art};
    const moeq_status st = moeq_model_load_sel(c, &sel, src_fn, &t, out);
    free(mine);
    return st;
}

// Windows of group g through layer `layer` of model m, on hidden states x.
static moeq_status group_layer(const ev_state *s, const moeq_model *m, int layer, const int *owner,
                               const win_group *g, float *x) {
    const moeq_dist_layer d = {.comm = MPI_COMM_WORLD,
                               .rank = s->rank,
                               .n_ranks = s->n_ranks,
                               .m = m,
                               .layer = layer,
                               .expert_owner = owner,
                               .n_seqs = (int)g->n_seqs,
                               .seq0 = g->seq0,
                               .n_loc = g->n_loc,
                               .T = g->T};
    return moeq_dist_layer_forward(&d, x, 0, NULL, NULL);
}

// The final norm, lm_head and the window's sum of −log p (double, positions in order) of each window here.
static moeq_status group_ce(const moeq_model *top, const int32_t *ids, const win_group *g, const float *x,
                            double *wsum) {
    const moeq_model_config *c = &top->cfg;
    const int64_t H = c->hidden, V = c->vocab, T = g->T;
    float *h = malloc((size_t)(T * H) * sizeof(float)), *logits = malloc((size_t)(T * V) * sizeof(float));
    double *nll = malloc((size_t)T * sizeof(double));
    moeq_status st = h && logits && nll ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int q = 0; q < g->n_loc && st == MOEQ_OK; q++) {
        const int64_t w = g->first_window + g->seq0 + q;
        st = moeq_model_final_norm(top, x + (int64_t)q * T * H, T, h);
        if (st == MOEQ_OK) st = moeq_linear_cpu(h, H, top->lm_head, NULL, T, H, V, 0, logits, V);
        if (st == MOEQ_OK && T > 1) st = moeq_cross_entropy_cpu(logits, ids + w * WINDOW + 1, T - 1, V, nll);
        double sum = 0;
        for (int64_t t = 0; st == MOEQ_OK && t + 1 < T; t++) sum += nll[t];
        wsum[w] = sum;
    }
    free(h), free(logits), free(nll);
    return st;
}

moeq_status moeq_eval_stream_perplexity(ev_state *s, moeq_artifact_source *art, const int32_t *ids,
                                        double *wo, double *wq) {
    const moeq_model_config *c = &s->cat->cfg;
    const int L = c->n_layers, R = s->n_ranks;
    const int64_t H = c->hidden, n = s->n_tokens, nf = n / WINDOW, tail = n - nf * WINDOW;
    win_group g[2] = {{.first_window = 0, .n_seqs = nf, .T = WINDOW},
                      {.first_window = nf, .n_seqs = tail > 0, .T = tail}};
    int *owner = calloc((size_t)c->n_experts + 1, sizeof(int));
    moeq_status st = owner ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int e = 0; e < c->n_experts && owner; e++) owner[e] = e % R; // any fixed assignment: same bits
    for (int k = 0; k < 2 && st == MOEQ_OK; k++) {
        g[k].seq0 = (int)(g[k].n_seqs * s->rank / R);
        g[k].n_loc = (int)(g[k].n_seqs * (s->rank + 1) / R) - g[k].seq0;
        const size_t bytes =
            (size_t)((int64_t)(g[k].n_loc ? g[k].n_loc : 1) * (g[k].T ? g[k].T : 1) * H) * sizeof(float);
        g[k].xo = malloc(bytes), g[k].xq = malloc(bytes);
        if (!g[k].xo || !g[k].xq) st = MOEQ_ERR_NOMEM;
    }
    // the embeddings: the checkpoint's and the artifact's
    moeq_model *to = NULL, *tq = NULL;
    if (st == MOEQ_OK) st = load(s, NULL, -1, owner, &to);
    if (st == MOEQ_OK) st = load(s, art, -1, owner, &tq);
    for (int k = 0; k < 2 && st == MOEQ_OK; k++)
        for (int q = 0; q < g[k].n_loc && st == MOEQ_OK; q++) {
            const int32_t *tok = ids + (g[k].first_window + g[k].seq0 + q) * WINDOW;
            st = moeq_model_embed(to, tok, g[k].T, g[k].xo + (int64_t)q * g[k].T * H);
            if (st == MOEQ_OK) st = moeq_model_embed(tq, tok, g[k].T, g[k].xq + (int64_t)q * g[k].T * H);
        }
    st = moeq_run_agree(st, MPI_COMM_WORLD);
    for (int l = 0; l < L && st == MOEQ_OK; l++) {
        for (int which = 0; which < 2 && st == MOEQ_OK; which++) { // the original, then the quantized
            moeq_model *m = NULL;
            st = moeq_run_agree(load(s, which ? art : NULL, l, owner, &m), MPI_COMM_WORLD);
            for (int k = 0; k < 2 && st == MOEQ_OK; k++)
                if (g[k].n_seqs) st = group_layer(s, m, l, owner, &g[k], which ? g[k].xq : g[k].xo);
            moeq_model_free(&m);
        }
        if (st == MOEQ_OK && s->rank == 0 && !s->o->quiet && s->o->progress_s > 0)
            MOEQ_LOG(MOEQ_LOG_INFO, "eval --stream: layer %d/%d (original + quantized)", l + 1, L);
    }
    for (int k = 0; k < 2 && st == MOEQ_OK; k++) {
        st = group_ce(to, ids, &g[k], g[k].xo, wo);
        if (st == MOEQ_OK) st = group_ce(tq, ids, &g[k], g[k].xq, wq);
    }
    moeq_model_free(&to), moeq_model_free(&tq);
    for (int k = 0; k < 2; k++) free(g[k].xo), free(g[k].xq);
    free(owner);
    return moeq_run_agree(st, MPI_COMM_WORLD);
}
