// plan.c: catalog + recipe -> units, per-tensor settings and output geometry, cost and memory estimates,
// plan digest (see plan.h). Pure and deterministic: every rank builds the same plan independently.
#include "plan.h"

#include "policy.h" // defines: moeq_analysis, moeq_policy_apply
#include "target.h" // defines: moeq_gguf_fit_format, moeq_gguf_plan_check

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *moeq_unit_kind_name(moeq_unit_kind k) {
    static const char *n[MOEQ_UNIT_KIND_COUNT] = {"expert", "attention", "shared_expert", "dense_mlp",
                                                  "other"};
    return ((int)k >= 0 && k < MOEQ_UNIT_KIND_COUNT) ? n[k] : "invalid";
}

// ---- cost model ----

moeq_status moeq_cost_model_get(const char *name, moeq_cost_model *out) {
    // cpu-core: measured on the 2-core CI machine class (page-cache reads, OpenBLAS AVX2 sgemm);
    // h100: one H100 SXM fed by a Gen4 NVMe (6 GB/s reads), calibrated on our CUDA kernels measured there
    // (bench/results/h100_kernels_cuda.json: HQQ 20 iterations of 7168x2048 in 0.68 ms = 4.3e11
    // element-iterations/s; the rank-32 rSVD at ~7 TFLOP/s effective; one MiLo round 1.6 ms), so that a
    // DeepSeek/Kimi expert (3 x 7168x2048, MiLo 3-bit r32, 10 rounds) costs ~50 ms of compute as measured.
    static const moeq_cost_model models[] = {
        {"cpu-core", 1.5e9, 4.0e8, 1.5e8, 9.0e10},
        {"h100", 6.0e9, 2.0e11, 5.0e11, 7.0e12},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (!strcmp(name, models[i].name)) {
            *out = models[i];
            return MOEQ_OK;
        }
    return MOEQ_FAIL(MOEQ_ERR_ARG, "unknown cost model \"%s\" (cpu-core, h100)", name);
}

double moeq_cost_tensor(const moeq_cost_model *cm, const moeq_plan_tensor *pt, uint64_t bytes_in) {
    const double n = (double)pt->R * (double)pt->C;
    const double t = (double)bytes_in / cm->read_bytes_per_s + n / cm->elems_per_s; // read + decode
    const moeq_method_traits *m = moeq_method_get(pt->q.method);
    const moeq_throughput tp = {cm->elems_per_s, cm->hqq_elem_iters_per_s, cm->gemm_flops, (double)pt->C};
    return m ? m->cost_s(t, &pt->q, n, &tp) : t;
}

// ---- storage geometry (kernels/qformat.h: the one geometry function) ----

uint64_t moeq_plan_stored_bytes(const moeq_qsettings *q, int64_t R, int64_t C) {
    moeq_qlayout l;
    return moeq_qsettings_layout(q, R, C, &l) == MOEQ_OK ? l.bytes : 0;
}

static moeq_status geometry(moeq_plan_tensor *pt, const moeq_tensor_info *t) {
    if (pt->q.method == MOEQ_METHOD_NONE) {
        pt->R = t->ndim >= 1 ? t->shape[0] : 1;
        pt->C = pt->R > 0 ? t->numel / pt->R : 0;
        pt->out_bytes = t->nbytes;
        pt->bits_per_weight = t->numel ? 8.0 * (double)t->nbytes / (double)t->numel : 0;
        return MOEQ_OK;
    }
    pt->R = t->shape[0];
    pt->C = t->shape[1];
    moeq_qlayout l;
    MOEQ_TRY(moeq_qsettings_layout(&pt->q, pt->R, pt->C, &l));
    pt->row_bytes = l.row_bytes;
    pt->n_groups = l.n_blocks;
    pt->out_bytes = l.bytes;
    pt->bits_per_weight = l.bits_per_weight;
    return MOEQ_OK;
}

// ---- units ----

typedef struct {
    moeq_unit_kind kind;
    int layer, expert;
    int part; // attention, shared expert, dense MLP: the catalog index of the tensor (a unit each); else -1
} unit_key;

// A routed expert's projections form one unit (small, and many of them); attention, shared-expert and
// dense-MLP linears are units on their own: they are the largest tensors, and whole-layer units of them
// (up to 3 x 18432x7168 with a rank-512 compensator) were longer than the ideal makespan at 512 ranks in
// the DeepSeek-R1 simulation (docs/SCALE.md), so they bounded the run.
static unit_key key_of(const moeq_tensor_info *t, int cat) {
    unit_key k = {MOEQ_UNIT_OTHER, t->c.layer, -1, -1};
    switch (t->c.cls) {
    case MOEQ_TC_ROUTED_EXPERT:
        k.kind = MOEQ_UNIT_EXPERT;
        k.expert = t->c.expert;
        break;
    case MOEQ_TC_ATTENTION:
        k.kind = MOEQ_UNIT_ATTENTION;
        break;
    case MOEQ_TC_SHARED_EXPERT:
        k.kind = MOEQ_UNIT_SHARED;
        break;
    case MOEQ_TC_DENSE_MLP:
        k.kind = MOEQ_UNIT_DENSE;
        break;
    default:
        break;
    }
    if (k.kind == MOEQ_UNIT_ATTENTION || k.kind == MOEQ_UNIT_SHARED || k.kind == MOEQ_UNIT_DENSE)
        k.part = cat;
    return k;
}

// Unit order: by layer (model-level last), then attention, dense, shared, experts by index, other.
static int kind_rank(moeq_unit_kind k) {
    static const int r[MOEQ_UNIT_KIND_COUNT] = {[MOEQ_UNIT_ATTENTION] = 0,
                                                [MOEQ_UNIT_DENSE] = 1,
                                                [MOEQ_UNIT_SHARED] = 2,
                                                [MOEQ_UNIT_EXPERT] = 3,
                                                [MOEQ_UNIT_OTHER] = 4};
    return r[k];
}

static int cmp_key(const unit_key *a, const unit_key *b) {
    int la = a->layer < 0 ? 1 << 30 : a->layer, lb = b->layer < 0 ? 1 << 30 : b->layer;
    if (la != lb) return la < lb ? -1 : 1;
    if (kind_rank(a->kind) != kind_rank(b->kind)) return kind_rank(a->kind) < kind_rank(b->kind) ? -1 : 1;
    if (a->expert != b->expert) return a->expert < b->expert ? -1 : 1;
    if (a->part != b->part) return a->part < b->part ? -1 : 1;
    return 0;
}

typedef struct {
    unit_key k;
    int cat;
    const char *name;
    moeq_plan_tensor pt;
} entry;

static int cmp_entry(const void *x, const void *y) {
    const entry *a = x, *b = y;
    int c = cmp_key(&a->k, &b->k);
    return c ? c : strcmp(a->name, b->name);
}

static void hash_u64(XXH3_state_t *h, uint64_t v) {
    XXH3_64bits_update(h, &v, sizeof v);
}

static void hash_str(XXH3_state_t *h, const char *s) {
    uint64_t n = strlen(s);
    hash_u64(h, n);
    XXH3_64bits_update(h, s, n);
}

static void hash_bytes(void *h, const void *bytes, size_t n) {
    XXH3_64bits_update(h, bytes, n);
}

moeq_status moeq_plan_build(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                            moeq_plan **out) {
    return moeq_plan_build_ex(c, r, cm, NULL, 0, NULL, out);
}

// Every catalog tensor's settings: rules, then (unless rules_only) the policies.
// asked, fitted: (n_tensors) the group the rules asked for where the fallback replaced it (else 0), and the
// group it took.
static moeq_status resolve_all(const moeq_catalog *c, const moeq_recipe *r, const moeq_analysis *an,
                               int rules_only, moeq_budget_result *budget, moeq_qsettings *q, int *rule,
                               int *policy, double *score, int *asked, int *fitted) {
    for (int i = 0; i < c->n_tensors; i++) {
        q[i] = moeq_recipe_resolve_ex(r, &c->t[i], &rule[i], &asked[i]);
        fitted[i] = q[i].group;
        policy[i] = -1, score[i] = 0;
    }
    if (rules_only || !r->n_policies) return MOEQ_OK;
    moeq_routing_counts **counts = MOEQ_CALLOC((size_t)r->n_policies, sizeof *counts, "routing counts");
    if (!counts) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    for (int k = 0; k < r->n_policies && st == MOEQ_OK; k++)
        if (r->policies[k].counts[0]) {
            char path[1024];
            moeq_recipe_counts_path(r, &r->policies[k], path, sizeof path);
            st = moeq_routing_counts_load(path, &counts[k]);
            if (st != MOEQ_OK)
                st = MOEQ_FAIL(st, "%s:%d: policy %s: %s", r->path, r->policies[k].line,
                               moeq_policy_kind_name(r->policies[k].kind), moeq_error_detail());
        }
    if (st == MOEQ_OK)
        st =
            moeq_policy_apply(c, r, an, (const moeq_routing_counts *const *)counts, q, policy, score, budget);
    for (int k = 0; k < r->n_policies; k++) moeq_routing_counts_free(&counts[k]);
    moeq_free(&counts);
    return st;
}

// The stored tensors (FP8 scales of quantized weights are consumed, not stored) with their settings checked
// and their geometry, and every rule used at least once. e: (n_tensors) entries, *n filled.
static moeq_status make_entries(const moeq_catalog *c, const moeq_recipe *r, const moeq_qsettings *qs,
                                const int *rules, const int *pols, const double *scores, const int *asked,
                                const int *fitted, entry *e, int *n_out) {
    int *rule_hits = MOEQ_CALLOC((size_t)(r->n_rules ? r->n_rules : 1), sizeof *rule_hits, "rule hits");
    if (!rule_hits) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    int n = 0;
    for (int i = 0; i < c->n_tensors && st == MOEQ_OK; i++) {
        const moeq_tensor_info *t = &c->t[i];
        for (int k = 0; k < r->n_rules; k++) rule_hits[k] += moeq_rule_matches(&r->rules[k], t);
        if (t->c.cls == MOEQ_TC_FP8_SCALE) continue; // handled with its weight below
        entry *x = &e[n++];
        *x = (entry){.k = key_of(t, i), .cat = i, .name = t->name};
        x->pt =
            (moeq_plan_tensor){.cat = i, .q = qs[i], .rule = rules[i], .policy = pols[i], .score = scores[i]};
        // the rules' group fallback, unless a policy set another group; a policy's group gets its own
        if (asked[i] && x->pt.q.group == fitted[i]) x->pt.group_asked = asked[i];
        const int a = moeq_qsettings_fit_group(&x->pt.q, t);
        if (a > 0) x->pt.group_asked = a;
        // a compensator rank larger than the matrix is capped by it (a model smaller than the recipe's)
        const int64_t mn = t->ndim == 2 ? (t->shape[0] < t->shape[1] ? t->shape[0] : t->shape[1]) : 0;
        if (mn > 0 && moeq_qsettings_rank(&x->pt.q) > mn)
            x->pt.rank_asked = x->pt.q.rank, x->pt.q.rank = (int)mn;
        // target gguf: a llama.cpp block type that does not divide the rows takes llama-quantize's fallback
        if (r->target == MOEQ_TARGET_GGUF) x->pt.format_asked = moeq_gguf_fit_format(&x->pt.q, t);
        st = moeq_qsettings_check(&x->pt.q, t);
        if (st == MOEQ_OK) st = geometry(&x->pt, t);
        // a pass-through FP8 weight keeps its scale next to it, in the same unit
        if (st == MOEQ_OK && t->scale >= 0 && x->pt.q.method == MOEQ_METHOD_NONE) {
            entry *sc = &e[n++];
            *sc = (entry){.k = x->k, .cat = t->scale, .name = c->t[t->scale].name};
            sc->pt = (moeq_plan_tensor){.cat = t->scale, .q = qs[t->scale], .rule = -1, .policy = -1};
            st = geometry(&sc->pt, &c->t[t->scale]);
        }
    }
    // a rule that matches nothing is a recipe that does not fit this model: bad input (exit 3), like any
    // other recipe error; most often a typo in a glob or a layer range written for another model
    for (int k = 0; k < r->n_rules && st == MOEQ_OK; k++)
        if (!rule_hits[k]) {
            char m[512];
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s:%d: rule %d (match %s) matches no tensor of %s (%s)\n---> HINT: check "
                           "class/proj/layers/name; "
                           "`moeq inspect --tensors` lists the tensors",
                           r->path, r->rules[k].line, k + 1, moeq_rule_match_str(&r->rules[k], m, sizeof m),
                           c->dir, moeq_arch_name(c->cfg.arch));
        }
    moeq_free(&rule_hits);
    *n_out = n;
    return st;
}

