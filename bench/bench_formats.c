// bench_formats.c: `moeq bench formats`: every llama.cpp block type moeq stores (kernels/ggml_quant.h),
// moeq's quantizer against llama.cpp's own on the same matrices in the same run, one core each.
//
// The peer is llama.cpp's ggml library as users get it (e.g. `pip install llama-cpp-python`, which builds it:
// site-packages/llama_cpp/lib/libggml-base.so), loaded at run time with dlopen, so that moeq neither builds
// nor links it. Its quantizer is ggml_quantize_chunk, the call llama-quantize makes (with the importance
// matrix or without), and its dequantizer the type's to_float.
//
// Matrix sets: Gaussian R x C (default 4096 x 14336, a Mixtral expert), Student-t with 5 degrees of freedom
// (heavy tails), and every routed-expert matrix of a real checkpoint (default ../shared/models/mixtral-mini,
// whose dimensions are multiples of 256). Importance: none, and the squared column norms of a seeded sample
// of 256 activations per column with log-normal column scales (what an importance matrix looks like).
//
// moeq's quantizer is the type's searched one (method search) where it has one, else its reference one
// (method rtn: llama.cpp's algorithm, so the ratio is 1 and the check is of the reproduction). Per (type,
// set, importance): relative Frobenius error ||W - deq||_F / ||W||_F of both quantizers and its ratio moeq /
// llama.cpp, the weighted error sum_j imp_j (W - deq)_ij^2 / sum_j imp_j W_ij^2 with importance, quantization
// speed of both (M weights/s on one core) and its ratio, and the two dequantization checks: llama.cpp's
// to_float of llama.cpp's blocks against moeq's dequantizer of the same blocks, and of moeq's blocks, bit for
// bit. JSON on stdout (machine, library, inputs, figures); progress on stderr.
#define _GNU_SOURCE // dlopen's RTLD_* on every libc
#include <dirent.h>
#include <dlfcn.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench_common.h" // defines: moeq_bench_cpu_model
#include "bench_formats.h"
#include "clock.h" // defines: moeq_now_s
#include "ggml_quant.h"
#include "moeq_io.h" // defines: moeq_catalog

// ---- the peer: llama.cpp's ggml, loaded at run time ----

// ggml.h's struct ggml_type_traits (its first members, the layout since ggml 0.9 / llama.cpp b3800); the
// loader checks name, block and size of every type it uses against moeq's table before trusting the rest.
typedef struct {
    const char *type_name;
    int64_t blck_size;
    int64_t blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    void (*to_float)(const void *x, float *y, int64_t k);
    void (*from_float_ref)(const float *x, void *y, int64_t k);
} peer_type_traits;

typedef struct {
    void *lib;
    char path[1024];
    const char *version; // ggml_version() when the library has it
    size_t (*quantize_chunk)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                             int64_t n_per_row, const float *imatrix);
    const peer_type_traits *(*type_traits)(int type);
    void (*quantize_init)(int type);
} peer;

static int peer_open(peer *p, const char *path) {
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
    p->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->lib) {
        fprintf(stderr,
                "moeq bench formats: cannot load llama.cpp's ggml library %s: %s\n---> HINT: `pip install "
                "llama-cpp-python` builds it (site-packages/llama_cpp/lib/libggml-base.so); pass it with "
                "--ggml or MOEQ_GGML_LIB\n",
                path, dlerror());
        return -1;
    }
    *(void **)&p->quantize_chunk = dlsym(p->lib, "ggml_quantize_chunk");
    *(void **)&p->type_traits = dlsym(p->lib, "ggml_get_type_traits");
    *(void **)&p->quantize_init = dlsym(p->lib, "ggml_quantize_init");
    const char *(*version)(void) = NULL;
    *(void **)&version = dlsym(p->lib, "ggml_version");
    p->version = version ? version() : "unknown (no ggml_version in the library)";
    if (!p->quantize_chunk || !p->type_traits) {
        fprintf(stderr,
                "moeq bench formats: %s lacks ggml_quantize_chunk or ggml_get_type_traits: not ggml?\n",
                path);
        return -1;
    }
    return 0;
}

