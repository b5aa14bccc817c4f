// cmd_bench.c: `moeq bench <what>`: benchmarks that print JSON (machine, inputs, figures, and a named
// baseline measured in the same run). Not tests: nothing here asserts; numbers go to bench/README.md.
//   kernels   bench/bench_kernels.c (RTN, HQQ, rSVD, MiLo round vs memcpy/sgemm baselines)
//   tensor    bench/bench_tensor.c (one weight from its stored bytes vs the kernel-by-kernel path)
//   pipeline  this file: `moeq quantize` end to end on a synthesized checkpoint for 1..N ranks (spawned
//             with mpirun), against the ideal of (sum of kernel time + read time at the measured disk
//             speed) / ranks; peak RSS per rank for 8 vs 64 experts of the same shape.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_formats.h"
#include "bench_infer.h"
#include "clock.h" // defines: moeq_now_s
#include "bench_kernels.h"
#include "cli.h"

extern char **environ;

// ---- child processes ----

// Runs argv (argv[0] looked up in PATH), waits, returns its exit status (or -1 when it could not start).
// The child's stdout goes to stderr so that ours stays pure JSON.
static int spawn_wait(char *const *argv) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "moeq bench: cannot start %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// Splits `mpirun --oversubscribe -x FOO` at spaces into argv (no quoting), appends the rest.
static int build_argv(char **out, int max, char *launcher, char *const *rest) {
    int n = 0;
    for (char *tok = strtok(launcher, " "); tok && n < max - 1; tok = strtok(NULL, " ")) out[n++] = tok;
    for (int i = 0; rest[i] && n < max - 1; i++) out[n++] = rest[i];
    out[n] = NULL;
    return n;
}

// ---- files ----

// Drops the file's clean pages from the page cache (no root needed), so the next read comes from disk.
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static int is_shard(const char *name) {
    const size_t n = strlen(name);
    return n > 12 && !strcmp(name + n - 12, ".safetensors");
}

// Calls fn on every *.safetensors file of dir. Returns their number.
static int for_shards(const char *dir, void (*fn)(const char *path, void *ctx), void *ctx) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_shard(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, ctx);
        n++;
    }
    closedir(d);
    return n;
}

static void drop_cb(const char *path, void *ctx) {
    (void)ctx;
    drop_cache(path);
}

typedef struct {
    double seconds;
    uint64_t bytes;
    int failed;
} read_meter;

static void read_cb(const char *path, void *ctx) {
    read_meter *m = ctx;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        m->failed = 1;
        return;
    }
    const size_t chunk = 64u << 20;
    char *buf = malloc(chunk);
    double t0 = moeq_now_s();
    for (off_t off = 0; buf;) {
        ssize_t r = pread(fd, buf, chunk, off);
        if (r <= 0) break;
        off += r;
        m->bytes += (uint64_t)r;
    }
    m->seconds += moeq_now_s() - t0;
    free(buf);
    close(fd);
}

