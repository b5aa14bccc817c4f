// quantize_calib.c: the dispatch variant of `moeq quantize --calib` (GPTQ): the layer-streaming calibration
// pass over the cluster. Every rank holds a contiguous share of the calibration sequences and their hidden
// states; for each decoder layer in turn, in rounds (GPTQ's "true sequential" order within a layer:
// q/k/v, then (MLA) q_b/kv_b on the latents of the quantized q_a/kv_a, then o_proj, then the FFN: router,
// experts, shared expert, dense MLP; moeq_calib_class_round):
//   1. every rank loads the layer, each tensor as quantized when its unit is already journaled (from the
//      artifact) and as in the checkpoint otherwise, runs its sequences through it and collects the input
//      rows of the classes (workers/calib_pass.h) the round's units need: o_proj sees the outputs of the
//      quantized q/k/v, the FFN the outputs of the quantized attention;
//   2. the rows of each class go to the rank that owns it (MPI_Gatherv, rank order = global token order),
//      which sums its Hessian in a fixed order and quantizes the units that read it (GPTQ with that
//      Hessian; units of the layer that need none are spread the same way); the results go to rank 0,
//      which journals them as the work queue's coordinator does (moeq_qrun_on_result);
// then every rank reloads the layer as quantized and recomputes its hidden states with it: the next layer
// calibrates on the outputs of the quantized layers before it.
// Then the model-level unit (lm_head: the final norm's output). A layer whose units are all journaled
// (--resume) is only recomputed, so an interrupted run resumes at its first unfinished layer with the same
// bytes: the recomputation reads what was written. Every number depends on the global order of the sequences
// only, never on the rank count (calib_pass.h). A stop signal is honoured between layers (exit 75). Memory
// per rank: one layer's fp32 weights, the hidden states of its sequences, the rows of the classes it owns and
// their Hessians.
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib_layer.h" // defines: moeq_dist_layer_forward
#include "calib_pass.h"  // defines: moeq_calib_hessian, the classes
#include "clock.h"       // defines: moeq_now_s
#include "eval_unit.h"   // defines: moeq_artifact_source, moeq_artifact_tensor_fn
#include "cli.h"         // defines: MOEQ_EXIT_NOMEM
#include "quantize_impl.h"
#include "run_common.h" // defines: moeq_run_agree

enum { TAG_CAL_RESULT = 7301 };

typedef struct cal_state {
    run_state *s;
    const moeq_model_config *cfg;
    int n_classes;
    int seq0, n_loc; // this rank's sequences [seq0, seq0 + n_loc)
    int64_t T, H;
    float *x;          // (n_loc, T, H) hidden states entering the current layer
    int *unit_class;   // (n_units) the class group a unit reads (-1: none)
    int *tensor_class; // (n_tensors) the class of a calibrated tensor's input (-1: not calibrated)
    int *unit_layer;   // (n_units) layer of the unit (-1: model level)
    int *owner;        // (n_units) the rank that runs it in this pass
    float **hessian;   // (n_tensors) the Hessians this rank holds for its units' tensors (borrowed)
    int64_t *rows_of;  // (n_tensors) inputs each Hessian summed
    float **class_h;   // (n_classes) Hessians owned by this rank for the current layer
    int64_t *class_n;  // (n_classes) their row counts
    int units_failed;  // a unit of the last layer was not journaled (the coordinator recorded why)
    struct moeq_artifact_source *art; // the artifact being written, read back (quantized weights)
    int *expert_owner;                // (E) the owner of each routed expert of the current layer
    float *x_scratch;                 // (n_loc, T, H) the statistics rounds' copy of x
    // down after gate and up (GPTQ's true-sequential order within a routed expert): on the owner, the rows
    // of each expert's input are kept until its unit ran; its quantized gate and up (I, H) as the unit job
    // reports them (seq_tensor_done); then down's Hessian is rebuilt from silu(gate_q·x)·(up_q·x)
    moeq_calib_rows *seq_x; // (E)
    unsigned char *defer;   // (n_tensors) the routed experts' down projections with gptq.sequential
    unsigned char *seq_on;  // (E) this round: the experts with such a down (their input rows are kept)
    float *seq_w[2];        // the running unit's quantized gate and up, or NULL
} cal_state;

