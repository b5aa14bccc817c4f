// sysio.c: pread/pwrite loops with EINTR retry, and the injectable failure counters (see sysio.h).
#include "sysio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

typedef struct {
    atomic_long count, fail_at, fail_n;
    atomic_int err;
} fault_seam;

static fault_seam g_pread_seam, g_pwrite_seam, g_fsync_seam;

static void seam_arm(fault_seam *s, long n, long k, int err) {
    if (n <= 0) {
        atomic_store(&s->fail_at, 0);
        return;
    }
    atomic_store(&s->err, err ? err : EIO);
    atomic_store(&s->fail_n, k < 1 ? 1 : k);
    atomic_store(&s->fail_at, atomic_load(&s->count) + n);
}

// Returns the errno to fake, or 0.
static int seam_step(fault_seam *s) {
    long c = atomic_fetch_add(&s->count, 1) + 1;
    long at = atomic_load(&s->fail_at);
    return (at > 0 && c >= at && c < at + atomic_load(&s->fail_n)) ? atomic_load(&s->err) : 0;
}

void moeq_sysio_fail_pread_after(long n, long k, int err) {
    seam_arm(&g_pread_seam, n, k, err);
}

void moeq_sysio_fail_pwrite_after(long n, long k, int err) {
    seam_arm(&g_pwrite_seam, n, k, err);
}

void moeq_sysio_fail_fsync_after(long n, long k, int err) {
    seam_arm(&g_fsync_seam, n, k, err);
}

moeq_status moeq_fsync(int fd, const char *path, const char *what) {
    int fake = seam_step(&g_fsync_seam), rc;
    if (fake) {
        errno = fake;
        rc = -1;
    } else {
        do rc = fdatasync(fd);
        while (rc != 0 && errno == EINTR);
    }
    if (rc != 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: fdatasync %s: %s", path, what, strerror(errno));
    return MOEQ_OK;
}

moeq_status moeq_fault_from_env(int rank) {
    const char *v = getenv("MOEQ_FAULT");
    if (!v || !*v) return MOEQ_OK;
    const char *r = getenv("MOEQ_FAULT_RANK");
    if (r && *r && atoi(r) != rank) return MOEQ_OK;
    char seam[16] = "", err[16] = "EIO";
    long n = 0, k = 1;
    int got = sscanf(v, "%15[a-z]:%ld:%ld:%15[A-Z]", seam, &n, &k, err);
    int e = !strcmp(err, "ENOSPC") ? ENOSPC : !strcmp(err, "EIO") ? EIO : !strcmp(err, "ENOMEM") ? ENOMEM : 0;
    if (got < 2 || n < 1 || k < 1 || !e)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "MOEQ_FAULT='%s': expected SEAM:N[:K[:EIO|ENOSPC]] with SEAM one of alloc, "
                         "pread, pwrite, fsync",
                         v);
    if (!strcmp(seam, "alloc"))
        moeq_alloc_set_fail_after(n, k);
    else if (!strcmp(seam, "pread"))
        moeq_sysio_fail_pread_after(n, k, e);
    else if (!strcmp(seam, "pwrite"))
        moeq_sysio_fail_pwrite_after(n, k, e);
    else if (!strcmp(seam, "fsync"))
        moeq_sysio_fail_fsync_after(n, k, e);
    else
        return MOEQ_FAIL(MOEQ_ERR_ARG, "MOEQ_FAULT: unknown seam '%s' (alloc, pread, pwrite, fsync)", seam);
    return MOEQ_OK;
}

