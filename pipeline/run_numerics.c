// run_numerics.c: see run_numerics.h. The pin (an execv before MPI_Init) and the agreement of the ranks'
// numerics probes (one MPI_Gather of fixed-size records, one MPI_Bcast of the outcome).
#include "run_numerics.h"

#include <cblas.h> // defines: openblas_get_config, openblas_get_corename
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h" // defines: MOEQ_EXIT_NOMEM

void moeq_numerics_pin(char **argv) {
    const char *mode = getenv("MOEQ_NUMERICS");
    if (mode && *mode && strcmp(mode, "native") && strcmp(mode, "portable"))
        fprintf(stderr,
                "moeq: warning: MOEQ_NUMERICS=%s is neither 'portable' (the default) nor 'native': "
                "taken as portable\n",
                mode);
    if ((mode && !strcmp(mode, "native")) || getenv("OPENBLAS_CORETYPE")) return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    if (!config || !strstr(config, "DYNAMIC_ARCH") || !core || !strcasecmp(core, "Haswell")) return;
    if (setenv("OPENBLAS_CORETYPE", "Haswell", 1) != 0) return;
    execv("/proc/self/exe", argv);
    fprintf(stderr,
            "moeq: warning: cannot pin OpenBLAS's kernel (re-executing /proc/self/exe failed); the "
            "%s kernel computes, whose bits may differ from other CPUs'\n",
            core);
    unsetenv("OPENBLAS_CORETYPE");
#else
    (void)argv;
#endif
}

// What a rank sends rank 0.
typedef struct {
    uint64_t fingerprint;
    int32_t status;
    char host[64];
    char desc[MOEQ_NUMERICS_DESC];
} rank_numerics;

// Appends to a fixed buffer, cutting at its end.
static void put(char *buf, size_t cap, size_t *len, const char *fmt, const char *a, const char *b) {
    if (*len >= cap) return;
    const int n = snprintf(buf + *len, cap - *len, fmt, a, b);
    if (n > 0) *len += (size_t)n;
}

// Rank 0: the run's fingerprint, description and, when ranks differ, the table of groups (into why).
static int summarize(const rank_numerics *all, int n, moeq_run_numerics *out, char *why, size_t why_cap) {
    int *group =
        n > 0 ? calloc((size_t)n, sizeof *group) : NULL; // group[i]: the first rank with rank i's fingerprint
    if (!group) return -1;
    size_t lf = 0, ld = 0, lw = 0;
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        group[i] = i;
        for (int j = 0; j < i; j++)
            if (all[j].fingerprint == all[i].fingerprint) {
                group[i] = group[j];
                break;
            }
        if (group[i] != i) continue;
        char hex[17];
        moeq_numerics_hex(all[i].fingerprint, hex);
        put(out->fingerprint, sizeof out->fingerprint, &lf, "%s%s", distinct ? "," : "", hex);
        put(out->desc, sizeof out->desc, &ld, "%s%s", distinct ? " | " : "", all[i].desc);
        distinct++;
    }
    for (int g = 0; g < n && distinct > 1; g++) {
        if (group[g] != g) continue;
        char ranks[160] = "", hex[17];
        size_t lr = 0;
        int count = 0;
        for (int i = g; i < n; i++)
            if (group[i] == g) {
                char one[96];
                snprintf(one, sizeof one, "%d (%s)", i, all[i].host);
                if (count < 6) put(ranks, sizeof ranks, &lr, "%s%s", count ? ", " : "", one);
                count++;
            }
        if (count > 6) put(ranks, sizeof ranks, &lr, "%s%s", ", ...", "");
        moeq_numerics_hex(all[g].fingerprint, hex);
        put(why, why_cap, &lw, "\n  rank%s %s", count > 1 ? "s" : "", ranks);
        put(why, why_cap, &lw, ": %s  %s", hex, all[g].desc);
    }
    free(group);
    return distinct;
}

moeq_status moeq_run_numerics_agree(const moeq_kernel_ops *ops, int allow_mixed, MPI_Comm comm,
                                    moeq_run_numerics *out) {
    int rank = 0, n = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n);
    memset(out, 0, sizeof *out);
    rank_numerics me;
    memset(&me, 0, sizeof me);
    me.status = (int32_t)moeq_numerics_probe(ops, &out->mine);
    me.fingerprint = out->mine.fingerprint;
    snprintf(me.desc, sizeof me.desc, "%s", me.status == MOEQ_OK ? out->mine.desc : moeq_error_detail());
    if (gethostname(me.host, sizeof me.host - 1) != 0) snprintf(me.host, sizeof me.host, "?");
    rank_numerics *all = rank == 0 ? calloc((size_t)n, sizeof *all) : NULL;
    if (rank == 0 && !all) MPI_Abort(comm, MOEQ_EXIT_NOMEM);
    MPI_Gather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, 0, comm);
    // rank 0 decides: {status, n_distinct}, then the run's fingerprint and description
    int verdict[2] = {MOEQ_OK, 1};
    char why[1536] = "";
    if (rank == 0) {
        for (int i = 0; i < n && verdict[0] == MOEQ_OK; i++)
            if (all[i].status != MOEQ_OK) {
                verdict[0] = all[i].status;
                snprintf(why, sizeof why, "rank %d (%s): numerics probe: %s", i, all[i].host, all[i].desc);
            }
        if (verdict[0] == MOEQ_OK && (verdict[1] = summarize(all, n, out, why, sizeof why)) < 0)
            verdict[0] = MOEQ_ERR_NOMEM, verdict[1] = 1;
        if (verdict[0] == MOEQ_OK && verdict[1] > 1 && !allow_mixed) verdict[0] = MOEQ_ERR_UNSUPPORTED;
        free(all);
    }
    MPI_Bcast(verdict, 2, MPI_INT, 0, comm);
    MPI_Bcast(out->fingerprint, sizeof out->fingerprint, MPI_CHAR, 0, comm);
    MPI_Bcast(out->desc, sizeof out->desc, MPI_CHAR, 0, comm);
    out->n_distinct = verdict[1];
    if (verdict[0] == MOEQ_ERR_UNSUPPORTED)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "the ranks compute different bits (%d numerics fingerprints), so the artifact would "
            "depend on which rank drew which unit:%s\n---> HINT: give every rank the same BLAS "
            "kernel: moeq pins OpenBLAS's Haswell kernel on x86-64 unless OPENBLAS_CORETYPE or "
            "MOEQ_NUMERICS=native is set (unset them, or export the same OPENBLAS_CORETYPE on every "
            "node), run on nodes of one kind, or pass --allow-mixed-numerics to accept an "
            "artifact whose bytes depend on the schedule",
            verdict[1], why);
    if (verdict[0] != MOEQ_OK)
        return MOEQ_FAIL((moeq_status)verdict[0], "%s", rank == 0 ? why : "numerics probe failed on a rank");
    if (rank == 0 && verdict[1] > 1)
        MOEQ_LOG(MOEQ_LOG_WARN, "--allow-mixed-numerics: the ranks compute different bits:%s", why);
    return MOEQ_OK;
}