// The class group of class c: a routed expert's two classes (x, act) are one group (one unit reads both).
static int class_group(int c) {
    return c >= MOEQ_CIN_EXPERT0 ? MOEQ_CIN_EXPERT0 + 2 * ((c - MOEQ_CIN_EXPERT0) / 2) : c;
}

// The round of a class group within its layer (moeq_calib_class_round): 0 q/k/v (MLA: q_a/q, kv_a), 1 the
// MLA latents' q_b and kv_b, 2 o_proj, 3 the FFN (and the model level).
static int class_round(int g) {
    return moeq_calib_class_round(g);
}

// Which tensors are calibrated and what they read; a calibrated tensor that is no linear layer of the
// forward pass is refused.
static moeq_status classify(cal_state *k) {
    const moeq_plan *p = k->s->plan;
    const moeq_catalog *cat = k->s->cat;
    for (int u = 0; u < p->n_units; u++) k->unit_class[u] = -1, k->unit_layer[u] = p->u[u].layer;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        k->tensor_class[i] = -1;
        const moeq_method_traits *mt = moeq_method_get(pt->q.method);
        if (!mt || !mt->needs_calibration) continue;
        int layer = -1;
        const char *name = cat->t[pt->cat].name;
        const int c = moeq_calib_class_of(k->cfg, name, &layer);
        if (c < 0)
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "tensor '%s': method %s needs the inputs of a linear layer, and this tensor is not "
                "one the calibration pass runs (embedding, norm or bias)\n---> HINT: give it "
                "another method in the recipe (e.g. a rule with method: rtn)",
                name, mt->name);
        const int g = class_group(c), u = pt->unit;
        if (k->unit_class[u] >= 0 && k->unit_class[u] != g)
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                             "unit %d ('%s'): its tensors read different inputs (%s and %s); the calibration "
                             "pass runs a unit where its inputs are",
                             u, name, moeq_calib_class_name(k->unit_class[u]), moeq_calib_class_name(c));
        k->unit_class[u] = g;
        k->tensor_class[i] = c;
        k->defer[i] = MOEQ_CIN_IS_EXPERT_ACT(c) && pt->q.gptq_sequential; // a routed expert's down
    }
    return MOEQ_OK;
}

// moeq_unit_ctx.tensor_done: tensor i of the running unit is quantized (recon its deq(Q) + U·V, or NULL). For
// a routed expert's gate and up whose inputs this rank kept, the reconstruction is kept; once both are,
// the expert's down Hessian (its class's, on this rank) is rebuilt from the quantized FFN's activations of
// the same rows, in the same row order for any rank count. Without both (one not quantized, failed, or on a
// device), down keeps the Hessian of the original weights.
static moeq_status seq_tensor_done(void *arg, int i, const float *recon) {
    cal_state *k = arg;
    const moeq_plan *p = k->s->plan;
    const int g = k->unit_class[p->t[i].unit];
    if (g < MOEQ_CIN_EXPERT0) return MOEQ_OK;
    const int e = MOEQ_CIN_EXPERT_OF(g);
    const moeq_proj pr = k->s->cat->t[p->t[i].cat].c.proj;
    const int slot = pr == MOEQ_PROJ_GATE ? 0 : pr == MOEQ_PROJ_UP ? 1 : -1;
    float *h = k->class_h[MOEQ_CIN_EXPERT_ACT(e)];
    const moeq_calib_rows *xr = &k->seq_x[e];
    if (slot < 0 || !recon || !h || xr->n == 0) return MOEQ_OK;
    const int64_t I = k->cfg->moe_intermediate, H = k->H;
    if (p->t[i].R != I || p->t[i].C != H) return MOEQ_OK; // not the (I, H) projection the forward runs
    if (!k->seq_w[slot] && !(k->seq_w[slot] = MOEQ_MALLOC((size_t)(I * H) * sizeof(float), "quantized ffn")))
        return MOEQ_ERR_NOMEM;
    memcpy(k->seq_w[slot], recon, (size_t)(I * H) * sizeof(float));
    if (!k->seq_w[1 - slot]) return MOEQ_OK;
    float *work = MOEQ_MALLOC((size_t)(2 * xr->n * I) * sizeof(float), "quantized ffn activations");
    if (!work) return MOEQ_ERR_NOMEM;
    const moeq_ffn_weights f = {.gate = k->seq_w[0], .up = k->seq_w[1], .inter = (int)I};
    moeq_status st = moeq_swiglu_act_cpu(&f, xr->x, xr->n, H, work);
    if (st == MOEQ_OK) st = moeq_calib_hessian(work, xr->n, I, h);
    moeq_free(&work);
    return st;
}

