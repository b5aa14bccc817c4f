// policy.c: policies on top of the rule-resolved settings (see policy.h), in the same layer as the rules
// (recipe.c) whose matching and settings they reuse. Each scorer ranks its
// candidates by score, ties broken by catalog index (layer/expert order for experts), so the choice is
// total and deterministic. QuantMoE-Bench (arXiv 2406.08155) for the outlier/block/frequency scorers,
// MiLo (arXiv 2504.02658) for the rank rules; the budget solver is ours (solver.h).
#include "policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "target.h" // defines: moeq_gguf_fit_format, moeq_gguf_unservable (target: gguf)

moeq_status moeq_analysis_new(int n_tensors, int n_cand, int n_layers, moeq_analysis **out) {
    *out = NULL;
    moeq_analysis *a = MOEQ_CALLOC(1, sizeof *a, "analysis");
    if (!a) return MOEQ_ERR_NOMEM;
    a->n_tensors = n_tensors, a->n_cand = n_cand, a->n_layers = n_layers;
    // one block: kurtosis | outlier | fro2 | trial | block_err
    size_t nd = (size_t)n_tensors * (3 + (size_t)n_cand) + (size_t)n_layers;
    a->kurtosis = MOEQ_CALLOC(nd + 1, sizeof(double), "analysis data");
    if (!a->kurtosis) {
        moeq_free(&a);
        return MOEQ_ERR_NOMEM;
    }
    a->outlier = a->kurtosis + n_tensors;
    a->fro2 = a->outlier + n_tensors;
    a->trial = a->fro2 + n_tensors;
    a->block_err = a->trial + (size_t)n_tensors * (size_t)n_cand;
    for (int l = 0; l < n_layers; l++) a->block_err[l] = -1;
    *out = a;
    return MOEQ_OK;
}

void moeq_analysis_free(moeq_analysis **pa) {
    if (!pa || !*pa) return;
    moeq_free(&(*pa)->kurtosis);
    moeq_free(pa);
}

double *moeq_analysis_data(moeq_analysis *a, int64_t *n) {
    *n = (int64_t)a->n_tensors * (3 + a->n_cand) + a->n_layers;
    return a->kurtosis;
}

int moeq_policy_kurtosis_rank(double kurtosis, int threshold, int k, int max_kurtosis, int cap) {
    const double K = round(kurtosis);
    if (!(K >= threshold)) return 0; // NaN included
    if (K > max_kurtosis) return cap;
    const double r = ldexp(1.0, (int)K + k);
    return r > cap ? cap : (int)r;
}

int moeq_policy_top_count(double top, int percent, int n) {
    double x = percent ? floor(top / 100.0 * n + 0.5) : top;
    return x > n ? n : x < 0 ? 0 : (int)x;
}

double moeq_policy_stored_bits(const moeq_qsettings *q, const moeq_tensor_info *t) {
    return 8.0 * (double)moeq_plan_stored_bytes(q, t->shape[0], t->shape[1]);
}

static int quantized(const moeq_qsettings *q, const moeq_tensor_info *t) {
    return q->method != MOEQ_METHOD_NONE && moeq_tensor_quantizable(t);
}

// Candidate k over base, as the recipe asks it (before target gguf's row fallback).
static moeq_qsettings cand_overlay(const moeq_policy *p, int k, const moeq_qsettings *base) {
    moeq_qsettings s = *base;
    moeq_qsettings_apply(&s, &p->cand[k], p->cand_mask[k]);
    moeq_qsettings_normalize(&s);
    return s;
}

int moeq_policy_candidate(const moeq_policy *p, int k, const moeq_qsettings *base, const moeq_tensor_info *t,
                          moeq_qsettings *out) {
    moeq_qsettings s = cand_overlay(p, k, base);
    // target gguf: the candidate as it will be stored (llama-quantize's row fallback); never a grouped format
    if (p->gguf) moeq_gguf_fit_format(&s, t);
    *out = s;
    return !(p->gguf && moeq_gguf_unservable(&s, t)) && moeq_qsettings_fits(&s, t);
}

