// cmd_quantize.c: `moeq quantize`: options, MPI start/stop, and the distributed run (quantize_run.c).
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "calib_set.h" // defines: moeq_calib_format_from_name
#include "quantize_run.h"
#include "run_device.h" // defines: moeq_run_device_name_ok

typedef struct {
    moeq_quantize_opts o;
    int bad;
} q_ctx;

enum {
    OPT_JOURNAL_BATCH = 256,
    OPT_SIMULATE,
    OPT_SIM_RANKS,
    OPT_SIM_SCALE,
    OPT_SIM_FAIL,
    OPT_SIM_STRAGGLERS,
    OPT_DEVICE,
    OPT_READ_AHEAD,
    OPT_ALLOW_MIXED,
    OPT_ALLOW_CPU,
    OPT_IMATRIX,
    OPT_CALIB,
    OPT_CALIB_FORMAT,
    OPT_CALIB_SEQS,
    OPT_CALIB_LEN
};

static int on_opt(int opt, const char *arg, void *ctx) {
    q_ctx *c = ctx;
    long v;
    switch (opt) {
    case 'm':
        c->o.model_dir = arg;
        return 0;
    case 'r':
        c->o.recipe_path = arg;
        return 0;
    case 'o':
        c->o.out_path = arg;
        return 0;
    case 'R':
        c->o.resume = 1;
        return 0;
    case 'f':
        c->o.force = 1;
        return 0;
    case 'S':
        if (!strcmp(arg, "static"))
            c->o.schedule = MOEQ_SCHEDULE_STATIC;
        else if (!strcmp(arg, "dynamic"))
            c->o.schedule = MOEQ_SCHEDULE_DYNAMIC;
        else {
            fprintf(stderr, "moeq quantize: --schedule must be static or dynamic, got '%s'\n", arg);
            return 1;
        }
        return 0;
    case 'p':
        if (moeq_cli_int("quantize", "--progress", arg, 0, 86400, &v)) return 1;
        c->o.progress_s = (double)v;
        return 0;
    case 'a':
        if (moeq_cli_int("quantize", "--max-attempts", arg, 1, 100, &v)) return 1;
        c->o.max_attempts = (int)v;
        return 0;
    case 'c':
        c->o.cost_model = arg;
        return 0;
    case 'J':
        c->o.stats_path = arg;
        return 0;
    case OPT_JOURNAL_BATCH:
        if (moeq_cli_int("quantize", "--journal-batch", arg, 1, 1L << 20, &v)) return 1;
        c->o.journal_batch = (int)v;
        return 0;
    case OPT_READ_AHEAD:
        if (!strcmp(arg, "auto")) {
            c->o.read_ahead = MOEQ_READ_AHEAD_AUTO;
            return 0;
        }
        if (moeq_cli_int("quantize", "--read-ahead", arg, 0, 1L << 20, &v)) {
            fprintf(stderr, "---> HINT: --read-ahead takes MiB (0 = off) or auto\n");
            return 1;
        }
        c->o.read_ahead = (uint64_t)v << 20;
        return 0;
    case OPT_DEVICE:
        if (!moeq_run_device_name_ok(arg)) {
            fprintf(stderr, "moeq quantize: --device must be cpu, cuda or auto, got '%s'\n", arg);
            return 1;
        }
        c->o.device = arg;
        return 0;
    case OPT_ALLOW_CPU:
        c->o.allow_cpu = 1;
        return 0;
    case OPT_ALLOW_MIXED:
        c->o.allow_mixed_numerics = 1;
        return 0;
    case OPT_IMATRIX:
        c->o.imatrix_path = arg;
        return 0;
    case OPT_CALIB:
        c->o.calib_path = arg;
        return 0;
    case OPT_CALIB_FORMAT:
        if ((c->o.calib_format = moeq_calib_format_from_name(arg)) < 0) {
            fprintf(stderr, "moeq quantize: --calib-format must be auto, ids or text, got '%s'\n", arg);
            return 1;
        }
        return 0;
    case OPT_CALIB_SEQS:
        if (moeq_cli_int("quantize", "--calib-seqs", arg, 1, 1L << 24, &v)) return 1;
        c->o.calib_seqs = (int)v;
        return 0;
    case OPT_CALIB_LEN:
        if (moeq_cli_int("quantize", "--calib-len", arg, 2, 1L << 24, &v)) return 1;
        c->o.calib_len = v;
        return 0;
    case OPT_SIMULATE:
        c->o.simulate = 1;
        return 0;
    case OPT_SIM_RANKS:
        if (moeq_cli_int("quantize", "--sim-ranks", arg, 1, 1L << 20, &v)) return 1;
        c->o.sim_ranks = (int)v;
        c->o.simulate = 1;
        return 0;
    case OPT_SIM_SCALE:
        return moeq_cli_real("quantize", "--sim-time-scale", arg, 1e-9, 1e3, &c->o.sim_time_scale);
    case OPT_SIM_FAIL:
        return moeq_cli_real("quantize", "--sim-fail-at", arg, 1e-12, 1e12, &c->o.sim_fail_at);
    case OPT_SIM_STRAGGLERS: {
        char *colon = strchr(arg, ':');
        if (!colon) {
            fprintf(stderr, "moeq quantize: --sim-stragglers wants FRACTION:FACTOR (e.g. 0.01:3), got '%s'\n",
                    arg);
            return 1;
        }
        *colon = '\0';
        int bad =
            moeq_cli_real("quantize", "--sim-stragglers fraction", arg, 0, 1, &c->o.sim_straggler_frac) ||
            moeq_cli_real("quantize", "--sim-stragglers factor", colon + 1, 1, 1e6,
                          &c->o.sim_straggler_factor);
        *colon = ':';
        return bad;
    }
    default:
        return 1;
    }
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"recipe", required_argument, NULL, 'r'},
        {"out", required_argument, NULL, 'o'},
        {"resume", no_argument, NULL, 'R'},
        {"force", no_argument, NULL, 'f'},
        {"schedule", required_argument, NULL, 'S'},
        {"progress", required_argument, NULL, 'p'},
        {"max-attempts", required_argument, NULL, 'a'},
        {"cost-model", required_argument, NULL, 'c'},
        {"stats", required_argument, NULL, 'J'},
        {"journal-batch", required_argument, NULL, OPT_JOURNAL_BATCH},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"read-ahead", required_argument, NULL, OPT_READ_AHEAD},
        {"allow-mixed-numerics", no_argument, NULL, OPT_ALLOW_MIXED},
        {"allow-cpu", no_argument, NULL, OPT_ALLOW_CPU},
        {"imatrix", required_argument, NULL, OPT_IMATRIX},
        {"calib", required_argument, NULL, OPT_CALIB},
        {"calib-format", required_argument, NULL, OPT_CALIB_FORMAT},
        {"calib-seqs", required_argument, NULL, OPT_CALIB_SEQS},
        {"calib-len", required_argument, NULL, OPT_CALIB_LEN},
        {"simulate", no_argument, NULL, OPT_SIMULATE},
        {"sim-ranks", required_argument, NULL, OPT_SIM_RANKS},
        {"sim-time-scale", required_argument, NULL, OPT_SIM_SCALE},
        {"sim-fail-at", required_argument, NULL, OPT_SIM_FAIL},
        {"sim-stragglers", required_argument, NULL, OPT_SIM_STRAGGLERS},
        {0, 0, 0, 0},
    };
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    moeq_log_init(rank, MOEQ_LOG_INFO);
    q_ctx c = {.o = {.schedule = MOEQ_SCHEDULE_DYNAMIC,
                     .progress_s = 10,
                     .max_attempts = 3,
                     .cost_model = "cpu-core",
                     .device = "cpu",
                     .journal_batch = 256,
                     .read_ahead = MOEQ_READ_AHEAD_AUTO,
                     .sim_time_scale = 0.01,
                     .sim_straggler_factor = 3}};
    moeq_cli_common common = {0};
    if (rank != 0 && !freopen("/dev/null", "w", stdout))
        return MOEQ_EXIT_FAILURE; // rank 0 prints help and results
    int r =
        moeq_cli_parse(&moeq_cmd_quantize, argc, argv, "m:r:o:RfS:p:a:c:J:", longopts, on_opt, &c, &common);
    if (r == 0 && (!c.o.model_dir || !c.o.out_path || optind != argc)) {
        if (rank == 0)
            fprintf(stderr, "moeq quantize: --model and --out are required (no operands)\n---> HINT: moeq "
                            "quantize --help\n");
        r = 2;
    }
    if (r == 0 && !c.o.simulate && (c.o.sim_fail_at > 0 || c.o.sim_straggler_frac > 0)) {
        if (rank == 0)
            fprintf(stderr,
                    "moeq quantize: --sim-fail-at and --sim-stragglers need --simulate\n---> HINT: moeq "
                    "quantize --help, section Simulation\n");
        r = 2;
    }
    if (r == 0 && c.o.sim_fail_at > 0 && c.o.sim_ranks == 0) {
        if (rank == 0)
            fprintf(stderr,
                    "moeq quantize: --sim-fail-at needs --sim-ranks (under mpirun, kill a rank instead: the "
                    "job ends and --resume continues)\n");
        r = 2;
    }
    if (rank != 0 && r == 2) r = 3; // usage errors are printed once: by rank 0
    int code;
    if (r == 1)
        code = MOEQ_EXIT_OK;
    else if (r)
        code = MOEQ_EXIT_USAGE;
    else {
        c.o.quiet = common.quiet;
        if (common.quiet) c.o.progress_s = 0;
        code = moeq_quantize_run(&c.o);
    }
    MPI_Finalize();
    return code;
}

