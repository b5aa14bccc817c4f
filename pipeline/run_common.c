// run_common.c: see run_common.h.
#include "run_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

moeq_status moeq_run_agree(moeq_status st, MPI_Comm comm) {
    int mine = (int)st, worst = 0, rank = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, comm);
    if (worst != MOEQ_OK && mine != MOEQ_OK && rank != 0)
        MOEQ_LOG(MOEQ_LOG_ERR, "%s", moeq_error_detail()); // a rank-local failure: say it where it happened
    return (moeq_status)worst;
}

moeq_status moeq_run_recipe_open(const char *path, int rank, moeq_recipe **out) {
    if (path) return moeq_recipe_load(path, out);
    if (rank == 0)
        MOEQ_LOG(MOEQ_LOG_INFO,
                 "no --recipe: the built-in default recipe (hqq, 4 bits, group 64); --recipe FILE chooses "
                 "(configs/README.md)");
    return moeq_recipe_parse("<built-in defaults>", "version: 1\n", out);
}

int moeq_run_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *lock_path(const char *out_path) {
    size_t n = strlen(out_path) + sizeof ".lock";
    char *p = MOEQ_MALLOC(n, "lock path");
    if (p) snprintf(p, n, "%s.lock", out_path);
    return p;
}

moeq_status moeq_run_lock(const char *out_path, int *fd) {
    *fd = -1;
    char *path = lock_path(out_path);
    if (!path) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    int no_locks = 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (f < 0) {
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create the lock file: %s", path, strerror(errno));
            break;
        }
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(f, F_SETLK, &fl) != 0) {
            const int e = errno;
            if (e == EACCES || e == EAGAIN) {
                char holder[256] = "";
                ssize_t r = pread(f, holder, sizeof holder - 1, 0);
                holder[r > 0 ? r : 0] = '\0';
                holder[strcspn(holder, "\n")] = '\0';
                struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
                const long pid = fcntl(f, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
                st = MOEQ_FAIL(MOEQ_ERR_EXISTS,
                               "%s: another moeq run is writing %s (%s%s; the filesystem reports lock "
                               "holder pid %ld)\n---> HINT: wait for it to end, or stop it first; "
                               "--resume and --force are refused while it runs (the lock goes away with "
                               "its process)",
                               path, out_path, holder[0] ? "it says: " : "no holder recorded", holder, pid);
            } else if (e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) {
                MOEQ_LOG(MOEQ_LOG_WARN,
                         "%s: the filesystem does not lock files (%s): nothing keeps a second run off %s "
                         "(on Lustre mount with -o flock)",
                         path, strerror(e), out_path);
                close(f);
                unlink(path);
                no_locks = 1;
                break;
            } else {
                st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
            }
            close(f);
            break;
        }
        struct stat a, b; // the file we locked may have been removed by the run that held it before us
        if (fstat(f, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(f);
            continue;
        }
        char host[128] = "?", since[32] = "?", rec[256];
        gethostname(host, sizeof host - 1);
        const time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm)) strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        const int n = snprintf(rec, sizeof rec, "host %s pid %ld since %s\n", host, (long)getpid(), since);
        if (ftruncate(f, 0) != 0 || pwrite(f, rec, (size_t)n, 0) != n)
            MOEQ_LOG(MOEQ_LOG_WARN, "%s: cannot record the holder: %s", path, strerror(errno));
        *fd = f;
        break;
    }
    if (st == MOEQ_OK && *fd < 0 && !no_locks)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot take the lock: the file kept being replaced", path);
    moeq_free(&path);
    return st;
}

void moeq_run_unlock(const char *out_path, int *fd) {
    if (*fd < 0) return;
    char *path = lock_path(out_path);
    if (path) unlink(path); // while still held: see moeq_run_lock's inode check
    moeq_free(&path);
    close(*fd);
    *fd = -1;
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
