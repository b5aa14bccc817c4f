// cmd_plan.c: `moeq plan`: the plan without running it: units, bytes in and out, bits per weight,
// estimated time and memory per rank for N ranks, the resolved setting of every tensor, and which recipe
// rule or policy decided one (--explain). Works from metadata alone (config.json [+ index] [+
// shard-sizes.tsv]) unless the recipe's policies need the weights: then it runs the analyze phase
// (collective: `mpirun -n N moeq plan ...` splits it; rank 0 prints).
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "analyze_run.h" // defines: moeq_plan_build_collective
#include "run_common.h"  // defines: moeq_run_recipe_open
#include "moeq_sched.h"
#include "calib_pass.h" // defines: moeq_calib_estimate_make
#include "importance.h" // defines: moeq_importance_bind, moeq_importance_print, moeq_plan_digest_imatrix

typedef struct {
    const char *model, *recipe, *explain, *cost_model, *imatrix;
    long ranks;
    int json, tensors;
    long calib_seqs, calib_len; // the calibration pass's estimate (recipes with method gptq); 0: defaults
} plan_opts;

static int on_opt(int opt, const char *arg, void *ctx) {
    plan_opts *o = ctx;
    switch (opt) {
    case 'm':
        o->model = arg;
        return 0;
    case 'r':
        o->recipe = arg;
        return 0;
    case 'n':
        return moeq_cli_int("plan", "--ranks", arg, 1, 1 << 20, &o->ranks);
    case 'e':
        o->explain = arg;
        return 0;
    case 'c':
        o->cost_model = arg;
        return 0;
    case 'j':
        o->json = 1;
        return 0;
    case 't':
        o->tensors = 1;
        return 0;
    case 'd':
        return 0; // --dry-run: plan never writes anything
    case 'I':
        o->imatrix = arg;
        return 0;
    case 'S':
        return moeq_cli_int("plan", "--calib-seqs", arg, 1, 1 << 24, &o->calib_seqs);
    case 'L':
        return moeq_cli_int("plan", "--calib-len", arg, 2, 1 << 24, &o->calib_len);
    default:
        return 1;
    }
}

static void fmt_bytes(double b, char *out, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    snprintf(out, cap, "%.2f %s", b, u[i]);
}

// "none", "hqq b4 g64", "milo b3 g64 r16 T10 fp16" (+ " q4x" for a format other than the grouped one of
// bits): the fields the method reads (kernels/method.h).
static const char *setting_str(const moeq_qsettings *q, char *buf, size_t cap) {
    const moeq_method_traits *m = moeq_method_get(q->method);
    size_t n = (size_t)snprintf(buf, cap, "%s", moeq_method_name(q->method));
    if (m && m->quantizes && n < cap) n += (size_t)snprintf(buf + n, cap - n, " b%d g%d", q->bits, q->group);
    if (m && m->compensated && n < cap)
        n += (size_t)snprintf(buf + n, cap - n, " r%d T%d %s", q->rank, q->rounds,
                              moeq_factor_name(q->compensator));
    if (m && m->quantizes && q->format && n < cap)
        snprintf(buf + n, cap - n, " %s", moeq_qtype_name(q->format));
    return buf;
}

// --explain with --imatrix: the tensor's importance vector (its first values and range), or why it has none.
static void explain_importance(const moeq_importance *b, const moeq_plan *p, int k) {
    const moeq_plan_tensor *pt = &p->t[k];
    if (b->state[k] == MOEQ_IMP_IGNORED)
        printf("  importance: ignored (method %s on %s does not read it)\n", moeq_method_name(pt->q.method),
               moeq_qtype_name(moeq_qsettings_qtype(&pt->q)));
    else if (b->state[k] == MOEQ_IMP_MISSING)
        printf("  importance: none (%s has no entry for it)\n", b->m->path);
    if (b->state[k] != MOEQ_IMP_BOUND) return;
    const float *v = b->vec[k];
    double lo = v[0], hi = v[0], sum = 0;
    for (int64_t j = 0; j < pt->C; j++) {
        sum += v[j];
        lo = v[j] < lo ? v[j] : lo;
        hi = v[j] > hi ? v[j] : hi;
    }
    printf("  importance: %lld values, min %.9g, mean %.9g, max %.9g; first %.9g %.9g %.9g %.9g\n",
           (long long)pt->C, lo, sum / (double)pt->C, hi, v[0], pt->C > 1 ? v[1] : 0.0,
           pt->C > 2 ? v[2] : 0.0, pt->C > 3 ? v[3] : 0.0);
}