// The peer's traits of format t, checked against moeq's table; NULL (and a message) when they disagree.
static const peer_type_traits *peer_traits(const peer *p, int t) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    const peer_type_traits *pt = p->type_traits(moeq_qtype_ggml_id(t));
    if (!pt || !pt->type_name || strcasecmp(pt->type_name, tr->name) || pt->blck_size != tr->block ||
        pt->type_size != (size_t)tr->unit_bytes || !pt->to_float) {
        fprintf(stderr,
                "moeq bench formats: %s: the library's type %d is %s (block %lld, %zu bytes), moeq's %s (%d, "
                "%d): "
                "another ggml version\n",
                tr->name, moeq_qtype_ggml_id(t), pt && pt->type_name ? pt->type_name : "?",
                pt ? (long long)pt->blck_size : 0LL, pt ? pt->type_size : 0, tr->name, tr->block,
                tr->unit_bytes);
        return NULL;
    }
    return pt;
}

// ---- matrices ----

typedef struct {
    const char *name;
    int n;          // matrices
    int64_t *R, *C; // [n]
    float **w;      // [n] (R, C)
    float **imp;    // [n] (C) importance
} matrix_set;

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double uniform(void) { // xorshift64*, (0, 1)
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return ((double)((g_rng * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void) {
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

// Squared column norms of 256 seeded activations per column, column scales log-normal (sigma 1).
static float *importance(int64_t C) {
    float *imp = malloc(sizeof(float) * (size_t)C);
    for (int64_t j = 0; imp && j < C; j++) {
        const double s = exp(normal());
        double acc = 0;
        for (int n = 0; n < 256; n++) {
            const double x = s * normal();
            acc += x * x;
        }
        imp[j] = (float)acc;
    }
    return imp;
}

static int synthetic(matrix_set *m, const char *name, int64_t R, int64_t C, int student) {
    m->name = name, m->n = 1;
    m->R = malloc(sizeof *m->R), m->C = malloc(sizeof *m->C), m->w = malloc(sizeof *m->w);
    m->imp = malloc(sizeof *m->imp);
    if (!m->R || !m->C || !m->w || !m->imp) return -1;
    m->R[0] = R, m->C[0] = C;
    m->w[0] = malloc(sizeof(float) * (size_t)(R * C));
    if (!m->w[0]) return -1;
    for (int64_t i = 0; i < R * C; i++) {
        double v = normal();
        if (student) { // t(5) = z / sqrt(chi2_5 / 5)
            double chi = 0;
            for (int k = 0; k < 5; k++) {
                const double z = normal();
                chi += z * z;
            }
            v /= sqrt(chi / 5);
        }
        m->w[0][i] = (float)(0.02 * v);
    }
    m->imp[0] = importance(C);
    return m->imp[0] ? 0 : -1;
}

// Every 2-D routed-expert weight of the checkpoint at dir whose columns are a multiple of 256.
static int experts(matrix_set *m, const char *dir) {
    moeq_catalog *c = NULL;
    if (moeq_catalog_open(dir, &c) != MOEQ_OK) {
        fprintf(stderr,
                "moeq bench formats: %s: %s\n---> HINT: --model DIR (a real checkpoint), or --sets "
                "without experts\n",
                dir, moeq_error_detail());
        return -1;
    }
    m->name = "experts";
    int cap = 0;
    for (int i = 0; i < c->n_tensors; i++) cap += c->t[i].c.cls == MOEQ_TC_ROUTED_EXPERT && c->t[i].ndim == 2;
    m->R = calloc((size_t)cap + 1, sizeof *m->R), m->C = calloc((size_t)cap + 1, sizeof *m->C);
    m->w = calloc((size_t)cap + 1, sizeof *m->w), m->imp = calloc((size_t)cap + 1, sizeof *m->imp);
    int rc = m->R && m->C && m->w && m->imp ? 0 : -1;
    for (int i = 0; rc == 0 && i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || t->ndim != 2 || t->shape[1] % 256) continue;
        float *w = malloc(sizeof(float) * (size_t)t->numel);
        if (!w || moeq_catalog_read_f32(c, i, w) != MOEQ_OK) {
            free(w);
            rc = -1;
            break;
        }
        m->R[m->n] = t->shape[0], m->C[m->n] = t->shape[1], m->w[m->n] = w;
        m->imp[m->n] = importance(t->shape[1]);
        m->n++;
    }
    moeq_catalog_close(&c);
    if (rc == 0 && m->n == 0)
        fprintf(stderr, "moeq bench formats: %s has no routed-expert matrix with a multiple of 256 columns\n",
                dir);
    return rc == 0 && m->n ? 0 : -1;
}

// ---- one (type, set, importance) ----

typedef struct {
    double err, werr, w2, iw2; // sum (W - deq)^2, sum imp (W - deq)^2, sum W^2, sum imp W^2
    double seconds;
    int64_t weights, mismatches; // dequantization values where moeq and llama.cpp differ
} tally;

static void accumulate(tally *t, const float *w, const float *y, const float *imp, int64_t R, int64_t C) {
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const double d = (double)w[i * C + j] - y[i * C + j], v = w[i * C + j];
            t->err += d * d, t->w2 += v * v;
            t->werr += imp[j] * d * d, t->iw2 += imp[j] * v * v;
        }
}

static int64_t differ(const float *a, const float *b, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i]));
    return k;
}

