// test_partition.c: partitioners are pure: every unit exactly once, deterministic, and LPT within Graham's
// bound (4/3 - 1/(3m)) of the optimum (brute-forced on small random instances).
#include "test_util.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "moeq_sched.h"
#include "rng.h"

static double opt_makespan(const double *c, int n, int m) {
    int total = 1;
    for (int i = 0; i < n; i++) total *= m;
    double best = 1e300;
    for (int code = 0; code < total; code++) {
        double load[8] = {0};
        int x = code;
        for (int i = 0; i < n; i++) {
            load[x % m] += c[i];
            x /= m;
        }
        double mk = 0;
        for (int k = 0; k < m; k++) mk = load[k] > mk ? load[k] : mk;
        if (mk < best) best = mk;
    }
    return best;
}

static void test_lpt_bound_and_coverage(void **state) {
    (void)state;
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)(moeq_rng_u64(42, (uint64_t)trial, 0) % 9), m = 1 + (int)(moeq_rng_u64(42, (uint64_t)trial, 1) % 3);
        double c[16];
        for (int i = 0; i < n; i++) c[i] = 1.0 + 99.0 * moeq_rng_uniform(7, (uint64_t)trial, (uint64_t)i);
        int owner[16], owner2[16];
        double load[8], load2[8];
        assert_int_equal(moeq_partition_lpt(c, n, m, owner, load), MOEQ_OK);
        double sum = 0, lsum = 0, mk = 0;
        for (int i = 0; i < n; i++) {
            assert_true(owner[i] >= 0 && owner[i] < m);
            sum += c[i];
        }
        for (int k = 0; k < m; k++) {
            lsum += load[k];
            mk = load[k] > mk ? load[k] : mk;
        }
        assert_true(lsum > sum - 1e-9 && lsum < sum + 1e-9); // every unit counted once
        double opt = opt_makespan(c, n, m);
        assert_true(mk <= (4.0 / 3.0 - 1.0 / (3.0 * m)) * opt + 1e-9);
        assert_int_equal(moeq_partition_lpt(c, n, m, owner2, load2), MOEQ_OK);
        assert_memory_equal(owner, owner2, sizeof(int) * (size_t)n); // deterministic
    }
}

static void test_ties_and_errors(void **state) {
    (void)state;
    double c[6] = {1, 1, 1, 1, 1, 1};
    int owner[6];
    assert_int_equal(moeq_partition_lpt(c, 6, 4, owner, NULL), MOEQ_OK);
    const int want[6] = {0, 1, 2, 3, 0, 1}; // equal costs: index order, lowest rank first
    assert_memory_equal(owner, want, sizeof want);
    assert_int_equal(moeq_partition_round_robin(6, 4, owner), MOEQ_OK);
    assert_memory_equal(owner, want, sizeof want);
    c[2] = -1;
    assert_int_equal(moeq_partition_lpt(c, 6, 2, owner, NULL), MOEQ_ERR_ARG);
    assert_int_equal(moeq_partition_lpt(c, 6, 0, owner, NULL), MOEQ_ERR_ARG);
    assert_int_equal(moeq_partition_lpt(NULL, 0, 3, NULL, NULL), MOEQ_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lpt_bound_and_coverage),
        cmocka_unit_test(test_ties_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
