// cli.h: the `moeq` command table, the shared getopt_long parser and the documented exit codes.
//
// Each subcommand is one file (pipeline/cmd_<name>.c) defining a moeq_command; pipeline/main.c lists them.
// moeq_cli_parse handles what every command shares (--help, --verbose, --quiet, unknown options) and
// hands the command's own options to its callback.
#ifndef MOEQ_CLI_H
#define MOEQ_CLI_H

#include <getopt.h>
#include <stdio.h>

#include <jansson.h>

#include <mpi.h>

#include "moeq_io.h"

// ---- exit codes (documented in README.md and `moeq --help`) ----
enum {
    MOEQ_EXIT_OK = 0,
    MOEQ_EXIT_FAILURE = 1,   // runtime failure not covered below
    MOEQ_EXIT_USAGE = 2,     // bad command line
    MOEQ_EXIT_INPUT = 3,     // bad input: malformed/missing/unsupported checkpoint, config or recipe; no GPU
    MOEQ_EXIT_IO = 4,        // I/O error (read, write, fsync, disk full)
    MOEQ_EXIT_NOMEM = 5,     // out of memory
    MOEQ_EXIT_THRESHOLD = 6, // evaluation threshold exceeded
    MOEQ_EXIT_EXISTS = 7,    // output exists (use --force) or resume refused (other plan or backend)
    MOEQ_EXIT_REQUEUE = 75,  // stopped by a signal with progress durable: resubmit with --resume (EX_TEMPFAIL)
};

// Maps a status to the exit code above.
int moeq_exit_code(moeq_status st);

// Prints "moeq <cmd>: error: <status>: <detail>" to stderr and returns moeq_exit_code(st).
int moeq_cli_fail(const char *cmd, moeq_status st);

typedef struct moeq_command {
    const char *name;
    const char *summary;   // one line, for `moeq --help`
    const char *usage;     // full help text printed by `moeq <name> --help` (after "usage: ")
    int (*run)(int argc, char **argv); // argv[0] is the command name
    int recipe_help;       // 1: the command takes recipes and answers --help-recipe[=markdown]
} moeq_command;

// The recipe reference from the registries (settings fields, methods, storage formats): text, or the
// markdown tables of configs/README.md (recipe_help.c).
void moeq_recipe_help_print(FILE *f, int markdown);

// Common flags, set by moeq_cli_parse.
typedef struct moeq_cli_common {
    int verbose;
    int quiet;
} moeq_cli_common;

// Command-specific option handler: return 0 when handled, non-zero for a usage error (message printed).
typedef int (*moeq_cli_opt_fn)(int opt, const char *arg, void *ctx);

// Parses argv with getopt_long. `longopts`/`shortopts` are the command's own (may be NULL/""); the common
// --help/-h, --verbose/-v (also: source locations in messages), --quiet/-q, --log-file FILE and
// --log-format text|json are added (and --help-recipe[=markdown] for commands with recipe_help). An
// unknown long option is named with the closest known one ("did you mean --schedule?").
// Returns: 0 to continue (optind is the first operand), 1 when a help was printed (exit 0), 2 on a usage
// error (message + hint printed; exit MOEQ_EXIT_USAGE).
int moeq_cli_parse(const moeq_command *cmd, int argc, char **argv, const char *shortopts,
                   const struct option *longopts, moeq_cli_opt_fn fn, void *ctx, moeq_cli_common *common);

// The name among names[0..n) closest to word by edit distance (transpositions count one), when it is close
// enough to read as a typo (1 edit for up to 4 letters, 2 up to 9, 3 beyond); else NULL. For "did you mean".
const char *moeq_cli_suggest(const char *word, const char *const *names, int n_names);

// Collective (MPI_COMM_WORLD). Ranks are the first level of parallelism: BLAS/LAPACK run single-threaded
// inside a rank (multithreaded OpenBLAS re-blocks its reductions by thread count on some CPUs, which would
// make results depend on it), and unless OMP_NUM_THREADS is set each rank gets an equal share of its node's
// cores for OpenMP (min(its affinity mask, cores / ranks on the node), at least 1: 3 ranks x 2 spinning
// OpenMP threads on 2 cores ran 5x slower). Returns the OpenMP thread count.
int moeq_threads_default(void);

// ---- JSON outputs: `schema_version` (docs/JSON.md) rises when a key changes meaning or goes away ----
enum {
    MOEQ_SCHEMA_PLAN = 1,    // moeq plan --json
    MOEQ_SCHEMA_INSPECT = 1, // moeq inspect --json
    MOEQ_SCHEMA_STATS = 1,   // moeq quantize --stats (real and --simulate runs)
};
// Sets "schema_version": version in root (an object).
void moeq_cli_json_schema(json_t *root, int version);

// Strict number parsing for option values; print a usage message and return non-zero on failure.
int moeq_cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, long *out);
int moeq_cli_u64(const char *cmd, const char *opt, const char *arg, unsigned long long *out);
// A number in [lo, hi] (hi may be HUGE_VAL; NaN never passes).
int moeq_cli_real(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out);
// "1.20 GiB", "512 B": bytes in binary units, for summaries and progress lines.
void moeq_cli_human_bytes(uint64_t b, char *out, size_t cap);

extern const moeq_command moeq_cmd_inspect;
extern const moeq_command moeq_cmd_synth;
extern const moeq_command moeq_cmd_quantize;
extern const moeq_command moeq_cmd_plan;
extern const moeq_command moeq_cmd_bench;
extern const moeq_command moeq_cmd_eval;
extern const moeq_command moeq_cmd_export;
extern const moeq_command moeq_cmd_calibrate;
extern const moeq_command moeq_cmd_report;

#endif
