// test_run_progress.c: the whole job's progress count (pipeline/run_progress.h) on 2 ranks when rank 1
// finishes first: its final count reaches rank 0 while rank 0 is still stepping, and rank 0's end must not
// wait for it again (that hang was seen in `moeq eval` with an unbalanced window split). A hang fails the
// test by its ctest timeout.
#include "test_util.h"

#include <mpi.h>
#include <unistd.h>

#include "run_progress.h"

static void test_early_final(void **state) {
    (void)state;
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    moeq_run_progress p;
    moeq_run_progress_begin(&p, MPI_COMM_WORLD, 1, rank == 0 ? 5 : 1, 0.01, "test", "items");
    assert_int_equal(p.total, 6);
    if (rank == 0) {
        for (int k = 1; k <= 5; k++) { // rank 1 has ended meanwhile: its final arrives during these steps
            usleep(50000);
            moeq_run_progress_step(&p, k);
        }
        assert_int_equal(p.finals, 1); // seen while stepping
    } else {
        moeq_run_progress_step(&p, 1);
    }
    moeq_run_progress_end(&p, rank == 0 ? 5 : 1);
    MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_early_final)};
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
