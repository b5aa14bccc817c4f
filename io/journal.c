// journal.c: see journal.h. Records are self-checking (xxh3) so a crash mid-append leaves a torn tail
// that the next open detects and cuts; nothing before it is lost.
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"
#include "sysio.h"

#define JNL_MAGIC "MOEQJNL1"
#define REC_MAGIC 0x4345524du /* "MREC" */
#define JNL_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t n_units;
    uint64_t plan_digest;
    uint32_t result_size;
    uint8_t reserved[36];
} jnl_header;

typedef struct {
    uint32_t magic;
    uint32_t unit;
    uint32_t n;
    uint32_t reserved;
} rec_header;

struct moeq_journal {
    char *path;
    int fd;
    uint64_t end;
    int unsynced; // records written since the last fsync
    long n_syncs;
};

_Static_assert(sizeof(jnl_header) == 64, "journal header is 64 bytes");

moeq_status moeq_journal_create(const char *path, uint64_t plan_digest, int n_units, moeq_journal **out) {
    *out = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return MOEQ_FAIL(errno == EEXIST ? MOEQ_ERR_EXISTS : MOEQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    jnl_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, JNL_MAGIC, 8);
    h.version = JNL_VERSION;
    h.n_units = (uint32_t)n_units;
    h.plan_digest = plan_digest;
    h.result_size = (uint32_t)sizeof(moeq_tensor_result);
    moeq_status st = moeq_pwrite_full(fd, &h, sizeof h, 0, path);
    if (st == MOEQ_OK && fsync(fd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    moeq_journal *j = st == MOEQ_OK ? MOEQ_CALLOC(1, sizeof *j, "journal") : NULL;
    if (st == MOEQ_OK && (!j || !(j->path = MOEQ_STRDUP(path)))) st = MOEQ_ERR_NOMEM;
    if (st != MOEQ_OK) {
        if (j) moeq_free(&j);
        close(fd);
        unlink(path);
        return st;
    }
    j->fd = fd;
    j->end = sizeof h;
    *out = j;
    return MOEQ_OK;
}

moeq_status moeq_journal_open(const char *path, uint64_t plan_digest, int n_units,
                              void (*on_record)(int unit, const moeq_tensor_result *r, int n, void *user), void *user,
                              moeq_journal **out) {
    *out = NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return MOEQ_FAIL(errno == ENOENT ? MOEQ_ERR_NOT_FOUND : MOEQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    moeq_status st = MOEQ_OK;
    moeq_journal *j = NULL;
    moeq_tensor_result *buf = NULL;
    uint64_t size = 0;
    jnl_header h;
    st = moeq_file_size(fd, path, &size);
    if (st == MOEQ_OK && size < sizeof h) // an empty or torn header: no record was ever written after it
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: %llu bytes, shorter than a journal header: no unit journaled",
                       path, (unsigned long long)size);
    if (st == MOEQ_OK) st = moeq_pread_full(fd, &h, sizeof h, 0, path);
    if (st == MOEQ_OK && memcmp(h.magic, JNL_MAGIC, 8))
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a moeq journal", path);
    // another version (e.g. results without their source hash, before source identity): refused as another
    // plan is (exit 7), the partial run kept
    if (st == MOEQ_OK && (h.version != JNL_VERSION || h.result_size != sizeof(moeq_tensor_result)))
        st = MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                       "%s: journal written by another moeq version (version %u, %u-byte results; this moeq "
                       "writes version %u, %zu-byte results)\n---> HINT: resume with the moeq that started the "
                       "run, or pass --force to start over",
                       path, h.version, h.result_size, JNL_VERSION, sizeof(moeq_tensor_result));
    if (st == MOEQ_OK && (h.plan_digest != plan_digest || h.n_units != (uint32_t)n_units))
        st = MOEQ_FAIL(MOEQ_ERR_MISMATCH, "%s: journal of another plan (digest %016llx, this run %016llx)", path,
                       (unsigned long long)h.plan_digest, (unsigned long long)plan_digest);
    uint64_t off = sizeof h;
    int cap = 0;
    while (st == MOEQ_OK && off + sizeof(rec_header) + 8 <= size) {
        rec_header rh;
        if (moeq_pread_full(fd, &rh, sizeof rh, off, path) != MOEQ_OK) break;
        if (rh.magic != REC_MAGIC || rh.unit >= (uint32_t)n_units || rh.n > (1u << 20)) break;
        uint64_t body = (uint64_t)rh.n * sizeof(moeq_tensor_result);
        if (off + sizeof rh + body + 8 > size) break; // torn tail
        if ((int)rh.n > cap) {
            moeq_free(&buf);
            cap = (int)rh.n;
            buf = MOEQ_MALLOC(body ? body : 1, "journal record");
            if (!buf) {
                st = MOEQ_ERR_NOMEM;
                break;
            }
        }
        uint64_t sum;
        if (moeq_pread_full(fd, buf, body, off + sizeof rh, path) != MOEQ_OK ||
            moeq_pread_full(fd, &sum, 8, off + sizeof rh + body, path) != MOEQ_OK)
            break;
        XXH3_state_t *x = XXH3_createState();
        if (!x) {
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
            break;
        }
        XXH3_64bits_reset(x);
        XXH3_64bits_update(x, &rh, sizeof rh);
        XXH3_64bits_update(x, buf, body);
        uint64_t want = XXH3_64bits_digest(x);
        XXH3_freeState(x);
        if (want != sum) break; // corrupt record: everything from here is discarded
        if (on_record) on_record((int)rh.unit, buf, (int)rh.n, user);
        off += sizeof rh + body + 8;
    }
    if (st == MOEQ_OK) moeq_error_clear(); // a torn tail is expected after a crash, not an error
    if (st == MOEQ_OK && off < size && ftruncate(fd, (off_t)off) != 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot cut the torn tail: %s", path, strerror(errno));
    if (st == MOEQ_OK) {
        j = MOEQ_CALLOC(1, sizeof *j, "journal");
        if (!j || !(j->path = MOEQ_STRDUP(path))) st = MOEQ_ERR_NOMEM;
    }
    moeq_free(&buf);
    if (st != MOEQ_OK) {
        if (j) moeq_free(&j);
        close(fd);
        return st;
    }
    j->fd = fd;
    j->end = off;
    *out = j;
    return MOEQ_OK;
}

moeq_status moeq_journal_write(moeq_journal *j, int unit, const moeq_tensor_result *r, int n) {
    rec_header rh = {REC_MAGIC, (uint32_t)unit, (uint32_t)n, 0};
    const uint64_t body = (uint64_t)n * sizeof *r;
    XXH3_state_t *x = XXH3_createState();
    if (!x) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
    XXH3_64bits_reset(x);
    XXH3_64bits_update(x, &rh, sizeof rh);
    XXH3_64bits_update(x, r, body);
    uint64_t sum = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    MOEQ_TRY(moeq_pwrite_full(j->fd, &rh, sizeof rh, j->end, j->path));
    MOEQ_TRY(moeq_pwrite_full(j->fd, r, body, j->end + sizeof rh, j->path));
    MOEQ_TRY(moeq_pwrite_full(j->fd, &sum, 8, j->end + sizeof rh + body, j->path));
    j->end += sizeof rh + body + 8;
    j->unsynced++;
    return MOEQ_OK;
}

moeq_status moeq_journal_sync(moeq_journal *j) {
    if (!j->unsynced) return MOEQ_OK;
    MOEQ_TRY(moeq_fsync(j->fd, j->path, "of journal records"));
    j->unsynced = 0;
    j->n_syncs++;
    return MOEQ_OK;
}

moeq_status moeq_journal_append(moeq_journal *j, int unit, const moeq_tensor_result *r, int n) {
    MOEQ_TRY(moeq_journal_write(j, unit, r, n));
    return moeq_journal_sync(j);
}

long moeq_journal_syncs(const moeq_journal *j) { return j ? j->n_syncs : 0; }

void moeq_journal_close(moeq_journal **pj) {
    if (!pj || !*pj) return;
    close((*pj)->fd);
    moeq_free(&(*pj)->path);
    moeq_free(pj);
}
