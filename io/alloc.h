// alloc.h: checked allocation with file:line, and the fault-injection seam for it.
// MOEQ_MALLOC returns NULL on failure after recording "file:line: out of memory: N bytes for WHAT" in the
// thread's error detail; callers return MOEQ_ERR_NOMEM. moeq_free(&p) frees and sets p to NULL.
// Tests replace the allocator through moeq_alloc_set_fail_after (fail the Nth call, K times).
#ifndef MOEQ_ALLOC_H
#define MOEQ_ALLOC_H

#include <stddef.h>

void *moeq_malloc_(size_t n, const char *what, const char *file, int line);
void *moeq_calloc_(size_t count, size_t size, const char *what, const char *file, int line);
char *moeq_strdup_(const char *s, const char *file, int line);
void moeq_free_(void **pp);

#define MOEQ_MALLOC(n, what)           moeq_malloc_((n), (what), __FILE__, __LINE__)
#define MOEQ_CALLOC(count, size, what) moeq_calloc_((count), (size), (what), __FILE__, __LINE__)
#define MOEQ_STRDUP(s)                 moeq_strdup_((s), __FILE__, __LINE__)
#define moeq_free(pp)                  moeq_free_((void **)(pp))

// A reusable buffer of *cap bytes at *pp that must hold `need`: kept when large enough, else freed and
// allocated again with `need` bytes (contents not kept). 0 on success; -1 (and *pp NULL, *cap 0, the
// detail recorded as by MOEQ_MALLOC) when the allocation fails: callers return MOEQ_ERR_NOMEM.
int moeq_reserve_(void **pp, size_t *cap, size_t need, const char *what, const char *file, int line);
#define MOEQ_RESERVE(pp, cap, need, what)                                                                    \
    moeq_reserve_((void **)(pp), (cap), (need), (what), __FILE__, __LINE__)

// Fault injection: the n-th allocation from now (1-based) and the following k-1 fail; n <= 0 disables.
void moeq_alloc_set_fail_after(long n, long k);
// Allocations made through MOEQ_MALLOC/CALLOC/STRDUP since the process started (for tests).
long moeq_alloc_count(void);

#endif