static int explain(const moeq_catalog *c, const moeq_recipe *r, const moeq_plan *p, const moeq_analysis *an,
                   const moeq_importance *imp, const char *name) {
    int i = moeq_catalog_find(c, name);
    if (i < 0) {
        fprintf(stderr, "moeq plan: no tensor named '%s'\n---> HINT: moeq inspect --tensors lists them\n",
                name);
        return MOEQ_EXIT_INPUT;
    }
    const moeq_tensor_info *t = &c->t[i];
    const moeq_plan_tensor *pt = NULL;
    for (int k = 0; k < p->n_tensors; k++)
        if (p->t[k].cat == i) pt = &p->t[k];
    if (!pt) {
        fprintf(stderr, "moeq plan: '%s' is consumed with its weight (an FP8 scale)\n", name);
        return MOEQ_EXIT_OK;
    }
    const int rule = pt->rule;
    char buf[128];
    printf(
        "%s\n  class %s, layer %d, expert %d, proj %s, %s [%lld, %lld]\n  setting: %s (%.4f bits/weight)\n",
        t->name, moeq_tclass_name(t->c.cls), t->c.layer, t->c.expert, moeq_proj_name(t->c.proj),
        moeq_dtype_name(t->dtype), (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
        setting_str(&pt->q, buf, sizeof buf), pt->bits_per_weight);
    if (!moeq_tensor_quantizable(t))
        printf("  decided by: not a 2-D linear weight: always stored as it came\n");
    else if (pt->policy >= 0) {
        const moeq_policy *pol = &r->policies[pt->policy];
        static const char *what[MOEQ_POLICY_KIND_COUNT] = {"outlier score max_j max_i|w_ij|/mean_i|w_ij|",
                                                           "MoE-block probe rel. error",
                                                           "routing count",
                                                           "excess kurtosis",
                                                           "routing count",
                                                           "predicted rel. error of the chosen candidate"};
        printf("  decided by: policy %d (%s) at %s:%d, %s = %.6g\n", pt->policy + 1,
               moeq_policy_kind_name(pol->kind), r->path, pol->line, what[pol->kind], pt->score);
    } else if (rule < 0)
        printf("  decided by: recipe defaults (%s)%s\n", r->path,
               pt->q.method == MOEQ_METHOD_NONE ? "; this class is stored as it came unless a rule names it"
                                                : "");
    else {
        printf("  decided by: rule %d at %s:%d (the last matching rule that sets a field)\n", rule + 1,
               r->path, r->rules[rule].line);
        if (pt->q.method == MOEQ_METHOD_NONE && moeq_tensor_quantizable(t) &&
            !(r->rules[rule].set_mask & MOEQ_SET_METHOD))
            printf("  note: rule %d sets no method; the method (none) comes from the defaults or an earlier "
                   "rule\n",
                   rule + 1);
    }
    if (pt->rank_asked)
        printf("  rank: %d asked, which exceeds min(%lld, %lld): %d used (a compensator is capped by its "
               "matrix)\n",
               pt->rank_asked, (long long)pt->R, (long long)pt->C, pt->q.rank);
    if (pt->format_asked)
        printf("  format: %s asked, whose blocks of %d do not divide the input dimension %lld: %s used "
               "(llama-quantize's fallback under target gguf)\n",
               moeq_qtype_name(pt->format_asked), moeq_qtype_get(pt->format_asked)->block, (long long)pt->C,
               pt->q.method == MOEQ_METHOD_NONE ? "no quantization (F16: stored as it came)"
                                                : moeq_qtype_name(moeq_qsettings_qtype(&pt->q)));
    if (pt->group_asked)
        printf("  group: %d asked, which does not divide the input dimension %lld: %d used (the largest "
               "group from 8 "
               "to %d that divides it)\n",
               pt->group_asked, (long long)pt->C, pt->q.group, pt->group_asked);
    if (imp) explain_importance(imp, p, (int)(pt - p->t));
    if (an && an->fro2[i] > 0)
        printf("  statistics: kurtosis %.4f, outlier score %.4f, ||W||_F %.6g\n", an->kurtosis[i],
               an->outlier[i], sqrt(an->fro2[i]));
    for (int k = 0; an && k < an->n_cand && an->fro2[i] > 0; k++) {
        const double tr = an->trial[(size_t)i * (size_t)an->n_cand + (size_t)k];
        printf("  budget candidate %d: predicted rel. error %s%.6f\n", k + 1, isfinite(tr) ? "" : "(n/a) ",
               isfinite(tr) ? sqrt(tr / an->fro2[i]) : 0.0);
    }
    for (int k = 0; k < r->n_rules; k++)
        printf("  rule %d (line %d): %s\n", k + 1, r->rules[k].line,
               moeq_rule_matches(&r->rules[k], t) ? "matches" : "-");
    return MOEQ_EXIT_OK;
}

// One `moeq plan`: what it opened and built, and the estimate for --ranks.
typedef struct plan_run {
    plan_opts o;
    moeq_catalog *c;
    moeq_recipe *rec;
    moeq_plan *p;
    moeq_analysis *an;
    moeq_imatrix *im;     // --imatrix
    moeq_importance *imp; // ... bound to the plan
    moeq_cost_model cm;
    moeq_budget_result budget;
    int mpi_mine, rank;
    double makespan;                    // LPT over --ranks
    int per_kind[MOEQ_UNIT_KIND_COUNT]; // units by kind
    uint64_t meta, peak; // catalog + plan memory of every rank; + the largest unit's working set
} plan_run;

// The calibration pass of a recipe with method gptq (workers/calib_pass.h moeq_calib_estimate_make): its
// memory per rank and time for --ranks, --calib-seqs x --calib-len tokens (quantize's defaults).
static int calib_estimate(const plan_run *x, moeq_calib_estimate *e, long *seqs, long *len) {
    if (!moeq_plan_needs_calib(x->p)) return 0;
    const int ctx = x->c->cfg.max_position_embeddings;
    *seqs = x->o.calib_seqs > 0 ? x->o.calib_seqs : 128;
    *len = x->o.calib_len > 0 ? x->o.calib_len : ctx > 0 && ctx < 2048 ? ctx : 2048;
    moeq_cost_model cpu; // the pass computes on the CPU whatever --cost-model says (no GPU port yet)
    if (moeq_cost_model_get("cpu-core", &cpu) != MOEQ_OK) return 0;
    return moeq_calib_estimate_make(x->c, x->p, &cpu, (int)x->o.ranks, (int)*seqs, *len, e) == MOEQ_OK;
}

static void print_calib(const plan_run *x) {
    moeq_calib_estimate e;
    long seqs, len;
    if (!calib_estimate(x, &e, &seqs, &len)) return;
    char m[32], w[32], st[32], r[32], h[32], xb[32];
    fmt_bytes(e.mem_per_rank, m, sizeof m), fmt_bytes(e.weights_bytes, w, sizeof w);
    fmt_bytes(e.states_bytes, st, sizeof st), fmt_bytes(e.rows_bytes, r, sizeof r);
    fmt_bytes(e.hessian_bytes, h, sizeof h), fmt_bytes(e.exchange_bytes, xb, sizeof xb);
    printf(
        "calibration     --calib %ld sequences x %ld tokens (%lld), %ld ranks: memory per rank %s = layer "
        "without others' experts %s + hidden states %s + rows %s + largest Hessian (C = %lld) %s; time "
        "%.0f s = forward %.0f s + Hessians %.0f s + units %.0f s (cpu-core: the pass has no GPU port yet); "
        "routed rows exchanged %s\n",
        seqs, len, (long long)e.tokens, x->o.ranks, m, w, st, r, (long long)e.max_cols, h, e.total_s,
        e.forward_s, e.hessian_s, e.units_s, xb);
}

// Catalog, recipe and plan; recipes with data-dependent policies run the analyze phase first (collective:
// MPI is started here when mpirun did not).
static moeq_status plan_open(plan_run *x) {
    moeq_status st = moeq_cost_model_get(x->o.cost_model, &x->cm);
    if (st == MOEQ_OK) st = moeq_catalog_open(x->o.model, &x->c);
    if (st == MOEQ_OK) st = moeq_run_recipe_open(x->o.recipe, 0, &x->rec);
    if (st == MOEQ_OK && moeq_recipe_needs_weights(x->rec)) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited) {
            int provided;
            MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
            x->mpi_mine = 1;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &x->rank);
        moeq_log_init(x->rank, moeq_log_level_get()); // keeps -v and -q
        moeq_threads_default(); // the analyze phase: BLAS single-threaded, OpenMP the rank's share of cores
    }
    if (st == MOEQ_OK)
        st = moeq_plan_build_collective(x->c, x->rec, &x->cm, MPI_COMM_WORLD, &x->budget, &x->an, &x->p);
    if (st == MOEQ_OK && x->o.imatrix) { // what quantize --imatrix would bind, and its digest
        st = moeq_imatrix_read(x->o.imatrix, &x->im);
        if (st == MOEQ_OK) st = moeq_importance_bind(x->im, x->c, x->p, &x->imp);
        if (st == MOEQ_OK) x->p->digest = moeq_plan_digest_imatrix(x->p->digest, x->im->xxh3);
    }
    return st;
}

