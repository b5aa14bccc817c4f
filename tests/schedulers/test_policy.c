// test_policy.c: the policies and the budget solver without MPI: scorers against hand-computed values
// (outlier score and kurtosis of small matrices, MiLo's kurtosis rank rule, frequency ranks), selection by
// each scorer on the tiny real model's catalog with a hand-made analysis, precedence of rules and
// policies, and the solver's budget accuracy (within 0.02 bits), determinism and failure messages.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moeq_kernels.h"
#include "moeq_sched.h"

// ---- scores by hand ----

static void test_scores_by_hand(void **state) {
    (void)state;
    // W (3, 2): column 0 = {1, -2, 3}: max 3 / mean 2 = 1.5; column 1 = {0.5, 0.5, 4}: 4 / (5/3) = 2.4
    const float w[] = {1, 0.5f, -2, 0.5f, 3, 4};
    moeq_weight_stats s;
    assert_int_equal(moeq_metrics_stats_cpu(w, 3, 2, &s), MOEQ_OK);
    assert_true(fabs(s.outlier_score - 2.4) < 1e-12);
    // kurtosis: values {1, .5, -2, .5, 3, 4}, mean 7/6; m2, m4 by hand
    const double v[] = {1, .5, -2, .5, 3, 4};
    double m = 7.0 / 6, m2 = 0, m4 = 0;
    for (int i = 0; i < 6; i++) m2 += (v[i] - m) * (v[i] - m) / 6, m4 += pow(v[i] - m, 4) / 6;
    assert_true(fabs(s.kurtosis - (m4 / (m2 * m2) - 3)) < 1e-9);
    // MiLo kurtosis rule: K = round(kurtosis); K < 1 -> 0; K > 9 -> cap; else 2^(K+k), at most cap
    assert_int_equal(moeq_policy_kurtosis_rank(0.4, 1, 2, 9, 1024), 0);
    assert_int_equal(moeq_policy_kurtosis_rank(0.6, 1, 2, 9, 1024), 8);   // K = 1: 2^3
    assert_int_equal(moeq_policy_kurtosis_rank(2.6, 1, 2, 9, 1024), 32);  // K = 3: 2^5
    assert_int_equal(moeq_policy_kurtosis_rank(2.6, 1, 3, 9, 1024), 64);  // k = 3 ("s2")
    assert_int_equal(moeq_policy_kurtosis_rank(23.0, 1, 2, 9, 1024), 1024);
    assert_int_equal(moeq_policy_kurtosis_rank(9.2, 1, 2, 9, 1024), 1024); // 2^11 capped
    assert_int_equal(moeq_policy_kurtosis_rank(3.0, 1, 2, 9, 16), 16);
    assert_int_equal(moeq_policy_kurtosis_rank(NAN, 1, 2, 9, 16), 0);
    // top: a count (at most n) or round(P% of n)
    assert_int_equal(moeq_policy_top_count(25, 1, 96), 24);
    assert_int_equal(moeq_policy_top_count(12.5, 1, 8), 1);
    assert_int_equal(moeq_policy_top_count(5, 0, 3), 3);
    assert_int_equal(moeq_policy_top_count(1, 0, 4), 1);
}

// ---- policies on the tiny real model with a hand-made analysis ----

static moeq_recipe *recipe(const char *yaml) {
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("p.yaml", yaml, &r), MOEQ_OK, NULL);
    return r;
}

static const moeq_plan_tensor *find(const moeq_plan *p, const moeq_catalog *c, const char *name) {
    for (int k = 0; k < p->n_tensors; k++)
        if (!strcmp(c->t[p->t[k].cat].name, name)) return &p->t[k];
    fail_msg("no tensor %s", name);
    return NULL;
}

static char *expert(int l, int e, int w) {
    static char buf[8][128];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 128, "model.layers.%d.block_sparse_moe.experts.%d.w%d.weight", l, e, w);
    return b;
}