// O_NONBLOCK: open() of a FIFO without a writer would block forever (and, retried on EINTR, ignore
// SIGTERM); opened this way it returns at once and fstat refuses it like any other non-regular file.
moeq_status moeq_open_read(const char *path, int *fd) {
    int f;
    do f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (f < 0 && errno == EINTR);
    if (f < 0)
        return MOEQ_FAIL(errno == ENOENT ? MOEQ_ERR_NOT_FOUND : MOEQ_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        const int e = errno;
        close(f);
        return MOEQ_FAIL(MOEQ_ERR_IO, "%s: fstat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        const char *kind = S_ISFIFO(sb.st_mode)   ? "a FIFO (named pipe)"
                           : S_ISDIR(sb.st_mode)  ? "a directory"
                           : S_ISCHR(sb.st_mode)  ? "a character device"
                           : S_ISSOCK(sb.st_mode) ? "a socket"
                                                  : "a special file";
        close(f);
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: is %s, not a regular file\n---> HINT: moeq reads only regular files (it needs "
                         "their size and random access); copy the content to a file",
                         path, kind);
    }
    fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK);
    *fd = f;
    return MOEQ_OK;
}

moeq_status moeq_file_size(int fd, const char *path, uint64_t *size) {
    struct stat st;
    if (fstat(fd, &st) != 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: fstat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a regular file", path);
    *size = (uint64_t)st.st_size;
    return MOEQ_OK;
}

moeq_status moeq_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path) {
    size_t done = 0;
    while (done < n) {
        int fake = seam_step(&g_pread_seam);
        ssize_t r;
        if (fake) {
            errno = fake;
            r = -1;
        } else {
            r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            return MOEQ_FAIL(MOEQ_ERR_IO, "%s: read of %zu bytes at offset %llu failed: %s", path, n,
                             (unsigned long long)off, strerror(errno));
        }
        if (r == 0)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: unexpected end of file at offset %llu (wanted %zu bytes at %llu)\n---> HINT: "
                "the file is truncated; re-download it",
                path, (unsigned long long)(off + done), n, (unsigned long long)off);
        done += (size_t)r;
    }
    return MOEQ_OK;
}

moeq_status moeq_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *path) {
    size_t done = 0;
    while (done < n) {
        int fake = seam_step(&g_pwrite_seam);
        ssize_t r;
        if (fake) {
            errno = fake;
            r = -1;
        } else {
            r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOSPC || errno == EDQUOT)
                return MOEQ_FAIL(MOEQ_ERR_IO,
                                 "%s: write of %zu bytes at offset %llu failed: %s\n---> HINT: no space left "
                                 "on its filesystem (or over quota): free space there (df shows it) or write "
                                 "elsewhere",
                                 path, n, (unsigned long long)off, strerror(errno));
            return MOEQ_FAIL(MOEQ_ERR_IO, "%s: write of %zu bytes at offset %llu failed: %s", path, n,
                             (unsigned long long)off, strerror(errno));
        }
        done += (size_t)r;
    }
    return MOEQ_OK;
}

moeq_status moeq_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    int fd;
    MOEQ_TRY(moeq_open_read(path, &fd));
    uint64_t size;
    moeq_status st = moeq_file_size(fd, path, &size);
    if (st == MOEQ_OK && size > max_bytes)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %llu bytes, more than the %zu allowed for this kind of file",
                       path, (unsigned long long)size, max_bytes);
    char *buf = NULL;
    if (st == MOEQ_OK) {
        buf = MOEQ_MALLOC(size + 1, path);
        if (!buf) st = MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) st = moeq_pread_full(fd, buf, size, 0, path);
    close(fd);
    if (st != MOEQ_OK) {
        moeq_free(&buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf;
    if (len) *len = size;
    return MOEQ_OK;
}

moeq_status moeq_write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    moeq_status st = moeq_pwrite_full(fd, data, len, 0, path);
    if (st == MOEQ_OK && fsync(fd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    if (close(fd) != 0 && st == MOEQ_OK) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: close: %s", path, strerror(errno));
    return st;
}

moeq_status moeq_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    moeq_status st = MOEQ_OK;
    if (fsync(fd) != 0 && errno != EINVAL) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", dir, strerror(errno));
    close(fd);
    return st;
}

char *moeq_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = MOEQ_MALLOC(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}