// The LPT makespan over --ranks, units by kind, memory per rank.
static moeq_status plan_estimate(plan_run *x) {
    const moeq_plan *p = x->p;
    int *owner = MOEQ_MALLOC(sizeof(int) * (size_t)(p->n_units + 1), "owners");
    double *cost = MOEQ_MALLOC(sizeof(double) * (size_t)(p->n_units + 1), "costs");
    double *load = MOEQ_CALLOC((size_t)x->o.ranks, sizeof(double), "loads");
    moeq_status st = owner && cost && load ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        for (int u = 0; u < p->n_units; u++) cost[u] = p->u[u].cost;
        st = moeq_partition_lpt(cost, p->n_units, (int)x->o.ranks, owner, load);
    }
    for (int k = 0; st == MOEQ_OK && k < x->o.ranks; k++)
        if (load[k] > x->makespan) x->makespan = load[k];
    for (int u = 0; u < p->n_units; u++) x->per_kind[p->u[u].kind]++;
    x->meta = (uint64_t)x->c->n_tensors * (sizeof(moeq_tensor_info) + 64) +
              (uint64_t)p->n_tensors *
                  (sizeof(moeq_plan_tensor) + sizeof(moeq_artifact_entry) + sizeof(moeq_tensor_result));
    x->peak = x->meta + p->mem_max;
    moeq_free(&owner), moeq_free(&cost), moeq_free(&load);
    return st;
}

