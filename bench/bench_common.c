// bench_common.c: the machine description and timing helpers both benchmarks use (see bench_common.h).
// Not here: anything a benchmark measures, or the rest of each benchmark's JSON (its own file).
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double moeq_bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

void moeq_bench_cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ') p++;
                snprintf(out, n, "%s", p);
                out[strcspn(out, "\n")] = '\0';
            }
            break;
        }
    fclose(f);
}

void moeq_bench_json_str(FILE *o, const char *s) {
    fputc('"', o);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', o);
        if ((unsigned char)*s < 0x20) continue;
        fputc(*s, o);
    }
    fputc('"', o);
}
