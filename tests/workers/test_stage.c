// test_stage.c: the worker's read-ahead stage (workers/stage.c) on the tiny real model (BF16) and a
// synthetic block-FP8 checkpoint: every staged tensor's bytes are moeq_catalog_read_raw's (and decode to
// moeq_catalog_read_f32's floats); a budget smaller than one tensor still moves, also when a unit is taken
// out of order; leftovers of an abandoned unit are discarded; a shard truncated after the catalog opened
// gives take() the error, naming the tensor, that a direct read gives, and later tensors still come;
// close while the reader is blocked on the budget or busy does not hang; the caller's host allocator is
// used and every buffer it gave is given back (the ASan job checks for leaks).
#include "test_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moeq_worker.h" // defines: moeq_stage (stage.h), moeq_plan_build, moeq_catalog
#include "synth.h"       // defines: moeq_synth_write (the FP8 fixture)

// ---- fixtures ----

// A host allocator that counts its calls (and can be slow, to catch the reader mid-way).
typedef struct counting_alloc {
    atomic_long allocs, frees;
    atomic_long bytes_live;
    int delay_us; // each allocation sleeps this long
} counting_alloc;

static void *count_alloc(size_t n, void *user) {
    counting_alloc *a = user;
    if (a->delay_us) usleep((useconds_t)a->delay_us);
    size_t *p = malloc(n + 16); // the size in front, for the live-bytes count
    if (!p) return NULL;
    p[0] = n;
    atomic_fetch_add(&a->allocs, 1);
    atomic_fetch_add(&a->bytes_live, (long)n);
    return (char *)p + 16;
}

static void count_free(void *p, void *user) {
    counting_alloc *a = user;
    size_t *h = (size_t *)((char *)p - 16);
    atomic_fetch_add(&a->frees, 1);
    atomic_fetch_sub(&a->bytes_live, (long)h[0]);
    free(h);
}

typedef struct fixture {
    char *dir; // temp checkpoint (removed at the end), NULL for the shared tiny model
    moeq_catalog *cat;
    moeq_plan *plan;
} fixture;

static const char *RTN4 =
    "version: 1\ndefaults: {method: rtn, bits: 4, group: 16}\n"; // 16 divides every width

static void fixture_open(fixture *f, const char *dir) {
    assert_status(moeq_catalog_open(dir, &f->cat), MOEQ_OK, NULL);
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("rtn4.yaml", RTN4, &r), MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_status(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK, NULL);
    assert_status(moeq_plan_build(f->cat, r, &cm, &f->plan), MOEQ_OK, NULL);
    moeq_recipe_free(&r);
}

static void fixture_close(fixture *f) {
    moeq_plan_free(&f->plan);
    moeq_catalog_close(&f->cat);
    if (f->dir) moeq_test_rmtree(f->dir);
    free(f->dir);
    f->dir = NULL;
}

// A copy of mixtral-tiny in a temp directory (to truncate a shard of).
static void fixture_copy_tiny(fixture *f) {
    f->dir = moeq_test_mkdtemp("stage");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cp %s/config.json %s/model-0000?-of-00002.safetensors %s/model.safetensors.index.json '%s'/",
             moeq_test_tiny_model_dir(), moeq_test_tiny_model_dir(), moeq_test_tiny_model_dir(), f->dir);
    assert_int_equal(system(cmd), 0);
    fixture_open(f, f->dir);
}

static moeq_stage *stage_open(const fixture *f, uint64_t budget, counting_alloc *a) {
    moeq_stage_cfg cfg = {.cat = f->cat, .plan = f->plan, .budget_bytes = budget};
    if (a) {
        cfg.host_alloc = count_alloc;
        cfg.host_free = count_free;
        cfg.alloc_user = a;
    }
    moeq_stage *s = NULL;
    assert_status(moeq_stage_open(&cfg, &s), MOEQ_OK, NULL);
    assert_non_null(s);
    return s;
}

// The n-th unit (0-based) of kind k, -1 when there are fewer.
static int nth_unit(const moeq_plan *p, moeq_unit_kind k, int n) {
    for (int u = 0; u < p->n_units; u++)
        if (p->u[u].kind == k && n-- == 0) return u;
    return -1;
}

static int quantized(const moeq_plan *p, int i) {
    return p->t[i].q.method != MOEQ_METHOD_NONE;
}

