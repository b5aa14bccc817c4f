// log.h: MOEQ_LOG with timestamp, rank and host; MOEQ_INFO0 prints on rank 0 only.
//   [2026-11-23T06:50:01Z] [rank 0@node17] ERROR: shard ...: ...
// With -v (moeq_log_locations(1)) every line also names its source line, `[io/catalog.c:142]`, and the
// "io/x.c:12: " prefixes that MOEQ_FAIL puts in error details are kept; without it they are dropped from
// what is printed (moeq_log_detail), never from the detail itself.
// Logging goes to stderr, or to --log-file (appended, one write per line: ranks may share it; "%r" in the
// name is the rank); --log-format json writes one object per line:
//   {"time":"...","rank":0,"host":"node17","level":"INFO","message":"...","file":"io/x.c","line":12,...}
// with the fields a message carries (MOEQ_LOG_F). Command results (tables, JSON) go to stdout.
#ifndef MOEQ_LOG_H
#define MOEQ_LOG_H

#include <stddef.h>

#include "moeq_status.h"

typedef enum moeq_log_level {
    MOEQ_LOG_DBG = 0,
    MOEQ_LOG_INFO = 1,
    MOEQ_LOG_WARN = 2,
    MOEQ_LOG_ERR = 3,
    MOEQ_LOG_QUIET = 4, // threshold only: nothing passes
} moeq_log_level;

// Sets this process's rank (printed in every line) and the lowest level that is printed; the sink, the
// format and moeq_log_locations stay as they were.
void moeq_log_init(int rank, moeq_log_level min_level);
int moeq_log_rank(void);
moeq_log_level moeq_log_level_get(void);

// Where and how lines go: path NULL = stderr (else appended to that file, "%r" replaced by the rank);
// json 0 = text lines, 1 = one JSON object per line. Fails (MOEQ_ERR_IO, the path named) when the file
// cannot be opened; the sink is then unchanged.
moeq_status moeq_log_configure(const char *path, int json);
// 1: show source locations (`-v`); 0 (the default): drop them from printed lines and details.
void moeq_log_locations(int on);
int moeq_log_locations_get(void);
// 1 with --log-format json; 1 with --log-file.
int moeq_log_json(void);
int moeq_log_file(void);
// Copies `detail` to out, without the "layer/file.c:123: " source locations unless they are on.
void moeq_log_detail(const char *detail, char *out, size_t cap);

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
void moeq_log_(moeq_log_level level, const char *file, int line, const char *fields, const char *fmt, ...);

#define MOEQ_LOG(level, ...) moeq_log_((level), __FILE__, __LINE__, NULL, __VA_ARGS__)
// A line with machine-readable fields: `fields` is the inside of a JSON object ("\"done\":3,\"total\":9"),
// added to the JSON form and ignored by the text form (where the message says the same in words).
#define MOEQ_LOG_F(level, fields, ...) moeq_log_((level), __FILE__, __LINE__, (fields), __VA_ARGS__)
#define MOEQ_INFO0(...)                                                                                    \
    do {                                                                                                   \
        if (moeq_log_rank() == 0) moeq_log_(MOEQ_LOG_INFO, __FILE__, __LINE__, NULL, __VA_ARGS__);         \
    } while (0)

#endif
