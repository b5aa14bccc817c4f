// main.c: `moeq <command> ...`: dispatch to the subcommands listed below. Thin by design: every command
// is main() + options + calls into the layer libraries, in pipeline/cmd_<name>.c.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "run_numerics.h" // defines: moeq_numerics_pin (and, through the kernels, moeq_cuda_module_load)

static const moeq_command *const commands[] = {
    &moeq_cmd_inspect,
    &moeq_cmd_synth,
    &moeq_cmd_plan,
    &moeq_cmd_quantize,
    &moeq_cmd_eval,
    &moeq_cmd_export,
    &moeq_cmd_calibrate,
    &moeq_cmd_bench,
    &moeq_cmd_report,
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f, "moeq %s: distributed post-training quantizer for Mixture-of-Experts checkpoints\n\n"
               "usage: moeq <command> [options] [operands]\n\nCommands:\n",
            MOEQ_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n`moeq <command> --help` describes each command.\n\n"
               "Exit codes:\n"
               "  0   success\n"
               "  1   runtime failure\n"
               "  2   bad command line\n"
               "  3   bad input (malformed, missing or unsupported checkpoint, config or recipe; --device cuda\n"
               "      without a usable GPU)\n"
               "  4   I/O error (read, write, fsync, disk full)\n"
               "  5   out of memory\n"
               "  6   evaluation threshold exceeded\n"
               "  7   output exists (use --force), resume refused, or another run is writing --out\n"
               "  75  stopped by a signal with progress saved: run again with --resume\n");
}

// `--version`'s second line: where the CUDA backend module was loaded from (an installed tree: P/lib), or why
// there is none (a CPU-only build; a module not found). Loads the module: cuBLAS, not a GPU.
static void print_cuda_backend(void) {
    if (moeq_cuda_module_load() == MOEQ_OK) {
        printf("cuda backend: %s\n", moeq_cuda_module_path());
        return;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", moeq_error_detail());
    char *nl = strchr(why, '\n');
    if (nl) *nl = '\0';
    printf("cuda backend: none (%s)\n", why);
}

int main(int argc, char **argv) {
    moeq_numerics_pin(argv); // may run this program again, with OpenBLAS's kernel pinned
    moeq_log_init(0, MOEQ_LOG_INFO);
    if (argc < 2) {
        usage(stderr);
        return MOEQ_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MOEQ_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("moeq %s (%s)\n", MOEQ_VERSION, MOEQ_GIT_HASH);
        print_cuda_backend();
        return MOEQ_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i]->name)) return commands[i]->run(argc - 1, argv + 1);
    const char *names[N_COMMANDS + 2] = {"help", "version"};
    for (int i = 0; i < N_COMMANDS; i++) names[i + 2] = commands[i]->name;
    const char *near = moeq_cli_suggest(argv[1], names, N_COMMANDS + 2);
    fprintf(stderr, "moeq: '%s' is not a command\n", argv[1]);
    if (near)
        fprintf(stderr, "---> HINT: did you mean 'moeq %s'? (moeq --help lists the commands)\n", near);
    else
        fprintf(stderr, "---> HINT: moeq --help lists the commands\n");
    return MOEQ_EXIT_USAGE;
}