static int run_case(const peer *p, int t, const matrix_set *m, int weighted, tally *ours, tally *theirs) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    const peer_type_traits *pt = peer_traits(p, t);
    if (!pt) return -1;
    if (p->quantize_init) p->quantize_init(moeq_qtype_ggml_id(t));
    memset(ours, 0, sizeof *ours), memset(theirs, 0, sizeof *theirs);
    for (int k = 0; k < m->n; k++) {
        const int64_t R = m->R[k], C = m->C[k], rb = moeq_qtype_row_bytes(t, C);
        uint8_t *bm = malloc((size_t)(R * rb)), *bl = malloc((size_t)(R * rb));
        float *y = malloc(sizeof(float) * (size_t)(R * C)), *yl = malloc(sizeof(float) * (size_t)(R * C));
        if (!bm || !bl || !y || !yl) return -1;
        const float *imp = weighted ? m->imp[k] : NULL;
        moeq_qmat q = {.bits = tr->bits, .R = R, .C = C, .G = tr->block, .codes = bm, .type = (moeq_qtype)t};
        double t0 = moeq_now_s();
        const moeq_status st = moeq_ggml_search_row(t) ? moeq_ggml_search_weighted(m->w[k], &q, imp)
                                                       : moeq_ggml_quantize_weighted(m->w[k], &q, imp);
        if (st != MOEQ_OK) {
            fprintf(stderr, "moeq bench formats: %s: %s\n", tr->name, moeq_error_detail());
            return -1;
        }
        ours->seconds += moeq_now_s() - t0;
        t0 = moeq_now_s();
        const size_t wrote = p->quantize_chunk(moeq_qtype_ggml_id(t), m->w[k], bl, 0, R, C, imp);
        theirs->seconds += moeq_now_s() - t0;
        if (wrote != (size_t)(R * rb)) {
            fprintf(stderr, "moeq bench formats: %s: llama.cpp wrote %zu bytes, %lld expected\n", tr->name,
                    wrote, (long long)(R * rb));
            return -1;
        }
        // moeq's blocks: decoded by both; the error of moeq's quantizer
        tr->dequantize(&q, y);
        for (int64_t i = 0; i < R; i++) pt->to_float(bm + i * rb, yl + i * C, C);
        ours->mismatches += differ(y, yl, R * C);
        accumulate(ours, m->w[k], y, m->imp[k], R, C);
        // llama.cpp's blocks: decoded by both; the error of llama.cpp's quantizer
        q.codes = bl;
        tr->dequantize(&q, y);
        for (int64_t i = 0; i < R; i++) pt->to_float(bl + i * rb, yl + i * C, C);
        theirs->mismatches += differ(y, yl, R * C);
        accumulate(theirs, m->w[k], yl, m->imp[k], R, C);
        ours->weights += R * C, theirs->weights += R * C;
        free(bm), free(bl), free(y), free(yl);
    }
    return 0;
}