// ---- target gguf: what the file will contain ----

// Calls fn(ctx, class, proj, layer_lo, layer_hi, type, n) for each run of consecutive layers in which the
// stored tensors of one (class, proj) have one GGUF type (-1 for mixed types in a layer: the check refuses
// those), in class order, then projection, then layer, then the model-level ones (layers -1); n: tensors.
typedef void (*gguf_run_fn)(void *ctx, moeq_tclass cls, moeq_proj proj, int lo, int hi, int type, int n);

static void gguf_runs(const plan_run *x, gguf_run_fn fn, void *ctx) {
    const moeq_catalog *c = x->c;
    const moeq_plan *p = x->p;
    const int L = moeq_config_n_layers_total(&c->cfg) + 1; // slot 0: model-level tensors
    int *type = MOEQ_MALLOC(sizeof(int) * (size_t)L, "gguf runs"),
        *cnt = MOEQ_MALLOC(sizeof(int) * (size_t)L, "gguf runs");
    for (int cls = 0; type && cnt && cls < MOEQ_TC_COUNT; cls++) {
        if (cls == MOEQ_TC_FP8_SCALE) continue;
        for (int pr = 0; pr < MOEQ_PROJ_COUNT; pr++) {
            int any = 0;
            for (int l = 0; l < L; l++) type[l] = -2, cnt[l] = 0;
            for (int i = 0; i < p->n_tensors; i++) {
                const moeq_tensor_info *t = &c->t[p->t[i].cat];
                if ((int)t->c.cls != cls || (int)t->c.proj != pr || t->c.layer + 1 >= L ||
                    !moeq_gguf_in_file(c, t))
                    continue;
                const int l = t->c.layer + 1, g = moeq_gguf_plan_type(c, &p->t[i]);
                type[l] = type[l] == -2 || type[l] == g ? g : -1;
                cnt[l]++, any = 1;
            }
            for (int l = 1; any && l < L;) {
                if (type[l] == -2) {
                    l++;
                    continue;
                }
                int h = l, n = cnt[l];
                while (h + 1 < L && type[h + 1] == type[l]) n += cnt[++h];
                fn(ctx, (moeq_tclass)cls, (moeq_proj)pr, l - 1, h - 1, type[l], n);
                l = h + 1;
            }
            if (any && type[0] != -2) fn(ctx, (moeq_tclass)cls, (moeq_proj)pr, -1, -1, type[0], cnt[0]);
        }
    }
    moeq_free(&type), moeq_free(&cnt);
}

typedef struct {
    char line[1024];
    size_t n;
    int cls, proj;
    json_t *arr;
} gguf_print_ctx;

static void gguf_flush(gguf_print_ctx *g) {
    if (g->n) printf("                  %s\n", g->line);
    g->n = 0;
}

static void gguf_run_text(void *ctx, moeq_tclass cls, moeq_proj proj, int lo, int hi, int type, int n) {
    gguf_print_ctx *g = ctx;
    (void)n;
    if ((int)cls != g->cls || (int)proj != g->proj) {
        gguf_flush(g);
        g->cls = (int)cls, g->proj = (int)proj;
        g->n = (size_t)snprintf(g->line, sizeof g->line, "%s%s%s:", moeq_tclass_name(cls), proj ? " " : "",
                                proj ? moeq_proj_name(proj) : "");
    }
    if (g->n >= sizeof g->line) return;
    const char *sep = g->line[g->n - 1] == ':' ? " " : ", ";
    if (lo < 0)
        g->n += (size_t)snprintf(g->line + g->n, sizeof g->line - g->n, "%s%s%s", sep,
                                 moeq_gguf_plan_type_name(type), *sep == ',' ? " (model-level)" : "");
    else if (lo == hi)
        g->n += (size_t)snprintf(g->line + g->n, sizeof g->line - g->n, "%s%s (layer %d)", sep,
                                 moeq_gguf_plan_type_name(type), lo);
    else
        g->n += (size_t)snprintf(g->line + g->n, sizeof g->line - g->n, "%s%s (layers %d-%d)", sep,
                                 moeq_gguf_plan_type_name(type), lo, hi);
    if (g->n >= sizeof g->line) g->n = sizeof g->line - 1;
}