// Working set of one tensor: pass-through tensors stream through one bounded buffer; quantized ones hold the
// source bytes, the fp32 weight, a residual and a reconstruction, the outputs and the factors.
static uint64_t tensor_mem(const moeq_tensor_info *t, const moeq_plan_tensor *pt, uint64_t in) {
    if (pt->q.method == MOEQ_METHOD_NONE) return in < MOEQ_PLAN_STREAM_CHUNK ? in : MOEQ_PLAN_STREAM_CHUNK;
    uint64_t mem = in + (uint64_t)t->numel * 4u;
    mem += (uint64_t)t->numel * 8u + pt->out_bytes;
    if (pt->q.rank > 0)
        mem += 4u * (uint64_t)(pt->q.rank + pt->q.svd_oversample) * (uint64_t)(pt->R + pt->C) * 3u;
    return mem;
}

// Bytes read for one plan tensor: its data, and its block scales when it is quantized (FP8 checkpoints).
static uint64_t tensor_bytes_in(const moeq_catalog *c, const moeq_plan_tensor *pt) {
    const moeq_tensor_info *t = &c->t[pt->cat];
    uint64_t in = t->nbytes;
    if (pt->q.method != MOEQ_METHOD_NONE && t->scale >= 0) in += c->t[t->scale].nbytes;
    return in;
}

