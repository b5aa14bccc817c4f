// analyze_run.c: the analyze phase (see analyze_run.h): rules-only plan -> needs -> static LPT of the
// measuring work over the ranks -> per-rank measurements -> one sum-reduction -> policies -> final plan.
#include "analyze_run.h"
#include "clock.h" // defines: moeq_now_s

#include "analyze.h" // defines: moeq_analyze_tensor, moeq_analyze_blocks
#include "run_common.h" // defines: moeq_run_agree

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Every rank gets the worst status; a rank whose own part went well says that another rank failed.
static moeq_status agree_on(moeq_status st, MPI_Comm comm) {
    const moeq_status worst = moeq_run_agree(st, comm);
    if (worst != MOEQ_OK && st == MOEQ_OK)
        return MOEQ_FAIL(worst, "the analyze phase failed on another rank (its log has the detail)");
    return worst;
}
static double trial_cost(const moeq_policy *b, const moeq_qsettings *base, const moeq_tensor_info *t) {
    double cost = 1;
    for (int k = 0; b && k < b->n_cand; k++) {
        moeq_qsettings s;
        if (!moeq_policy_candidate(b, k, base, t, &s)) continue;
        if (s.method == MOEQ_METHOD_MILO && s.rank > 0) cost += 2.0 * s.rounds;
        else if (s.method == MOEQ_METHOD_MILO || s.method == MOEQ_METHOD_HQQ)
            cost += b->sample_rows > 0 && b->sample_rows < t->shape[0] ? 2.0 * b->sample_rows / (double)t->shape[0] : 2.0;
        else cost += 0.2;
    }
    return cost * (double)t->numel;
}

static moeq_status analyze(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm, MPI_Comm comm,
                           moeq_analysis **out) {
    int rank = 0, n_ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    moeq_recipe *br = NULL;
    moeq_plan *p0 = NULL;
    moeq_analysis *an = NULL;
    moeq_analysis_needs nd;
    memset(&nd, 0, sizeof nd);
    moeq_qsettings *q = NULL;
    int *rule = NULL, *owner = NULL;
    double *cost = NULL, *load = NULL;
    unsigned char *mine = NULL;
    double t0 = moeq_now_s();
    moeq_status st = c->has_data ? MOEQ_OK
                                 : MOEQ_FAIL(MOEQ_ERR_ARG,
                                             "%s: the recipe's policies need the weights (statistics, trials or probes) "
                                             "and %s has metadata only\n---> HINT: plan it on the checkpoint itself "
                                             "(mpirun -n N moeq plan ...), or use rules only for a metadata plan",
                                             r->path, c->dir);
    if (st == MOEQ_OK) st = moeq_recipe_bound_copy(r, &c->cfg, &br);
    if (st == MOEQ_OK) st = moeq_plan_build_ex(c, br, cm, NULL, MOEQ_PLAN_RULES_ONLY, NULL, &p0);
    if (st == MOEQ_OK) {
        q = MOEQ_MALLOC(sizeof *q * ((size_t)c->n_tensors + 1), "analysis settings");
        rule = MOEQ_MALLOC(sizeof *rule * ((size_t)c->n_tensors + 1), "analysis rules");
        if (!q || !rule) st = MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) {
        for (int i = 0; i < c->n_tensors; i++) q[i] = moeq_recipe_resolve(br, &c->t[i], &rule[i]);
        st = moeq_policy_needs(c, br, q, &nd);
    }
    const int L = moeq_config_n_layers_total(&c->cfg);
    if (st == MOEQ_OK) st = moeq_analysis_new(c->n_tensors, nd.budget ? nd.budget->n_cand : 0, L, &an);
    if (st == MOEQ_OK) {
        owner = MOEQ_MALLOC(sizeof *owner * ((size_t)p0->n_units + 1), "analysis owners");
        cost = MOEQ_CALLOC((size_t)p0->n_units + 1, sizeof *cost, "analysis costs");
        load = MOEQ_CALLOC((size_t)n_ranks, sizeof *load, "analysis loads");
        mine = MOEQ_CALLOC((size_t)L + 1, 1, "analysis blocks");
        if (!owner || !cost || !load || !mine) st = MOEQ_ERR_NOMEM;
    }
    int n_tensors = 0, n_blocks = 0;
    if (st == MOEQ_OK) {
        for (int u = 0; u < p0->n_units; u++)
            for (int k = p0->u[u].first; k < p0->u[u].first + p0->u[u].count; k++) {
                const int i = p0->t[k].cat;
                if (!nd.tensor[i]) continue;
                cost[u] += (nd.tensor[i] & MOEQ_NEED_TRIALS) ? trial_cost(nd.budget, &q[i], &c->t[i]) : (double)c->t[i].numel;
                n_tensors++;
            }
        st = moeq_partition_lpt(cost, p0->n_units, n_ranks, owner, load);
        for (int l = 0; l < L; l++)
            if (nd.block[l]) mine[l] = (n_blocks++ % n_ranks) == rank;
    }
    // ---- this rank's share ----
    for (int u = 0; st == MOEQ_OK && u < p0->n_units; u++) {
        if (owner[u] != rank) continue;
        for (int k = p0->u[u].first; k < p0->u[u].first + p0->u[u].count && st == MOEQ_OK; k++) {
            const int i = p0->t[k].cat;
            if (nd.tensor[i]) st = moeq_analyze_tensor(c, i, nd.tensor[i], nd.budget, &q[i], an);
        }
    }
    if (st == MOEQ_OK && n_blocks) {
        for (int l = 0; l < L; l++) an->block_err[l] = 0; // the slots are summed: 0 where not mine
        st = moeq_analyze_blocks(c, nd.probe, q, mine, an);
    }
    st = agree_on(st, comm);
    if (st == MOEQ_OK) {
        int64_t nd_all = 0;
        double *data = moeq_analysis_data(an, &nd_all);
        // disjoint slots, zeros elsewhere: the sum is exact and identical on every rank
        for (int64_t off = 0; off < nd_all; off += 1 << 26) {
            const int cnt = (int)(nd_all - off < (1 << 26) ? nd_all - off : (1 << 26));
            MPI_Allreduce(MPI_IN_PLACE, data + off, cnt, MPI_DOUBLE, MPI_SUM, comm);
        }
        for (int l = 0; l < L; l++)
            if (!nd.block[l] || !n_blocks) an->block_err[l] = -1;
        MOEQ_INFO0("analyze: %d tensors measured%s, %d MoE blocks probed, %d ranks, %.2f s", n_tensors,
                   nd.budget ? " with budget trials" : "", n_blocks, n_ranks, moeq_now_s() - t0);
    }
    moeq_analysis_needs_free(&nd);
    moeq_free(&q), moeq_free(&rule), moeq_free(&owner), moeq_free(&cost), moeq_free(&load), moeq_free(&mine);
    moeq_plan_free(&p0);
    moeq_recipe_free(&br);
    if (st != MOEQ_OK) moeq_analysis_free(&an);
    *out = an;
    return st;
}

moeq_status moeq_plan_build_collective(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                                       MPI_Comm comm, moeq_budget_result *budget, moeq_analysis **an_out,
                                       moeq_plan **out) {
    *out = NULL;
    if (an_out) *an_out = NULL;
    moeq_analysis *an = NULL;
    moeq_status st = MOEQ_OK;
    if (moeq_recipe_needs_weights(r)) st = analyze(c, r, cm, comm, &an);
    if (st == MOEQ_OK) st = moeq_plan_build_ex(c, r, cm, an, 0, budget, out);
    if (an_out) *an_out = an;
    else moeq_analysis_free(&an);
    return st;
}