// ---- the command ----

typedef struct {
    const char *ggml, *model, *types, *sets;
    int64_t rows, cols;
} formats_opts;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: moeq bench formats --ggml LIB [--types q4_K,q3_K,...] [--sets gauss,student,experts]\n"
        "       [--rows R] [--cols C] [--model DIR]\n\n"
        "Every llama.cpp block type moeq stores: moeq's quantizer against llama.cpp's (ggml_quantize_chunk,\n"
        "as llama-quantize calls it) on the same matrices in the same run, one core each, with and without\n"
        "an importance vector; errors, ratios, speeds, and both dequantizations compared bit for bit.\n"
        "JSON on stdout.\n\n"
        "  --ggml LIB     llama.cpp's libggml-base.so (default $MOEQ_GGML_LIB); `pip install\n"
        "                 llama-cpp-python` builds it: site-packages/llama_cpp/lib/libggml-base.so\n"
        "  --types LIST   formats (default: every llama.cpp block type moeq has)\n"
        "  --sets LIST    gauss, student, experts (default: all three)\n"
        "  --rows R, --cols C   the synthetic matrices (default 4096 x 14336)\n"
        "  --model DIR    the checkpoint of the experts set (default ../shared/models/mixtral-mini)\n");
}

static int in_list(const char *list, const char *name) {
    if (!list) return 1;
    const size_t n = strlen(name);
    for (const char *s = list; (s = strstr(s, name)); s += n)
        if ((s == list || s[-1] == ',') && (s[n] == ',' || s[n] == '\0')) return 1;
    return 0;
}

int moeq_bench_formats_main(int argc, char **argv) {
    formats_opts o = {.ggml = getenv("MOEQ_GGML_LIB"),
                      .model = "../shared/models/mixtral-mini",
                      .rows = 4096,
                      .cols = 14336};
    static const struct option longopts[] = {
        {"ggml", required_argument, NULL, 'g'}, {"types", required_argument, NULL, 't'},
        {"sets", required_argument, NULL, 's'}, {"rows", required_argument, NULL, 'R'},
        {"cols", required_argument, NULL, 'C'}, {"model", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0},
    };
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "g:t:s:R:C:m:h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'g':
            o.ggml = optarg;
            break;
        case 't':
            o.types = optarg;
            break;
        case 's':
            o.sets = optarg;
            break;
        case 'R':
            o.rows = atoll(optarg);
            break;
        case 'C':
            o.cols = atoll(optarg);
            break;
        case 'm':
            o.model = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.ggml || o.rows <= 0 || o.cols <= 0 || o.cols % 256) {
        fprintf(stderr, "moeq bench formats: %s\n",
                !o.ggml ? "which llama.cpp library? --ggml LIB or MOEQ_GGML_LIB"
                        : "--rows and --cols > 0, --cols a multiple of 256");
        usage(stderr);
        return 2;
    }
    peer p;
    if (peer_open(&p, o.ggml) != 0) return 1;
#ifdef _OPENMP
    omp_set_num_threads(1); // one core each: llama.cpp's quantizer is single-threaded
