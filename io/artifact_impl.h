// artifact_impl.h: private to the artifact writer (artifact.c) and readers (artifact_read.c,
// artifact_scan.c): reading one scalar or string attribute.
#ifndef MOEQ_ARTIFACT_IMPL_H
#define MOEQ_ARTIFACT_IMPL_H

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

// Reads scalar attribute n of o as mem_type into v; -1 when it is missing or unreadable.
static inline herr_t moeq_h5_attr_read(hid_t o, const char *n, hid_t mem_type, void *v) {
    if (H5Aexists(o, n) <= 0) return -1;
    hid_t a = H5Aopen(o, n, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, mem_type, v);
    H5Aclose(a);
    return rc;
}

// Fixed-length string attribute n of o as a new NUL-terminated string (free()); NULL when it is missing,
// unreadable or not a fixed-length string.
static inline char *moeq_h5_attr_strdup(hid_t o, const char *n) {
    if (H5Aexists(o, n) <= 0) return NULL;
    hid_t a = H5Aopen(o, n, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *buf = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        buf = calloc(1, H5Tget_size(t) + 1);
        if (buf && H5Aread(a, t, buf) < 0) {
            free(buf);
            buf = NULL;
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return buf;
}

// The same into out (cap bytes, truncated; "" on failure); -1 when it cannot be read.
static inline herr_t moeq_h5_attr_str(hid_t o, const char *n, char *out, size_t cap) {
    char *s = moeq_h5_attr_strdup(o, n);
    if (cap) snprintf(out, cap, "%s", s ? s : "");
    free(s);
    return s ? 0 : -1;
}

#endif
