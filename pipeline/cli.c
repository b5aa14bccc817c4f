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
    char d[2048];
    moeq_log_detail(moeq_error_detail(), d, sizeof d); // file.c:line only with -v
    if (moeq_log_json() || moeq_log_file()) // the dashboard's stream gets the error as one record too
        MOEQ_LOG(MOEQ_LOG_ERR, "moeq %s: %s%s%s", cmd, moeq_status_str(st), d[0] ? ": " : "", d);
    if (!moeq_log_json() || moeq_log_file()) // and the terminal its line, unless it is that stream
        fprintf(stderr, "moeq %s: error: %s%s%s\n", cmd, moeq_status_str(st), d[0] ? ": " : "", d);
    return moeq_exit_code(st);
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions: "qunatize"), capped
// operands (names are short).
static int edit_distance(const char *a, const char *b) {
    enum { M = 48 };
    const int n = (int)strnlen(a, M - 1), m = (int)strnlen(b, M - 1);
    int d[M][M];
    for (int i = 0; i <= n; i++) d[i][0] = i;
    for (int j = 0; j <= m; j++) d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            const int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

const char *moeq_cli_suggest(const char *word, const char *const *names, int n_names) {
    const int len = (int)strlen(word);
    int best = len <= 4 ? 1 : len <= 9 ? 2 : 3; // the most edits that still reads as a typo
    const char *pick = NULL;
    for (int i = 0; i < n_names; i++) {
        if (!names[i]) continue;
        const int dist = edit_distance(word, names[i]);
        if (dist <= best && (!pick || dist < best)) best = dist, pick = names[i];
    }
    return pick;
}

// "moeq CMD: option --x is not known": the closest long option, when one is close.
static void unknown_option(const moeq_command *cmd, const char *arg, const struct option *all, int n_all) {
    char word[64];
    snprintf(word, sizeof word, "%s", arg + 2);
    word[strcspn(word, "=")] = '\0';
    const char *names[160];
    int n = 0;
    for (int i = 0; i < n_all && n < 160; i++) names[n++] = all[i].name;
    const char *near = moeq_cli_suggest(word, names, n);
    fprintf(stderr, "moeq %s: option --%s is not known\n", cmd->name, word);
    if (near)
        fprintf(stderr, "---> HINT: did you mean --%s? (moeq %s --help lists the options)\n", near,
                cmd->name);
    else
        fprintf(stderr, "---> HINT: moeq %s --help lists the options\n", cmd->name);
}

static void print_usage(const moeq_command *cmd, FILE *f) {
    fprintf(f, "usage: %s\n", cmd->usage);
    fprintf(f, "\nCommon options:\n"
               "  -h, --help       show this help and exit\n"
               "  -v, --verbose    more log output (debug level) and source locations in messages\n"
               "  -q, --quiet      only errors on stderr\n"
               "  --log-file FILE  log lines to FILE (appended; %%r in the name is the rank) instead of stderr\n"
               "  --log-format text|json\n"
               "                   json: one object per line (time, rank, host, level, message, file, line and\n"
               "                   the fields a message has), for dashboards\n");
    if (cmd->recipe_help)
        fprintf(f, "  --help-recipe[=markdown]\n"
                   "                   what a recipe can say: every setting (values, default, the methods that\n"
                   "                   read it), the methods and the storage formats; configs/README.md explains\n"
                   "                   rules and policies\n");
}

enum { OPT_HELP_RECIPE = 1000, OPT_LOG_FILE, OPT_LOG_FORMAT };

int moeq_cli_parse(const moeq_command *cmd, int argc, char **argv, const char *shortopts,
                   const struct option *longopts, moeq_cli_opt_fn fn, void *ctx, moeq_cli_common *common) {
    enum { N_COMMON = 6, MAX_OPTS = 64 };
    static const struct option common_opts[N_COMMON] = { // --help-recipe last: only for recipe commands
        {"help", no_argument, NULL, 'h'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"log-file", required_argument, NULL, OPT_LOG_FILE},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
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
    const char *log_file = NULL;
    int log_json = 0;
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
            moeq_log_locations(1);
            break;
        case OPT_LOG_FILE:
            log_file = optarg;
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                fprintf(stderr, "moeq %s: --log-format takes text or json, not \"%s\"\n", cmd->name, optarg);
                return 2;
            }
            log_json = !strcmp(optarg, "json");
            break;
        case 'q':
            common->quiet = 1;
            moeq_log_init(moeq_log_rank(), MOEQ_LOG_ERR);
            break;
        case '?':
        case ':': {
            const char *arg = optind >= 1 && optind <= argc ? argv[optind - 1] : "";
            if (opt == '?' && !optopt && !strncmp(arg, "--", 2)) { // an unknown long option
                unknown_option(cmd, arg, all, n);
                return 2;
            }
            if (optopt > 0 && optopt < 128 && strncmp(arg, "--", 2) != 0)
                fprintf(stderr, "moeq %s: option -%c %s\n", cmd->name, optopt,
                        opt == ':' ? "needs a value" : "is not known");
            else
                fprintf(stderr, "moeq %s: option %s %s\n", cmd->name, arg,
                        opt == ':' ? "needs a value" : optopt ? "takes no value" : "is not known");
            fprintf(stderr, "---> HINT: moeq %s --help lists the options\n", cmd->name);
            return 2;
        }
        default:
            if (!fn || fn(opt, optarg, ctx) != 0) {
                fprintf(stderr, "---> HINT: moeq %s --help lists the options\n", cmd->name);
                return 2;
            }
        }
    }
    if (log_file || log_json) {
        const moeq_status st = moeq_log_configure(log_file, log_json);
        if (st != MOEQ_OK) {
            char d[1024];
            moeq_log_detail(moeq_error_detail(), d, sizeof d);
            fprintf(stderr, "moeq %s: %s\n", cmd->name, d);
            return 2;
        }
    }
    return 0;
}

void moeq_cli_json_schema(json_t *root, int version) {
    json_object_set_new(root, "schema_version", json_integer(version));
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