#endif
    matrix_set sets[3];
    int n_sets = 0;
    memset(sets, 0, sizeof sets);
    if (in_list(o.sets, "gauss") && synthetic(&sets[n_sets++], "gauss", o.rows, o.cols, 0) != 0) return 1;
    if (in_list(o.sets, "student") && synthetic(&sets[n_sets++], "student_t5", o.rows, o.cols, 1) != 0)
        return 1;
    if (in_list(o.sets, "experts") && experts(&sets[n_sets++], o.model) != 0) return 1;
    json_t *root = json_object(), *machine = json_object(), *results = json_array(), *inputs = json_object();
    char cpu[256];
    struct utsname un;
    moeq_bench_cpu_model(cpu, sizeof cpu);
    uname(&un);
    json_object_set_new(machine, "cpu", json_string(cpu));
    json_object_set_new(machine, "host", json_string(un.nodename));
    json_object_set_new(machine, "threads", json_integer(1));
    json_object_set_new(root, "benchmark", json_string("moeq bench formats"));
    json_object_set_new(root, "machine", machine);
    json_object_set_new(root, "baseline",
                        json_pack("{s:s,s:s,s:s}", "name", "llama.cpp ggml_quantize_chunk", "library", p.path,
                                  "ggml_version", p.version));
    json_object_set_new(inputs, "synthetic_shape",
                        json_pack("[I,I]", (json_int_t)o.rows, (json_int_t)o.cols));
    json_object_set_new(inputs, "experts_model", json_string(o.model));
    json_object_set_new(inputs, "importance",
                        json_string("squared column norms of 256 seeded activations per "
                                    "column, log-normal column scales (sigma 1)"));
    json_object_set_new(root, "inputs", inputs);
    int rc = 0;
    for (int t = 1; t < MOEQ_QTYPE_COUNT && rc == 0; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        if (!tr || !(tr->family & MOEQ_QFAMILY_GGML) || !in_list(o.types, tr->name)) continue;
        for (int s = 0; s < n_sets && rc == 0; s++)
            for (int weighted = 0; weighted < 2 && rc == 0; weighted++) {
                tally a, b;
                fprintf(stderr, "  %s, %s, %s importance\n", tr->name, sets[s].name,
                        weighted ? "with" : "without");
                if (run_case(&p, t, &sets[s], weighted, &a, &b) != 0) {
                    rc = 1;
                    break;
                }
                const double ea = sqrt(a.err / a.w2), eb = sqrt(b.err / b.w2);
                const double wa = a.werr / a.iw2, wb = b.werr / b.iw2;
                const double sa = a.weights / a.seconds / 1e6, sb = b.weights / b.seconds / 1e6;
                json_t *r = json_object();
                json_object_set_new(r, "type", json_string(tr->name));
                json_object_set_new(r, "set", json_string(sets[s].name));
                json_object_set_new(r, "importance", json_boolean(weighted));
                json_object_set_new(r, "moeq_quantizer",
                                    json_string(moeq_ggml_search_row(t)
                                                    ? "search (method search)"
                                                    : "reference (llama.cpp's algorithm, method rtn)"));
                json_object_set_new(r, "weights", json_integer(a.weights));
                json_object_set_new(r, "bits_per_weight", json_real(8.0 * tr->unit_bytes / tr->block));
                json_object_set_new(
                    r, "rel_fro_error",
                    json_pack("{s:f,s:f,s:f}", "moeq", ea, "llama_cpp", eb, "ratio", eb > 0 ? ea / eb : 0));
                json_object_set_new(
                    r, "weighted_rel_sq_error",
                    json_pack("{s:f,s:f,s:f}", "moeq", wa, "llama_cpp", wb, "ratio", wb > 0 ? wa / wb : 0));
                json_object_set_new(
                    r, "mweights_per_s_core",
                    json_pack("{s:f,s:f,s:f}", "moeq", sa, "llama_cpp", sb, "ratio", sb > 0 ? sa / sb : 0));
                json_object_set_new(r, "dequant_mismatches",
                                    json_pack("{s:I,s:I}", "moeq_blocks", (json_int_t)a.mismatches,
                                              "llama_cpp_blocks", (json_int_t)b.mismatches));
                json_array_append_new(results, r);
            }
    }
    json_object_set_new(root, "results", results);
    if (rc == 0) {
        json_dumpf(root, stdout, JSON_INDENT(1));
        putchar('\n');
    }
    json_decref(root);
    return rc;
}
