// artifact_fixture.h: the two-tensor artifact layout the artifact tests (writer and reader) share: a MiLo
// 3-bit rank-4 expert linear [16, 128] in unit 0 and a pass-through norm [128] in unit 1.
#ifndef MOEQ_TEST_ARTIFACT_FIXTURE_H
#define MOEQ_TEST_ARTIFACT_FIXTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

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
    assert_int_equal(moeq_artifact_entry_specs(&e[0]), MOEQ_OK);
    e[1].name = "model.norm.weight";
    e[1].c = moeq_tensor_classify(e[1].name);
    e[1].source_dtype = MOEQ_DTYPE_BF16;
    e[1].ndim = 1;
    e[1].shape[0] = 128;
    e[1].q.method = MOEQ_METHOD_NONE;
    e[1].unit = 1;
    assert_int_equal(moeq_artifact_entry_specs(&e[1]), MOEQ_OK);
}

// Writes the fixture as an artifact at path whose datasets hold seeded bytes (with their checksums; tensor i
// records rel_fro_error 0.25 i), sealed when seal; fail_t0 records tensor 0 as failed numerically. e
// receives the entries with their offsets.
static inline void moeq_test_artifact_write(const char *path, moeq_artifact_entry e[2],
                                            const char *config_json, int seal, int fail_t0) {
    moeq_test_artifact_entries(e);
    moeq_artifact_meta m = {.moeq_version = "test",
                            .recipe_text = "version: 1\n",
                            .recipe_path = "r.yaml",
                            .config_json = config_json,
                            .shards_json = "[]",
                            .model_dir = "/m",
                            .plan_digest = 0x77,
                            .n_units = 2};
    assert_int_equal(moeq_artifact_create(path, &m, e, 2), MOEQ_OK);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    moeq_tensor_result r[2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 2; i++) {
        XXH3_state_t *all = XXH3_createState();
        XXH3_64bits_reset(all);
        r[i].tensor = (uint32_t)i;
        for (int d = 0; d < MOEQ_DS_COUNT; d++) {
            if (!e[i].ds[d].present) continue;
            unsigned char *b = malloc(e[i].ds[d].bytes);
            for (uint64_t k = 0; k < e[i].ds[d].bytes; k++) b[k] = (unsigned char)(k * 31 + d * 7 + i);
            assert_int_equal(moeq_pwrite_full(fd, b, e[i].ds[d].bytes, e[i].offset[d], path), MOEQ_OK);
            r[i].ds_checksum[d] = XXH3_64bits(b, e[i].ds[d].bytes);
            XXH3_64bits_update(all, b, e[i].ds[d].bytes);
            free(b);
        }
        r[i].checksum = XXH3_64bits_digest(all);
        r[i].rel_fro_error = 0.25 * i;
        XXH3_freeState(all);
    }
    if (fail_t0) {
        r[0].status = MOEQ_ERR_NUMERIC;
        snprintf(r[0].message, sizeof r[0].message, "SVD did not converge");
    }
    close(fd);
    if (seal) assert_int_equal(moeq_artifact_seal(path, e, r, 2, NULL), MOEQ_OK);
}

#endif