// The staged bytes are the catalog's, and decode to read_f32's floats.
static void check_staged(const fixture *f, const moeq_staged *it, int tensor) {
    const int ci = f->plan->t[tensor].cat;
    const moeq_tensor_info *t = &f->cat->t[ci];
    assert_int_equal(it->tensor, tensor);
    assert_int_equal(it->raw_bytes, moeq_catalog_raw_bytes(f->cat, ci));
    void *want = malloc(it->raw_bytes);
    assert_status(moeq_catalog_read_raw(f->cat, ci, want), MOEQ_OK, NULL);
    assert_memory_equal(it->raw, want, it->raw_bytes);
    free(want);
    if (t->scale >= 0) {
        assert_non_null(it->scale_raw);
        assert_int_equal(it->scale_bytes, moeq_catalog_raw_bytes(f->cat, t->scale));
        void *sw = malloc(it->scale_bytes);
        assert_status(moeq_catalog_read_raw(f->cat, t->scale, sw), MOEQ_OK, NULL);
        assert_memory_equal(it->scale_raw, sw, it->scale_bytes);
        free(sw);
    } else {
        assert_null(it->scale_raw);
        assert_int_equal(it->scale_bytes, 0);
    }
    float *a = malloc((size_t)t->numel * sizeof(float)), *b = malloc((size_t)t->numel * sizeof(float));
    assert_status(moeq_catalog_read_f32(f->cat, ci, a), MOEQ_OK, NULL);
    assert_status(moeq_catalog_decode_f32(f->cat, ci, it->raw, it->scale_raw, b), MOEQ_OK, NULL);
    assert_memory_equal(a, b, (size_t)t->numel * sizeof(float));
    free(a);
    free(b);
}

// Takes, checks and releases every quantized tensor of unit u in order; returns how many.
static int take_unit(moeq_stage *s, const fixture *f, int u) {
    const moeq_unit *un = &f->plan->u[u];
    int n = 0;
    for (int i = un->first; i < un->first + un->count; i++) {
        if (!quantized(f->plan, i)) continue;
        moeq_staged it;
        assert_status(moeq_stage_take(s, i, &it), MOEQ_OK, NULL);
        check_staged(f, &it, i);
        moeq_stage_release(s, &it);
        assert_null(it.raw);
        n++;
    }
    return n;
}

static int n_quantized(const moeq_plan *p, int u) {
    int n = 0;
    for (int i = p->u[u].first; i < p->u[u].first + p->u[u].count; i++) n += quantized(p, i);
    return n;
}

// ---- tests ----

static void test_in_order(void **state) {
    (void)state;
    fixture f = {0};
    fixture_open(&f, moeq_test_tiny_model_dir());
    counting_alloc a = {0};
    // room for two of the 96 KiB BF16 expert tensors ahead
    moeq_stage *s = stage_open(&f, 200000, &a);
    const int units[3] = {nth_unit(f.plan, MOEQ_UNIT_EXPERT, 0), nth_unit(f.plan, MOEQ_UNIT_ATTENTION, 1),
                          nth_unit(f.plan, MOEQ_UNIT_EXPERT, 9)};
    int want = 0;
    for (int k = 0; k < 3; k++) {
        assert_true(units[k] >= 0);
        assert_status(moeq_stage_push_unit(s, units[k]), MOEQ_OK, NULL);
        assert_status(moeq_stage_push_unit(s, units[k]), MOEQ_OK, NULL); // pending: not queued twice
        want += n_quantized(f.plan, units[k]);
    }
    assert_int_equal(want, 3 + 1 + 3);
    int got = 0;
    for (int k = 0; k < 3; k++) got += take_unit(s, &f, units[k]);
    assert_int_equal(got, want);
    moeq_stage_stats st;
    moeq_stage_stats_get(s, &st);
    assert_int_equal(st.tensors, want);
    assert_int_equal(st.taken, want);
    assert_int_equal(st.discarded, 0);
    assert_int_equal(st.errors, 0);
    uint64_t bytes = 0;
    for (int k = 0; k < 3; k++)
        for (int i = f.plan->u[units[k]].first; i < f.plan->u[units[k]].first + f.plan->u[units[k]].count;
             i++)
            if (quantized(f.plan, i)) bytes += moeq_catalog_raw_bytes(f.cat, f.plan->t[i].cat);
    assert_int_equal(st.bytes_read, bytes);
    assert_true(st.seconds_read >= 0 && st.seconds_wait >= 0);

    // a unit of norms and the router only: nothing to stage, and its tensors cannot be taken
    const int other = nth_unit(f.plan, MOEQ_UNIT_OTHER, 0);
    assert_true(other >= 0);
    assert_int_equal(n_quantized(f.plan, other), 0);
    assert_status(moeq_stage_push_unit(s, other), MOEQ_OK, NULL);
    moeq_staged it;
    const int norm = f.plan->u[other].first;
    assert_status(moeq_stage_take(s, norm, &it), MOEQ_ERR_ARG, "pass-through");
    assert_non_null(strstr(moeq_error_detail(), f.cat->t[f.plan->t[norm].cat].name));
    assert_status(moeq_stage_take(s, f.plan->n_tensors, &it), MOEQ_ERR_ARG, "outside the plan");
    assert_status(moeq_stage_push_unit(s, f.plan->n_units), MOEQ_ERR_ARG, "outside the plan");

    // a take without a push pushes the unit itself
    const int lone = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 20);
    assert_int_equal(take_unit(s, &f, lone), 3);

    moeq_stage_close(&s);
    assert_null(s);
    moeq_stage_close(&s); // NULL is fine
    // the caller's allocator made every buffer, and got every one back; the pool made reuse
    assert_true(atomic_load(&a.allocs) > 0);
    assert_true(atomic_load(&a.allocs) < want + 3);
    assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    assert_int_equal(atomic_load(&a.bytes_live), 0);
    fixture_close(&f);
}