// Owners of the units of `layer` (LPT over the class groups' costs, then the other units; ties: lower
// rank). Deterministic: the same on every rank.
static void assign_owners(cal_state *k, int layer) {
    const moeq_plan *p = k->s->plan;
    const int R = k->s->n_ranks, G = k->n_classes;
    double *load = calloc((size_t)R, sizeof(double)), *gcost = calloc((size_t)G + 1, sizeof(double));
    int *gown = malloc(sizeof(int) * ((size_t)G + 1));
    if (!load || !gcost || !gown) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    for (int u = 0; u < p->n_units; u++)
        if (k->unit_layer[u] == layer && k->unit_class[u] >= 0)
            gcost[k->unit_class[u]] += p->u[u].cost + 1e-9;
    for (int g = 0; g < G; g++) gown[g] = -1;
    for (;;) { // the largest unassigned group to the least loaded rank
        int best = -1;
        for (int g = 0; g < G; g++)
            if (gcost[g] > 0 && gown[g] < 0 && (best < 0 || gcost[g] > gcost[best])) best = g;
        if (best < 0) break;
        int r = 0;
        for (int q = 1; q < R; q++)
            if (load[q] < load[r]) r = q;
        gown[best] = r, load[r] += gcost[best];
    }
    for (int u = 0; u < p->n_units; u++) {
        if (k->unit_layer[u] != layer) continue;
        if (k->unit_class[u] >= 0) {
            k->owner[u] = gown[k->unit_class[u]];
            continue;
        }
        int r = 0;
        for (int q = 1; q < R; q++)
            if (load[q] < load[r]) r = q;
        k->owner[u] = r, load[r] += p->u[u].cost + 1e-9;
    }
    for (int e = 0; e < k->cfg->n_experts; e++) k->expert_owner[e] = e % R; // (an expert without a unit)
    for (int u = 0; u < p->n_units; u++)
        if (k->unit_layer[u] == layer && p->u[u].expert >= 0 && p->u[u].expert < k->cfg->n_experts)
            k->expert_owner[p->u[u].expert] = k->owner[u];
    free(load), free(gcost), free(gown);
}