static void machine_json(json_t *root) {
    json_t *m = json_object();
    char line[512], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) snprintf(model, sizeof model, "%s", c + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    json_object_set_new(m, "cpu", json_string(model));
    json_object_set_new(m, "cores_online", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(m, "memory_bytes",
                        json_integer((json_int_t)sysconf(_SC_PHYS_PAGES) * (json_int_t)sysconf(_SC_PAGE_SIZE)));
    json_object_set_new(root, "machine", m);
}

// ---- bench pipeline ----

typedef struct {
    char *dir, *mpirun, *recipe;
    int layers, experts, hidden, inter, max_ranks, keep, rss;
} pipe_opts;

static int synth(const char *self, const char *out, int layers, int experts, int hidden, int inter) {
    char L[16], E[16], H[16], I[16];
    snprintf(L, sizeof L, "%d", layers), snprintf(E, sizeof E, "%d", experts);
    snprintf(H, sizeof H, "%d", hidden), snprintf(I, sizeof I, "%d", inter);
    char *argv[] = {(char *)self, "synth",   "--arch", "mixtral", "--layers", L,         "--hidden", H,
                    "--intermediate", I,     "--experts", E,     "--top-k",  "2",       "--force", "-q",
                    (char *)out,    NULL};
    return spawn_wait(argv);
}

// One `mpirun -n R moeq quantize ... --stats`; returns the parsed stats (NULL on failure), wall in *wall.
static json_t *quantize(const char *self, const pipe_opts *o, const char *model, const char *tag, int ranks,
                        double *wall) {
    char np[16], out[4096], stats[4096], launcher[1024];
    snprintf(np, sizeof np, "%d", ranks);
    snprintf(out, sizeof out, "%s/%s-r%d.h5", o->dir, tag, ranks);
    snprintf(stats, sizeof stats, "%s/%s-r%d.json", o->dir, tag, ranks);
    snprintf(launcher, sizeof launcher, "%s", o->mpirun);
    char *rest[24];
    int k = 0;
    rest[k++] = "-n", rest[k++] = np, rest[k++] = (char *)self, rest[k++] = "quantize", rest[k++] = "--model";
    rest[k++] = (char *)model, rest[k++] = "--out", rest[k++] = out, rest[k++] = "--force", rest[k++] = "--progress";
    rest[k++] = "0", rest[k++] = "-q", rest[k++] = "--stats", rest[k++] = stats;
    if (o->recipe) rest[k++] = "--recipe", rest[k++] = o->recipe;
    rest[k] = NULL;
    char *argv[64];
    build_argv(argv, 64, launcher, rest);
    for_shards(model, drop_cb, NULL); // every run reads from disk, not from the page cache
    double t0 = moeq_now_s();
    int rc = spawn_wait(argv);
    *wall = moeq_now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "moeq bench pipeline: quantize with %d rank(s) exited %d\n", ranks, rc);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_load_file(stats, 0, &err);
    if (!j) fprintf(stderr, "moeq bench pipeline: %s: %s\n", stats, err.text);
    if (!o->keep) unlink(out);
    return j;
}

static double jnum(json_t *o, const char *a, const char *b) {
    json_t *x = json_object_get(o, a);
    if (b) x = json_object_get(x, b);
    return json_number_value(x);
}