// Target gguf: the slot of a routed expert's stacked (layer, projection) in [0, L * MOEQ_PROJ_COUNT), -1
// for any other tensor (and for every tensor without the target).
static int stack_of(const moeq_catalog *c, const moeq_policy *p, const moeq_tensor_info *t) {
    if (!p->gguf || t->c.cls != MOEQ_TC_ROUTED_EXPERT || t->c.layer < 0 ||
        t->c.layer >= moeq_config_n_layers_total(&c->cfg))
        return -1;
    return t->c.layer * MOEQ_PROJ_COUNT + (int)t->c.proj;
}

// Applies a policy's `set` fields (as a recipe rule would).
static void overlay(moeq_qsettings *s, const moeq_policy *p) {
    moeq_qsettings_apply(s, &p->set, p->set_mask);
    moeq_qsettings_normalize(s);
}

// ---- needs ----

moeq_status moeq_policy_needs(const moeq_catalog *c, const moeq_recipe *r, const moeq_qsettings *q,
                              moeq_analysis_needs *nd) {
    memset(nd, 0, sizeof *nd);
    const int L = moeq_config_n_layers_total(&c->cfg);
    nd->tensor = MOEQ_CALLOC((size_t)c->n_tensors + 1, 1, "analysis needs");
    nd->block = MOEQ_CALLOC((size_t)L + 1, 1, "analysis needs");
    if (!nd->tensor || !nd->block) {
        moeq_analysis_needs_free(nd);
        return MOEQ_ERR_NOMEM;
    }
    for (int k = 0; k < r->n_policies; k++) {
        const moeq_policy *p = &r->policies[k];
        if (p->kind == MOEQ_POLICY_BUDGET) nd->budget = p;
        if (p->kind == MOEQ_POLICY_BLOCK && !nd->probe) nd->probe = p;
        for (int i = 0; i < c->n_tensors; i++) {
            const moeq_tensor_info *t = &c->t[i];
            if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t)) continue;
            if (p->kind == MOEQ_POLICY_OUTLIER || p->kind == MOEQ_POLICY_KURTOSIS_RANK)
                nd->tensor[i] |= MOEQ_NEED_STATS;
            if (p->kind == MOEQ_POLICY_BUDGET) nd->tensor[i] |= MOEQ_NEED_STATS | MOEQ_NEED_TRIALS;
            if (p->kind == MOEQ_POLICY_BLOCK && t->c.layer >= 0 && t->c.layer < L &&
                moeq_config_layer_is_moe(&c->cfg, t->c.layer))
                nd->block[t->c.layer] = 1;
        }
    }
    return MOEQ_OK;
}

void moeq_analysis_needs_free(moeq_analysis_needs *nd) {
    moeq_free(&nd->tensor);
    moeq_free(&nd->block);
}

// ---- ranking helpers ----

typedef struct {
    double score;
    int id;  // tie-break (ascending)
    int key; // what is picked (tensor, layer or expert slot)
} ranked;

static int cmp_ranked(const void *x, const void *y) {
    const ranked *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static moeq_status fail_policy(const moeq_recipe *r, const moeq_policy *p, const char *what) {
    return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: policy %s: %s", r->path, p->line, moeq_policy_kind_name(p->kind),
                     what);
}

static void mark(moeq_qsettings *q, int *decided, double *score, int i, int k, double s,
                 const moeq_policy *p) {
    overlay(&q[i], p);
    decided[i] = k;
    score[i] = s;
}

