// run_common.c: see run_common.h.
#include "run_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

moeq_status moeq_run_agree(moeq_status st, MPI_Comm comm) {
    int mine = (int)st, worst = 0, rank = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, comm);
    if (worst != MOEQ_OK && mine != MOEQ_OK && rank != 0)
        MOEQ_LOG(MOEQ_LOG_ERR, "%s", moeq_error_detail()); // a rank-local failure: say it where it happened
    return (moeq_status)worst;
}

int moeq_run_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

moeq_status moeq_run_entries(const moeq_plan *p, const moeq_catalog *c, moeq_artifact_entry **out) {
    moeq_artifact_entry *e = MOEQ_CALLOC((size_t)p->n_tensors, sizeof *e, "artifact entries");
    if (!e) return MOEQ_ERR_NOMEM;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_tensor_info *t = &c->t[pt->cat];
        e[i].name = t->name;
        e[i].c = t->c;
        e[i].source_dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].unit = pt->unit;
        e[i].q = pt->q;
        e[i].bits_per_weight = pt->bits_per_weight;
        moeq_status st = moeq_artifact_entry_specs(&e[i]);
        if (st != MOEQ_OK) {
            moeq_free(&e);
            return st;
        }
    }
    *out = e;
    return MOEQ_OK;
}

void moeq_run_memory(long *peak_kib, long *now_kib) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long peak = -1, now = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmHWM:", 6)) peak = atol(line + 6);
        if (!strncmp(line, "VmRSS:", 6)) now = atol(line + 6);
    }
    if (f) fclose(f);
    *peak_kib = peak;
    if (now_kib) *now_kib = now;
}
