// calib_layer.c: one decoder layer of the calibration pass over the ranks (calib_layer.h). Routed experts
// live on the ranks that own them; every other tensor of the layer is on every rank. Three steps for an MoE
// layer: (1) every rank runs attention, post_attention_layernorm and the router of its sequences; (2) the
// rows routed to each expert go to its owner (one MPI_Alltoallv, ordered by owned expert then global
// sequence), which runs the expert per sequence and returns the outputs (the reverse Alltoallv); (3) every
// rank weights and combines them with the shared expert (moeq_moe_combine_cpu) and adds them to the
// residual stream. Memory per rank: the layer without the experts it does not own, its sequences' states,
// and the rows of its experts.
#include "calib_layer.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "run_common.h"

// Per sequence of this rank: the residual stream after attention, the FFN input, and the routing.
typedef struct seq_state {
    float *xa, *h;  // (T, H) each
    int32_t *idx;   // (T, K)
    float *wt;      // (T, K)
    int32_t *order; // (T*K)
    int64_t *off;   // (E+1)
} seq_state;

static moeq_status append(const unsigned char *want, moeq_calib_rows *rows, int c, const float *x, int64_t n,
                          int64_t cols) {
    return want && want[c] ? moeq_calib_rows_append(&rows[c], x, n, cols) : MOEQ_OK;
}

// Step 2 on the owner: its experts' rows (recv, laid out source rank by source rank, each as owned expert
// ascending then sequence ascending) through the experts, outputs in place of the rows' layout (out).
static moeq_status run_experts(const moeq_dist_layer *d, const int *cnt, const float *recv, float *out,
                               const unsigned char *want, moeq_calib_rows *rows) {
    const moeq_model_config *c = &d->m->cfg;
    const int64_t H = c->hidden, E = c->n_experts;
    const moeq_layer_weights *L = &d->m->layers[d->layer];
    // the offset of each (source rank, expert, sequence) block in recv, by walking the layout
    int64_t *pos = MOEQ_MALLOC(sizeof(int64_t) * (size_t)(E * d->n_seqs), "expert row offsets");
    if (!pos) return MOEQ_ERR_NOMEM;
    int64_t at = 0;
    for (int r = 0; r < d->n_ranks; r++) {
        const int g0 = (int)((int64_t)d->n_seqs * r / d->n_ranks),
                  g1 = (int)((int64_t)d->n_seqs * (r + 1) / d->n_ranks);
        for (int64_t e = 0; e < E; e++) {
            if (d->expert_owner[e] != d->rank) continue;
            for (int g = g0; g < g1; g++) pos[e * d->n_seqs + g] = at, at += cnt[(int64_t)g * E + e];
        }
    }
    moeq_status st = MOEQ_OK;
    float *work = NULL;
    size_t work_cap = 0;
    for (int64_t e = 0; e < E && st == MOEQ_OK; e++) { // global order: expert, then sequence
        if (d->expert_owner[e] != d->rank) continue;
        const moeq_ffn_weights *f = &L->moe.experts[e];
        for (int g = 0; g < d->n_seqs && st == MOEQ_OK; g++) {
            const int64_t n = cnt[(int64_t)g * E + e];
            if (!n) continue;
            const size_t need = (size_t)(2 * n * f->inter);
            if (need > work_cap) {
                moeq_free(&work);
                work = MOEQ_MALLOC(need * sizeof(float), "expert work");
                work_cap = work ? need : 0;
                if (!work) st = MOEQ_ERR_NOMEM;
            }
            const float *xe = recv + pos[e * d->n_seqs + g] * H;
            if (st == MOEQ_OK) st = moeq_swiglu_ffn_cpu(f, xe, n, H, out + pos[e * d->n_seqs + g] * H, work);
            if (st == MOEQ_OK) st = append(want, rows, MOEQ_CIN_EXPERT_X(e), xe, n, H);
            if (st == MOEQ_OK) st = append(want, rows, MOEQ_CIN_EXPERT_ACT(e), work, n, f->inter);
        }
    }
    moeq_free(&work);
    moeq_free(&pos);
    return st;
}

