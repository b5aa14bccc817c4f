// log.c: the logger behind MOEQ_LOG (see log.h). Thread-safe: each line is formatted into one buffer and
// written with one write(2) (O_APPEND for --log-file, so ranks sharing the file never interleave a line).
// JSON strings are escaped by jansson. Not here: rotation, syslog, per-level sinks.
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static int g_rank = 0;
static moeq_log_level g_min = MOEQ_LOG_INFO;
static char g_host[64] = "";
static int g_fd = 2;        // stderr, or the --log-file
static int g_json = 0;      // --log-format json
static int g_locations = 0; // -v

static void host_init(void) {
    if (gethostname(g_host, sizeof g_host - 1) != 0) strcpy(g_host, "?");
    char *dot = strchr(g_host, '.');
    if (dot) *dot = '\0';
}

void moeq_log_init(int rank, moeq_log_level min_level) {
    g_rank = rank;
    g_min = min_level;
    host_init();
}

int moeq_log_rank(void) {
    return g_rank;
}

moeq_log_level moeq_log_level_get(void) {
    return g_min;
}

void moeq_log_locations(int on) {
    g_locations = on;
}

int moeq_log_locations_get(void) {
    return g_locations;
}

moeq_status moeq_log_configure(const char *path, int json) {
    if (path) {
        char name[4096];
        size_t n = 0;
        for (const char *p = path; *p && n + 24 < sizeof name; p++) {
            if (p[0] == '%' && p[1] == 'r')
                n += (size_t)snprintf(name + n, sizeof name - n, "%d", g_rank), p++;
            else
                name[n++] = *p;
        }
        name[n] = '\0';
        int fd = open(name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return MOEQ_FAIL(MOEQ_ERR_IO,
                             "--log-file %s: cannot open it for appending: %s\n---> HINT: its "
                             "directory must exist and be writable",
                             name, strerror(errno));
        if (g_fd != 2) close(g_fd);
        g_fd = fd;
    }
    g_json = json;
    return MOEQ_OK;
}

// Length of a source location "dir/name.c:123: " at s (dir and name: [A-Za-z0-9_.-], extension c, cu, h
// or cuh), or 0. MOEQ_FAIL writes exactly this form (kernels/status.c); recipe and YAML locations
// ("t.yaml:3: ") are the user's and are kept.
static size_t location_len(const char *s) {
    const char *p = s, *slash = NULL, *dot = NULL;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.' || *p == '/') {
        if (*p == '/') slash = p;
        if (*p == '.') dot = p;
        p++;
    }
    if (!slash || !dot || dot < slash || *p != ':') return 0;
    const size_t ext = (size_t)(p - dot - 1);
    if (!((ext == 1 && dot[1] == 'c') || (ext == 1 && dot[1] == 'h') ||
          (ext == 2 && !strncmp(dot + 1, "cu", 2)) || (ext == 3 && !strncmp(dot + 1, "cuh", 3))))
        return 0;
    const char *d = ++p;
    while (isdigit((unsigned char)*p)) p++;
    if (p == d || p[0] != ':' || p[1] != ' ') return 0;
    return (size_t)(p + 2 - s);
}

void moeq_log_detail(const char *detail, char *out, size_t cap) {
    if (!cap) return;
    size_t n = 0;
    for (const char *s = detail ? detail : ""; *s && n + 1 < cap;) {
        const int boundary = s == detail || s[-1] == ' ' || s[-1] == '\n' || s[-1] == '(';
        const size_t skip = !g_locations && boundary ? location_len(s) : 0;
        if (skip)
            s += skip;
        else
            out[n++] = *s++;
    }
    out[n] = '\0';
}

int moeq_log_json(void) {
    return g_json;
}

int moeq_log_file(void) {
    return g_fd != 2;
}

// A JSON string of s; bytes that are not UTF-8 become '?' (jansson refuses invalid UTF-8).
static json_t *json_str(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    return json_string(copy);
}

void moeq_log_(moeq_log_level level, const char *file, int line, const char *fields, const char *fmt, ...) {
    if (level < g_min) return;
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    const char *lvl = names[level > MOEQ_LOG_ERR ? MOEQ_LOG_ERR : level];
    if (!g_host[0]) host_init();
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
    char raw[4096], msg[4096], buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    moeq_log_detail(raw, msg, sizeof msg);
    int n;
    if (g_json) {
        json_t *o = json_object();
        json_object_set_new(o, "time", json_string(ts));
        json_object_set_new(o, "rank", json_integer(g_rank));
        json_object_set_new(o, "host", json_str(g_host));
        json_object_set_new(o, "level", json_string(lvl));
        json_object_set_new(o, "message", json_str(msg));
        json_object_set_new(o, "file", json_string(short_file));
        json_object_set_new(o, "line", json_integer(line));
        if (fields &&
            *fields) { // the caller's fields, after the fixed ones (a malformed fragment is dropped)
            char obj[2048];
            snprintf(obj, sizeof obj, "{%s}", fields);
            json_t *f = json_loads(obj, 0, NULL);
            if (f) json_object_update(o, f);
            json_decref(f);
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        json_decref(o);
        n = snprintf(buf, sizeof buf, "%s\n", s ? s : "{}");
        free(s);
    } else if (g_locations) {
        n = snprintf(buf, sizeof buf, "[%s] [rank %d@%s] [%s:%d] %s: %s\n", ts, g_rank, g_host, short_file,
                     line, lvl, msg);
    } else {
        n = snprintf(buf, sizeof buf, "[%s] [rank %d@%s] %s: %s\n", ts, g_rank, g_host, lvl, msg);
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1, buf[n - 1] = '\n';
    if (g_fd == 2) fflush(stderr); // keep the order with fprintf(stderr) lines
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(g_fd, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
    }
}