static void test_fp8(void **state) {
    (void)state;
    fixture f = {0};
    f.dir = moeq_test_mkdtemp("stage-fp8");
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.arch = MOEQ_ARCH_DEEPSEEK_V3;
    o.dtype = MOEQ_DTYPE_F8_E4M3;
    o.n_layers = 2;
    o.hidden = 160; // partial 128x128 blocks
    o.intermediate = 96;
    o.n_experts = 4;
    o.top_k = 2;
    o.vocab = 200;
    o.n_heads = 4;
    o.seed = 5;
    assert_status(moeq_synth_write(f.dir, &o, NULL), MOEQ_OK, NULL);
    fixture_open(&f, f.dir);
    moeq_stage *s = stage_open(&f, 64 << 10, NULL); // malloc
    int scaled = 0, total = 0;
    for (int n = 0; n < 4; n++) {
        const int u = nth_unit(f.plan, MOEQ_UNIT_EXPERT, n);
        assert_true(u >= 0);
        assert_status(moeq_stage_push_unit(s, u), MOEQ_OK, NULL);
    }
    for (int n = 0; n < 4; n++) {
        const int u = nth_unit(f.plan, MOEQ_UNIT_EXPERT, n);
        total += take_unit(s, &f, u);
        for (int i = f.plan->u[u].first; i < f.plan->u[u].first + f.plan->u[u].count; i++)
            scaled += quantized(f.plan, i) && f.cat->t[f.plan->t[i].cat].scale >= 0;
    }
    assert_true(total > 0);
    assert_int_equal(scaled, total); // every expert weight is FP8 with its scale
    moeq_stage_close(&s);
    fixture_close(&f);
}

static void test_small_budget(void **state) {
    (void)state;
    fixture f = {0};
    fixture_open(&f, moeq_test_tiny_model_dir());
    counting_alloc a = {0};
    const int u0 = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 2), u1 = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 3);
    for (uint64_t budget = 0; budget <= 1; budget++) { // smaller than any tensor
        moeq_stage *s = stage_open(&f, budget, &a);
        assert_status(moeq_stage_push_unit(s, u0), MOEQ_OK, NULL);
        assert_status(moeq_stage_push_unit(s, u1), MOEQ_OK, NULL);
        // out of order within a unit: the last tensor first; the reader must pass the budget to reach it
        const int first = f.plan->u[u0].first;
        moeq_staged it[3];
        for (int k = 2; k >= 0; k--) {
            assert_status(moeq_stage_take(s, first + k, &it[k]), MOEQ_OK, NULL);
            check_staged(&f, &it[k], first + k);
        }
        for (int k = 0; k < 3; k++) moeq_stage_release(s, &it[k]);
        assert_int_equal(take_unit(s, &f, u1), 3);
        moeq_stage_stats st;
        moeq_stage_stats_get(s, &st);
        assert_int_equal(st.tensors, 6);
        assert_int_equal(st.discarded, 0);
        moeq_stage_close(&s);
    }
    assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    fixture_close(&f);
}