static int bench_pipeline(const pipe_opts *o) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return moeq_cli_fail("bench", MOEQ_FAIL(MOEQ_ERR_IO, "/proc/self/exe: %s", strerror(errno)));
    self[n] = 0;
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        return moeq_cli_fail("bench", MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create: %s", o->dir, strerror(errno)));
    char model[4096];
    snprintf(model, sizeof model, "%s/ckpt", o->dir);
    fprintf(stderr, "moeq bench pipeline: synthesizing %d layers x %d experts (%d x %d) in %s\n", o->layers,
            o->experts, o->hidden, o->inter, model);
    if (synth(self, model, o->layers, o->experts, o->hidden, o->inter) != 0) return MOEQ_EXIT_FAILURE;

    json_t *root = json_object(), *inputs = json_object(), *runs = json_array();
    json_object_set_new(root, "benchmark", json_string("pipeline"));
    machine_json(root);
    json_object_set_new(inputs, "checkpoint", json_string(model));
    json_object_set_new(inputs, "arch", json_string("mixtral"));
    json_object_set_new(inputs, "layers", json_integer(o->layers));
    json_object_set_new(inputs, "experts", json_integer(o->experts));
    json_object_set_new(inputs, "hidden", json_integer(o->hidden));
    json_object_set_new(inputs, "intermediate", json_integer(o->inter));
    json_object_set_new(inputs, "dtype", json_string("bf16"));
    json_object_set_new(inputs, "recipe", json_string(o->recipe ? o->recipe : "<built-in: hqq 4-bit g64>"));
    json_object_set_new(inputs, "launcher", json_string(o->mpirun));

    // disk speed: a cold sequential read of the shards (their pages dropped first)
    for_shards(model, drop_cb, NULL);
    read_meter rm = {0};
    int n_shards = for_shards(model, read_cb, &rm);
    const double disk_bps = rm.seconds > 0 ? (double)rm.bytes / rm.seconds : 0;
    json_object_set_new(inputs, "shards", json_integer(n_shards));
    json_object_set_new(inputs, "checkpoint_bytes", json_integer((json_int_t)rm.bytes));
    json_object_set_new(root, "inputs", inputs);
    json_t *disk = json_object();
    json_object_set_new(disk, "method", json_string("sequential pread of every shard in 64 MiB chunks after "
                                                    "posix_fadvise(DONTNEED)"));
    json_object_set_new(disk, "bytes_per_s", json_real(disk_bps));
    json_object_set_new(root, "disk_read", disk);
    fprintf(stderr, "moeq bench pipeline: %.2f GiB in %d shard(s), cold read %.0f MiB/s\n", rm.bytes / 1073741824.0,
            n_shards, disk_bps / 1048576.0);

    double wall1 = 0, q1 = 0;
    char ck1[64] = "";
    int identical = 1;
    for (int r = 1; r <= o->max_ranks; r++) {
        double wall = 0;
        json_t *st = quantize(self, o, model, "main", r, &wall);
        if (!st) {
            json_decref(root);
            return MOEQ_EXIT_FAILURE;
        }
        const double kernel = jnum(st, "sum", "compute_s"), read_s = jnum(st, "sum", "read_s");
        const double write_s = jnum(st, "sum", "write_s"), bytes = jnum(st, "sum", "bytes_read");
        const double qphase = jnum(st, "phases_s", "quantize");
        const double read_ideal = disk_bps > 0 ? bytes / disk_bps : 0;
        const double ideal = (kernel + read_ideal) / r;
        const char *ck = json_string_value(json_object_get(st, "artifact_checksum"));
        if (r == 1) {
            wall1 = wall, q1 = qphase;
            snprintf(ck1, sizeof ck1, "%s", ck ? ck : "");
        } else if (!ck || strcmp(ck, ck1)) {
            identical = 0;
        }
        double rss_max = 0;
        json_t *rd = json_object_get(st, "ranks_detail"), *v;
        size_t i;
        json_array_foreach(rd, i, v) {
            double x = jnum(v, "peak_rss_bytes", NULL);
            if (x > rss_max) rss_max = x;
        }
        json_t *e = json_object();
        json_object_set_new(e, "ranks", json_integer(r));
        json_object_set_new(e, "wall_s", json_real(wall));
        json_object_set_new(e, "quantize_phase_s", json_real(qphase));
        json_object_set_new(e, "bytes_read", json_real(bytes));
        json_object_set_new(e, "bytes_per_s", json_real(qphase > 0 ? bytes / qphase : 0));
        json_object_set_new(e, "kernel_s_sum", json_real(kernel));
        json_object_set_new(e, "read_s_sum", json_real(read_s));
        json_object_set_new(e, "write_s_sum", json_real(write_s));
        json_object_set_new(e, "read_s_at_disk_speed", json_real(read_ideal));
        json_object_set_new(e, "baseline_ideal_s", json_real(ideal));
        json_object_set_new(e, "overhead_quantize_phase", json_real(ideal > 0 ? qphase / ideal : 0));
        json_object_set_new(e, "overhead_wall", json_real(ideal > 0 ? wall / ideal : 0));
        json_object_set_new(e, "speedup_vs_1_rank_wall", json_real(wall > 0 ? wall1 / wall : 0));
        json_object_set_new(e, "speedup_vs_1_rank_quantize_phase", json_real(qphase > 0 ? q1 / qphase : 0));
        json_object_set_new(e, "peak_rss_bytes_max_rank", json_real(rss_max));
        json_object_set_new(e, "artifact_checksum", json_string(ck ? ck : ""));
        json_array_append_new(runs, e);
        fprintf(stderr, "moeq bench pipeline: %d rank(s): wall %.2f s (quantize phase %.2f s), kernels %.2f s, "
                        "overhead %.3f\n", r, wall, qphase, kernel, ideal > 0 ? wall / ideal : 0);
        json_decref(st);
    }
    json_object_set_new(root, "runs", runs);
    json_object_set_new(root, "artifacts_identical", json_boolean(identical));
    json_t *def = json_object();
    json_object_set_new(def, "baseline_ideal_s", json_string("(sum over ranks of per-unit kernel seconds + bytes read "
                                                            "/ measured cold disk speed) / ranks"));
    json_object_set_new(def, "overhead_wall", json_string("wall of the whole mpirun (start, plan, skeleton, queue, "
                                                         "seal, MPI finalize) / baseline_ideal_s; target <= 1.15"));
    json_object_set_new(def, "speedup", json_string("wall(1 rank) / wall(N ranks); target >= 1.8 at 2 ranks"));
    json_object_set_new(root, "definitions", def);

    if (o->rss) { // peak RSS does not grow with the number of experts (units are read one tensor at a time)
        json_t *rs = json_array();
        const int ne[2] = {8, 64};
        for (int k = 0; k < 2; k++) {
            char m2[4096], tag[32];
            snprintf(m2, sizeof m2, "%s/rss-e%d", o->dir, ne[k]);
            snprintf(tag, sizeof tag, "rss-e%d", ne[k]);
            if (synth(self, m2, 2, ne[k], 512, 1408) != 0) {
                json_decref(root);
                return MOEQ_EXIT_FAILURE;
            }
            double wall = 0;
            json_t *st = quantize(self, o, m2, tag, 1, &wall);
            if (!st) {
                json_decref(root);
                return MOEQ_EXIT_FAILURE;
            }
            json_t *e = json_object();
            json_object_set_new(e, "experts", json_integer(ne[k]));
            json_object_set_new(e, "bytes_read", json_real(jnum(st, "sum", "bytes_read")));
            json_object_set_new(e, "peak_rss_bytes", json_real(jnum(st, "sum", "peak_rss_bytes")));
            json_array_append_new(rs, e);
            json_decref(st);
            if (!o->keep) {
                char cmd[4200];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", m2);
                if (system(cmd) != 0) fprintf(stderr, "moeq bench: could not remove %s\n", m2);
            }
        }
        const double a = jnum(json_array_get(rs, 0), "peak_rss_bytes", NULL),
                     b = jnum(json_array_get(rs, 1), "peak_rss_bytes", NULL);
        json_t *r = json_object();
        json_object_set_new(r, "shape", json_string("mixtral, 2 layers, hidden 512, intermediate 1408, 1 rank"));
        json_object_set_new(r, "runs", rs);
        json_object_set_new(r, "ratio_64_over_8", json_real(a > 0 ? b / a : 0));
        json_object_set_new(r, "target", json_string("equal within 10%"));
        json_object_set_new(root, "peak_rss", r);
    }
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("\n");
    json_decref(root);
    if (!o->keep) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/ckpt' '%s'/main-r*.json '%s'/rss-*.json", o->dir, o->dir, o->dir);
        if (system(cmd) != 0) fprintf(stderr, "moeq bench: could not clean %s\n", o->dir);
        rmdir(o->dir);
    }
    return identical ? MOEQ_EXIT_OK : MOEQ_EXIT_FAILURE;
}