const moeq_command moeq_cmd_quantize = {
    .name = "quantize",
    .summary = "quantize a checkpoint into one HDF5 artifact (under mpirun/srun)",
    .usage =
        "[mpirun -n N] moeq quantize --model DIR --out ARTIFACT.h5 [--recipe FILE.yaml] [--imatrix FILE]\n"
        "       [--resume|--force]\n"
        "       [--device cpu|cuda|auto [--allow-cpu]] [--schedule static|dynamic] [--progress S]\n"
        "       [--max-attempts N] [--read-ahead MIB|auto] [--stats FILE.json]\n\n"
        "Partitions the checkpoint by expert into work units (a routed expert's projections; a layer's\n"
        "attention; a shared expert; a dense MLP; the rest), quantizes them on all ranks (rank 0 also\n"
        "coordinates) and writes one self-describing HDF5 artifact (schema: docs/ARTIFACT.md).\n"
        "While it runs, the data goes to ARTIFACT.h5.partial and finished units to ARTIFACT.h5.journal;\n"
        "the final name appears only when the artifact is complete. The result is bit-identical (per\n"
        "--device backend) whatever the number of ranks, the schedule, and however often the run was\n"
        "interrupted and resumed.\n\n"
        "Options:\n"
        "  -m, --model DIR        HF checkpoint directory (config.json + safetensors shards)\n"
        "  -o, --out FILE         the artifact to write\n"
        "  -r, --recipe FILE      YAML recipe (configs/README.md); default: HQQ 4-bit, group 64 on every\n"
        "                         attention/expert/MLP linear, the rest stored as it came\n"
        "      --imatrix FILE     llama.cpp importance matrix (its GGUF form or the legacy .dat; `moeq\n"
        "                         calibrate` writes one): each tensor's vector (routed expert e: row e\n"
        "                         of its stacked entry) weighs the squared error of methods rtn and\n"
        "                         search on llama.cpp's block types (llama-quantize --imatrix); hqq and\n"
        "                         milo ignore it. Every rank reads it. Tensors without an entry are\n"
        "                         named (WARNING); an entry of the wrong width is refused (exit 3). Its\n"
        "                         hash joins the plan digest and the artifact (root attribute\n"
        "                         imatrix_xxh3): --resume with another is refused (exit 7). `moeq plan\n"
        "                         --imatrix` shows which tensors get a vector\n"
        "      --calib FILE       calibration inputs of methods that need them (gptq): token ids (a flat\n"
        "                         little-endian uint32 file) or, with a .txt suffix, text for a character\n"
        "                         tokenizer.json. The run becomes the layer-streaming pass (docs/GPTQ.md):\n"
        "                         layer by layer, each rank runs its share of the sequences, every\n"
        "                         unit's Hessian is summed where it is quantized, and the next layer sees\n"
        "                         the quantized layer's outputs. Its hash joins the plan digest\n"
        "                         (calib_xxh3); --resume restarts at the first unfinished layer\n"
        "      --calib-format F   auto (default: .txt is text), ids or text\n"
        "      --calib-seqs N     sequences (default 128): consecutive windows from the file's start\n"
        "      --calib-len T      tokens per sequence (default min(2048, the model's context))\n"
        "  -R, --resume           continue an interrupted run: keeps every journaled unit whose bytes\n"
        "                         verify, redoes the rest; refused (exit 7) if the model, recipe, backend\n"
        "                         or numerics fingerprint changed, or a journaled unit's source weights\n"
        "                         differ from those it was computed from (shards rechecked by size,\n"
        "                         mtime and inode, rehashed where these changed)\n"
        "  -f, --force            replace an existing artifact (or discard an interrupted run)\n"
        "      --device KIND      kernel backend, one for all ranks (default cpu; docs/ARTIFACT.md):\n"
        "                         cpu: the reference kernels. cuda: the CUDA port; each rank takes a\n"
        "                         GPU of its node, round-robin by its rank on the node (among those\n"
        "                         CUDA_VISIBLE_DEVICES leaves); exit 3 on every rank when any rank has\n"
        "                         no usable GPU. auto: cuda when every rank has a GPU, else cpu on all;\n"
        "                         a plan estimated at more than 1 h per rank on the CPU is then refused\n"
        "                         (exit 2) unless --allow-cpu.\n"
        "                         The artifact records the backend; --resume continues only on it (cuda\n"
        "                         and cpu round differently: exit 7), auto follows the artifact's. Bytes\n"
        "                         are identical per backend (cuda: same GPU model and CUDA libraries).\n"
        "                         --simulate ignores it\n"
        "      --allow-cpu        --device auto may run a large plan on the CPU when a rank has no GPU\n"
        "      --allow-mixed-numerics  run even when the ranks' numerics fingerprints differ (nodes whose\n"
        "                         BLAS kernels or GPUs round differently: docs/NUMERICS.md); the\n"
        "                         artifact then depends on which rank drew which unit.\n"
        "                         Without it such a run is refused (exit 3), naming the ranks\n"
        "  -S, --schedule MODE    dynamic (default): units handed out on request, largest first;\n"
        "                         static: LPT partition by estimated cost, then retries on request\n"
        "  -p, --progress S       progress line every S seconds on rank 0 (default 10; 0 = none)\n"
        "  -a, --max-attempts N   tries per unit before giving up (default 3)\n"
        "  -c, --cost-model NAME  cost model for scheduling: cpu-core (default) or h100\n"
        "  -J, --stats FILE       write the run's figures as JSON: seconds per phase, and per rank the\n"
        "                         read/compute/write seconds, bytes and peak RSS (docs/ARTIFACT.md)\n"
        "      --journal-batch N  one journal fsync covers at most N finished units (default 256); the\n"
        "                         coordinator also syncs whenever no message waits. 1 = an fsync per unit\n"
        "      --read-ahead MIB|auto  source bytes each rank reads ahead of its compute, in a thread: the\n"
        "                         next tensor, and the next unit, asked for before the current one runs\n"
        "                         (at least one tensor whatever the size). 0 = off: read, then compute.\n"
        "                         auto (default): 256 with --device cuda (the CPU is free while the GPU\n"
        "                         computes), 0 on the CPU backend (its kernels use every core of the rank;\n"
        "                         a reader beside them costs more than it hides: docs/PERFORMANCE.md);\n"
        "                         --simulate: 256 unless --cost-model cpu-core. Same artifact either way\n\n"
        "Simulation (sizing a run you cannot do here; docs/SCALE.md):\n"
        "      --simulate         the real open, plan, skeleton, coordinator and journal, but workers spend\n"
        "                         the cost model's time instead of reading and computing; nothing is\n"
        "                         written into the data regions; a finished job's skeleton is sealed\n"
        "                         (timed), then deleted: no artifact is left. Prints and (--stats)\n"
        "                         writes: plan, skeleton and seal time and size, coordinator memory,\n"
        "                         messages per unit, makespan and utilisation against the ideal\n"
        "      --sim-ranks N      simulate N ranks in this one process (discrete events, the dispatcher\n"
        "                         of the real queue); without it, the ranks of mpirun sleep the costs\n"
        "      --sim-time-scale X under mpirun: wall seconds slept per simulated second (default 0.01)\n"
        "      --sim-stragglers F:K  a fraction F of the ranks (at least one, never rank 0) is K x slower\n"
        "      --sim-fail-at T    (with --sim-ranks) the job dies at simulated second T: what was journaled\n"
        "                         stays, exit 75; --resume continues, with any --sim-ranks\n\n"
        "Example:\n"
        "  mpirun -n 3 moeq quantize --model ../shared/models/mixtral-tiny --recipe "
        "configs/mixtral-tiny-milo3.yaml \\\n"
        "      --out out/tiny.h5\n"
        "  moeq quantize --simulate --sim-ranks 512 --cost-model h100 --model /scratch/kimi-k2-sparse \\\n"
        "      --recipe configs/deepseek-v3-milo3.yaml --out /scratch/kimi.h5   (moeq synth --sparse "
        "--preset kimi-k2)",
    .run = run,
    .recipe_help = 1,
};