static void test_abandoned_unit(void **state) {
    (void)state;
    fixture f = {0};
    fixture_open(&f, moeq_test_tiny_model_dir());
    counting_alloc a = {0};
    moeq_stage *s = stage_open(&f, 1 << 20, &a); // room for the whole of both units
    const int u1 = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 4), u2 = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 5);
    assert_status(moeq_stage_push_unit(s, u1), MOEQ_OK, NULL);
    assert_status(moeq_stage_push_unit(s, u2), MOEQ_OK, NULL);
    // the worker takes u1's first tensor, then gives up on u1 (say a compute error) and moves on to u2
    moeq_staged it;
    assert_status(moeq_stage_take(s, f.plan->u[u1].first, &it), MOEQ_OK, NULL);
    moeq_stage_release(s, &it);
    assert_int_equal(take_unit(s, &f, u2), 3);
    moeq_stage_stats st;
    moeq_stage_stats_get(s, &st);
    assert_int_equal(st.discarded, 2); // u1's other two
    assert_int_equal(st.taken, 4);
    // u1 is no longer pending: a retry reads it again, from a push of its own
    assert_int_equal(take_unit(s, &f, u1), 3);
    // a second pass over a unit whose first pass was abandoned: the first pass's leftovers go
    const int u3 = nth_unit(f.plan, MOEQ_UNIT_EXPERT, 6);
    assert_status(moeq_stage_take(s, f.plan->u[u3].first, &it), MOEQ_OK, NULL);
    moeq_stage_release(s, &it);
    assert_status(moeq_stage_push_unit(s, u3), MOEQ_OK, NULL); // still pending: not queued again
    assert_int_equal(take_unit(s, &f, u3), 3);
    moeq_stage_stats_get(s, &st);
    assert_int_equal(st.discarded, 4);
    assert_int_equal(st.taken, 4 + 3 + 1 + 3);
    assert_int_equal(st.errors, 0);
    moeq_stage_close(&s);
    assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    fixture_close(&f);
}

static void test_truncated_shard(void **state) {
    (void)state;
    fixture f = {0};
    fixture_copy_tiny(&f);
    // cut the second shard in the middle of one expert tensor, after the catalog checked the file
    const int bad_cat = moeq_catalog_find(f.cat, "model.layers.2.block_sparse_moe.experts.3.w2.weight");
    assert_true(bad_cat >= 0);
    const moeq_tensor_info *bt = &f.cat->t[bad_cat];
    int bad = -1;
    for (int i = 0; i < f.plan->n_tensors; i++)
        if (f.plan->t[i].cat == bad_cat) bad = i;
    assert_true(bad >= 0 && quantized(f.plan, bad));
    const int ubad = f.plan->t[bad].unit;
    // a unit wholly before the cut (in the first shard)
    int ugood = -1;
    for (int n = 0; ugood < 0; n++) {
        const int u = nth_unit(f.plan, MOEQ_UNIT_EXPERT, n);
        assert_true(u >= 0);
        int in_first = 1;
        for (int i = f.plan->u[u].first; i < f.plan->u[u].first + f.plan->u[u].count; i++)
            in_first &= f.cat->t[f.plan->t[i].cat].shard != bt->shard;
        if (in_first) ugood = u;
    }
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", f.dir, f.cat->shard_names[bt->shard]);
    assert_int_equal(truncate(path, (off_t)(bt->offset + bt->nbytes / 2)), 0);

    counting_alloc a = {0};
    moeq_stage *s = stage_open(&f, 1 << 20, &a);
    assert_status(moeq_stage_push_unit(s, ubad), MOEQ_OK, NULL);
    assert_status(moeq_stage_push_unit(s, ugood), MOEQ_OK, NULL);
    int n_err = 0;
    for (int i = f.plan->u[ubad].first; i < f.plan->u[ubad].first + f.plan->u[ubad].count; i++) {
        // what a direct read on this thread says
        void *buf = malloc(moeq_catalog_raw_bytes(f.cat, f.plan->t[i].cat));
        moeq_status want = moeq_catalog_read_raw(f.cat, f.plan->t[i].cat, buf);
        char want_detail[2048];
        snprintf(want_detail, sizeof want_detail, "%s", moeq_error_detail());
        free(buf);
        moeq_error_clear();
        moeq_staged it;
        moeq_status st = moeq_stage_take(s, i, &it);
        assert_int_equal(st, want);
        if (st != MOEQ_OK) {
            n_err++;
            assert_null(it.raw);
            // re-raised on this thread, word for word, naming the shard and the tensor
            assert_string_equal(moeq_error_detail(), want_detail);
            assert_non_null(strstr(want_detail, f.cat->t[f.plan->t[i].cat].name));
            assert_non_null(strstr(want_detail, f.cat->shard_names[bt->shard]));
        } else {
            check_staged(&f, &it, i);
            moeq_stage_release(s, &it);
        }
        if (i == bad) assert_int_equal(st, MOEQ_ERR_FORMAT);
    }
    assert_true(n_err >= 1);
    // the stage goes on
    assert_int_equal(take_unit(s, &f, ugood), 3);
    moeq_stage_stats st;
    moeq_stage_stats_get(s, &st);
    assert_int_equal(st.errors, n_err);
    assert_int_equal(st.tensors, 6 - n_err);
    assert_int_equal(st.taken, 6);
    moeq_stage_close(&s);
    assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    fixture_close(&f);
}

