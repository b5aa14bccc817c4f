// test_calib_layer.c: the calibration pass's layer over the ranks (pipeline/calib_layer.h) on mixtral-tiny,
// as one rank (MPI_COMM_SELF; the rank-count invariance of whole runs is tests/pipeline/test_gptq_e2e.sh):
// the layer's output is moeq_model_layer_forward's bit for bit, with only some experts loaded per call
// impossible on one rank, so all of them; the attention-only mode leaves x alone; every class's rows are
// the whole-model forward's taps (attention input and output, FFN input), the rows routed to each expert in
// global order (one per token and top-k slot, every slot once), and the down projections' inputs.
#include "test_util.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "calib_layer.h"
#include "moeq_io.h"

static void test_layer_rows(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    const moeq_model_config *cfg = &c->cfg;
    const int64_t T = 64, H = cfg->hidden, K = cfg->top_k, E = cfg->n_experts, L = cfg->n_layers;
    const int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim, I = cfg->moe_intermediate;
    const int n_seq = 3, layer = 1;
    moeq_model *full = NULL;
    assert_status(moeq_model_load_catalog(c, &full), MOEQ_OK, NULL);
    float *x = malloc(sizeof(float) * (size_t)(n_seq * T * H)),
          *ref = malloc(sizeof(float) * (size_t)(n_seq * T * H));
    float *attn_in = malloc(sizeof(float) * (size_t)(n_seq * L * T * H));
    float *attn_out = malloc(sizeof(float) * (size_t)(n_seq * L * T * qd));
    int32_t *topk = malloc(sizeof(int32_t) * (size_t)(n_seq * L * T * K));
    for (int s = 0; s < n_seq; s++) {
        int32_t *tok = moeq_test_tokens(T, 11u + (uint32_t)s, 65);
        const moeq_forward_taps taps = {.attn_in = attn_in + s * L * T * H,
                                        .attn_out = attn_out + s * L * T * qd,
                                        .topk = topk + s * L * T * K};
        assert_status(moeq_model_forward(full, tok, T, NULL, &taps), MOEQ_OK, NULL);
        assert_status(moeq_model_embed(full, tok, T, x + s * T * H), MOEQ_OK, NULL); // layer 1's input
        assert_status(moeq_model_layer_forward(full, 0, x + s * T * H, T, NULL), MOEQ_OK, NULL);
        memcpy(ref + s * T * H, x + s * T * H, sizeof(float) * (size_t)(T * H));
        assert_status(moeq_model_layer_forward(full, layer, ref + s * T * H, T, NULL), MOEQ_OK, NULL);
        free(tok);
    }
    int *owner = calloc((size_t)E, sizeof(int));
    const moeq_dist_layer d = {.comm = MPI_COMM_SELF,
                               .rank = 0,
                               .n_ranks = 1,
                               .m = full,
                               .layer = layer,
                               .expert_owner = owner,
                               .n_seqs = n_seq,
                               .seq0 = 0,
                               .n_loc = n_seq,
                               .T = T};
    const int nc = moeq_calib_n_classes(cfg);
    unsigned char *want = calloc((size_t)nc, 1);
    moeq_calib_rows *rows = calloc((size_t)nc, sizeof *rows);
    // attention only: x unchanged, attention rows = the taps
    for (int k = 0; k < nc; k++) want[k] = k == MOEQ_CIN_ATTN_IN || k == MOEQ_CIN_ATTN_OUT;
    float *x0 = malloc(sizeof(float) * (size_t)(n_seq * T * H));
    memcpy(x0, x, sizeof(float) * (size_t)(n_seq * T * H));
    assert_status(moeq_dist_layer_forward(&d, x, 1, want, rows), MOEQ_OK, NULL);
    assert_memory_equal(x, x0, sizeof(float) * (size_t)(n_seq * T * H));
    assert_int_equal(rows[MOEQ_CIN_ATTN_IN].n, n_seq * T);
    for (int s = 0; s < n_seq; s++) {
        assert_memory_equal(rows[MOEQ_CIN_ATTN_IN].x + s * T * H, attn_in + (s * L + layer) * T * H,
                            sizeof(float) * (size_t)(T * H));
        assert_memory_equal(rows[MOEQ_CIN_ATTN_OUT].x + s * T * qd, attn_out + (s * L + layer) * T * qd,
                            sizeof(float) * (size_t)(T * qd));
    }
    for (int k = 0; k < nc; k++) moeq_calib_rows_free(&rows[k]);
    // the whole layer: the one-process output bit for bit, and the experts' rows
    for (int k = 0; k < nc; k++) want[k] = k != MOEQ_CIN_HEAD_IN;
    assert_status(moeq_dist_layer_forward(&d, x, 0, want, rows), MOEQ_OK, NULL);
    assert_memory_equal(x, ref, sizeof(float) * (size_t)(n_seq * T * H));
    assert_int_equal(rows[MOEQ_CIN_FFN_IN].n, n_seq * T);
    int64_t total = 0;
    for (int64_t e = 0; e < E; e++) {
        const moeq_calib_rows *rx = &rows[MOEQ_CIN_EXPERT_X(e)], *ra = &rows[MOEQ_CIN_EXPERT_ACT(e)];
        int64_t routed = 0, first = -1;
        for (int64_t i = 0; i < n_seq * T * K; i++) {
            const int64_t s = i / (T * K), t = (i / K) % T;
            if (topk[(s * L + layer) * T * K + t * K + i % K] != e) continue;
            if (first < 0) first = s * T + t;
            routed++;
        }
        assert_int_equal(rx->n, routed);
        assert_int_equal(ra->n, routed);
        total += routed;
        if (!routed) continue;
        assert_int_equal(ra->cols, I);
        // the first routed row is the FFN input of the first token routed to e
        assert_memory_equal(rx->x, rows[MOEQ_CIN_FFN_IN].x + first * H, sizeof(float) * (size_t)H);
        for (int64_t j = 0; j < ra->n * ra->cols; j++) assert_true(isfinite(ra->x[j]));
    }
    assert_int_equal(total, n_seq * T * K); // every token and slot once
    for (int k = 0; k < nc; k++) moeq_calib_rows_free(&rows[k]);
    free(want), free(rows), free(x), free(x0), free(ref), free(attn_in), free(attn_out), free(topk),
        free(owner);
    moeq_model_free(&full);
    moeq_catalog_close(&c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_rows),
    };
    const int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