static void gguf_run_json(void *ctx, moeq_tclass cls, moeq_proj proj, int lo, int hi, int type, int n) {
    gguf_print_ctx *g = ctx;
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:s,s:i}", "class", moeq_tclass_name(cls), "proj",
                          proj ? moeq_proj_name(proj) : "", "layer_first", lo, "layer_last", hi, "type",
                          moeq_gguf_plan_type_name(type), "tensors", n);
    json_array_append_new(g->arr, o);
}

static void print_gguf(const plan_run *x) {
    moeq_gguf_estimate e;
    moeq_gguf_plan_estimate(x->c, x->p, &e);
    char a[32], b[32], h[32];
    fmt_bytes((double)e.file_bytes, a, sizeof a);
    fmt_bytes((double)e.tensor_bytes, b, sizeof b);
    fmt_bytes((double)e.header_bytes, h, sizeof h);
    printf(
        "gguf file       %s (%llu bytes): %d tensors (%d stacks of routed experts), %s of tensor data + ~%s "
        "header (estimated); %.4f bits/weight over %lld weights\n",
        a, (unsigned long long)e.file_bytes, e.n_tensors, e.n_stacks, b, h, e.bits_per_weight,
        (long long)e.params);
    printf("gguf fallbacks  %d tensor%s in llama-quantize's fallback type (rows not a multiple of the "
           "block)%s\n",
           e.n_fallbacks, e.n_fallbacks == 1 ? "" : "s", e.n_fallbacks ? ": see the warning" : "");
    if (e.n_lora)
        printf(
            "gguf lora       %d tensor%s with a compensator: exported as a LoRA adapter (another file, not "
            "counted above)\n",
            e.n_lora, e.n_lora == 1 ? "" : "s");
    printf("gguf types      by class and projection, over layers:\n");
    gguf_print_ctx g = {.cls = -1, .proj = -1};
    gguf_runs(x, gguf_run_text, &g);
    gguf_flush(&g);
}

static json_t *gguf_json(const plan_run *x) {
    moeq_gguf_estimate e;
    moeq_gguf_plan_estimate(x->c, x->p, &e);
    gguf_print_ctx g = {.arr = json_array()};
    gguf_runs(x, gguf_run_json, &g);
    json_t *fbs = json_array(); // one entry per tensor in a fallback type
    for (int i = 0; i < x->p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &x->p->t[i];
        if (pt->format_asked)
            json_array_append_new(fbs, json_pack("{s:s,s:s,s:I,s:s,s:s}", "name", x->c->t[pt->cat].name,
                                                 "class", moeq_tclass_name(x->c->t[pt->cat].c.cls), "cols",
                                                 (json_int_t)pt->C, "type_asked",
                                                 moeq_qtype_name(pt->format_asked), "type",
                                                 moeq_gguf_plan_type_name(moeq_gguf_plan_type(x->c, pt))));
    }
    return json_pack("{s:I,s:I,s:I,s:i,s:i,s:I,s:f,s:i,s:o,s:o}", "file_bytes", (json_int_t)e.file_bytes,
                     "tensor_bytes", (json_int_t)e.tensor_bytes, "header_bytes_est",
                     (json_int_t)e.header_bytes, "tensors", e.n_tensors, "stacks", e.n_stacks, "params",
                     (json_int_t)e.params, "bits_per_weight", e.bits_per_weight, "lora_tensors", e.n_lora,
                     "types", g.arr, "fallbacks", fbs);
}