static int on_opt(int opt, const char *arg, void *ctx) {
    pipe_opts *o = ctx;
    long v;
    switch (opt) {
    case 'd': o->dir = (char *)arg; return 0;
    case 'M': o->mpirun = (char *)arg; return 0;
    case 'r': o->recipe = (char *)arg; return 0;
    case 'L': return moeq_cli_int("bench", "--layers", arg, 1, 4096, &v) || !(o->layers = (int)v);
    case 'E': return moeq_cli_int("bench", "--experts", arg, 1, 4096, &v) || !(o->experts = (int)v);
    case 'H': return moeq_cli_int("bench", "--hidden", arg, 64, 65536, &v) || !(o->hidden = (int)v);
    case 'I': return moeq_cli_int("bench", "--intermediate", arg, 64, 262144, &v) || !(o->inter = (int)v);
    case 'n': return moeq_cli_int("bench", "--max-ranks", arg, 1, 4096, &v) || !(o->max_ranks = (int)v);
    case 'k': o->keep = 1; return 0;
    case 'x': o->rss = 0; return 0;
    default: return 1;
    }
}

static int run(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "kernels")) return moeq_bench_kernels_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "infer")) return moeq_bench_infer_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "tensor")) return moeq_bench_tensor_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "formats")) return moeq_bench_formats_main(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "pipeline")) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            printf("usage: %s\n", moeq_cmd_bench.usage);
            return MOEQ_EXIT_OK;
        }
        fprintf(stderr, "moeq bench: which benchmark? kernels, tensor, infer, formats or pipeline\n---> HINT: moeq "
                        "bench --help\n");
        return MOEQ_EXIT_USAGE;
    }
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},          {"mpirun", required_argument, NULL, 'M'},
        {"recipe", required_argument, NULL, 'r'},       {"layers", required_argument, NULL, 'L'},
        {"experts", required_argument, NULL, 'E'},      {"hidden", required_argument, NULL, 'H'},
        {"intermediate", required_argument, NULL, 'I'}, {"max-ranks", required_argument, NULL, 'n'},
        {"keep", no_argument, NULL, 'k'},               {"no-rss", no_argument, NULL, 'x'},
        {0, 0, 0, 0},
    };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/moeq-bench-pipeline-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    pipe_opts o = {.dir = dir, .mpirun = "mpirun --oversubscribe", .layers = 12, .experts = 8, .hidden = 1024,
                   .inter = 3584, .max_ranks = 2, .rss = 1};
    moeq_cli_common common = {0};
    int r = moeq_cli_parse(&moeq_cmd_bench, argc - 1, argv + 1, "d:M:r:L:E:H:I:n:kx", longopts, on_opt, &o, &common);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    moeq_log_init(0, common.quiet ? MOEQ_LOG_ERR : MOEQ_LOG_INFO);
    return bench_pipeline(&o);
}

