// sysio.h: file I/O with bounded retries (EINTR, short reads) and a fault-injection seam.
// Every failure records "path: what: strerror" in the thread's error detail and returns a moeq_status.
#ifndef MOEQ_SYSIO_H
#define MOEQ_SYSIO_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_status.h"

// Opens `path` read-only; *fd >= 0 on success.
moeq_status moeq_open_read(const char *path, int *fd);
// Size of an open file in bytes.
moeq_status moeq_file_size(int fd, const char *path, uint64_t *size);
// Reads exactly n bytes at offset off (loops over short reads; EOF before n bytes is MOEQ_ERR_FORMAT:
// the file is shorter than its header says).
moeq_status moeq_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path);
// Writes exactly n bytes at offset off.
moeq_status moeq_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, const char *path);
// Reads a whole (small) file into a new NUL-terminated buffer, at most max_bytes; caller frees.
moeq_status moeq_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
// Writes a whole file (create/truncate) and fsyncs it.
moeq_status moeq_write_file(const char *path, const void *data, size_t len);

// fdatasync with EINTR retry; `what` names the data in the message ("after unit 12").
moeq_status moeq_fsync(int fd, const char *path, const char *what);
// fsync of a directory (makes renames and creations in it durable); EINVAL (no directory fsync) is ok.
moeq_status moeq_fsync_dir(const char *dir);
// "dir/name" in a new string (MOEQ_MALLOC'd; moeq_free), NULL when out of memory.
char *moeq_path_join(const char *dir, const char *name);

// Fault injection: the n-th pread (pwrite, fsync) from now fails with errno `err` (EIO, ENOSPC...), k times.
void moeq_sysio_fail_pread_after(long n, long k, int err);
void moeq_sysio_fail_pwrite_after(long n, long k, int err);
void moeq_sysio_fail_fsync_after(long n, long k, int err);
// Arms one seam from the environment, for end-to-end fault tests of the real executable:
//   MOEQ_FAULT=SEAM:N[:K[:ERRNO]]   SEAM alloc|pread|pwrite|fsync, the N-th call fails K times (default 1)
//                                   with ERRNO EIO (default) or ENOSPC (alloc: out of memory)
//   MOEQ_FAULT_RANK=R               only on rank R (default: every rank)
// MOEQ_ERR_ARG for a malformed value. Unset, it does nothing.
moeq_status moeq_fault_from_env(int rank);

#endif
