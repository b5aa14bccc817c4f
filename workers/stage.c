// stage.c: the worker's read-ahead stage (see stage.h): one reader thread that preads the raw bytes of
// the quantized tensors of pushed units, in push order, up to a byte budget ahead of the consumer, so that
// reading tensor k+1 (and the next unit the coordinator already assigned) overlaps the compute on tensor k.
//
// One mutex guards the queue, the budget, the buffer pool and the counters; two condition variables: `work`
// wakes the reader (items pushed, budget freed, the consumer blocked, stop) and `ready` wakes the consumer
// (an item finished). The reader never holds the mutex while it allocates or preads, and nobody calls
// host_alloc/host_free with it held (cudaFreeHost may synchronize the device). A read error is kept in its
// item (status + a copy of the thread-local detail) and the reader moves on; take re-raises it. Before
// each pread the reader tells the kernel what it will read next (WILLNEED, "kernel readahead" below).
// Not here: decoding (the consumer's backend, kernels/tensor.h), device uploads, MPI.
#include "stage.h"
#include "clock.h" // defines: moeq_now_s

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

// ---- items and buffers ----

typedef enum { ITEM_QUEUED = 0, ITEM_READING = 1, ITEM_READY = 2 } item_state;

typedef struct stage_buf {
    void *p;
    size_t cap; // bytes
} stage_buf;

typedef struct moeq_stage_item {
    struct moeq_stage_item *next; // queue (push order) or the taken list
    int tensor;                   // plan tensor index
    int unit;
    uint64_t push; // which push queued it (1, 2, ...): leftovers are items of an earlier push
    item_state state;
    int advised;          // the reader told the kernel its bytes will be read (posix_fadvise WILLNEED)
    atomic_int cancelled; // discarded while READING: the reader stops early and recycles it
    uint64_t raw_bytes, scale_bytes;
    size_t scale_off; // scale bytes start here in buf (raw_bytes rounded up to 64)
    stage_buf buf;    // raw at 0, scale at scale_off
    moeq_status st;   // the read's outcome (READY)
    char *detail;     // copy of the reader's error detail when st != MOEQ_OK (malloc)
} stage_item;

struct moeq_stage {
    moeq_stage_cfg cfg;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t work;     // reader waits here
    pthread_cond_t ready;    // consumer waits here
    atomic_int stop;         // set by close; read by the reader between chunks without the lock
    stage_item *head, *tail; // queued, reading and ready items, in push order
    stage_item *taken;       // handed out and not yet released (freed by close if never released)
    int *pending;            // (plan->n_units) items of each unit in the queue
    uint64_t n_pushes;
    uint64_t staged;    // raw bytes of READING and READY items (the budget's measure)
    stage_item *wanted; // the item the consumer is blocked on in take, NULL when it is not blocked
    stage_buf pool[MOEQ_STAGE_FREE_BUFFERS];
    int n_pool;
    moeq_stage_stats stats;
};

static void *host_alloc(const moeq_stage *s, size_t n) {
    if (s->cfg.host_alloc) return s->cfg.host_alloc(n, s->cfg.alloc_user);
    return MOEQ_MALLOC(n, "stage buffer");
}

static void host_free(const moeq_stage *s, void *p) {
    if (!p) return;
    if (s->cfg.host_free)
        s->cfg.host_free(p, s->cfg.alloc_user);
    else
        free(p);
}

static uint64_t item_bytes(const stage_item *it) {
    return it->raw_bytes + it->scale_bytes;
}

// Under the lock. The smallest pooled buffer of at least n bytes, removed from the pool; {0} when none fits.
static stage_buf pool_get(moeq_stage *s, size_t n) {
    int best = -1;
    for (int i = 0; i < s->n_pool; i++)
        if (s->pool[i].cap >= n && (best < 0 || s->pool[i].cap < s->pool[best].cap)) best = i;
    stage_buf b = {0};
    if (best >= 0) {
        b = s->pool[best];
        s->pool[best] = s->pool[--s->n_pool];
    }
    return b;
}