const moeq_command moeq_cmd_bench = {
    .name = "bench",
    .summary = "benchmarks (JSON): kernels, tensor, infer, formats, pipeline",
    .usage =
        "moeq bench kernels [options]     (moeq bench kernels --help; --device cpu|cuda)\n"
        "       moeq bench tensor [options]      (moeq bench tensor --help: one weight, stored bytes in)\n"
        "       moeq bench infer [options]       (moeq bench infer --help: fused 3-bit + low-rank product)\n"
        "       moeq bench formats --ggml LIB    (moeq bench formats --help: llama.cpp's block types, moeq's\n"
        "                                        quantizer against llama.cpp's)\n"
        "       moeq bench pipeline [options]\n\n"
        "pipeline: synthesizes a bf16 Mixtral-layout checkpoint (default 12 layers x 8 experts of\n"
        "1024 x 3584: 2.04 GiB), measures the cold disk read speed of its shards, then runs\n"
        "`mpirun -n R moeq quantize --stats` for R = 1 .. --max-ranks (shard pages dropped from the page\n"
        "cache before each run) and prints JSON: wall time, bytes/s, the sum of per-unit kernel time,\n"
        "and the overhead = wall / ((kernel time + bytes / disk speed) / R); speedup vs 1 rank; then\n"
        "peak RSS per rank for 8 vs 64 experts of the same shape. Messages go to stderr.\n\n"
        "Options (pipeline):\n"
        "  -d, --dir DIR          working directory (default $TMPDIR/moeq-bench-pipeline-PID; removed "
        "after)\n"
        "  -M, --mpirun CMD       launcher, split at spaces (default \"mpirun --oversubscribe\")\n"
        "  -r, --recipe FILE      recipe for the runs (default: built-in HQQ 4-bit g64)\n"
        "  -L, --layers N         layers of the main checkpoint (12)\n"
        "  -E, --experts N        experts per layer (8)\n"
        "  -H, --hidden N         hidden size (1024)\n"
        "  -I, --intermediate N   expert FFN width (3584)\n"
        "  -n, --max-ranks N      runs with 1 .. N ranks (2)\n"
        "  -k, --keep             keep the checkpoint, artifacts and stats\n"
        "  -x, --no-rss           skip the 8 vs 64 experts peak-RSS runs\n\n"
        "Example:\n"
        "  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 moeq bench pipeline > "
        "bench-pipeline.json",
    .run = run,
};
