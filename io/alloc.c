// alloc.c: MOEQ_MALLOC and friends (see alloc.h), with an injectable failure counter for fault tests.
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_status.h"

static atomic_long g_count = 0;
static atomic_long g_fail_at = 0; // absolute call number of the first failure (0 = never)
static atomic_long g_fail_n = 0;

void moeq_alloc_set_fail_after(long n, long k) {
    if (n <= 0) {
        atomic_store(&g_fail_at, 0);
        return;
    }
    atomic_store(&g_fail_n, k < 1 ? 1 : k);
    atomic_store(&g_fail_at, atomic_load(&g_count) + n);
}

long moeq_alloc_count(void) {
    return atomic_load(&g_count);
}

static int should_fail(void) {
    long c = atomic_fetch_add(&g_count, 1) + 1;
    long at = atomic_load(&g_fail_at);
    return at > 0 && c >= at && c < at + atomic_load(&g_fail_n);
}

void *moeq_malloc_(size_t n, const char *what, const char *file, int line) {
    void *p = should_fail() ? NULL : malloc(n ? n : 1);
    if (!p)
        moeq_error_set_(MOEQ_ERR_NOMEM, file, line, "out of memory: %zu bytes for %s", n, what ? what : "?");
    return p;
}

void *moeq_calloc_(size_t count, size_t size, const char *what, const char *file, int line) {
    if (size && count > (size_t)-1 / size) {
        moeq_error_set_(MOEQ_ERR_NOMEM, file, line, "allocation size overflow: %zu x %zu for %s", count, size,
                        what ? what : "?");
        return NULL;
    }
    void *p = should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
    if (!p)
        moeq_error_set_(MOEQ_ERR_NOMEM, file, line, "out of memory: %zu x %zu bytes for %s", count, size,
                        what ? what : "?");
    return p;
}

char *moeq_strdup_(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = moeq_malloc_(n, "string", file, line);
    if (p) memcpy(p, s, n);
    return p;
}

int moeq_reserve_(void **pp, size_t *cap, size_t need, const char *what, const char *file, int line) {
    if (*pp && need <= *cap) return 0;
    moeq_free_(pp);
    *cap = 0;
    *pp = moeq_malloc_(need ? need : 1, what, file, line);
    if (!*pp) return -1;
    *cap = need;
    return 0;
}

void moeq_free_(void **pp) {
    if (pp && *pp) {
        free(*pp);
        *pp = NULL;
    }
}
