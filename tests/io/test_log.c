// test_log.c: what the logger prints of an error detail: MOEQ_FAIL's "layer/file.c:line: " source
// locations are dropped unless -v turned them on (also nested ones, from a detail carried up with
// MOEQ_FAIL(st, "%s: %s", ...)), while the user's own locations (recipe "t.yaml:3: ", stored recipe
// "a.h5:recipe:2: ", "shard.safetensors: ") stay; and that the JSON form is one object per line with the
// message's fields.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "moeq_io.h"

static void test_detail_locations(void **state) {
    (void)state;
    char out[512];
    moeq_error_clear();
    (void)MOEQ_FAIL(MOEQ_ERR_FORMAT, "t.yaml:3: rule 1 matches no tensor");
    char inner[256];
    snprintf(inner, sizeof inner, "%s", moeq_error_detail());
    (void)MOEQ_FAIL(MOEQ_ERR_FORMAT, "recipe (%s)\n%s", inner, inner);
    moeq_log_locations(0);
    moeq_log_detail(moeq_error_detail(), out, sizeof out);
    assert_string_equal(out,
                        "recipe (t.yaml:3: rule 1 matches no tensor)\nt.yaml:3: rule 1 matches no tensor");
    moeq_log_locations(1);
    moeq_log_detail(moeq_error_detail(), out, sizeof out);
    assert_non_null(strstr(out, "io/test_log.c:"));
    assert_non_null(strstr(out, "(io/test_log.c:"));
    moeq_log_locations(0);
    // not a source location: kept
    const char *keep[] = {"a.h5:recipe:2: nesting deeper than 64 levels", "model.safetensors: tensor x: NaN",
                          "dir/x.cpp:3: y", "io/x.c:12 no colon after the line", "ratio 1.c:2: z"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        moeq_log_detail(keep[i], out, sizeof out);
        assert_string_equal(out, keep[i]);
    }
    moeq_log_detail("kernels/hqq_cuda.cu:88: cuda: x", out, sizeof out);
    assert_string_equal(out, "cuda: x");
    moeq_log_detail("io/x.c:1: ", out, 4); // truncation stays terminated
    assert_true(strlen(out) < 4);
}

static void test_json_lines(void **state) {
    (void)state;
    char path[] = "/tmp/moeq_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    moeq_log_init(3, MOEQ_LOG_INFO);
    assert_int_equal(moeq_log_configure(path, 1), MOEQ_OK);
    MOEQ_LOG(MOEQ_LOG_INFO, "first \"quoted\" line\nwith a newline and a byte \xff");
    MOEQ_LOG_F(MOEQ_LOG_WARN, "\"done\":3,\"total\":9", "progress %d/%d", 3, 9);
    MOEQ_LOG(MOEQ_LOG_DBG, "below the level: not written");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "rank")), 3);
        assert_non_null(json_string_value(json_object_get(o, "time")));
        if (n == 1) {
            assert_string_equal(json_string_value(json_object_get(o, "level")), "WARN");
            assert_string_equal(json_string_value(json_object_get(o, "message")), "progress 3/9");
            assert_int_equal(json_integer_value(json_object_get(o, "total")), 9);
        }
        json_decref(o);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 2);
    unlink(path);
    assert_int_equal(moeq_log_configure("/nonexistent-dir/x.log", 0), MOEQ_ERR_IO);
    assert_non_null(strstr(moeq_error_detail(), "/nonexistent-dir/x.log"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detail_locations),
        cmocka_unit_test(test_json_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
