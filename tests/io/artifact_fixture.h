// artifact_fixture.h: the two-tensor artifact layout the artifact tests (writer and reader) share: a MiLo
// 3-bit rank-4 expert linear [16, 128] in unit 0 and a pass-through norm [128] in unit 1.
#ifndef MOEQ_TEST_ARTIFACT_FIXTURE_H
#define MOEQ_TEST_ARTIFACT_FIXTURE_H

#include <string.h>

#include "moeq_io.h"
#include "test_util.h"

#define MOEQ_TEST_T0 "model.layers.0.block_sparse_moe.experts.0.w1.weight"

static inline void moeq_test_artifact_entries(moeq_artifact_entry e[2]) {
    memset(e, 0, 2 * sizeof *e);
    e[0].name = MOEQ_TEST_T0;
    e[0].c = moeq_tensor_classify(e[0].name);
    e[0].source_dtype = MOEQ_DTYPE_BF16;
    e[0].ndim = 2;
    e[0].shape[0] = 16;
    e[0].shape[1] = 128;
    e[0].q = moeq_qsettings_default();
    e[0].q.method = MOEQ_METHOD_MILO;
    e[0].q.bits = 3;
    e[0].q.rank = 4;
    e[0].bits_per_weight = 4.0;
    assert_int_equal(moeq_artifact_entry_specs(&e[0], 12 * 4), MOEQ_OK);
    e[1].name = "model.norm.weight";
    e[1].c = moeq_tensor_classify(e[1].name);
    e[1].source_dtype = MOEQ_DTYPE_BF16;
    e[1].ndim = 1;
    e[1].shape[0] = 128;
    e[1].q.method = MOEQ_METHOD_NONE;
    e[1].unit = 1;
    assert_int_equal(moeq_artifact_entry_specs(&e[1], 0), MOEQ_OK);
}

#endif