double moeq_plan_cost_under(const moeq_plan *p, const moeq_catalog *c, const moeq_cost_model *cm) {
    double s = 0;
    for (int i = 0; i < p->n_tensors; i++) s += moeq_cost_tensor(cm, &p->t[i], tensor_bytes_in(c, &p->t[i]));
    return s;
}

// The units of the sorted entries, their figures and the plan's totals, and the digest over all of it.
static moeq_status fill_units(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                              const entry *e, int n, moeq_plan *p) {
    int n_units = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || cmp_key(&e[i].k, &e[i - 1].k)) n_units++;
    p->t = MOEQ_CALLOC((size_t)(n ? n : 1), sizeof *p->t, "plan tensors");
    p->u = MOEQ_CALLOC((size_t)(n_units ? n_units : 1), sizeof *p->u, "plan units");
    XXH3_state_t *h = XXH3_createState();
    if (!p->t || !p->u || !h) {
        if (h) XXH3_freeState(h);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "plan of %d tensors", n);
    }
    p->n_tensors = n, p->n_units = n_units;
    XXH3_64bits_reset(h);
    hash_str(h, "moeq-plan-v2"); // v2: attention, shared and dense linears are units of their own
    hash_str(h, c->config_json ? c->config_json : "");
    if (r->target == MOEQ_TARGET_GGUF) hash_str(h, "target: gguf"); // absent: the digests of before
    if (r->target == MOEQ_TARGET_VLLM) hash_str(h, "target: vllm");
    for (int s = 0; s < c->n_shards; s++) {
        hash_str(h, c->shard_names[s]);
        hash_u64(h, c->shard_sizes[s]);
    }
    int u = -1;
    for (int i = 0; i < n; i++) {
        if (i == 0 || cmp_key(&e[i].k, &e[i - 1].k)) {
            u++;
            p->u[u] = (moeq_unit){
                .id = u, .kind = e[i].k.kind, .layer = e[i].k.layer, .expert = e[i].k.expert, .first = i};
        }
        moeq_plan_tensor *pt = &p->t[i];
        *pt = e[i].pt;
        pt->unit = u;
        const moeq_tensor_info *t = &c->t[pt->cat];
        const uint64_t in = tensor_bytes_in(c, pt);
        moeq_unit *un = &p->u[u];
        un->count++;
        un->bytes_in += in;
        un->bytes_out += pt->out_bytes;
        un->cost += moeq_cost_tensor(cm, pt, in);
        const uint64_t mem = tensor_mem(t, pt, in);
        if (mem > un->mem_bytes) un->mem_bytes = mem;
        if (pt->q.method != MOEQ_METHOD_NONE) {
            p->params_quantized += t->numel;
            p->bits_quantized += pt->bits_per_weight * (double)t->numel;
        }
        p->params_total += t->numel;
        p->bytes_in += in;
        p->bytes_out += pt->out_bytes;
        hash_str(h, t->name);
        hash_u64(h, (uint64_t)t->dtype);
        for (int d = 0; d < t->ndim; d++) hash_u64(h, (uint64_t)t->shape[d]);
        hash_u64(h, (uint64_t)u);
        moeq_qsettings_hash(&pt->q, hash_bytes, h);
    }
    for (int k = 0; k < n_units; k++) {
        p->cost_total += p->u[k].cost;
        if (p->u[k].mem_bytes > p->mem_max) p->mem_max = p->u[k].mem_bytes;
    }
    p->digest = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return MOEQ_OK;
}

