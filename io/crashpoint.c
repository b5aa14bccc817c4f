// crashpoint.c: see crashpoint.h.
#include "crashpoint.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int g_init = 0;
static char g_point[64];
static long g_n = 0;
static atomic_long g_count = 0;
static int g_sig = SIGKILL;

void moeq_crashpoint(const char *point) {
    if (!atomic_exchange(&g_init, 1)) {
        const char *v = getenv("MOEQ_CRASH_AT");
        const char *colon = v ? strrchr(v, ':') : NULL;
        if (colon && (size_t)(colon - v) < sizeof g_point) {
            memcpy(g_point, v, (size_t)(colon - v));
            g_point[colon - v] = '\0';
            g_n = atol(colon + 1);
        }
        const char *sig = getenv("MOEQ_CRASH_SIGNAL"); // KILL (default), USR1 or TERM: a graceful stop
        if (sig && !strcmp(sig, "USR1"))
            g_sig = SIGUSR1;
        else if (sig && !strcmp(sig, "TERM"))
            g_sig = SIGTERM;
        else if (sig && !strcmp(sig, "STOP"))
            g_sig = SIGSTOP; // paused until SIGCONT: a run held mid-way
    }
    if (g_n <= 0 || strcmp(point, g_point) != 0) return;
    if (atomic_fetch_add(&g_count, 1) + 1 == g_n) {
        fprintf(stderr, "moeq: MOEQ_CRASH_AT=%s:%ld reached: %s\n", g_point, g_n,
                g_sig == SIGKILL   ? "SIGKILL"
                : g_sig == SIGUSR1 ? "SIGUSR1"
                : g_sig == SIGSTOP ? "SIGSTOP"
                                   : "SIGTERM");
        kill(getpid(), g_sig);
    }
}
