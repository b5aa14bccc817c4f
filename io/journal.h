// journal.h: the append-only completion journal beside an artifact (ARTIFACT.journal).
//
// One writer (the coordinator). Layout: a 64-byte header {magic "MOEQJNL1", version, plan digest,
// n_units} then records {magic, unit id, n results, results[n], xxh3 of the record}. A record is
// appended only after the unit's data is durable in the artifact, and fsync'd before the unit counts
// as done. On reopen, records are read until the first torn or corrupt one; the file is cut there.
#ifndef MOEQ_JOURNAL_H
#define MOEQ_JOURNAL_H

#include <stdint.h>

#include "artifact.h"

typedef struct moeq_journal moeq_journal;

// Creates a new journal (the file must not exist).
moeq_status moeq_journal_create(const char *path, uint64_t plan_digest, int n_units, moeq_journal **out);
// Opens an existing journal for appending; on_record(unit, results, n, user) is called for every valid
// record in order. MOEQ_ERR_MISMATCH when the digest differs; MOEQ_ERR_NOT_FOUND when the file is missing
// or shorter than its header (empty, or torn while created: it cannot hold a record).
moeq_status moeq_journal_open(const char *path, uint64_t plan_digest, int n_units,
                              void (*on_record)(int unit, const moeq_tensor_result *r, int n, void *user), void *user,
                              moeq_journal **out);
// Appends one unit's results and fsyncs.
moeq_status moeq_journal_append(moeq_journal *j, int unit, const moeq_tensor_result *r, int n);
// Group commit: moeq_journal_write appends a record without fsync; moeq_journal_sync makes every record
// written since the last sync durable with one fsync (nothing to do: MOEQ_OK). A unit counts as done only
// after the sync that covers its record. A crash before the sync loses at most those records (a torn tail
// is cut on reopen), so their units are redone: the coordinator's fsync rate no longer bounds units/s.
moeq_status moeq_journal_write(moeq_journal *j, int unit, const moeq_tensor_result *r, int n);
moeq_status moeq_journal_sync(moeq_journal *j);
long moeq_journal_syncs(const moeq_journal *j); // fsyncs of records so far (for run statistics)
void moeq_journal_close(moeq_journal **j);

#endif