// Under the lock. Keeps b for reuse; returns the buffer the caller must free after unlocking: none ({0}),
// b itself, or a smaller one b replaced in a full pool (larger buffers fit more tensors).
static stage_buf pool_put(moeq_stage *s, stage_buf b) {
    stage_buf none = {0};
    if (!b.p) return none;
    if (s->n_pool < MOEQ_STAGE_FREE_BUFFERS) {
        s->pool[s->n_pool++] = b;
        return none;
    }
    int smallest = 0;
    for (int i = 1; i < s->n_pool; i++)
        if (s->pool[i].cap < s->pool[smallest].cap) smallest = i;
    if (s->pool[smallest].cap >= b.cap) return b;
    stage_buf evicted = s->pool[smallest];
    s->pool[smallest] = b;
    return evicted;
}

// Without the lock: gives it's buffer back to the pool (freeing what the pool does not keep) and frees it.
static void item_recycle(moeq_stage *s, stage_item *it) {
    if (!it) return;
    pthread_mutex_lock(&s->mu);
    stage_buf drop = pool_put(s, it->buf);
    pthread_mutex_unlock(&s->mu);
    host_free(s, drop.p);
    free(it->detail);
    free(it);
}

// Under the lock. Unlinks it from the queue (prev is its predecessor, NULL at the head).
static void queue_unlink(moeq_stage *s, stage_item *prev, stage_item *it) {
    if (prev)
        prev->next = it->next;
    else
        s->head = it->next;
    if (s->tail == it) s->tail = prev;
    it->next = NULL;
    s->pending[it->unit]--;
}

// ---- the reader thread ----

// Reads n bytes of catalog tensor idx into dst, in chunks so that close and discard stop it early.
// Errors as moeq_catalog_read_raw's (they name the shard and the tensor); MOEQ_ERR_INTERRUPTED when stopped.
static moeq_status read_tensor(moeq_stage *s, stage_item *it, int idx, unsigned char *dst, uint64_t *done) {
    const moeq_catalog *c = s->cfg.cat;
    const moeq_tensor_info *t = &c->t[idx];
    if (!t->st) return moeq_catalog_read_raw(c, idx, dst); // no data: its error
    const uint64_t n = t->nbytes, chunk = MOEQ_PLAN_STREAM_CHUNK;
    for (uint64_t off = 0; off < n;) {
        if (atomic_load(&s->stop) || atomic_load(&it->cancelled))
            return MOEQ_FAIL(MOEQ_ERR_INTERRUPTED, "stage: read of tensor '%s' stopped", t->name);
        const uint64_t m = n - off < chunk ? n - off : chunk;
        MOEQ_TRY(moeq_st_read_raw(c->shards[t->shard], t->st, off, m, dst + off));
        off += m;
        *done += m;
    }
    return MOEQ_OK;
}

// Without the lock: fills it->buf (allocated here when the pool had nothing) with the weight's raw bytes
// and its scale's. Returns the outcome; adds the bytes read to *bytes and the time in pread to *seconds.
static moeq_status read_item(moeq_stage *s, stage_item *it, uint64_t *bytes, double *seconds) {
    const moeq_tensor_info *t = &s->cfg.cat->t[s->cfg.plan->t[it->tensor].cat];
    const size_t need = it->scale_off + (size_t)it->scale_bytes;
    if (!it->buf.p) {
        it->buf.p = host_alloc(s, need ? need : 1);
        if (!it->buf.p)
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "stage: out of memory: %zu host bytes for tensor '%s'", need,
                             t->name);
        it->buf.cap = need ? need : 1;
    }
    unsigned char *p = it->buf.p;
    const double t0 = moeq_now_s();
    moeq_status st = read_tensor(s, it, s->cfg.plan->t[it->tensor].cat, p, bytes);
    if (st == MOEQ_OK && it->scale_bytes) st = read_tensor(s, it, t->scale, p + it->scale_off, bytes);
    *seconds += moeq_now_s() - t0;
    return st;
}

// Kernel readahead. A pread of cold bytes gets only the kernel's on-demand readahead as it goes (the reader
// ran at 0.5-0.7 GB/s on the 2-core VM, bench/read_ahead.sh); posix_fadvise WILLNEED (moeq_st_prefetch)
// submits a whole range at once and returns, as unit_job's synchronous path does for its unit (~2.5 GB/s).
// So before each read the reader announces the queued items it will read within the budget, the one it
// reads now first, each once: the kernel reads the next tensors (and the next unit, pushed ahead) while the
// reader copies this one (1.2-1.7 GB/s; the current tensor alone gave ~1.1). Leftovers discarded after
// their announcement cost only page cache.
#define STAGE_ADVISE_MAX 32 // catalog tensors announced per pass (weights and scales); the rest next pass