static void print_json(const plan_run *x) {
    const moeq_plan *p = x->p;
    const moeq_catalog *c = x->c;
    json_t *kinds = json_object();
    for (int k = 0; k < MOEQ_UNIT_KIND_COUNT; k++)
        json_object_set_new(kinds, moeq_unit_kind_name((moeq_unit_kind)k), json_integer(x->per_kind[k]));
    json_t *root = json_pack(
        "{s:s,s:s,s:s,s:b,s:i,s:i,s:o,s:I,s:I,s:f,s:I,s:I,s:s,s:f,s:f,s:f,s:I,s:s}", "model", c->dir,
        "architecture", moeq_arch_name(c->cfg.arch), "recipe", x->rec->path, "has_data", c->has_data, "ranks",
        (int)x->o.ranks, "units", p->n_units, "units_by_kind", kinds, "bytes_in", (json_int_t)p->bytes_in,
        "bytes_out", (json_int_t)p->bytes_out, "bits_per_weight_quantized", moeq_plan_bpw_quantized(p),
        "params_quantized", (json_int_t)p->params_quantized, "params_total", (json_int_t)p->params_total,
        "cost_model", x->cm.name, "cost_total_s", p->cost_total, "est_makespan_s", x->makespan,
        "est_efficiency", x->makespan > 0 ? p->cost_total / (x->makespan * (double)x->o.ranks) : 1.0,
        "peak_mem_per_rank_bytes", (json_int_t)x->peak, "digest", "");
    char dg[32];
    snprintf(dg, sizeof dg, "%016llx", (unsigned long long)p->digest);
    json_object_set_new(root, "digest", json_string(dg));
    json_t *fbs = json_array(); // the group fallbacks, one entry per tensor
    for (int i = 0; i < p->n_tensors; i++)
        if (p->t[i].group_asked)
            json_array_append_new(fbs, json_pack("{s:s,s:s,s:I,s:i,s:i}", "name", c->t[p->t[i].cat].name,
                                                 "class", moeq_tclass_name(c->t[p->t[i].cat].c.cls), "cols",
                                                 (json_int_t)p->t[i].C, "group_asked", p->t[i].group_asked,
                                                 "group", p->t[i].q.group));
    json_object_set_new(root, "group_fallbacks", fbs);
    json_t *caps = json_array(); // the rank caps, one entry per tensor
    for (int i = 0; i < p->n_tensors; i++)
        if (p->t[i].rank_asked)
            json_array_append_new(caps, json_pack("{s:s,s:s,s:I,s:I,s:i,s:i}", "name", c->t[p->t[i].cat].name,
                                                  "class", moeq_tclass_name(c->t[p->t[i].cat].c.cls), "rows",
                                                  (json_int_t)p->t[i].R, "cols", (json_int_t)p->t[i].C,
                                                  "rank_asked", p->t[i].rank_asked, "rank", p->t[i].q.rank));
    json_object_set_new(root, "rank_caps", caps);
    json_object_set_new(root, "target",
                        x->rec->target == MOEQ_TARGET_GGUF ? json_string("gguf") : json_null());
    if (x->rec->target == MOEQ_TARGET_GGUF) json_object_set_new(root, "gguf", gguf_json(x));
    moeq_calib_estimate ce;
    long cseqs, clen;
    if (calib_estimate(x, &ce, &cseqs, &clen))
        json_object_set_new(root, "calibration",
                            json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}",
                                      "sequences", (json_int_t)cseqs, "seq_len", (json_int_t)clen, "tokens",
                                      (json_int_t)ce.tokens, "mem_per_rank_bytes", ce.mem_per_rank,
                                      "weights_bytes", ce.weights_bytes, "states_bytes", ce.states_bytes,
                                      "rows_bytes", ce.rows_bytes, "hessian_bytes", ce.hessian_bytes,
                                      "total_s", ce.total_s, "forward_s", ce.forward_s, "hessian_s",
                                      ce.hessian_s, "units_s", ce.units_s, "exchange_bytes",
                                      ce.exchange_bytes, "max_cols", (json_int_t)ce.max_cols));
    if (x->imp) { // --imatrix: which tensors get an importance vector
        char h[32];
        snprintf(h, sizeof h, "%016llx", (unsigned long long)x->im->xxh3);
        json_t *miss = json_array(), *ign = json_array();
        for (int i = 0; i < p->n_tensors; i++) {
            if (x->imp->state[i] == MOEQ_IMP_MISSING)
                json_array_append_new(miss, json_string(c->t[p->t[i].cat].name));
            if (x->imp->state[i] == MOEQ_IMP_IGNORED)
                json_array_append_new(ign, json_string(c->t[p->t[i].cat].name));
        }
        json_object_set_new(root, "imatrix",
                            json_pack("{s:s,s:s,s:b,s:i,s:i,s:i,s:i,s:o,s:o}", "path", x->im->path, "xxh3", h,
                                      "legacy", x->im->legacy, "entries", x->im->n, "tensors_with",
                                      x->imp->n_bound, "tensors_without", x->imp->n_missing,
                                      "tensors_ignoring", x->imp->n_ignored, "without", miss, "ignoring",
                                      ign));
    }
    if (x->o.tensors) {
        json_t *arr = json_array();
        for (int i = 0; i < p->n_tensors; i++) {
            char buf[128];
            json_array_append_new(arr, json_pack("{s:s,s:i,s:s,s:f,s:I,s:i,s:i,s:f}", "name",
                                                 c->t[p->t[i].cat].name, "unit", p->t[i].unit, "setting",
                                                 setting_str(&p->t[i].q, buf, sizeof buf), "bits_per_weight",
                                                 p->t[i].bits_per_weight, "bytes_out",
                                                 (json_int_t)p->t[i].out_bytes, "rule", p->t[i].rule + 1,
                                                 "policy", p->t[i].policy + 1, "score", p->t[i].score));
        }
        json_object_set_new(root, "tensors", arr);
    }
    moeq_cli_json_schema(root, MOEQ_SCHEMA_PLAN);
    json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
}