// The rows of class c on every rank to its owner, one rank after the other (rank order = global token
// order), summed into its Hessian as they arrive: the owner holds one rank's rows at a time.
static moeq_status gather_class(cal_state *k, int c, int owner, moeq_calib_rows *rows) {
    const int R = k->s->n_ranks, me = k->s->rank;
    const int64_t cols = moeq_calib_class_cols(k->cfg, c);
    enum { TAG_ROWS = 7302 };
    long long n_mine = rows->n;
    const long long piece = (1ll << 24) / cols > 0 ? (1ll << 24) / cols : 1; // rows per message (64 MiB)
    moeq_status st = MOEQ_OK;
    if (me != owner) {
        MPI_Send(&n_mine, 1, MPI_LONG_LONG, owner, TAG_ROWS, MPI_COMM_WORLD);
        for (long long r0 = 0; r0 < n_mine; r0 += piece) {
            const long long m = n_mine - r0 < piece ? n_mine - r0 : piece;
            MPI_Send(rows->x + r0 * cols, (int)(m * cols), MPI_FLOAT, owner, TAG_ROWS, MPI_COMM_WORLD);
        }
        moeq_calib_rows_free(rows);
        return MOEQ_OK;
    }
    moeq_hessian_acc acc;
    st = moeq_hessian_acc_init(&acc, cols);
    float *in = NULL;
    for (int q = 0; q < R; q++) {
        long long n = n_mine;
        if (q != me) MPI_Recv(&n, 1, MPI_LONG_LONG, q, TAG_ROWS, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (long long r0 = 0; r0 < n; r0 += piece) {
            const long long m = n - r0 < piece ? n - r0 : piece;
            const float *x = rows->x + r0 * cols;
            if (q != me) {
                if (!in) in = malloc((size_t)(piece * cols) * sizeof(float));
                if (!in) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
                MPI_Recv(in, (int)(m * cols), MPI_FLOAT, q, TAG_ROWS, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                x = in;
            }
            if (st == MOEQ_OK) moeq_hessian_acc_add(&acc, x, m);
        }
    }
    free(in);
    moeq_calib_rows_free(rows);
    if (st != MOEQ_OK) return st;
    k->class_n[c] = acc.n;
    k->class_h[c] = malloc((size_t)(cols * cols) * sizeof(float));
    if (!k->class_h[c]) {
        moeq_hessian_acc_free(&acc);
        return MOEQ_ERR_NOMEM;
    }
    return moeq_hessian_acc_finish(&acc, k->class_h[c]);
}

// Runs unit u on this rank with its Hessians, and hands its results to rank 0 (a message, or directly).
static moeq_status run_unit(cal_state *k, int u) {
    run_state *s = k->s;
    const moeq_unit *un = &s->plan->u[u];
    for (int j = 0; j < un->count; j++) {
        const int i = un->first + j, c = k->tensor_class[i];
        k->hessian[i] = c >= 0 ? k->class_h[c] : NULL;
        k->rows_of[i] = c >= 0 ? k->class_n[c] : -1;
    }
    moeq_tensor_result *res = MOEQ_CALLOC((size_t)un->count, sizeof *res, "unit results");
    if (!res) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_unit_job_run(&s->ctx, u, res);
    s->n_units_here++;
    if (st != MOEQ_OK) // an I/O or allocation failure: the result says so (the coordinator gives the unit up)
        for (int j = 0; j < un->count; j++) {
            res[j].tensor = (uint32_t)(un->first + j), res[j].status = st;
            snprintf(res[j].message, sizeof res[j].message, "%s", moeq_error_detail());
        }
    const size_t len = sizeof *res * (size_t)un->count;
    if (s->rank == 0)
        (void)moeq_qrun_on_result(u, 0, s->o->max_attempts, res, len, s);
    else
        MPI_Send(res, (int)len, MPI_BYTE, 0, TAG_CAL_RESULT + 0, MPI_COMM_WORLD);
    moeq_free(&res);
    for (int j = 0; j < un->count; j++) k->hessian[un->first + j] = NULL;
    return st;
}

// Rank 0: the results of the units other ranks ran for `layer`, then the journal's group commit.
static int in_round(const cal_state *k, int u, int round);

static void collect_results(cal_state *k, int layer, int round) {
    run_state *s = k->s;
    if (s->rank != 0) return;
    int expect = 0;
    for (int u = 0; u < s->plan->n_units; u++)
        if (k->unit_layer[u] == layer && !s->done[u] && in_round(k, u, round) && k->owner[u] != 0) expect++;
    char *buf = malloc(s->result_max_bytes ? s->result_max_bytes : 1);
    if (!buf) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    for (int m = 0; m < expect; m++) {
        MPI_Status ms;
        MPI_Recv(buf, (int)s->result_max_bytes, MPI_BYTE, MPI_ANY_SOURCE, TAG_CAL_RESULT, MPI_COMM_WORLD,
                 &ms);
        int len = 0;
        MPI_Get_count(&ms, MPI_BYTE, &len);
        const moeq_tensor_result *r = (const moeq_tensor_result *)buf;
        const int u = len >= (int)sizeof *r ? s->plan->t[r->tensor].unit : -1;
        if (u >= 0) (void)moeq_qrun_on_result(u, ms.MPI_SOURCE, s->o->max_attempts, buf, (size_t)len, s);
    }
    free(buf);
    moeq_qrun_on_idle(s);
}

// The weights of the pass: a tensor whose unit is journaled as quantized (from the artifact, what eval and
// the engines see), any other as in the checkpoint.
typedef struct mixed_src {
    cal_state *k;
    moeq_artifact_source *art;
} mixed_src;

static moeq_status mixed_tensor_fn(void *ctx, const char *name, float *dst, int64_t numel) {
    const mixed_src *m = ctx;
    const int c = moeq_catalog_find(m->k->s->cat, name);
    const int i = c >= 0 ? m->art->plan_of_cat[c] : -1;
    if (i >= 0 && m->k->s->done[m->k->s->plan->t[i].unit])
        return moeq_artifact_tensor_fn(m->art, name, dst, numel);
    return moeq_catalog_tensor_fn((void *)m->k->s->cat, name, dst, numel);
}

// Loads `layer` (or, layer < 0, the model-level tensors) as the pass sees it now (mixed_tensor_fn).
static moeq_status load_part(cal_state *k, int layer, moeq_model **out) {
    unsigned char *mine = MOEQ_CALLOC((size_t)k->cfg->n_experts + 1, 1, "expert mask");
    if (!mine) return MOEQ_ERR_NOMEM;
    for (int e = 0; e < k->cfg->n_experts; e++) mine[e] = k->expert_owner[e] == k->s->rank;
    moeq_model_sel sel = {.layer0 = layer, .layer1 = layer + 1, .experts = mine}; // only the experts it owns
    if (layer < 0) sel = (moeq_model_sel){.model_level = 1};
    mixed_src m = {k, k->art};
    const moeq_status st = moeq_model_load_sel(k->cfg, &sel, mixed_tensor_fn, &m, out);
    moeq_free(&mine);
    return st;
}

// The layer over the ranks (calib_layer.h) on x, or on a copy of it when keep_x (the statistics rounds).
static moeq_status dist_forward(cal_state *k, const moeq_model *m, int layer, int attn_only, int keep_x,
                                const unsigned char *want, moeq_calib_rows *rows) {
    const moeq_dist_layer d = {.comm = MPI_COMM_WORLD,
                               .rank = k->s->rank,
                               .n_ranks = k->s->n_ranks,
                               .m = m,
                               .layer = layer,
                               .expert_owner = k->expert_owner,
                               .n_seqs = k->s->calib->n_seqs,
                               .seq0 = k->seq0,
                               .n_loc = k->n_loc,
                               .T = k->T};
    float *x = k->x;
    if (keep_x && !attn_only) {
        memcpy(k->x_scratch, k->x, (size_t)((int64_t)k->n_loc * k->T * k->H) * sizeof(float));
        x = k->x_scratch;
    }
    return moeq_dist_layer_forward(&d, x, attn_only, want, rows);
}

// Steps 1-2 for round `round` of `layer` (-1: model level, class HEAD_IN from the final norm).
static int in_round(const cal_state *k, int u, int round) {
    return (k->unit_class[u] >= 0 ? class_round(k->unit_class[u]) : MOEQ_CALIB_ROUNDS - 1) == round;
}

static moeq_status calibrate_and_quantize(cal_state *k, int layer, int round) {
    run_state *s = k->s;
    const moeq_plan *p = s->plan;
    unsigned char *want = calloc((size_t)k->n_classes, 1);
    moeq_calib_rows *rows = calloc((size_t)k->n_classes, sizeof *rows);
    if (!want || !rows) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    int any = 0;
    int todo = 0;
    for (int u = 0; u < p->n_units; u++)
        todo += k->unit_layer[u] == layer && !s->done[u] && in_round(k, u, round);
    if (!todo) {
        free(want), free(rows);
        return MOEQ_OK;
    }
    memset(k->seq_on, 0, (size_t)k->cfg->n_experts);
    for (int i = 0; i < p->n_tensors; i++) {
        const int u = p->t[i].unit;
        if (k->unit_layer[u] == layer && !s->done[u] && in_round(k, u, round) && k->tensor_class[i] >= 0) {
            want[k->tensor_class[i]] = 1, any = 1;
            if (k->defer[i]) k->seq_on[MOEQ_CIN_EXPERT_OF(k->tensor_class[i])] = 1; // down after gate and up
        }
    }
    moeq_status st = MOEQ_OK;
    if (any) {
        moeq_model *m = NULL;
        st = moeq_run_agree(load_part(k, layer, &m), MPI_COMM_WORLD);
        if (st == MOEQ_OK && layer >= 0)
            st = dist_forward(k, m, layer, round < MOEQ_CALIB_ROUNDS - 1, 1, want,
                              rows); // attention rounds: no FFN
        float *h = NULL;
        if (st == MOEQ_OK && layer < 0 && want[MOEQ_CIN_HEAD_IN]) {
            h = malloc((size_t)(k->T * k->H) * sizeof(float));
            if (!h) st = MOEQ_ERR_NOMEM;
            for (int q = 0; q < k->n_loc && st == MOEQ_OK; q++) {
                st = moeq_model_final_norm(m, k->x + (int64_t)q * k->T * k->H, k->T, h);
                if (st == MOEQ_OK) st = moeq_calib_rows_append(&rows[MOEQ_CIN_HEAD_IN], h, k->T, k->H);
            }
        }
        free(h);
        moeq_model_free(&m);
    }
    st = moeq_run_agree(st, MPI_COMM_WORLD);
    for (int c = 0; c < k->n_classes && st == MOEQ_OK; c++) {
        if (!want[c]) continue;
        int owner = -1;
        for (int u = 0; u < p->n_units && owner < 0; u++)
            if (k->unit_layer[u] == layer && k->unit_class[u] == class_group(c)) owner = k->owner[u];
        if (c >= MOEQ_CIN_EXPERT0) { // a routed expert's rows are on its owner already (calib_layer.h)
            moeq_status hs = MOEQ_OK;
            if (owner == s->rank) {
                const int64_t cols = moeq_calib_class_cols(k->cfg, c);
                k->class_h[c] = malloc((size_t)(cols * cols) * sizeof(float));
                hs = k->class_h[c] ? moeq_calib_hessian(rows[c].x, rows[c].n, cols, k->class_h[c])
                                   : MOEQ_ERR_NOMEM;
                k->class_n[c] = rows[c].n;
            }
            const int e = MOEQ_CIN_EXPERT_OF(c);
            if (owner == s->rank && c == MOEQ_CIN_EXPERT_X(e) && k->seq_on[e])
                k->seq_x[e] = rows[c], memset(&rows[c], 0, sizeof rows[c]); // kept for down (seq_tensor_done)
            moeq_calib_rows_free(&rows[c]);
            st = moeq_run_agree(hs, MPI_COMM_WORLD);
            continue;
        }
        st = moeq_run_agree(gather_class(k, c, owner, &rows[c]), MPI_COMM_WORLD);
    }
    for (int c = 0; c < k->n_classes; c++) moeq_calib_rows_free(&rows[c]);
    moeq_status mine = MOEQ_OK; // every unit runs (rank 0 expects each one's results), failed or not
    for (int u = 0; u < p->n_units && st == MOEQ_OK; u++)
        if (k->unit_layer[u] == layer && !s->done[u] && in_round(k, u, round) && k->owner[u] == s->rank) {
            const moeq_status us = run_unit(k, u);
            if (mine == MOEQ_OK) mine = us;
            moeq_free(&k->seq_w[0]), moeq_free(&k->seq_w[1]);
            if (k->unit_class[u] >= MOEQ_CIN_EXPERT0)
                moeq_calib_rows_free(&k->seq_x[MOEQ_CIN_EXPERT_OF(k->unit_class[u])]);
        }
    for (int e = 0; e < k->cfg->n_experts; e++) moeq_calib_rows_free(&k->seq_x[e]);
    if (st == MOEQ_OK) collect_results(k, layer, round);
    for (int c = 0; c < k->n_classes; c++) {
        free(k->class_h[c]);
        k->class_h[c] = NULL, k->class_n[c] = 0;
    }
    free(want), free(rows);
    if (st != MOEQ_OK) return st;
    // every unit of the layer journaled? (rank 0 knows; a failure ends the run)
    int left = 0;
    if (s->rank == 0)
        for (int u = 0; u < p->n_units; u++)
            left += k->unit_layer[u] == layer && !s->done[u] && in_round(k, u, round);
    MPI_Bcast(&left, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(s->done, p->n_units, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
    k->units_failed = left > 0; // the coordinator recorded why (end_rank0 reports it)
    (void)mine;
    return MOEQ_OK;
}

// Step 3: the hidden states through `layer` as quantized (read back from the artifact).
static moeq_status propagate(cal_state *k, int layer) {
    moeq_model *m = NULL;
    moeq_status st = moeq_run_agree(load_part(k, layer, &m), MPI_COMM_WORLD);
    if (st == MOEQ_OK) st = dist_forward(k, m, layer, 0, 0, NULL, NULL);
    moeq_model_free(&m);
    return st;
}

// The embeddings of this rank's sequences (the embedding as the checkpoint has it: GPTQ leaves it alone).
static moeq_status embed_all(cal_state *k) {
    moeq_model *m = NULL;
    const moeq_model_sel sel = {.model_level = 1}; // not load_part: the same embedding whatever is journaled
    moeq_status st = moeq_model_load_sel(k->cfg, &sel, moeq_catalog_tensor_fn, (void *)k->s->cat, &m);
    const moeq_calib_set *cs = k->s->calib;
    for (int q = 0; q < k->n_loc && st == MOEQ_OK; q++)
        st = moeq_model_embed(m, cs->ids + (int64_t)(k->seq0 + q) * k->T, k->T,
                              k->x + (int64_t)q * k->T * k->H);
    moeq_model_free(&m);
    return moeq_run_agree(st, MPI_COMM_WORLD);
}

// --calib (every rank reads it: n·T ids): its identity joins the digest; a plan whose methods need
// calibration inputs without it, or --calib without such a method, is refused.
moeq_status moeq_qcal_open(run_state *s) {
    const moeq_quantize_opts *o = s->o;
    const moeq_plan *p = s->plan;
    const char *who = NULL;
    moeq_method method = MOEQ_METHOD_NONE;
    for (int i = 0; i < p->n_tensors && !who; i++) {
        const moeq_method_traits *mt = moeq_method_get(p->t[i].q.method);
        if (mt && mt->needs_calibration) who = s->cat->t[p->t[i].cat].name, method = p->t[i].q.method;
    }
    if (!o->calib_path) {
        if (!who) return MOEQ_OK;
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "tensor '%s': method %s needs calibration inputs\n---> HINT: give them with --calib "
                         "FILE (token ids as little-endian uint32, or text for a character tokenizer)",
                         who, moeq_method_name(method));
    }
    if (!who)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "--calib %s: no tensor's method reads calibration inputs\n---> HINT: a recipe with "
                         "method: gptq uses them; leave --calib out otherwise",
                         o->calib_path);
    for (int i = 0; i < p->n_tensors; i++) { // before any file is made: what the pass cannot calibrate
        const moeq_method_traits *mt = moeq_method_get(p->t[i].q.method);
        int layer = -1;
        const char *name = s->cat->t[p->t[i].cat].name;
        if (mt && mt->needs_calibration && moeq_calib_class_of(&s->cat->cfg, name, &layer) < 0)
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "tensor '%s': method %s needs the inputs of a linear layer, and this tensor is not "
                "one the calibration pass runs (embedding, norm or bias)\n---> HINT: give it "
                "another method in the recipe (e.g. a rule with set: {method: rtn})",
                name, mt->name);
    }
    if (o->simulate)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "--calib and --simulate: the simulation does not model the calibration "
                         "pass yet");
    const moeq_model_config *c = &s->cat->cfg;
    int64_t len = o->calib_len;
    if (len <= 0)
        len = c->max_position_embeddings > 0 && c->max_position_embeddings < 2048 ? c->max_position_embeddings
                                                                                  : 2048;
    MOEQ_TRY(moeq_calib_set_load(o->calib_path, (moeq_calib_format)o->calib_format,
                                 o->calib_seqs > 0 ? o->calib_seqs : 128, len, c->vocab, s->cat->dir,
                                 &s->calib));
    s->plan->digest = moeq_plan_digest_calib(s->plan->digest, s->calib->xxh3);
    if (s->rank == 0 && !o->quiet)
        printf("calibration     %s (%s): %d sequences x %lld tokens of %lld, xxh3 %016llx\n", s->calib->path,
               s->calib->format == MOEQ_CALIB_TEXT ? "text" : "token ids", s->calib->n_seqs,
               (long long)s->calib->seq_len, (long long)s->calib->n_file_tokens,
               (unsigned long long)s->calib->xxh3);
    return MOEQ_OK;
}