// Under the lock. Marks the queued items from `it` on that fit in the budget (at least `it`) as advised and
// puts their catalog tensors (weight, then scale) in idx; returns how many. The reader announces them
// after unlocking (catalog indices stay valid; a discarded item's pointer would not).
static int advise_collect(moeq_stage *s, stage_item *it, int idx[STAGE_ADVISE_MAX]) {
    const moeq_catalog *c = s->cfg.cat;
    uint64_t ahead = s->staged; // `it` is already counted
    int n = 0;
    for (stage_item *q = it; q && n + 2 <= STAGE_ADVISE_MAX; q = q->next) {
        if (q->state != ITEM_QUEUED && q != it) continue;
        if (q != it) {
            if (ahead + item_bytes(q) > s->cfg.budget_bytes) break;
            ahead += item_bytes(q);
        }
        if (q->advised) continue;
        q->advised = 1;
        const int ci = s->cfg.plan->t[q->tensor].cat;
        idx[n++] = ci;
        if (c->t[ci].scale >= 0) idx[n++] = c->t[ci].scale;
    }
    return n;
}

// Without the lock. posix_fadvise WILLNEED on each catalog tensor in idx (advisory: never fails).
static void advise_announce(const moeq_stage *s, const int *idx, int n) {
    const moeq_catalog *c = s->cfg.cat;
    for (int k = 0; k < n; k++) {
        const moeq_tensor_info *t = &c->t[idx[k]];
        if (t->st) moeq_st_prefetch(c->shards[t->shard], t->st);
    }
}

// Under the lock. The first item not yet read, NULL when there is none.
static stage_item *next_queued(moeq_stage *s) {
    for (stage_item *it = s->head; it; it = it->next)
        if (it->state == ITEM_QUEUED) return it;
    return NULL;
}

static void *reader_main(void *arg) {
    moeq_stage *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop)) {
        stage_item *it = next_queued(s);
        // The budget bounds read-ahead only: one tensor always moves when nothing is staged, and while the
        // consumer is blocked the reader goes on up to the item it waits for (in order: at or after `it`).
        const int demanded = s->wanted && s->wanted->state != ITEM_READY;
        if (!it || (s->staged > 0 && s->staged + item_bytes(it) > s->cfg.budget_bytes && !demanded)) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        it->state = ITEM_READING;
        s->staged += item_bytes(it);
        it->buf = pool_get(s, it->scale_off + (size_t)it->scale_bytes);
        int advise[STAGE_ADVISE_MAX];
        const int n_advise = advise_collect(s, it, advise);
        pthread_mutex_unlock(&s->mu);

        const double t0 = moeq_now_s(); // WILLNEED may block while it submits: part of reading
        advise_announce(s, advise, n_advise);
        uint64_t bytes = 0;
        double dt = moeq_now_s() - t0;
        moeq_status st = read_item(s, it, &bytes, &dt);
        char *detail = NULL;
        if (st != MOEQ_OK) {
            detail = strdup(moeq_error_detail());
            if (!detail) st = MOEQ_ERR_NOMEM; // take reports the status with an empty detail
        }

        pthread_mutex_lock(&s->mu);
        s->stats.seconds_read += dt;
        s->stats.bytes_read += bytes;
        if (atomic_load(&it->cancelled)) { // discarded by take while we read: already out of the queue
            s->staged -= item_bytes(it);
            s->stats.discarded++;
            pthread_mutex_unlock(&s->mu);
            free(detail);
            item_recycle(s, it);
            pthread_mutex_lock(&s->mu);
            pthread_cond_broadcast(&s->work);
            continue;
        }
        it->state = ITEM_READY;
        it->st = st;
        it->detail = detail;
        if (st == MOEQ_OK)
            s->stats.tensors++;
        else if (!atomic_load(&s->stop))
            s->stats.errors++;
        pthread_cond_broadcast(&s->ready);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// ---- the consumer's side ----

moeq_status moeq_stage_open(const moeq_stage_cfg *cfg, moeq_stage **out) {
    if (!out) return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: no output pointer");
    *out = NULL;
    if (!cfg || !cfg->cat || !cfg->plan) return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: needs a catalog and a plan");
    if (!cfg->host_alloc != !cfg->host_free)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: host_alloc and host_free go together (set both or neither)");
    if (!cfg->cat->has_data)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "stage: checkpoint %s is metadata-only: no tensor bytes to read", cfg->cat->dir);
    moeq_stage *s = MOEQ_CALLOC(1, sizeof *s, "stage");
    if (!s) return MOEQ_ERR_NOMEM;
    s->cfg = *cfg;
    s->pending = MOEQ_CALLOC(cfg->plan->n_units > 0 ? (size_t)cfg->plan->n_units : 1, sizeof *s->pending,
                             "stage unit counts");
    if (!s->pending) {
        free(s);
        return MOEQ_ERR_NOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->ready, NULL);
    int e = pthread_create(&s->thread, NULL, reader_main, s);
    if (e != 0) {
        moeq_stage_close(&s);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "stage: cannot start the reader thread: %s", strerror(e));
    }
    s->thread_started = 1;
    *out = s;
    return MOEQ_OK;
}