// Experts of the matched tensors, grouped as (layer, expert) slots.
static moeq_status pick_frequency(const moeq_catalog *c, const moeq_recipe *r, int k,
                                  const moeq_routing_counts *rc, moeq_qsettings *q, int *decided,
                                  double *score) {
    const moeq_policy *p = &r->policies[k];
    if (!rc) return fail_policy(r, p, "routing counts were not loaded");
    ranked *v = MOEQ_CALLOC((size_t)c->n_tensors + 1, sizeof *v, "frequency ranking");
    unsigned char *pick = MOEQ_CALLOC((size_t)rc->n_layers * (size_t)rc->n_experts + 1, 1, "frequency picks");
    if (!v || !pick) {
        moeq_free(&v), moeq_free(&pick);
        return MOEQ_ERR_NOMEM;
    }
    moeq_status st = MOEQ_OK;
    // every (layer, expert) slot that has a matched tensor, once
    int n = 0;
    unsigned char *seen = pick; // reuse: 2 = seen
    for (int i = 0; i < c->n_tensors && st == MOEQ_OK; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t)) continue;
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT) continue;
        if (p->gguf) {
            st = fail_policy(
                r, p,
                "under target gguf the routed experts of a (layer, projection) are one stacked "
                "tensor with one format, and this policy picks experts within a layer\n---> HINT: "
                "outlier, block or budget (they choose per (layer, projection) under this target)");
            break;
        }
        if (t->c.layer >= rc->n_layers || t->c.expert >= rc->n_experts || !rc->present[t->c.layer]) {
            char m[160];
            snprintf(m, sizeof m, "the routing counts have no entry for layer %d expert %d (%s)", t->c.layer,
                     t->c.expert, t->name);
            st = fail_policy(r, p, m);
            break;
        }
        int slot = t->c.layer * rc->n_experts + t->c.expert;
        if (seen[slot]) continue;
        seen[slot] = 2;
        v[n++] = (ranked){rc->c[slot], slot, slot};
    }
    if (st == MOEQ_OK && !n) st = fail_policy(r, p, "matches no routed expert");
    if (st == MOEQ_OK) {
        memset(pick, 0, (size_t)rc->n_layers * (size_t)rc->n_experts);
        qsort(v, (size_t)n, sizeof *v, cmp_ranked);
        if (p->per_layer) {
            for (int l = 0; l < rc->n_layers; l++) {
                int nl = 0, taken = 0;
                for (int j = 0; j < n; j++) nl += v[j].key / rc->n_experts == l;
                const int want = moeq_policy_top_count(p->top, p->top_percent, nl);
                for (int j = 0; j < n && taken < want; j++)
                    if (v[j].key / rc->n_experts == l) pick[v[j].key] = 1, taken++;
            }
        } else {
            const int want = moeq_policy_top_count(p->top, p->top_percent, n);
            for (int j = 0; j < want; j++) pick[v[j].key] = 1;
        }
        for (int i = 0; i < c->n_tensors; i++) {
            const moeq_tensor_info *t = &c->t[i];
            if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t) || t->c.cls != MOEQ_TC_ROUTED_EXPERT)
                continue;
            int slot = t->c.layer * rc->n_experts + t->c.expert;
            if (pick[slot]) mark(q, decided, score, i, k, rc->c[slot], p);
        }
    }
    moeq_free(&v), moeq_free(&pick);
    return st;
}

static moeq_status apply_outlier(const moeq_catalog *c, const moeq_recipe *r, int k, const moeq_analysis *an,
                                 moeq_qsettings *q, int *decided, double *score) {
    const moeq_policy *p = &r->policies[k];
    const int n_slots = moeq_config_n_layers_total(&c->cfg) * MOEQ_PROJ_COUNT;
    ranked *v = MOEQ_CALLOC((size_t)c->n_tensors + 1, sizeof *v, "outlier ranking");
    int *at = MOEQ_MALLOC(sizeof(int) * ((size_t)n_slots + 1), "outlier stacks");
    if (!v || !at) {
        moeq_free(&v), moeq_free(&at);
        return MOEQ_ERR_NOMEM;
    }
    // by_proj: each projection ranked on its own (max/mean grows with the row count, see the QuantMoE notes).
    // target gguf: the matched experts of a stacked (layer, projection) are one candidate, scored by their
    // largest outlier score (key -1 - slot), so the stack keeps one format.
    const int n_groups = p->by_proj ? MOEQ_PROJ_COUNT : 1;
    int total = 0;
    for (int g = 0; g < n_groups; g++) {
        int n = 0;
        for (int s = 0; s < n_slots; s++) at[s] = -1;
        for (int i = 0; i < c->n_tensors; i++) {
            const moeq_tensor_info *t = &c->t[i];
            if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t)) continue;
            if (p->by_proj && (int)t->c.proj != g) continue;
            const int s = stack_of(c, p, t);
            if (s >= 0 && at[s] >= 0) {
                if (an->outlier[i] > v[at[s]].score) v[at[s]].score = an->outlier[i];
                continue;
            }
            if (s >= 0) at[s] = n;
            v[n++] = (ranked){an->outlier[i], i, s >= 0 ? -1 - s : i};
        }
        total += n;
        qsort(v, (size_t)n, sizeof *v, cmp_ranked);
        const int want = moeq_policy_top_count(p->top, p->top_percent, n);
        for (int j = 0; j < want; j++) {
            if (v[j].key >= 0) {
                mark(q, decided, score, v[j].key, k, v[j].score, p);
                continue;
            }
            for (int i = 0; i < c->n_tensors; i++) { // every matched expert of the stack
                const moeq_tensor_info *t = &c->t[i];
                if (stack_of(c, p, t) == -1 - v[j].key && quantized(&q[i], t) &&
                    moeq_rule_matches(&p->match, t))
                    mark(q, decided, score, i, k, v[j].score, p);
            }
        }
    }
    moeq_free(&v), moeq_free(&at);
    return total ? MOEQ_OK : fail_policy(r, p, "matches no quantized tensor");
}