moeq_status moeq_plan_build_ex(const moeq_catalog *c, const moeq_recipe *r_in, const moeq_cost_model *cm,
                               const moeq_analysis *an, unsigned flags, moeq_budget_result *budget,
                               moeq_plan **out) {
    *out = NULL;
    moeq_recipe *r = NULL;
    MOEQ_TRY(moeq_recipe_bound_copy(r_in, &c->cfg, &r));
    const size_t nt = (size_t)(c->n_tensors ? c->n_tensors : 1);
    entry *e = MOEQ_CALLOC(nt, sizeof *e, "plan entries");
    moeq_plan *p = MOEQ_CALLOC(1, sizeof *p, "plan");
    moeq_qsettings *qs = MOEQ_CALLOC(nt, sizeof *qs, "plan settings");
    int *rules = MOEQ_CALLOC(nt, sizeof *rules, "plan rules"),
        *pols = MOEQ_CALLOC(nt, sizeof *pols, "plan policies");
    double *scores = MOEQ_CALLOC(nt, sizeof *scores, "plan scores");
    int *asked = MOEQ_CALLOC(nt, sizeof *asked, "plan groups asked"),
        *fitted = MOEQ_CALLOC(nt, sizeof *fitted, "plan groups fitted");
    int n = 0;
    moeq_status st = e && p && qs && rules && pols && scores && asked && fitted ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK)
        st = resolve_all(c, r, an, flags & MOEQ_PLAN_RULES_ONLY, budget, qs, rules, pols, scores, asked,
                         fitted);
    if (st == MOEQ_OK) st = make_entries(c, r, qs, rules, pols, scores, asked, fitted, e, &n);
    if (st == MOEQ_OK) qsort(e, (size_t)n, sizeof *e, cmp_entry);
    if (st == MOEQ_OK) st = fill_units(c, r, cm, e, n, p);
    if (st == MOEQ_OK && r->target == MOEQ_TARGET_GGUF && !(flags & MOEQ_PLAN_RULES_ONLY))
        st = moeq_gguf_plan_check(c, r, p); // the rules-only plan may hold what the budget replaces
    if (st == MOEQ_OK && r->target == MOEQ_TARGET_VLLM && !(flags & MOEQ_PLAN_RULES_ONLY))
        st = moeq_vllm_plan_check(c, r, p);
    moeq_free(&e);
    moeq_free(&qs), moeq_free(&rules), moeq_free(&pols), moeq_free(&scores);
    moeq_free(&asked), moeq_free(&fitted);
    moeq_recipe_free(&r);
    if (st != MOEQ_OK) moeq_plan_free(&p);
    *out = p;
    return st;
}

