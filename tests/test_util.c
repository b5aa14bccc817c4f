// test_util.c: see test_util.h.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *moeq_test_tiny_model_dir(void) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/models/mixtral-tiny", MOEQ_SHARED_DIR);
    return path;
}

const char *moeq_test_real_metadata_dir(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/fixtures/real-metadata/%s", MOEQ_SHARED_DIR, name);
    return path;
}

static const char *tmp_root(void) {
    const char *t = getenv("TMPDIR");
    return (t && *t) ? t : "/tmp";
}

int32_t *moeq_test_tokens(int64_t T, uint32_t seed, uint32_t vocab) {
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(T > 0 ? T : 1));
    assert_non_null(t);
    for (int64_t i = 0; i < T; i++)
        t[i] = (int32_t)((seed + 7919u * (uint32_t)i + (uint32_t)(i * i)) % vocab);
    return t;
}

char *moeq_test_mkdtemp(const char *tag) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/moeq-test-%s-XXXXXX", tmp_root(), tag);
    char *d = mkdtemp(buf);
    assert_non_null(d);
    return strdup(d);
}

void moeq_test_rmtree(const char *dir) {
    char cmd[8192];
    if (!dir || strncmp(dir, tmp_root(), strlen(tmp_root())) != 0 || !strstr(dir, "moeq-test-")) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

char *moeq_test_write(const char *dir, const char *name, const void *data, size_t len) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

void moeq_test_assert_close_f32(const float *a, const float *b, int64_t n, double atol, double rtol,
                                const char *file, int line) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        int ok = d <= atol + rtol * fabs((double)b[i]) || (isnan(a[i]) && isnan(b[i]));
        if (!ok) {
            if (bad < 5)
                fprintf(stderr, "%s:%d: mismatch at %lld: %.9g vs %.9g\n", file, line, (long long)i, a[i],
                        b[i]);
            bad++;
        }
    }
    if (bad) _fail(file, line);
}

void moeq_test_assert_status(moeq_status st, moeq_status want, const char *needle, const char *file,
                             int line) {
    if (st != want) {
        fprintf(stderr, "%s:%d: status %d (%s), wanted %d (%s); detail: %s\n", file, line, st,
                moeq_status_str(st), want, moeq_status_str(want), moeq_error_detail());
        _fail(file, line);
    }
    if (needle && !strstr(moeq_error_detail(), needle)) {
        fprintf(stderr, "%s:%d: error detail lacks '%s': %s\n", file, line, needle, moeq_error_detail());
        _fail(file, line);
    }
}