static moeq_status apply_block(const moeq_catalog *c, const moeq_recipe *r, int k, const moeq_analysis *an,
                               moeq_qsettings *q, int *decided, double *score) {
    const moeq_policy *p = &r->policies[k];
    const int L = an->n_layers;
    ranked *v = MOEQ_CALLOC((size_t)L + 1, sizeof *v, "block ranking");
    unsigned char *pick = MOEQ_CALLOC((size_t)L + 1, 1, "block picks");
    if (!v || !pick) {
        moeq_free(&v), moeq_free(&pick);
        return MOEQ_ERR_NOMEM;
    }
    int n = 0;
    for (int l = 0; l < L; l++)
        if (an->block_err[l] >= 0) v[n++] = (ranked){an->block_err[l], l, l};
    qsort(v, (size_t)n, sizeof *v, cmp_ranked);
    const int want = moeq_policy_top_count(p->top, p->top_percent, n);
    for (int j = 0; j < want; j++) pick[v[j].key] = 1;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t)) continue;
        if (t->c.layer >= 0 && t->c.layer < L && pick[t->c.layer])
            mark(q, decided, score, i, k, an->block_err[t->c.layer], p);
    }
    moeq_free(&v), moeq_free(&pick);
    return n ? MOEQ_OK
             : fail_policy(r, p, "no MoE block was probed (the forward pass supports Mixtral and Qwen MoE)");
}

static moeq_status apply_ranks(const moeq_catalog *c, const moeq_recipe *r, int k, const moeq_analysis *an,
                               const moeq_routing_counts *rc, moeq_qsettings *q, int *decided,
                               double *score) {
    const moeq_policy *p = &r->policies[k];
    if (p->kind == MOEQ_POLICY_FREQUENCY_RANK && !rc)
        return fail_policy(r, p, "routing counts were not loaded");
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (!quantized(&q[i], t) || !moeq_rule_matches(&p->match, t)) continue;
        int rank;
        double s;
        if (p->kind == MOEQ_POLICY_KURTOSIS_RANK) {
            s = an->kurtosis[i];
            rank = moeq_policy_kurtosis_rank(s, p->threshold, p->k, p->max_kurtosis, p->cap);
        } else {
            if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || t->c.layer >= rc->n_layers ||
                t->c.expert >= rc->n_experts || !rc->present[t->c.layer]) {
                char m[200];
                snprintf(m, sizeof m, "no routing count for %s (frequency_rank applies to routed experts)",
                         t->name);
                return fail_policy(r, p, m);
            }
            // MiLo: round(freq_e / sum freq * rank * E): the layer's mean rank stays `rank`
            const double *row = rc->c + (size_t)t->c.layer * (size_t)rc->n_experts;
            double sum = 0;
            for (int e = 0; e < rc->n_experts; e++) sum += row[e];
            s = row[t->c.expert];
            double x = sum > 0 ? floor(s / sum * p->rank * rc->n_experts + 0.5) : p->rank;
            rank = x > p->cap ? p->cap : (int)x;
        }
        const int64_t lim = t->shape[0] < t->shape[1] ? t->shape[0] : t->shape[1];
        if (rank > lim) rank = (int)lim;
        q[i].method = MOEQ_METHOD_MILO;
        q[i].rank = rank;
        decided[i] = k;
        score[i] = s;
        n++;
    }
    return n ? MOEQ_OK : fail_policy(r, p, "matches no quantized tensor");
}

// Target gguf: a quantized tensor the budget does not decide counts as it will be stored (row fallback); 0
// bits and *is_q = 0 when the fallback leaves it unquantized.
static double fixed_bits(const moeq_policy *p, const moeq_qsettings *q, const moeq_tensor_info *t,
                         int *is_q) {
    moeq_qsettings s = *q;
    if (p->gguf) moeq_gguf_fit_format(&s, t);
    *is_q = quantized(&s, t);
    return *is_q ? moeq_policy_stored_bits(&s, t) : 0;
}