static void test_close_midway(void **state) {
    (void)state;
    fixture f = {0};
    fixture_open(&f, moeq_test_tiny_model_dir());
    counting_alloc a = {0};
    // nothing pushed
    moeq_stage *s = stage_open(&f, 1 << 20, &a);
    moeq_stage_close(&s);
    // the reader blocked on the budget, one tensor taken and never released, the rest staged or queued
    s = stage_open(&f, 1, &a);
    for (int n = 0; n < 8; n++)
        assert_status(moeq_stage_push_unit(s, nth_unit(f.plan, MOEQ_UNIT_EXPERT, n)), MOEQ_OK, NULL);
    moeq_staged it;
    assert_status(moeq_stage_take(s, f.plan->u[nth_unit(f.plan, MOEQ_UNIT_EXPERT, 0)].first, &it), MOEQ_OK,
                  NULL);
    usleep(20000); // the reader stages the next tensor and blocks on the budget
    moeq_stage_close(&s);
    assert_null(s);
    assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    // the reader busy (slow allocations) with many units queued
    a.delay_us = 20000;
    for (int round = 0; round < 3; round++) {
        s = stage_open(&f, 64 << 20, &a);
        for (int n = 0; n < 16; n++)
            assert_status(moeq_stage_push_unit(s, nth_unit(f.plan, MOEQ_UNIT_EXPERT, n)), MOEQ_OK, NULL);
        if (round > 0) usleep(round * 15000);
        moeq_stage_close(&s);
        assert_int_equal(atomic_load(&a.allocs), atomic_load(&a.frees));
    }
    assert_int_equal(atomic_load(&a.bytes_live), 0);
    fixture_close(&f);
}

static void test_bad_config(void **state) {
    (void)state;
    fixture f = {0};
    fixture_open(&f, moeq_test_tiny_model_dir());
    moeq_stage *s = NULL;
    moeq_stage_cfg cfg = {.cat = f.cat, .plan = NULL, .budget_bytes = 1};
    assert_status(moeq_stage_open(&cfg, &s), MOEQ_ERR_ARG, "needs a catalog and a plan");
    cfg.plan = f.plan;
    cfg.host_alloc = count_alloc;
    assert_status(moeq_stage_open(&cfg, &s), MOEQ_ERR_ARG, "set both or neither");
    assert_null(s);
    fixture_close(&f);
    // metadata only: nothing to read
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_real_metadata_dir("mixtral-8x7b"), &c), MOEQ_OK, NULL);
    const moeq_plan empty = {0};
    moeq_stage_cfg m = {.cat = c, .plan = &empty, .budget_bytes = 1};
    assert_status(moeq_stage_open(&m, &s), MOEQ_ERR_UNSUPPORTED, "metadata-only");
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),        cmocka_unit_test(test_fp8),
        cmocka_unit_test(test_small_budget),    cmocka_unit_test(test_abandoned_unit),
        cmocka_unit_test(test_truncated_shard), cmocka_unit_test(test_close_midway),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