static void test_scorers_pick(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    moeq_analysis *an = NULL;
    assert_int_equal(moeq_analysis_new(c->n_tensors, 0, 4, &an), MOEQ_OK);
    // outlier scores: 1 everywhere, three tensors stand out (one per projection); ties break by catalog index
    for (int i = 0; i < c->n_tensors; i++) an->outlier[i] = 1, an->kurtosis[i] = 0.2;
    an->outlier[moeq_catalog_find(c, expert(2, 5, 2))] = 9;
    an->outlier[moeq_catalog_find(c, expert(0, 1, 1))] = 7;
    an->outlier[moeq_catalog_find(c, expert(3, 3, 3))] = 5;
    an->kurtosis[moeq_catalog_find(c, expert(1, 3, 2))] = 2.7; // K = 3: rank 2^(3+2) = 32
    an->kurtosis[moeq_catalog_find(c, expert(1, 4, 2))] = 1.2; // K = 1: rank 8
    const double blk[4] = {0.10, 0.30, 0.20, 0.25};
    memcpy(an->block_err, blk, sizeof blk);
    moeq_recipe *r = recipe("version: 1\ndefaults: {method: hqq, bits: 2, group: 64}\n"
                            "rules:\n  - match: {class: routed_expert, layers: \"last:1\"}\n    set: {bits: 3}\n"
                            "policies:\n"
                            "  - kind: outlier\n    top: 2\n    set: {bits: 4}\n"                 // policy 1
                            "  - kind: block\n    top: 1\n    set: {bits: 8}\n"                   // policy 2
                            "  - kind: kurtosis_rank\n    match: {class: routed_expert, proj: down, layers: \"1\"}\n" // policy 3
                            );
    moeq_plan *p = NULL;
    assert_status(moeq_plan_build_ex(c, r, &cm, an, 0, NULL, &p), MOEQ_OK, NULL);
    // outlier top 2 (9 and 7) get 4 bits; the third (5) keeps the rule's 3 bits (layer 3 = last MoE block)
    const moeq_plan_tensor *t = find(p, c, expert(0, 1, 1));
    assert_int_equal(t->q.bits, 4), assert_int_equal(t->policy, 0), assert_true(t->score == 7);
    t = find(p, c, expert(2, 5, 2));
    assert_int_equal(t->q.bits, 4);
    t = find(p, c, expert(3, 3, 3));
    assert_int_equal(t->q.bits, 3), assert_int_equal(t->policy, -1), assert_int_equal(t->rule, 0);
    // block: layer 1 has the largest probe error -> its experts 8 bits (decided by policy 2, score 0.30)
    t = find(p, c, expert(1, 0, 1));
    assert_int_equal(t->q.bits, 8), assert_int_equal(t->policy, 1), assert_true(fabs(t->score - 0.30) < 1e-15);
    // kurtosis ranks on layer 1 (after the block policy: later policies override what they set)
    t = find(p, c, expert(1, 3, 2));
    assert_int_equal(t->q.method, MOEQ_METHOD_MILO), assert_int_equal(t->q.rank, 32), assert_int_equal(t->policy, 2);
    assert_int_equal(find(p, c, expert(1, 4, 2))->q.rank, 8);
    assert_int_equal(find(p, c, expert(1, 5, 2))->q.rank, 0);
    // attention: untouched (defaults)
    t = find(p, c, "model.layers.0.self_attn.q_proj.weight");
    assert_int_equal(t->q.bits, 2), assert_int_equal(t->policy, -1), assert_int_equal(t->rule, -1);
    moeq_plan_free(&p);
    // without an analysis the recipe is refused with a hint
    assert_status(moeq_plan_build(c, r, &cm, &p), MOEQ_ERR_ARG, "need the weights");
    moeq_recipe_free(&r);
    moeq_analysis_free(&an);
    moeq_catalog_close(&c);
}