// Steps 2-3 of an MoE layer: exchange, experts, combine; x_s = xa_s + moe(h_s).
static moeq_status moe_exchange(const moeq_dist_layer *d, seq_state *ss, float *x, const unsigned char *want,
                                moeq_calib_rows *rows) {
    const moeq_model_config *c = &d->m->cfg;
    const int64_t H = c->hidden, E = c->n_experts, K = c->top_k, T = d->T;
    const moeq_layer_weights *L = &d->m->layers[d->layer];
    const int R = d->n_ranks;
    // every rank learns every (sequence, expert) count
    int *cnt = MOEQ_MALLOC(sizeof(int) * (size_t)(d->n_seqs * E + 1), "routing counts");
    int *mine = MOEQ_MALLOC(sizeof(int) * (size_t)(d->n_loc * E + 1), "routing counts");
    int *rc = MOEQ_MALLOC(sizeof(int) * (size_t)R * 6, "exchange counts");
    if (!cnt || !mine || !rc) {
        moeq_free(&cnt), moeq_free(&mine), moeq_free(&rc);
        return MOEQ_ERR_NOMEM;
    }
    int *rcounts = rc, *rdispl = rc + R, *scount = rc + 2 * R, *sdispl = rc + 3 * R, *rrows = rc + 4 * R,
        *srows = rc + 5 * R;
    for (int s = 0; s < d->n_loc; s++)
        for (int64_t e = 0; e < E; e++) mine[s * E + e] = (int)(ss[s].off[e + 1] - ss[s].off[e]);
    for (int r = 0; r < R; r++) {
        const int g0 = (int)((int64_t)d->n_seqs * r / R), g1 = (int)((int64_t)d->n_seqs * (r + 1) / R);
        rcounts[r] = (int)((g1 - g0) * E), rdispl[r] = (int)(g0 * E);
    }
    MPI_Allgatherv(mine, (int)(d->n_loc * E), MPI_INT, cnt, rcounts, rdispl, MPI_INT, d->comm);
    // rows per destination (what I send) and per source (what I receive), in rows
    for (int r = 0; r < R; r++) srows[r] = rrows[r] = 0;
    for (int64_t e = 0; e < E; e++)
        for (int s = 0; s < d->n_loc; s++) srows[d->expert_owner[e]] += mine[s * E + e];
    for (int r = 0; r < R; r++) {
        const int g0 = (int)((int64_t)d->n_seqs * r / R), g1 = (int)((int64_t)d->n_seqs * (r + 1) / R);
        for (int64_t e = 0; e < E; e++)
            if (d->expert_owner[e] == d->rank)
                for (int g = g0; g < g1; g++) rrows[r] += cnt[(int64_t)g * E + e];
    }
    int64_t n_send = 0, n_recv = 0;
    for (int r = 0; r < R; r++)
        sdispl[r] = (int)n_send, n_send += srows[r], rdispl[r] = (int)n_recv, n_recv += rrows[r];
    for (int r = 0; r < R; r++) scount[r] = srows[r], rcounts[r] = rrows[r];
    float *sbuf = MOEQ_MALLOC((size_t)((n_send + 1) * H) * sizeof(float), "expert rows out");
    float *rbuf = MOEQ_MALLOC((size_t)((n_recv + 1) * H) * sizeof(float), "expert rows in");
    float *obuf = MOEQ_MALLOC((size_t)((n_recv + 1) * H) * sizeof(float), "expert outputs");
    moeq_status st = sbuf && rbuf && obuf ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) { // pack: destination, then its experts ascending, then my sequences ascending
        int64_t *at = MOEQ_CALLOC((size_t)R, sizeof(int64_t), "pack cursor");
        if (!at) st = MOEQ_ERR_NOMEM;
        for (int r = 0; r < R && at; r++) at[r] = sdispl[r];
        for (int64_t e = 0; e < E && at; e++)
            for (int s = 0; s < d->n_loc; s++) {
                const int q = d->expert_owner[e];
                for (int64_t i = ss[s].off[e]; i < ss[s].off[e + 1]; i++)
                    memcpy(sbuf + (at[q]++) * H, ss[s].h + (ss[s].order[i] / K) * H,
                           (size_t)H * sizeof(float));
            }
        moeq_free(&at);
    }
    st = moeq_run_agree(st, d->comm);
    if (st != MOEQ_OK) goto done;
    MPI_Datatype row;
    MPI_Type_contiguous((int)H, MPI_FLOAT, &row);
    MPI_Type_commit(&row);
    MPI_Alltoallv(sbuf, scount, sdispl, row, rbuf, rcounts, rdispl, row, d->comm);
    st = moeq_run_agree(run_experts(d, cnt, rbuf, obuf, want, rows), d->comm);
    if (st == MOEQ_OK) MPI_Alltoallv(obuf, rcounts, rdispl, row, sbuf, scount, sdispl, row, d->comm);
    MPI_Type_free(&row);
    if (st != MOEQ_OK) goto done;
    { // unpack into each sequence's slot-sorted rows, weight them, combine
        float *ys = MOEQ_MALLOC((size_t)(T * K * H) * sizeof(float), "expert outputs of a sequence");
        float *y = MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "moe output");
        int64_t *at = MOEQ_CALLOC((size_t)R, sizeof(int64_t), "unpack cursor");
        if (!ys || !y || !at) st = MOEQ_ERR_NOMEM;
        for (int r = 0; r < R && at; r++) at[r] = sdispl[r];
        // the same walk as the packing: destination cursors advance per (expert, sequence)
        int64_t *bases =
            st == MOEQ_OK ? MOEQ_MALLOC(sizeof(int64_t) * (size_t)(d->n_loc * E + 1), "row bases") : NULL;
        if (st == MOEQ_OK && !bases) st = MOEQ_ERR_NOMEM;
        for (int64_t e = 0; e < E && st == MOEQ_OK; e++)
            for (int s = 0; s < d->n_loc; s++) {
                const int q = d->expert_owner[e];
                bases[s * E + e] = at[q];
                at[q] += ss[s].off[e + 1] - ss[s].off[e];
            }
        for (int s = 0; s < d->n_loc && st == MOEQ_OK; s++) {
            for (int64_t e = 0; e < E; e++)
                for (int64_t i = ss[s].off[e]; i < ss[s].off[e + 1]; i++) {
                    const float *src = sbuf + (bases[s * E + e] + (i - ss[s].off[e])) * H;
                    const float g = ss[s].wt[ss[s].order[i]];
                    float *dst = ys + i * H;
                    for (int64_t cc = 0; cc < H; cc++)
                        dst[cc] = src[cc] * g; // expert output times its weight
                }
            st = moeq_moe_combine_cpu(&L->moe, ss[s].h, T, ss[s].order, ys, y);
            float *xs = x + (int64_t)s * T * H;
            for (int64_t i = 0; st == MOEQ_OK && i < T * H; i++) xs[i] = ss[s].xa[i] + y[i];
            if (st == MOEQ_OK && want && want[MOEQ_CIN_SHARED_ACT] && L->moe.shared)
                st = moeq_calib_ffn_act(L->moe.shared, ss[s].h, T, H, NULL, &rows[MOEQ_CIN_SHARED_ACT]);
        }
        moeq_free(&ys), moeq_free(&y), moeq_free(&at), moeq_free(&bases);
    }
