// artifact_impl.h: private to the artifact writer (artifact.c) and reader (artifact_read.c): reading one
// scalar attribute.
#ifndef MOEQ_ARTIFACT_IMPL_H
#define MOEQ_ARTIFACT_IMPL_H

#include <hdf5.h>

// Reads scalar attribute n of o as mem_type into v; -1 when it is missing or unreadable.
static inline herr_t moeq_h5_attr_read(hid_t o, const char *n, hid_t mem_type, void *v) {
    if (H5Aexists(o, n) <= 0) return -1;
    hid_t a = H5Aopen(o, n, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, mem_type, v);
    H5Aclose(a);
    return rc;
}

#endif