static void test_frequency(void **state) {
    (void)state;
    char dir[] = "/tmp/moeq-freq-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], yp[256];
    snprintf(path, sizeof path, "%s/counts.csv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "layer,expert,count\n# comment\n");
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 8; e++) fprintf(f, "%d,%d,%d\n", l, e, e == (l + 2) % 8 ? 100 : e == 7 ? 50 : 10);
    fclose(f);
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    // recipe path in the same folder: "counts.csv" resolves next to it
    snprintf(yp, sizeof yp, "%s/r.yaml", dir);
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse(yp, "version: 1\ndefaults: {bits: 2}\npolicies:\n"
                                        "  - kind: frequency\n    counts: counts.csv\n    top: 1\n    set: {bits: 4}\n"
                                        "  - kind: frequency_rank\n    counts: counts.csv\n    rank: 8\n"
                                        "    match: {class: routed_expert, layers: \"0\"}\n", &r),
                  MOEQ_OK, NULL);
    moeq_plan *p = NULL;
    assert_status(moeq_plan_build(c, r, &cm, &p), MOEQ_OK, NULL);
    for (int l = 1; l < 4; l++)
        for (int e = 0; e < 8; e++) assert_int_equal(find(p, c, expert(l, e, 1))->q.bits, e == (l + 2) % 8 ? 4 : 2);
    // layer 0: counts {10,10,100,10,10,10,10,50}, sum 210: rank_e = round(c/210 * 8 * 8)
    const int want[8] = {3, 3, 30, 3, 3, 3, 3, 15};
    for (int e = 0; e < 8; e++) {
        const moeq_plan_tensor *t = find(p, c, expert(0, e, 2));
        assert_int_equal(t->q.rank, want[e]);
        assert_int_equal(t->policy, 1);
    }
    moeq_plan_free(&p);
    moeq_recipe_free(&r);
    // JSON counts and their errors
    snprintf(path, sizeof path, "%s/c.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"counts\": [[1, 2, 3], null, [4, 5, 6]]}");
    fclose(f);
    moeq_routing_counts *rc = NULL;
    assert_status(moeq_routing_counts_load(path, &rc), MOEQ_OK, NULL);
    assert_int_equal(rc->n_layers, 3), assert_int_equal(rc->n_experts, 3);
    assert_true(rc->c[2 * 3 + 1] == 5 && rc->present[1] == 0 && rc->present[2] == 1);
    moeq_routing_counts_free(&rc);
    const char *bad[][2] = {{"{\"counts\": [[1, 2], [3]]}", "has 1 experts"},
                            {"{\"counts\": [[1, -2]]}", "must be a number >= 0"},
                            {"{\"layers\": 1}", "expected {\"counts\""},
                            {"0,1\n", "expected \"layer,expert,count\""},
                            {"0,1,x\n", "expected \"layer,expert,count\""}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        f = fopen(path, "w");
        fputs(bad[k][0], f);
        fclose(f);
        assert_status(moeq_routing_counts_load(path, &rc), MOEQ_ERR_FORMAT, bad[k][1]);
        assert_null(rc);
    }
    remove(path);
    snprintf(path, sizeof path, "%s/counts.csv", dir);
    remove(path);
    rmdir(dir);
    moeq_catalog_close(&c);
}

// ---- the budget solver ----