done:
    moeq_free(&sbuf), moeq_free(&rbuf), moeq_free(&obuf);
    moeq_free(&cnt), moeq_free(&mine), moeq_free(&rc);
    return moeq_run_agree(st, d->comm);
}

moeq_status moeq_dist_layer_forward(const moeq_dist_layer *d, float *x, int attn_only,
                                    const unsigned char *want, moeq_calib_rows *rows) {
    const moeq_model_config *c = &d->m->cfg;
    const int64_t H = c->hidden, E = c->n_experts, K = c->top_k, T = d->T;
    const int64_t qd = moeq_model_attn_out_cols(c);
    const int64_t Qr = c->q_lora_rank > 0 ? c->q_lora_rank : 0,
                  Ckv = c->kv_lora_rank > 0 ? c->kv_lora_rank : 0;
    const int lat_q = Qr > 0 && want && want[MOEQ_CIN_Q_LATENT],
              lat_kv = Ckv > 0 && want && want[MOEQ_CIN_KV_LATENT];
    const moeq_layer_weights *L = &d->m->layers[d->layer];
    seq_state *ss = MOEQ_CALLOC((size_t)(d->n_loc ? d->n_loc : 1), sizeof *ss, "sequence states");
    float *attn_in = MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "attention input");
    float *attn_out = MOEQ_MALLOC((size_t)(T * qd) * sizeof(float), "attention output");
    float *q_lat = lat_q ? MOEQ_MALLOC((size_t)(T * Qr) * sizeof(float), "q latent") : NULL;
    float *kv_lat = lat_kv ? MOEQ_MALLOC((size_t)(T * Ckv) * sizeof(float), "kv latent") : NULL;
    moeq_status st =
        ss && attn_in && attn_out && (!lat_q || q_lat) && (!lat_kv || kv_lat) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    // step 1: attention (+ router) of every sequence of this rank
    for (int s = 0; s < d->n_loc && st == MOEQ_OK; s++) {
        seq_state *q = &ss[s];
        q->xa = MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "sequence state");
        q->h = MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "sequence state");
        if (!q->xa || !q->h) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        memcpy(q->xa, x + (int64_t)s * T * H, (size_t)(T * H) * sizeof(float));
        const moeq_layer_taps taps = {
            .attn_in = attn_in, .attn_out = attn_out, .ffn_in = q->h, .q_latent = q_lat, .kv_latent = kv_lat};
        st = moeq_model_attn_forward(d->m, d->layer, q->xa, T, &taps);
        if (st == MOEQ_OK) st = append(want, rows, MOEQ_CIN_ATTN_IN, attn_in, T, H);
        if (st == MOEQ_OK && lat_q) st = append(want, rows, MOEQ_CIN_Q_LATENT, q_lat, T, Qr);
        if (st == MOEQ_OK && lat_kv) st = append(want, rows, MOEQ_CIN_KV_LATENT, kv_lat, T, Ckv);
        if (st == MOEQ_OK) st = append(want, rows, MOEQ_CIN_ATTN_OUT, attn_out, T, qd);
        if (st == MOEQ_OK) st = append(want, rows, MOEQ_CIN_FFN_IN, q->h, T, H);
        if (st != MOEQ_OK || attn_only) continue;
        if (!L->is_moe) { // dense MLP here: x = xa + mlp(h)
            float *y = MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "dense mlp");
            st = y ? moeq_calib_ffn_act(&L->dense, q->h, T, H, y,
                                        want && want[MOEQ_CIN_DENSE_ACT] ? &rows[MOEQ_CIN_DENSE_ACT] : NULL)
                   : MOEQ_ERR_NOMEM;
            float *xs = x + (int64_t)s * T * H;
            for (int64_t i = 0; st == MOEQ_OK && i < T * H; i++) xs[i] = q->xa[i] + y[i];
            moeq_free(&y);
            continue;
        }
        q->idx = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(T * K), "routing");
        q->wt = MOEQ_MALLOC(sizeof(float) * (size_t)(T * K), "routing");
        q->order = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(T * K), "routing");
        q->off = MOEQ_MALLOC(sizeof(int64_t) * (size_t)(E + 1), "routing");
        st = q->idx && q->wt && q->order && q->off
                 ? moeq_moe_route_cpu(&L->moe, q->h, T, q->idx, q->wt, q->order, q->off)
                 : MOEQ_ERR_NOMEM;
    }
    st = moeq_run_agree(st, d->comm);
    // steps 2-3 (collective on every rank, whatever its share)
    if (st == MOEQ_OK && !attn_only && L->is_moe) st = moe_exchange(d, ss, x, want, rows);
    for (int s = 0; ss && s < d->n_loc; s++) {
        moeq_free(&ss[s].xa), moeq_free(&ss[s].h), moeq_free(&ss[s].idx), moeq_free(&ss[s].wt);
        moeq_free(&ss[s].order), moeq_free(&ss[s].off);
    }
    moeq_free(&ss), moeq_free(&attn_in), moeq_free(&attn_out), moeq_free(&q_lat), moeq_free(&kv_lat);
    return st;
}
