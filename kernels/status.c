// status.c: moeq_status names and the thread-local error detail (see moeq_status.h).
#include "moeq_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const moeq_status_names[MOEQ_STATUS_COUNT] = {
    [MOEQ_OK] = "ok",
    [MOEQ_ERR_ARG] = "bad argument",
    [MOEQ_ERR_NOMEM] = "out of memory",
    [MOEQ_ERR_IO] = "I/O error",
    [MOEQ_ERR_FORMAT] = "malformed input",
    [MOEQ_ERR_UNSUPPORTED] = "unsupported",
    [MOEQ_ERR_NUMERIC] = "numerical failure",
    [MOEQ_ERR_NOT_FOUND] = "not found",
    [MOEQ_ERR_MISMATCH] = "mismatch",
    [MOEQ_ERR_EXISTS] = "already exists",
    [MOEQ_ERR_CUDA] = "CUDA error",
    [MOEQ_ERR_MPI] = "MPI error",
    [MOEQ_ERR_HDF5] = "HDF5 error",
    [MOEQ_ERR_INTERRUPTED] = "interrupted",
};

const char *moeq_status_str(moeq_status s) {
    if ((int)s < 0 || s >= MOEQ_STATUS_COUNT || !moeq_status_names[s]) return "unknown status";
    return moeq_status_names[s];
}

static _Thread_local char moeq_err_buf[2048];

moeq_status moeq_error_set_(moeq_status s, const char *file, int line, const char *fmt, ...) {
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // Keep the path short: from the layer folder on (".../io/safetensors.c" -> "io/safetensors.c").
    const char *short_file = file;
    for (const char *p = file; *p; p++)
        if (*p == '/' && p[1] && strchr(p + 1, '/') == NULL) {
            const char *q = p;
            while (q > file && q[-1] != '/') q--;
            short_file = q;
        }
    snprintf(moeq_err_buf, sizeof moeq_err_buf, "%s:%d: %s", short_file, line, msg);
    return s;
}

const char *moeq_error_detail(void) {
    return moeq_err_buf;
}

void moeq_error_clear(void) {
    moeq_err_buf[0] = '\0';
}

moeq_status moeq_error_restore(moeq_status s, const char *detail) {
    snprintf(moeq_err_buf, sizeof moeq_err_buf, "%s", detail ? detail : "");
    return s;
}
