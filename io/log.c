// log.c: the logger behind MOEQ_LOG (see log.h). Thread-safe: one fprintf per line.
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0;
static moeq_log_level g_min = MOEQ_LOG_INFO;
static char g_host[64] = "";

void moeq_log_init(int rank, moeq_log_level min_level) {
    g_rank = rank;
    g_min = min_level;
    if (gethostname(g_host, sizeof g_host - 1) != 0) strcpy(g_host, "?");
    char *dot = strchr(g_host, '.');
    if (dot) *dot = '\0';
}

int moeq_log_rank(void) {
    return g_rank;
}

moeq_log_level moeq_log_level_get(void) {
    return g_min;
}

void moeq_log_(moeq_log_level level, const char *file, int line, const char *fmt, ...) {
    if (level < g_min) return;
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (!g_host[0]) moeq_log_init(g_rank, g_min);
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *short_file = file;
    const char *last = strrchr(file, '/');
    if (last) {
        const char *p = last;
        while (p > file && p[-1] != '/') p--;
        short_file = p;
    }
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%s] [rank %d@%s] [%s:%d] %s: %s\n", ts, g_rank, g_host, short_file, line,
            names[level > MOEQ_LOG_ERR ? MOEQ_LOG_ERR : level], msg);
}