static void print_tensors(const plan_run *x) {
    printf("\n%-64s %5s %-28s %8s %12s  %s\n", "tensor", "unit", "setting", "bpw", "bytes", "decided by");
    for (int i = 0; i < x->p->n_tensors; i++) {
        char buf[128], by[96];
        const moeq_plan_tensor *pt = &x->p->t[i];
        if (pt->policy >= 0)
            snprintf(by, sizeof by, "policy %d %s (%.4g)", pt->policy + 1,
                     moeq_policy_kind_name(x->rec->policies[pt->policy].kind), pt->score);
        else if (pt->rule >= 0)
            snprintf(by, sizeof by, "rule %d (line %d)", pt->rule + 1, x->rec->rules[pt->rule].line);
        else
            snprintf(by, sizeof by, "defaults");
        printf("%-64s %5d %-28s %8.3f %12llu  %s\n", x->c->t[pt->cat].name, pt->unit,
               setting_str(&pt->q, buf, sizeof buf), pt->bits_per_weight, (unsigned long long)pt->out_bytes,
               by);
    }
}

static void print_text(const plan_run *x) {
    const moeq_plan *p = x->p;
    const moeq_catalog *c = x->c;
    const int *k = x->per_kind;
    char a[32], b[32], m[32];
    printf("plan            %s (%s), recipe %s%s\n", c->dir, moeq_arch_name(c->cfg.arch), x->rec->path,
           c->has_data ? "" : "   [metadata only]");
    printf("units           %d: %d expert, %d attention, %d shared_expert, %d dense_mlp, %d other\n",
           p->n_units, k[MOEQ_UNIT_EXPERT], k[MOEQ_UNIT_ATTENTION], k[MOEQ_UNIT_SHARED], k[MOEQ_UNIT_DENSE],
           k[MOEQ_UNIT_OTHER]);
    fmt_bytes((double)p->bytes_in, a, sizeof a);
    fmt_bytes((double)p->bytes_out, b, sizeof b);
    printf("bytes           %s read, %s artifact data\n", a, b);
    printf("bits/weight     %.4f over %lld quantized parameters (%.1f%% of %lld)\n",
           moeq_plan_bpw_quantized(p), (long long)p->params_quantized,
           100.0 * (double)p->params_quantized / (double)(p->params_total ? p->params_total : 1),
           (long long)p->params_total);
    printf("estimate        %.1f s of work (%s), %ld ranks: makespan %.1f s (LPT), efficiency %.1f%%\n",
           p->cost_total, x->cm.name, x->o.ranks, x->makespan,
           x->makespan > 0 ? 100.0 * p->cost_total / (x->makespan * (double)x->o.ranks) : 100.0);
    fmt_bytes((double)p->mem_max, a, sizeof a);
    fmt_bytes((double)x->meta, b, sizeof b);
    fmt_bytes((double)x->peak, m, sizeof m);
    printf("memory per rank %s = largest unit working set %s + catalog/plan %s\n", m, a, b);
    print_calib(x);
    printf("digest          %016llx\n", (unsigned long long)p->digest);
    const moeq_budget_result *bu = &x->budget;
    if (bu->achieved_bpw > 0)
        printf("budget solver   %.4f bits/weight reached (candidates allow %.4f to %.4f), %d upgrades, "
               "predicted "
               "error %.6g\n",
               bu->achieved_bpw, bu->min_bpw, bu->max_bpw, bu->n_upgrades, bu->err_total);
    char fb[4096];
    const int n_fb = moeq_plan_group_fallbacks(p, c, fb, sizeof fb);
    if (n_fb) {
        printf(
            "warning         %d setting%s adapted to this model's shapes (a group that does not divide the "
            "input dimension: the largest that does; a rank above min(rows, cols): that minimum%s):\n",
            n_fb, n_fb == 1 ? "" : "s",
            x->rec->target == MOEQ_TARGET_GGUF ? "; target gguf: a block type whose block does not divide "
                                                 "the rows: llama-quantize's fallback"
                                               : "");
        for (char *line = strtok(fb, "\n"); line; line = strtok(NULL, "\n"))
            printf("                  %s\n", line);
    }
    if (x->rec->target == MOEQ_TARGET_GGUF) print_gguf(x);
    if (x->imp) moeq_importance_print(stdout, x->imp, c, p, x->o.tensors ? 0 : 8);
    if (x->o.tensors) print_tensors(x);
}