int moeq_plan_group_fallbacks(const moeq_plan *p, const moeq_catalog *c, char *buf, size_t cap) {
    enum { MAX_KINDS = 64 };
    typedef struct {
        int cls, rank, asked, used, n, first; // rank: 0 a group fallback, 1 a rank cap, 2 a format fallback
        int64_t R, C;
    } kind;
    kind k[MAX_KINDS];
    int nk = 0, total = 0;
    for (int i = 0; i < p->n_tensors; i++)
        for (int rk = 0; rk < 3; rk++) { // 0 group, 1 rank, 2 format
            const moeq_plan_tensor *pt = &p->t[i];
            const int asked = rk == 2 ? pt->format_asked : rk ? pt->rank_asked : pt->group_asked;
            const int used = rk == 2
                                 ? (pt->q.method == MOEQ_METHOD_NONE ? 0 : (int)moeq_qsettings_qtype(&pt->q))
                             : rk ? pt->q.rank
                                  : pt->q.group;
            if (!asked) continue;
            total++;
            const int cls = (int)c->t[pt->cat].c.cls;
            const int64_t R = rk == 1 ? pt->R : 0; // group and format fallbacks depend on C only
            int j = 0;
            while (j < nk && !(k[j].cls == cls && k[j].rank == rk && k[j].R == R && k[j].C == pt->C &&
                               k[j].asked == asked && k[j].used == used))
                j++;
            if (j == nk && nk < MAX_KINDS) k[nk++] = (kind){cls, rk, asked, used, 0, pt->cat, R, pt->C};
            if (j < nk) k[j].n++;
        }
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int j = 0; j < nk && n < cap; j++) {
        const char *cl = moeq_tclass_name((moeq_tclass)k[j].cls), *nm = c->t[k[j].first].name;
        if (k[j].rank == 2) {
            const moeq_qtype_traits *f = moeq_qtype_get(k[j].asked);
            n += (size_t)snprintf(
                buf + n, cap - n,
                "%s: %d tensor%s [*, %lld] (e.g. %s): %s needs rows of a multiple of %d, %s "
                "used (llama-quantize's fallback)\n",
                cl, k[j].n, k[j].n == 1 ? "" : "s", (long long)k[j].C, nm, f ? f->name : "?",
                f ? f->block : 0,
                k[j].used ? moeq_qtype_name(k[j].used) : "no quantization (F16: stored as it came)");
        } else if (k[j].rank)
            n += (size_t)snprintf(buf + n, cap - n,
                                  "%s: %d tensor%s [%lld, %lld] (e.g. %s): rank %d exceeds min(%lld, %lld), "
                                  "rank %d used\n",
                                  cl, k[j].n, k[j].n == 1 ? "" : "s", (long long)k[j].R, (long long)k[j].C,
                                  nm, k[j].asked, (long long)k[j].R, (long long)k[j].C, k[j].used);
        else
            n += (size_t)snprintf(
                buf + n, cap - n,
                "%s: %d tensor%s [*, %lld] (e.g. %s): group %d does not divide %lld, group %d "
                "used\n",
                cl, k[j].n, k[j].n == 1 ? "" : "s", (long long)k[j].C, nm, k[j].asked, (long long)k[j].C,
                k[j].used);
    }
    return total;
}

void moeq_plan_free(moeq_plan **pp) {
    if (!pp || !*pp) return;
    moeq_free(&(*pp)->t);
    moeq_free(&(*pp)->u);
    moeq_free(pp);
}

double moeq_plan_bpw_quantized(const moeq_plan *p) {
    return p->params_quantized ? p->bits_quantized / (double)p->params_quantized : 0.0;
}
