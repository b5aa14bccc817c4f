// test_plan.c: the plan on the tiny real model (units by expert, bytes, bits per weight by hand),
// determinism of the digest, recipe rules that match nothing, and planning DeepSeek-R1 from metadata.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "moeq_sched.h"

static moeq_plan *plan_for(const char *dir, const char *yaml, moeq_catalog **cat, moeq_status want) {
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("t.yaml", yaml, &r), MOEQ_OK, NULL);
    if (!*cat) assert_status(moeq_catalog_open(dir, cat), MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    moeq_plan *p = NULL;
    assert_status(moeq_plan_build(*cat, r, &cm, &p), want, NULL);
    moeq_recipe_free(&r);
    return p;
}

static const char *MILO = "version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 8}\n"
                          "rules:\n  - match: {class: attention}\n    set: {rank: 64}\n";

static void test_tiny_units(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    moeq_plan *p = plan_for(moeq_test_tiny_model_dir(), MILO, &c, MOEQ_OK);
    assert_int_equal(p->n_tensors, 127);
    // per layer: q, k, v, o (a unit each), 8 experts, other; one model-level unit
    assert_int_equal(p->n_units, 4 * (4 + 8 + 1) + 1);
    int experts = 0;
    for (int u = 0; u < p->n_units; u++) {
        const moeq_unit *un = &p->u[u];
        assert_int_equal(un->id, u);
        for (int k = un->first; k < un->first + un->count; k++) assert_int_equal(p->t[k].unit, u);
        if (un->kind == MOEQ_UNIT_EXPERT) {
            experts++;
            assert_int_equal(un->count, 3);
            for (int k = un->first; k < un->first + un->count; k++) {
                const moeq_tensor_info *t = &c->t[p->t[k].cat];
                assert_int_equal(t->c.expert, un->expert);
                assert_int_equal(t->c.layer, un->layer);
            }
        }
        if (un->kind == MOEQ_UNIT_ATTENTION) assert_int_equal(un->count, 1);
    }
    assert_int_equal(experts, 32);
    assert_int_equal(p->bytes_in, 9874176); // every tensor read once (the index's total_size)
    // expert w1 [384, 128], 3 bits, g64, rank 8, fp16 factors: 3 + 32/64 + 16*8*(384+128)/(384*128)
    int i = -1;
    for (int k = 0; k < p->n_tensors; k++)
        if (!strcmp(c->t[p->t[k].cat].name, "model.layers.1.block_sparse_moe.experts.5.w1.weight")) i = k;
    assert_true(i >= 0);
    assert_true(fabs(p->t[i].bits_per_weight - (3.0 + 0.5 + 16.0 * 8 * 512 / (384.0 * 128))) < 1e-12);
    assert_int_equal(p->t[i].row_bytes, 48);
    assert_int_equal(p->t[i].q.rank, 8);
    // attention rank 64
    for (int k = 0; k < p->n_tensors; k++)
        if (c->t[p->t[k].cat].c.cls == MOEQ_TC_ATTENTION) assert_int_equal(p->t[k].q.rank, 64);
    // same inputs, same digest; another recipe, another digest
    moeq_plan *p2 = plan_for(NULL, MILO, &c, MOEQ_OK);
    assert_true(p2->digest == p->digest);
    moeq_plan *p3 = plan_for(NULL, "version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 16}\n", &c, MOEQ_OK);
    assert_true(p3->digest != p->digest);
    moeq_plan_free(&p), moeq_plan_free(&p2), moeq_plan_free(&p3);
    // a rule that matches nothing is bad input (exit 3) naming its line, index and match
    p = plan_for(NULL, "version: 1\nrules:\n  - match: {class: shared_expert}\n    set: {bits: 8}\n", &c,
                 MOEQ_ERR_FORMAT);
    assert_null(p);
    assert_non_null(
        strstr(moeq_error_detail(), "t.yaml:3: rule 1 (match {class: shared_expert}) matches no tensor"));
    p = plan_for(NULL,
                 "version: 1\nrules:\n  - match: {}\n    set: {bits: 8}\n  - match: {class: routed_expert, "
                 "proj: down, layers: \"7-9\", name: \"*.w9.*\"}\n    set: {bits: 8}\n",
                 &c, MOEQ_ERR_FORMAT);
    assert_null(p);
    assert_non_null(strstr(moeq_error_detail(), "t.yaml:5: rule 2 (match {class: routed_expert, proj: down, "
                                                "layers: \"7-9\", name: \"*.w9.*\"}) matches no tensor"));
    moeq_catalog_close(&c);
}

static void test_deepseek_metadata(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    moeq_plan *p = plan_for(moeq_test_real_metadata_dir("deepseek-r1"),
                            "version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 32}\n", &c, MOEQ_OK);
    int kinds[MOEQ_UNIT_KIND_COUNT] = {0};
    for (int u = 0; u < p->n_units; u++) kinds[p->u[u].kind]++;
    assert_int_equal(kinds[MOEQ_UNIT_EXPERT], 59 * 256);
    assert_int_equal(kinds[MOEQ_UNIT_ATTENTION], 62 * 5); // q_a, q_b, kv_a, kv_b, o: a unit each
    assert_int_equal(kinds[MOEQ_UNIT_SHARED], 59 * 3);
    assert_int_equal(kinds[MOEQ_UNIT_DENSE], 3 * 3);
    // FP8 scales of quantized weights are consumed, so fewer stored tensors than catalog entries
    assert_true(p->n_tensors < c->n_tensors);
    // 3 + 0.5 + compensators (~0.3 for 7168x2048 at rank 32)
    double bpw = moeq_plan_bpw_quantized(p);
    assert_true(bpw > 3.5 && bpw < 3.9);
    // the memory bound is set by the largest single tensor (the 18432x7168 dense MLP of the first layers),
    // not by the model: a few fp32 copies of it
    uint64_t largest = (uint64_t)18432 * 7168 * 4;
    assert_true(p->mem_max > largest && p->mem_max < 4 * largest);
    moeq_plan_free(&p);
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_units),
        cmocka_unit_test(test_deepseek_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