static int plan_close(plan_run *x, int code) {
    moeq_importance_free(&x->imp), moeq_imatrix_free(&x->im);
    moeq_analysis_free(&x->an), moeq_plan_free(&x->p), moeq_recipe_free(&x->rec), moeq_catalog_close(&x->c);
    if (x->mpi_mine) MPI_Finalize();
    return code;
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},      {"recipe", required_argument, NULL, 'r'},
        {"ranks", required_argument, NULL, 'n'},      {"calib-seqs", required_argument, NULL, 'S'},
        {"calib-len", required_argument, NULL, 'L'},  {"explain", required_argument, NULL, 'e'},
        {"cost-model", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
        {"tensors", no_argument, NULL, 't'},          {"dry-run", no_argument, NULL, 'd'},
        {"imatrix", required_argument, NULL, 'I'},    {0, 0, 0, 0},
    };
    plan_run x = {.o = {.ranks = 1, .cost_model = "cpu-core"}};
    int r = moeq_cli_parse(&moeq_cmd_plan, argc, argv, "m:r:n:e:c:jtd", longopts, on_opt, &x.o, NULL);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    if (!x.o.model && optind == argc - 1) x.o.model = argv[optind++];
    if (!x.o.model || optind != argc) {
        fprintf(stderr, "moeq plan: --model DIR is required\n---> HINT: moeq plan --help\n");
        return MOEQ_EXIT_USAGE;
    }
    moeq_status st = plan_open(&x);
    if (x.rank != 0)
        return plan_close(&x, st == MOEQ_OK ? MOEQ_EXIT_OK : moeq_exit_code(st)); // rank 0 reports
    if (st == MOEQ_OK && x.o.explain)
        return plan_close(&x, explain(x.c, x.rec, x.p, x.an, x.imp, x.o.explain));
    if (st == MOEQ_OK) st = plan_estimate(&x);
    if (st != MOEQ_OK) return plan_close(&x, moeq_cli_fail("plan", st));
    if (x.o.json)
        print_json(&x);
    else
        print_text(&x);
    return plan_close(&x, MOEQ_EXIT_OK);
}

const moeq_command moeq_cmd_plan = {
    .name = "plan",
    .summary = "show the plan (units, bytes, bits/weight, time and memory per rank) without running it",
    .usage =
        "moeq plan --model DIR [--recipe FILE] [--imatrix FILE] [--ranks N] [--json] [--tensors] [--explain "
        "NAME]\n"
        "          [--dry-run]\n\n"
        "Builds the same plan `moeq quantize` would (units by expert, resolved settings, output sizes) and\n"
        "(recipes with data-dependent policies: after the analyze phase, which reads the weights; run it "
        "under\n"
        "mpirun to split that work)\n"
        "estimates the run for N ranks with the cost model (LPT makespan). Nothing is written. Works on\n"
        "metadata-only directories, so a DeepSeek-R1 or Kimi-K2 run can be planned without the weights.\n"
        "A recipe with `target: gguf` also gets the GGUF file's types per class and (layer, proj), the\n"
        "row fallbacks, its size and bits per weight (JSON: \"gguf\"; configs/README.md).\n\n"
        "Options:\n"
        "  -m, --model DIR       checkpoint or metadata directory (also accepted as the operand)\n"
        "  -r, --recipe FILE     YAML recipe (default: built-in HQQ 4-bit g64)\n"
        "      --imatrix FILE    llama.cpp importance matrix (GGUF or legacy .dat; moeq calibrate writes "
        "one):\n"
        "                        says which tensors get an importance vector, which have none (WARNING, "
        "named)\n"
        "                        and which methods ignore it; an entry of the wrong width is refused (exit "
        "3).\n"
        "                        The file's hash joins the digest, as quantize --imatrix does\n"
        "  -n, --ranks N         ranks to estimate for (default 1)\n"
        "      --calib-seqs N    a recipe with method gptq: the calibration pass's memory per rank and time\n"
        "      --calib-len T     for N sequences of T tokens (quantize's defaults: 128, min(2048, context))\n"
        "  -c, --cost-model M    cpu-core (default) or h100\n"
        "  -t, --tensors         list every stored tensor with its setting, bits/weight and bytes\n"
        "  -e, --explain NAME    which recipe rule decided the setting of tensor NAME\n"
        "  -j, --json            JSON on stdout\n"
        "  -d, --dry-run         accepted for symmetry with quantize; plan never writes\n\n"
        "Example:\n"
        "  moeq plan --model ../shared/fixtures/real-metadata/deepseek-r1 --recipe "
        "configs/deepseek-v3-milo3.yaml --ranks 64",
    .run = run,
    .recipe_help = 1,
};
