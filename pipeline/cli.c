// cli.c: the shared option parser and exit-code mapping (see cli.h).
#define _GNU_SOURCE // sched_getaffinity, CPU_COUNT
#include "cli.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int moeq_exit_code(moeq_status st) {
    switch (st) {
    case MOEQ_OK: return MOEQ_EXIT_OK;
    case MOEQ_ERR_ARG: return MOEQ_EXIT_USAGE;
    case MOEQ_ERR_FORMAT:
    case MOEQ_ERR_NOT_FOUND:
    case MOEQ_ERR_UNSUPPORTED: return MOEQ_EXIT_INPUT;
    case MOEQ_ERR_MISMATCH: return MOEQ_EXIT_EXISTS; // resume refused: another plan or another backend
    case MOEQ_ERR_IO: return MOEQ_EXIT_IO;
    case MOEQ_ERR_NOMEM: return MOEQ_EXIT_NOMEM;
    case MOEQ_ERR_EXISTS: return MOEQ_EXIT_EXISTS;
    case MOEQ_ERR_INTERRUPTED: return MOEQ_EXIT_REQUEUE;
    default: return MOEQ_EXIT_FAILURE;
    }
}

int moeq_cli_fail(const char *cmd, moeq_status st) {
    const char *d = moeq_error_detail();
    fprintf(stderr, "moeq %s: error: %s%s%s\n", cmd, moeq_status_str(st), d[0] ? ": " : "", d);
    return moeq_exit_code(st);
}

static void print_usage(const moeq_command *cmd, FILE *f) {
    fprintf(f, "usage: %s\n", cmd->usage);
    fprintf(f, "\nCommon options:\n"
               "  -h, --help       show this help and exit\n"
               "  -v, --verbose    more log output (debug level)\n"
               "  -q, --quiet      only errors on stderr\n");
    if (cmd->recipe_help)
        fprintf(f, "  --help-recipe[=markdown]\n"
                   "                   what a recipe can say: every setting (values, default, the methods that\n"
                   "                   read it), the methods and the storage formats; configs/README.md explains\n"
                   "                   rules and policies\n");
}

enum { OPT_HELP_RECIPE = 1000 };

int moeq_cli_parse(const moeq_command *cmd, int argc, char **argv, const char *shortopts,
                   const struct option *longopts, moeq_cli_opt_fn fn, void *ctx, moeq_cli_common *common) {
    enum { N_COMMON = 4, MAX_OPTS = 64 };
    static const struct option common_opts[N_COMMON] = {
        {"help", no_argument, NULL, 'h'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help-recipe", optional_argument, NULL, OPT_HELP_RECIPE},
    };
    struct option all[MAX_OPTS + N_COMMON + 1];
    int n = 0;
    for (int i = 0; longopts && longopts[i].name && n < MAX_OPTS; i++) all[n++] = longopts[i];
    for (int i = 0; i < N_COMMON - !cmd->recipe_help; i++) all[n++] = common_opts[i];
    memset(&all[n], 0, sizeof all[n]);
    char shorts[128];
    snprintf(shorts, sizeof shorts, ":hvq%s", shortopts ? shortopts : ""); // GNU order: options may follow operands
    moeq_cli_common dummy = {0};
    if (!common) common = &dummy;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
        switch (opt) {
        case 'h':
            print_usage(cmd, stdout);
            return 1;
        case OPT_HELP_RECIPE:
            if (optarg && strcmp(optarg, "markdown") != 0 && strcmp(optarg, "text") != 0) {
                fprintf(stderr, "moeq %s: --help-recipe takes text or markdown, not \"%s\"\n", cmd->name, optarg);
                return 2;
            }
            moeq_recipe_help_print(stdout, optarg && !strcmp(optarg, "markdown"));
            return 1;
        case 'v':
            common->verbose = 1;
            moeq_log_init(moeq_log_rank(), MOEQ_LOG_DBG);
            break;
        case 'q':
            common->quiet = 1;
            moeq_log_init(moeq_log_rank(), MOEQ_LOG_ERR);
            break;
        case '?':
        case ':':
            if (optopt)
                fprintf(stderr, "moeq %s: option -%c %s\n", cmd->name, optopt,
                        opt == ':' ? "needs a value" : "is not known");
            else
                fprintf(stderr, "moeq %s: option %s is not known or needs a value\n", cmd->name, argv[optind - 1]);
            fprintf(stderr, "---> HINT: moeq %s --help lists the options\n", cmd->name);
            return 2;
        default:
            if (!fn || fn(opt, optarg, ctx) != 0) {
                fprintf(stderr, "---> HINT: moeq %s --help lists the options\n", cmd->name);
                return 2;
            }
        }
    }
    return 0;
}

int moeq_cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(arg ? arg : "", &end, 10);
    if (!arg || !*arg || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "moeq %s: %s needs an integer in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi, arg ? arg : "");
        return 1;
    }
    *out = v;
    return 0;
}

int moeq_cli_real(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    const double v = strtod(arg ? arg : "", &end);
    if (!arg || !*arg || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "moeq %s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi,
                arg ? arg : "");
        return 1;
    }
    *out = v;
    return 0;
}

int moeq_cli_u64(const char *cmd, const char *opt, const char *arg, unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg ? arg : "", &end, 0);
    if (!arg || !*arg || *end || errno || arg[0] == '-') {
        fprintf(stderr, "moeq %s: %s needs a non-negative integer, got '%s'\n", cmd, opt, arg ? arg : "");
        return 1;
    }
    *out = v;
    return 0;
}

int moeq_threads_default(void) {
    moeq_blas_set_threads(1);
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) return omp_get_max_threads();
    MPI_Comm local;
    int n_local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &n_local);
        MPI_Comm_free(&local);
    }
    cpu_set_t set;
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int share = online > 0 ? (int)(online / n_local) : 1;
    int n = mine < share ? mine : share;
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    return n;
}

void moeq_cli_human_bytes(uint64_t b, char *out, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) v /= 1024, i++;
    snprintf(out, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}
