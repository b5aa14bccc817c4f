// stage.h: the worker's read-ahead stage. One reader thread per stage reads the raw source bytes of the
// quantized tensors of the units pushed to it (and each FP8 weight's block-scale tensor), in push order,
// into host buffers, so that the worker computes tensor k (and the last tensor of unit k) while the reader
// reads tensor k+1 (and the next unit, which the coordinator already assigned). The worker takes each
// tensor's bytes with moeq_stage_take, hands them to its backend as they are (moeq_catalog_raw_view: the
// backend decodes, on the device for CUDA) and gives the buffer back with moeq_stage_release.
//
// Memory: at most budget_bytes of raw bytes staged and not yet taken (but always one tensor when nothing
// is staged, so a tensor larger than the budget still moves, and the tensors up to one the worker is
// blocked on), plus the taken-but-not-released buffers, plus MOEQ_STAGE_FREE_BUFFERS free buffers kept for
// reuse (pinned allocations are expensive).
// Threads: push, take, release and stats from one consumer thread at a time (the worker); the reader is
// the stage's own. No MPI here, no decoding (the consumer decodes), no pass-through tensors (the worker
// streams those in chunks itself).
#ifndef MOEQ_STAGE_H
#define MOEQ_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_sched.h" // defines: moeq_plan, moeq_unit (and, through it, moeq_catalog, moeq_status)

// Free buffers the stage keeps for reuse; a release beyond that frees the smallest buffer.
#define MOEQ_STAGE_FREE_BUFFERS 2

typedef struct moeq_stage_cfg {
    const moeq_catalog *cat; // with data (MOEQ_ERR_UNSUPPORTED for a metadata-only catalog); borrowed,
    const moeq_plan *plan;   // both must outlive the stage
    uint64_t budget_bytes;   // raw bytes (weights + FP8 scales) staged ahead of the consumer
    // Host buffers: NULL = malloc/free; the CUDA backend passes pinned memory (cudaHostAlloc). Called from
    // the reader thread and from the consumer's (release, close), never with the stage's lock held: they
    // must be thread-safe (malloc and cudaHostAlloc/cudaFreeHost are). host_alloc returns NULL on failure.
    // Set both or neither.
    void *(*host_alloc)(size_t n, void *user);
    void (*host_free)(void *p, void *user);
    void *alloc_user;
} moeq_stage_cfg;

// One staged tensor, owned by the consumer from moeq_stage_take until moeq_stage_release.
typedef struct moeq_staged {
    int tensor;            // plan tensor index
    const void *raw;       // (numel) elements in the tensor's source dtype, as stored in its shard
    uint64_t raw_bytes;    // = moeq_catalog_raw_bytes(cat, plan->t[tensor].cat)
    const void *scale_raw; // the block-scale tensor's bytes (F32, (ceil(R/B), ceil(C/B))); NULL without
    uint64_t scale_bytes;  // 0 without
    struct moeq_stage_item *item_; // internal: what moeq_stage_release gives back
} moeq_staged;

typedef struct moeq_stage_stats {
    double seconds_read; // reader thread busy in pread, and announcing its reads (posix_fadvise WILLNEED)
    double seconds_wait; // consumer blocked in moeq_stage_take
    uint64_t bytes_read; // raw bytes the reader read (discarded items included)
    int tensors;         // tensors the reader staged without error
    int errors;          // tensors whose read failed (the error is returned by take)
    int taken;           // tensors handed to the consumer (errors included)
    int discarded;       // tensors dropped unread or unused (leftovers of an abandoned unit)
} moeq_stage_stats;

typedef struct moeq_stage moeq_stage; // opaque

// Starts the reader thread. Returns a new stage; caller frees with moeq_stage_close.
moeq_status moeq_stage_open(const moeq_stage_cfg *cfg, moeq_stage **out);
// Stops the reader (also mid-read: it checks between chunks of MOEQ_PLAN_STREAM_CHUNK bytes, or while
// it waits for budget), joins it and frees everything, taken-but-not-released buffers included. Accepts
// NULL and *s == NULL; sets *s to NULL.
void moeq_stage_close(moeq_stage **s);

// Queues the quantized tensors of `unit` (plan->t[i].q.method != MOEQ_METHOD_NONE) for reading, in plan
// order. Non-blocking. A unit already pending (pushed and not all its tensors taken or discarded) is not
// queued twice; a unit without quantized tensors queues nothing. MOEQ_ERR_ARG for a bad unit.
moeq_status moeq_stage_push_unit(moeq_stage *s, int unit);

// Blocks until plan tensor `tensor` is staged and hands it over in *out. When the tensor is not queued
// (its unit was never pushed, or this is a new pass over a unit whose leftovers are still queued), its
// unit is pushed first. Queued tensors ahead of it from earlier pushes (leftovers of a unit abandoned
// midway, or of another unit pushed earlier) are discarded: counted in stats.discarded, their buffers
// recycled, an unread one never read. Tensors of the same push ahead of it are kept (a unit may be taken
// out of order). The reader's error for this tensor
// (I/O, truncated shard, out of memory) is returned here, re-raised in the caller's thread with the same
// detail text; the stage stays usable. MOEQ_ERR_ARG for a bad or pass-through tensor.
moeq_status moeq_stage_take(moeq_stage *s, int tensor, moeq_staged *out);

// Gives a taken tensor's buffer back (kept for reuse, or freed) and clears *it. Accepts a cleared item.
void moeq_stage_release(moeq_stage *s, moeq_staged *it);

// A consistent snapshot of the counters.
void moeq_stage_stats_get(const moeq_stage *s, moeq_stage_stats *st);

#endif
