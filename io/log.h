// log.h: MOEQ_LOG with timestamp, rank, host and file:line; MOEQ_INFO0 prints on rank 0 only.
//   [2026-11-23T06:50:01Z] [rank 0@node17] [io/catalog.c:142] ERROR: shard ...: ...
// Logging goes to stderr; command results (tables, JSON) go to stdout.
#ifndef MOEQ_LOG_H
#define MOEQ_LOG_H

typedef enum moeq_log_level {
    MOEQ_LOG_DBG = 0,
    MOEQ_LOG_INFO = 1,
    MOEQ_LOG_WARN = 2,
    MOEQ_LOG_ERR = 3,
    MOEQ_LOG_QUIET = 4, // threshold only: nothing passes
} moeq_log_level;

// Sets this process's rank (printed in every line) and the lowest level that is printed.
void moeq_log_init(int rank, moeq_log_level min_level);
int moeq_log_rank(void);
moeq_log_level moeq_log_level_get(void);

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void moeq_log_(moeq_log_level level, const char *file, int line, const char *fmt, ...);

#define MOEQ_LOG(level, ...) moeq_log_((level), __FILE__, __LINE__, __VA_ARGS__)
#define MOEQ_INFO0(...)                                                                                    \
    do {                                                                                                   \
        if (moeq_log_rank() == 0) moeq_log_(MOEQ_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

#endif