static void free_list(moeq_stage *s, stage_item *it) {
    while (it) {
        stage_item *next = it->next;
        host_free(s, it->buf.p);
        free(it->detail);
        free(it);
        it = next;
    }
}

void moeq_stage_close(moeq_stage **ps) {
    if (!ps || !*ps) return;
    moeq_stage *s = *ps;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        atomic_store(&s->stop, 1);
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    // the reader is gone: every item is in the queue or the taken list (a cancelled one was recycled)
    free_list(s, s->head);
    free_list(s, s->taken);
    for (int i = 0; i < s->n_pool; i++) host_free(s, s->pool[i].p);
    pthread_cond_destroy(&s->ready);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s->pending);
    free(s);
    *ps = NULL;
}

// Under the lock. Queues the quantized tensors of unit u as a new push.
static moeq_status push_locked(moeq_stage *s, int u) {
    const moeq_plan *p = s->cfg.plan;
    const moeq_catalog *c = s->cfg.cat;
    const moeq_unit *un = &p->u[u];
    const uint64_t push = ++s->n_pushes;
    for (int i = un->first; i < un->first + un->count; i++) {
        if (p->t[i].q.method == MOEQ_METHOD_NONE) continue; // pass-through: the worker streams it
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        stage_item *it = MOEQ_CALLOC(1, sizeof *it, "stage item");
        if (!it) return MOEQ_ERR_NOMEM; // the items queued so far stay (take re-pushes a missing one)
        it->tensor = i;
        it->unit = u;
        it->push = push;
        it->state = ITEM_QUEUED;
        it->raw_bytes = moeq_catalog_raw_bytes(c, p->t[i].cat);
        it->scale_bytes = t->scale >= 0 ? moeq_catalog_raw_bytes(c, t->scale) : 0;
        it->scale_off = it->scale_bytes ? ((size_t)it->raw_bytes + 63) & ~(size_t)63 : (size_t)it->raw_bytes;
        it->st = MOEQ_OK;
        if (s->tail)
            s->tail->next = it;
        else
            s->head = it;
        s->tail = it;
        s->pending[u]++;
    }
    pthread_cond_broadcast(&s->work);
    return MOEQ_OK;
}

moeq_status moeq_stage_push_unit(moeq_stage *s, int unit) {
    if (!s) return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: NULL stage");
    if (unit < 0 || unit >= s->cfg.plan->n_units)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: unit %d outside the plan's [0, %d)", unit,
                         s->cfg.plan->n_units);
    pthread_mutex_lock(&s->mu);
    moeq_status st = s->pending[unit] > 0 ? MOEQ_OK : push_locked(s, unit);
    pthread_mutex_unlock(&s->mu);
    return st;
}

// Under the lock. The first queued item of plan tensor `tensor`, NULL when none.
static stage_item *find_queued(moeq_stage *s, int tensor) {
    stage_item *it = s->head;
    while (it && it->tensor != tensor) it = it->next;
    return it;
}