// Items: matched tensors, or matched tensors grouped by unit (layer, class, expert). Target gguf: the
// matched routed experts of a (layer, projection) are one item (by: unit, of a layer), so that a stacked
// tensor gets one candidate.
static moeq_status apply_budget(const moeq_catalog *c, const moeq_recipe *r, int k, const moeq_analysis *an,
                                const moeq_qsettings *base, moeq_qsettings *q, int *decided, double *score,
                                moeq_budget_result *res) {
    const moeq_policy *p = &r->policies[k];
    const int m = p->n_cand;
    if (an->n_cand != m) return fail_policy(r, p, "the analysis has no trials for these candidates");
    const int n_slots = moeq_config_n_layers_total(&c->cfg) * MOEQ_PROJ_COUNT;
    int *item = MOEQ_MALLOC(sizeof(int) * ((size_t)c->n_tensors + 1), "budget items");
    int64_t *keys = MOEQ_MALLOC(sizeof(int64_t) * ((size_t)c->n_tensors + 1), "budget keys");
    int *key_item = MOEQ_MALLOC(sizeof(int) * ((size_t)c->n_tensors + 1), "budget keys");
    int *stack_item = MOEQ_MALLOC(sizeof(int) * ((size_t)n_slots + 1), "budget stacks");
    if (!item || !keys || !key_item || !stack_item) {
        moeq_free(&item), moeq_free(&keys), moeq_free(&key_item), moeq_free(&stack_item);
        return MOEQ_ERR_NOMEM;
    }
    int n = 0, n_keys = 0;
    double fixed = 0, params = 0;
    for (int i = 0; i < c->n_tensors; i++) item[i] = -1;
    for (int s = 0; s < n_slots; s++) stack_item[s] = -1;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (!moeq_tensor_quantizable(t)) continue;
        int in = quantized(&base[i], t) && moeq_rule_matches(&p->match, t);
        if (!in) {
            int is_q = 0;
            const double b = fixed_bits(p, &q[i], t, &is_q);
            if (is_q) fixed += b, params += (double)t->numel;
            continue;
        }
        params += (double)t->numel;
        const int st = stack_of(c, p, t);
        if (st >= 0) { // by: unit: one item per layer's experts (its gate, up and down stacks)
            const int slot = p->by_unit ? st - (int)t->c.proj : st;
            if (stack_item[slot] < 0) stack_item[slot] = n++;
            item[i] = stack_item[slot];
            continue;
        }
        if (!p->by_unit) {
            item[i] = n++;
            continue;
        }
        // catalog order does not group a unit's tensors: key them explicitly
        const int64_t key =
            ((int64_t)(t->c.layer + 1) << 32) | ((int64_t)t->c.cls << 24) | (int64_t)(t->c.expert + 1);
        int found = -1;
        for (int j = 0; j < n_keys && found < 0; j++)
            if (keys[j] == key) found = j;
        if (found < 0) keys[n_keys] = key, key_item[n_keys] = n++, found = n_keys++;
        item[i] = key_item[found];
    }
    moeq_free(&keys), moeq_free(&key_item), moeq_free(&stack_item);
    double *bits = MOEQ_CALLOC((size_t)n * (size_t)m + 1, sizeof(double), "budget bits");
    double *err = MOEQ_CALLOC((size_t)n * (size_t)m + 1, sizeof(double), "budget errors");
    int *choice = MOEQ_CALLOC((size_t)n + 1, sizeof(int), "budget choice");
    moeq_status st = (bits && err && choice) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK && !n) st = fail_policy(r, p, "matches no quantized tensor");
    // target gguf: a candidate in moeq's grouped formats could never be written
    int refused = 0;
    for (int i = 0; p->gguf && i < c->n_tensors && st == MOEQ_OK; i++)
        for (int j = 0; item[i] >= 0 && j < m && st == MOEQ_OK; j++) {
            moeq_qsettings s = cand_overlay(p, j, &base[i]);
            if (!moeq_gguf_unservable(&s, &c->t[i])) continue;
            char msg[512];
            snprintf(
                msg, sizeof msg,
                "candidate %d stores %s in moeq's grouped format %s, which llama.cpp cannot load (target "
                "gguf)\n---> HINT: candidates in llama.cpp's block types, e.g. {method: search, format: "
                "q3_K}",
                j + 1, c->t[i].name, moeq_qtype_name(moeq_qsettings_qtype(&s)));
            st = fail_policy(r, p, msg);
            refused = 1;
        }
    for (int i = 0; i < c->n_tensors && st == MOEQ_OK; i++) {
        if (item[i] < 0) continue;
        for (int j = 0; j < m; j++) {
            moeq_qsettings s;
            double *b = &bits[(size_t)item[i] * (size_t)m + (size_t)j],
                   *e = &err[(size_t)item[i] * (size_t)m + (size_t)j];
            const double tr = an->trial[(size_t)i * (size_t)m + (size_t)j];
            if (!moeq_policy_candidate(p, j, &base[i], &c->t[i], &s) || !isfinite(tr))
                *b = INFINITY;
            else if (isfinite(*b))
                *b += moeq_policy_stored_bits(&s, &c->t[i]), *e += tr;
        }
    }
    if (st == MOEQ_OK)
        st = moeq_budget_solve(n, m, bits, err, fixed, params, p->target_bits, p->tolerance, choice, res);
    if (st != MOEQ_OK && st != MOEQ_ERR_NOMEM && !refused) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s\n---> HINT: change \"bits\", add candidates, or use \"by: tensor\" for a finer budget",
                 moeq_error_detail());
        st = fail_policy(r, p, msg);
    }
    for (int i = 0; i < c->n_tensors && st == MOEQ_OK; i++) {
        if (item[i] < 0) continue;
        const int j = choice[item[i]];
        q[i] = cand_overlay(p, j, &base[i]); // as asked: the plan applies (and reports) the row fallback
        decided[i] = k;
        const double f2 = an->fro2[i], tr = an->trial[(size_t)i * (size_t)m + (size_t)j];
        score[i] = f2 > 0 ? sqrt(tr / f2) : 0; // predicted relative error of the chosen candidate
    }
    moeq_free(&item), moeq_free(&bits), moeq_free(&err), moeq_free(&choice);
    return st;
}