static double frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void test_solver(void **state) {
    (void)state;
    enum { N = 300, M = 6 };
    double *bits = malloc(sizeof(double) * N * M), *err = malloc(sizeof(double) * N * M);
    int *ch = malloc(sizeof(int) * N), *ch2 = malloc(sizeof(int) * N);
    uint64_t seed = 42;
    double params = 0;
    const double bpw[M] = {2.25, 2.5, 3.25, 3.5, 4.25, 2.8};
    for (int i = 0; i < N; i++) {
        const double n = 1000 + 500 * (i % 7), scale = 0.5 + frand(&seed);
        params += n;
        for (int k = 0; k < M; k++) {
            bits[i * M + k] = bpw[k] * n;
            err[i * M + k] = scale * n * pow(2.0, -2 * bpw[k]) * (0.8 + 0.4 * frand(&seed));
        }
    }
    bits[7 * M + 5] = INFINITY; // a candidate that cannot apply to item 7
    for (double target = 2.3; target < 4.25; target += 0.137) {
        moeq_budget_result r, r2;
        assert_status(moeq_budget_solve(N, M, bits, err, 0, params, target, 0.02, ch, &r), MOEQ_OK, NULL);
        assert_true(r.achieved_bpw <= target + 1e-12 && r.achieved_bpw >= target - 0.02);
        double b = 0, e = 0;
        for (int i = 0; i < N; i++) b += bits[i * M + ch[i]], e += err[i * M + ch[i]];
        assert_true(fabs(b / params - r.achieved_bpw) < 1e-12 && fabs(e - r.err_total) < 1e-9 * e);
        assert_int_not_equal(ch[7], 5);
        // deterministic
        assert_status(moeq_budget_solve(N, M, bits, err, 0, params, target, 0.02, ch2, &r2), MOEQ_OK, NULL);
        assert_memory_equal(ch, ch2, sizeof(int) * N);
        // never worse than a uniform choice that fits the same budget
        for (int k = 0; k < M - 1; k++) {
            if (bpw[k] > target) continue;
            double eu = 0;
            for (int i = 0; i < N; i++) eu += err[i * M + k];
            assert_true(r.err_total <= eu);
        }
    }
    // fixed bits count in the budget: half the weights fixed at 4.25
    moeq_budget_result r;
    assert_status(moeq_budget_solve(N, M, bits, err, 4.25 * params, 2 * params, 3.3, 0.02, ch, &r), MOEQ_OK, NULL);
    assert_true(r.achieved_bpw <= 3.3 && r.achieved_bpw >= 3.28);
    // impossible budgets say what the candidates allow
    assert_status(moeq_budget_solve(N, M, bits, err, 0, params, 2.0, 0.02, ch, &r), MOEQ_ERR_ARG, "below what the candidates allow");
    assert_status(moeq_budget_solve(N, M, bits, err, 0, params, 5.0, 0.02, ch, &r), MOEQ_ERR_ARG, "not reached");
    // coarse items: one item of 3 candidates cannot land within 0.001 of 3.0
    const double b1[3] = {2, 2.5, 4}, e1[3] = {3, 2, 1};
    assert_status(moeq_budget_solve(1, 3, b1, e1, 0, 1, 3.0, 0.001, ch, &r), MOEQ_ERR_ARG, "too coarse");
    assert_status(moeq_budget_solve(1, 3, b1, e1, 0, 1, 2.5, 0.02, ch, &r), MOEQ_OK, NULL);
    assert_int_equal(ch[0], 1);
    free(bits), free(err), free(ch), free(ch2);
}

// Hull greedy + fill against brute force on small instances: never worse than 5% of the optimum gap here,
// and always within the budget.
static void test_solver_small_exact(void **state) {
    (void)state;
    enum { N = 6, M = 3 };
    uint64_t seed = 7;
    double bits[N * M], err[N * M];
    int ch[N];
    for (int rep = 0; rep < 20; rep++) {
        double params = 0;
        for (int i = 0; i < N; i++) {
            const double n = 10 + 10 * frand(&seed);
            params += n;
            for (int k = 0; k < M; k++) bits[i * M + k] = (2 + k) * n, err[i * M + k] = n * pow(4, -k) * (0.5 + frand(&seed));
        }
        const double target = 2.5 + frand(&seed);
        moeq_budget_result r;
        moeq_status st = moeq_budget_solve(N, M, bits, err, 0, params, target, 0.35, ch, &r);
        assert_int_equal(st, MOEQ_OK);
        double best = INFINITY;
        for (int code = 0; code < 729; code++) {
            double b = 0, e = 0;
            for (int i = 0, x = code; i < N; i++, x /= 3) b += bits[i * M + x % 3], e += err[i * M + x % 3];
            if (b <= target * params && e < best) best = e;
        }
        assert_true(r.achieved_bpw <= target + 1e-12);
        assert_true(r.err_total >= best - 1e-9);
        assert_true(r.err_total <= 1.5 * best + 1e-9); // greedy on convex hulls: close to optimal
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scores_by_hand),
        cmocka_unit_test(test_scorers_pick),
        cmocka_unit_test(test_frequency),
        cmocka_unit_test(test_solver),
        cmocka_unit_test(test_solver_small_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