moeq_status moeq_stage_take(moeq_stage *s, int tensor, moeq_staged *out) {
    if (!s || !out) return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: take with a NULL stage or output");
    memset(out, 0, sizeof *out);
    const moeq_plan *p = s->cfg.plan;
    if (tensor < 0 || tensor >= p->n_tensors)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: tensor %d outside the plan's [0, %d)", tensor, p->n_tensors);
    if (p->t[tensor].q.method == MOEQ_METHOD_NONE)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "stage: tensor '%s' is pass-through: it is never staged",
                         s->cfg.cat->t[p->t[tensor].cat].name);

    pthread_mutex_lock(&s->mu);
    stage_item *it = find_queued(s, tensor);
    if (!it) { // not queued: a new pass over its unit
        moeq_status st = push_locked(s, p->t[tensor].unit);
        it = find_queued(s, tensor);
        if (!it) {
            pthread_mutex_unlock(&s->mu);
            return st != MOEQ_OK ? st
                                 : MOEQ_FAIL(MOEQ_ERR_ARG, "stage: tensor %d is not in unit %d", tensor,
                                             p->t[tensor].unit);
        }
    }
    // Leftovers of earlier pushes ahead of it: out of the queue. READY ones go to `trash` (recycled after
    // unlocking), QUEUED ones were never read, a READING one is cancelled and the reader recycles it.
    stage_item *trash = NULL, *prev = NULL;
    for (stage_item *q = s->head, *next; q != it; q = next) {
        next = q->next;
        if (q->push == it->push) {
            prev = q;
            continue;
        }
        queue_unlink(s, prev, q);
        if (q->state == ITEM_READING) {
            atomic_store(&q->cancelled, 1); // counted by the reader when its read ends
            continue;
        }
        if (q->state == ITEM_READY) s->staged -= item_bytes(q);
        s->stats.discarded++;
        q->next = trash;
        trash = q;
    }
    const double t0 = moeq_now_s();
    s->wanted = it;
    pthread_cond_broadcast(&s->work); // budget freed, and the reader may now pass it to reach `it`
    while (it->state != ITEM_READY) pthread_cond_wait(&s->ready, &s->mu);
    s->wanted = NULL;
    s->stats.seconds_wait += moeq_now_s() - t0;
    // hand it over
    prev = NULL;
    for (stage_item *q = s->head; q != it; q = q->next) prev = q;
    queue_unlink(s, prev, it);
    s->staged -= item_bytes(it);
    s->stats.taken++;
    pthread_cond_broadcast(&s->work); // its bytes no longer count against the budget
    moeq_status st = it->st;
    if (st == MOEQ_OK) {
        it->next = s->taken;
        s->taken = it;
    }
    pthread_mutex_unlock(&s->mu);

    while (trash) {
        stage_item *next = trash->next;
        item_recycle(s, trash);
        trash = next;
    }
    if (st != MOEQ_OK) {
        moeq_error_restore(st, it->detail);
        item_recycle(s, it);
        return st;
    }
    out->tensor = tensor;
    out->raw = it->buf.p;
    out->raw_bytes = it->raw_bytes;
    out->scale_raw = it->scale_bytes ? (const unsigned char *)it->buf.p + it->scale_off : NULL;
    out->scale_bytes = it->scale_bytes;
    out->item_ = it;
    return MOEQ_OK;
}

void moeq_stage_release(moeq_stage *s, moeq_staged *st) {
    if (!s || !st || !st->item_) return;
    stage_item *it = st->item_;
    pthread_mutex_lock(&s->mu);
    stage_item **pp = &s->taken;
    while (*pp && *pp != it) pp = &(*pp)->next;
    const int ours = *pp != NULL; // released once: a second release of a copy finds nothing
    if (ours) *pp = it->next;
    pthread_mutex_unlock(&s->mu);
    memset(st, 0, sizeof *st);
    if (ours) {
        it->next = NULL;
        item_recycle(s, it);
    }
}

void moeq_stage_stats_get(const moeq_stage *s, moeq_stage_stats *st) {
    if (!st) return;
    memset(st, 0, sizeof *st);
    if (!s) return;
    moeq_stage *m = (moeq_stage *)s; // the lock is not part of the stage's logical state
    pthread_mutex_lock(&m->mu);
    *st = m->stats;
    pthread_mutex_unlock(&m->mu);
}