moeq_status moeq_policy_apply(const moeq_catalog *c, const moeq_recipe *r, const moeq_analysis *an,
                              const moeq_routing_counts *const *counts, moeq_qsettings *q, int *decided,
                              double *score, moeq_budget_result *budget) {
    for (int i = 0; i < c->n_tensors; i++) decided[i] = -1, score[i] = 0;
    if (!r->n_policies) return MOEQ_OK;
    if (moeq_recipe_needs_weights(r) && !an)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: the policies need the weights (an analyze pass)\n---> HINT: run on a "
                         "checkpoint with its shards (moeq plan/quantize under mpirun)",
                         r->path);
    moeq_qsettings *base = MOEQ_MALLOC(sizeof *base * ((size_t)c->n_tensors + 1), "rule settings");
    if (!base) return MOEQ_ERR_NOMEM;
    memcpy(base, q, sizeof *base * (size_t)c->n_tensors);
    moeq_budget_result dummy;
    moeq_status st = MOEQ_OK;
    for (int k = 0; k < r->n_policies && st == MOEQ_OK; k++) {
        const moeq_policy *p = &r->policies[k];
        const moeq_routing_counts *rc = counts ? counts[k] : NULL;
        switch (p->kind) {
        case MOEQ_POLICY_OUTLIER:
            st = apply_outlier(c, r, k, an, q, decided, score);
            break;
        case MOEQ_POLICY_BLOCK:
            st = apply_block(c, r, k, an, q, decided, score);
            break;
        case MOEQ_POLICY_FREQUENCY:
            st = pick_frequency(c, r, k, rc, q, decided, score);
            break;
        case MOEQ_POLICY_KURTOSIS_RANK:
        case MOEQ_POLICY_FREQUENCY_RANK:
            st = apply_ranks(c, r, k, an, rc, q, decided, score);
            break;
        case MOEQ_POLICY_BUDGET:
            st = apply_budget(c, r, k, an, base, q, decided, score, budget ? budget : &dummy);
            break;
        default:
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "policy kind %d", (int)p->kind);
        }
    }
    moeq_free(&base);
    return st;
}