int moeq_qcal_dispatch(run_state *s, const double *cost) {
    (void)cost;
    cal_state k = {.s = s, .cfg = &s->cat->cfg};
    const moeq_plan *p = s->plan;
    const moeq_calib_set *cs = s->calib;
    k.n_classes = moeq_calib_n_classes(k.cfg);
    k.T = cs->seq_len, k.H = k.cfg->hidden;
    k.seq0 = (int)((int64_t)cs->n_seqs * s->rank / s->n_ranks);
    k.n_loc = (int)((int64_t)cs->n_seqs * (s->rank + 1) / s->n_ranks) - k.seq0;
    k.x = malloc((size_t)((int64_t)(k.n_loc ? k.n_loc : 1) * k.T * k.H) * sizeof(float));
    k.unit_class = malloc(sizeof(int) * (size_t)p->n_units);
    k.unit_layer = malloc(sizeof(int) * (size_t)p->n_units);
    k.owner = malloc(sizeof(int) * (size_t)p->n_units);
    k.tensor_class = malloc(sizeof(int) * (size_t)p->n_tensors);
    k.hessian = calloc((size_t)p->n_tensors, sizeof(float *));
    k.rows_of = calloc((size_t)p->n_tensors, sizeof(int64_t));
    k.class_h = calloc((size_t)k.n_classes, sizeof(float *));
    k.class_n = calloc((size_t)k.n_classes, sizeof(int64_t));
    k.expert_owner = calloc((size_t)k.cfg->n_experts + 1, sizeof(int));
    k.x_scratch = malloc((size_t)((int64_t)(k.n_loc ? k.n_loc : 1) * k.T * k.H) * sizeof(float));
    k.seq_x = calloc((size_t)k.cfg->n_experts + 1, sizeof *k.seq_x);
    k.defer = calloc((size_t)p->n_tensors, 1);
    k.seq_on = calloc((size_t)k.cfg->n_experts + 1, 1);
    if (!k.x || !k.unit_class || !k.unit_layer || !k.owner || !k.tensor_class || !k.hessian || !k.rows_of ||
        !k.class_h || !k.class_n || !k.expert_owner || !k.x_scratch || !k.seq_x || !k.defer || !k.seq_on)
        MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    s->ctx.hessian = (const float *const *)k.hessian;
    s->ctx.calib_rows = k.rows_of;
    s->ctx.defer = k.defer, s->ctx.tensor_done = seq_tensor_done, s->ctx.tensor_done_arg = &k;
    moeq_status st = moeq_run_agree(classify(&k), MPI_COMM_WORLD);
    int rfd = -1;
    moeq_artifact_source art;
    int art_ok = 0;
    if (st == MOEQ_OK) {
        rfd = open(s->partial, O_RDONLY | O_CLOEXEC);
        st = rfd < 0 ? MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open for reading: %s", s->partial, strerror(errno))
                     : moeq_artifact_source_init(&art, s->cat, p, s->e, rfd, s->partial);
        art_ok = st == MOEQ_OK;
        k.art = &art;
        st = moeq_run_agree(st, MPI_COMM_WORLD);
    }
    if (st == MOEQ_OK) st = embed_all(&k);
    const int L = k.cfg->n_layers;
    int stopped = 0;
    for (int l = 0; l <= L && st == MOEQ_OK && !stopped; l++) {
        const int layer = l < L ? l : -1; // the model-level unit last (lm_head reads the final hidden states)
        const double t0 = moeq_now_s();
        assign_owners(&k, layer);
        int todo = 0;
        for (int u = 0; u < p->n_units; u++) todo += k.unit_layer[u] == layer && !s->done[u];
        for (int round = 0; round < MOEQ_CALIB_ROUNDS && st == MOEQ_OK && !k.units_failed; round++)
            st = calibrate_and_quantize(&k, layer, round);
        if (st != MOEQ_OK || k.units_failed) break;
        if (layer >= 0) st = propagate(&k, layer);
        if (st == MOEQ_OK && s->rank == 0 && !s->o->quiet)
            MOEQ_LOG(MOEQ_LOG_INFO, "calibrated quantize: %s %d/%d: %d unit(s) quantized, %.1f s",
                     layer >= 0 ? "layer" : "model level", layer >= 0 ? layer + 1 : L, L, todo,
                     moeq_now_s() - t0);
        if (st == MOEQ_OK && l < L) stopped = moeq_qrun_stop_agree(s);
    }
    if (art_ok) moeq_artifact_source_free(&art);
    if (rfd >= 0) close(rfd);
    s->ctx.hessian = NULL, s->ctx.calib_rows = NULL;
    s->ctx.defer = NULL, s->ctx.tensor_done = NULL, s->ctx.tensor_done_arg = NULL;
    free(k.seq_x), free(k.defer), free(k.seq_on);
    free(k.x), free(k.unit_class), free(k.unit_layer), free(k.owner), free(k.tensor_class);
    free(k.hessian), free(k.rows_of), free(k.class_h), free(k.class_n), free(k.expert_owner),
        free(k.x_scratch);
    // units the coordinator gave up end the run in the seal phase (end_rank0), as after the work queue
    s->queue_st = st;
    return MOEQ_QRUN_NEXT;
}
