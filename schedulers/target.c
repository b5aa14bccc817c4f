// target.c: `target: gguf` (see target.h): llama-quantize's row fallback, the refusals on a built plan, and
// the GGUF file's types and size. The fallback table is read from src/llama-quant.cpp (tensor_type_fallback)
// of the llama.cpp that llama-cpp-python 0.3.36 bundles; the sizes follow ggml's GGUF layout (docs/gguf.md:
// header, key/values, tensor infos, data aligned to 32 bytes). Not here: applying policies per (layer,
// projection) (policy.c), printing (pipeline/cmd_plan.c), writing the file (`moeq export`).
#include "target.h"

#include <stdio.h>
#include <string.h>

#include "policy.h" // defines: moeq_policy_kind_name

int moeq_gguf_fallback(int qt, int64_t C) {
    const moeq_qtype_traits *f = moeq_qtype_get(qt);
    if (!f || !(f->family & MOEQ_QFAMILY_GGML) || !f->block || C % f->block == 0) return qt;
    int fb;
    switch (qt) {
    case MOEQ_QTYPE_IQ4_XS:
        fb = MOEQ_QTYPE_IQ4_NL;
        break;
    case MOEQ_QTYPE_Q2_K:
    case MOEQ_QTYPE_Q3_K:
        fb = MOEQ_QTYPE_Q4_0;
        break;
    case MOEQ_QTYPE_Q4_K:
        fb = MOEQ_QTYPE_Q5_0;
        break;
    case MOEQ_QTYPE_Q5_K:
        fb = MOEQ_QTYPE_Q5_1;
        break;
    case MOEQ_QTYPE_Q6_K:
        fb = MOEQ_QTYPE_Q8_0;
        break;
    default:
        fb = qt;
        break; // a 32-weight type: no smaller block to demote to
    }
    const moeq_qtype_traits *g = moeq_qtype_get(fb);
    return g && C % g->block == 0 ? fb : MOEQ_QTYPE_INVALID; // "F16"
}

int moeq_gguf_fit_format(moeq_qsettings *s, const moeq_tensor_info *t) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    if (!m || !m->quantizes || !moeq_tensor_quantizable(t)) return 0;
    const int asked = (int)moeq_qsettings_qtype(s);
    const int fb = moeq_gguf_fallback(asked, t->shape[1]);
    if (fb == asked) return 0;
    if (fb == MOEQ_QTYPE_INVALID) {
        s->method = MOEQ_METHOD_NONE;
    } else {
        s->format = (moeq_qtype)fb;
        s->bits = moeq_qtype_get(fb)->bits;
        if (m->supports && !m->supports(fb)) s->method = MOEQ_METHOD_RTN; // search: K-quants only
    }
    moeq_qsettings_normalize(s);
    return asked;
}

int moeq_gguf_unservable(const moeq_qsettings *s, const moeq_tensor_info *t) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    if (!m || !m->quantizes || !moeq_tensor_quantizable(t)) return 0;
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qsettings_qtype(s));
    return !f || !(f->family & MOEQ_QFAMILY_GGML);
}

// ---- types and bytes in the file ----

int moeq_gguf_in_file(const moeq_catalog *c, const moeq_tensor_info *t) {
    return t->c.cls != MOEQ_TC_FP8_SCALE && !(t->c.layer >= c->cfg.n_layers);
}

int moeq_gguf_plan_type(const moeq_catalog *c, const moeq_plan_tensor *pt) {
    const moeq_tensor_info *t = &c->t[pt->cat];
    if (pt->q.method != MOEQ_METHOD_NONE) return moeq_qtype_ggml_id(moeq_qsettings_qtype(&pt->q));
    if (t->ndim < 2 || t->c.cls == MOEQ_TC_NORM || t->c.cls == MOEQ_TC_ROUTER) return MOEQ_GGML_TYPE_F32;
    switch (t->dtype) {
    case MOEQ_DTYPE_F16:
        return MOEQ_GGML_TYPE_F16;
    case MOEQ_DTYPE_BF16:
    case MOEQ_DTYPE_F8_E4M3:
    case MOEQ_DTYPE_F8_E5M2:
        return MOEQ_GGML_TYPE_BF16;
    default:
        return MOEQ_GGML_TYPE_F32;
    }
}

const char *moeq_gguf_plan_type_name(int g) {
    return g >= 0 ? moeq_ggml_type_name((uint32_t)g) : "?";
}

uint64_t moeq_gguf_plan_bytes(const moeq_catalog *c, const moeq_plan_tensor *pt) {
    const moeq_tensor_info *t = &c->t[pt->cat];
    const int g = moeq_gguf_plan_type(c, pt);
    if (pt->q.method != MOEQ_METHOD_NONE) {
        const int64_t rb = moeq_qtype_row_bytes(moeq_qsettings_qtype(&pt->q), pt->C);
        return rb > 0 ? (uint64_t)rb * (uint64_t)pt->R : 0;
    }
    return (uint64_t)t->numel * (g == MOEQ_GGML_TYPE_F32 ? 4u : 2u);
}

static uint64_t pad32(uint64_t n) {
    return (n + 31) / 32 * 32;
}

// Slot of a routed expert's stack (layer, proj) in an array of n_layers_total x MOEQ_PROJ_COUNT; -1 if none.
static int stack_slot(const moeq_catalog *c, const moeq_tensor_info *t) {
    const int L = moeq_config_n_layers_total(&c->cfg);
    if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || t->c.layer < 0 || t->c.layer >= L) return -1;
    return t->c.layer * MOEQ_PROJ_COUNT + (int)t->c.proj;
}

void moeq_gguf_plan_estimate(const moeq_catalog *c, const moeq_plan *p, moeq_gguf_estimate *e) {
    memset(e, 0, sizeof *e);
    const int L = moeq_config_n_layers_total(&c->cfg);
    uint64_t *stack = MOEQ_CALLOC((size_t)L * MOEQ_PROJ_COUNT + 1, sizeof *stack, "gguf stacks");
    uint64_t infos = 0, raw = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_tensor_info *t = &c->t[pt->cat];
        if (!moeq_gguf_in_file(c, t)) continue; // FP8 scales consumed (BF16 weights), MTP layers dropped
        const uint64_t b = moeq_gguf_plan_bytes(c, pt);
        raw += b;
        e->params += t->numel;
        e->n_fallbacks += pt->format_asked != 0;
        e->n_lora += moeq_qsettings_rank(&pt->q) > 0;
        const int s = stack ? stack_slot(c, t) : -1;
        if (s >= 0) {
            if (!stack[s]) e->n_tensors++, e->n_stacks++, infos += 8 + 32 + 4 + 3 * 8 + 4 + 8;
            stack[s] += b;
            continue;
        }
        e->n_tensors++;
        infos += 8 + 32 + 4 + 8 * (uint64_t)(t->ndim > 0 ? t->ndim : 1) + 4 + 8; // name ~32 chars
        e->tensor_bytes += pad32(b);
    }
    for (int s = 0; stack && s < L * MOEQ_PROJ_COUNT; s++) e->tensor_bytes += pad32(stack[s]);
    moeq_free(&stack);
    const uint64_t vocab = c->cfg.vocab > 0 ? (uint64_t)c->cfg.vocab : 0;
    e->header_bytes = pad32(24 + 2048 + 40 * vocab + infos);
    e->file_bytes = e->header_bytes + e->tensor_bytes;
    e->bits_per_weight = e->params ? 8.0 * (double)raw / (double)e->params : 0;
}

// ---- the refusals ----

const char *moeq_target_decider(const moeq_recipe *r, const moeq_plan_tensor *pt, char *buf, size_t cap) {
    if (pt->policy >= 0 && pt->policy < r->n_policies)
        snprintf(buf, cap, "policy %d (%s) at %s:%d", pt->policy + 1,
                 moeq_policy_kind_name(r->policies[pt->policy].kind), r->path, r->policies[pt->policy].line);
    else if (pt->rule >= 0 && pt->rule < r->n_rules)
        snprintf(buf, cap, "rule %d at %s:%d", pt->rule + 1, r->path, r->rules[pt->rule].line);
    else
        snprintf(buf, cap, "the defaults of %s", r->path);
    return buf;
}

const char *moeq_target_first_names(const moeq_catalog *c, const moeq_plan *p, const unsigned char *hit,
                                    char *buf, size_t cap) {
    size_t n = 0;
    int k = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->n_tensors && n < cap; i++) {
        if (!hit[i]) continue;
        if (k++ == 3) {
            snprintf(buf + n, cap - n, ", ...");
            break;
        }
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k > 1 ? ", " : "", c->t[p->t[i].cat].name);
    }
    return buf;
}

static const char *const stack_names[MOEQ_PROJ_COUNT] = {
    [MOEQ_PROJ_GATE] = "ffn_gate_exps", [MOEQ_PROJ_UP] = "ffn_up_exps", [MOEQ_PROJ_DOWN] = "ffn_down_exps"};

moeq_status moeq_gguf_plan_check(const moeq_catalog *c, const moeq_recipe *r, const moeq_plan *p) {
    const int n = p->n_tensors;
    const int L = moeq_config_n_layers_total(&c->cfg);
    unsigned char *hit = MOEQ_CALLOC((size_t)n + 1, 1, "gguf check");
    int *first = MOEQ_MALLOC(sizeof(int) * ((size_t)L * MOEQ_PROJ_COUNT + 1), "gguf stacks");
    if (!hit || !first) {
        moeq_free(&hit), moeq_free(&first);
        return MOEQ_ERR_NOMEM;
    }
    char names[768], by[512];
    moeq_status st = MOEQ_OK;
    // 1. moeq's grouped and integer formats (no GGUF type)
    int cnt = 0, f0 = -1;
    for (int i = 0; i < n; i++)
        if ((hit[i] = (unsigned char)(moeq_gguf_in_file(c, &c->t[p->t[i].cat]) &&
                                      moeq_gguf_unservable(&p->t[i].q, &c->t[p->t[i].cat]))) &&
            !cnt++)
            f0 = i;
    if (cnt) {
        const moeq_plan_tensor *pt = &p->t[f0];
        st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                       "%s: target gguf: %d tensor%s would be stored in moeq's %s format %s (method %s), "
                       "which llama.cpp cannot load: %s (the first decided by %s)\n---> HINT: give them a "
                       "llama.cpp block type (method search with format q2_K .. q6_K, or method rtn with any "
                       "format of `moeq plan --help-recipe` from q4_0 on), or method none",
                       r->path, cnt, cnt == 1 ? "" : "s",
                       moeq_qtype_get(moeq_qsettings_qtype(&pt->q))->family & MOEQ_QFAMILY_INT ? "integer"
                                                                                               : "grouped",
                       moeq_qtype_name(moeq_qsettings_qtype(&pt->q)), moeq_method_name(pt->q.method),
                       moeq_target_first_names(c, p, hit, names, sizeof names),
                       moeq_target_decider(r, pt, by, sizeof by));
    }
    // 2. a quantized router; a quantized MLA kv_b_proj
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_tensor_info *t = &c->t[pt->cat];
        if (pt->q.method == MOEQ_METHOD_NONE || !moeq_gguf_in_file(c, t)) continue;
        if (t->c.cls == MOEQ_TC_ROUTER)
            st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                           "%s: target gguf: the router %s is quantized (decided by %s), but llama.cpp's "
                           "ffn_gate_inp stays F32 (convert_hf_to_gguf writes it F32, llama-quantize never "
                           "quantizes it)\n---> HINT: no rule for class router under this target",
                           r->path, t->name, moeq_target_decider(r, pt, by, sizeof by));
        else if (t->c.cls == MOEQ_TC_ATTENTION && t->c.proj == MOEQ_PROJ_KV_B)
            st = MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: target gguf: the MLA kv_b_proj %s is quantized (decided by %s), but llama.cpp's "
                "deepseek2 loads it split per head with the k rows transposed (attn_k_b, attn_v_b), "
                "which moves weights across the quantization blocks\n---> HINT: a rule {class: "
                "attention, proj: kv_b} -> {method: none} (it is small)",
                r->path, t->name, moeq_target_decider(r, pt, by, sizeof by));
    }
    // 3. compensators on routed experts
    cnt = 0, f0 = -1;
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        hit[i] = c->t[pt->cat].c.cls == MOEQ_TC_ROUTED_EXPERT && moeq_qsettings_rank(&pt->q) > 0 &&
                 moeq_gguf_in_file(c, &c->t[pt->cat]);
        if (hit[i] && !cnt++) f0 = i;
    }
    if (st == MOEQ_OK && cnt)
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: target gguf: %d routed expert tensor%s have a MiLo compensator (rank %d, decided by "
            "%s): %s. llama.cpp applies a LoRA adapter to 2-D weights, not to the stacked expert "
            "tensors (ffn_*_exps), so the compensator could not be served\n---> HINT: rank 0 on "
            "routed experts (or another method); rank > 0 on attention, shared experts and dense "
            "MLPs is allowed (exported as a LoRA adapter)",
            r->path, cnt, cnt == 1 ? "" : "s", p->t[f0].q.rank,
            moeq_target_decider(r, &p->t[f0], by, sizeof by),
            moeq_target_first_names(c, p, hit, names, sizeof names));
    // 4. one type per stacked (layer, projection)
    for (int s = 0; s < L * MOEQ_PROJ_COUNT; s++) first[s] = -1;
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        const int s = stack_slot(c, t);
        if (s < 0 || !moeq_gguf_in_file(c, t)) continue;
        if (first[s] < 0) {
            first[s] = i;
            continue;
        }
        const moeq_plan_tensor *a = &p->t[first[s]], *b = &p->t[i];
        const int ta = moeq_gguf_plan_type(c, a), tb = moeq_gguf_plan_type(c, b);
        if (ta == tb) continue;
        char by2[512];
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: target gguf: the routed experts of layer %d, projection %s are one stacked tensor "
            "in GGUF (blk.%d.%s) with one type, but %s is %s (decided by %s) and %s is %s (decided "
            "by %s)\n---> HINT: one format for all experts of a (layer, projection): rules that "
            "match class, proj and layers, not single experts (policies and the budget solver "
            "choose per (layer, projection) under this target; frequency cannot)",
            r->path, t->c.layer, moeq_proj_name(t->c.proj), t->c.layer,
            stack_names[t->c.proj] ? stack_names[t->c.proj] : "ffn_exps", c->t[a->cat].name,
            moeq_gguf_plan_type_name(ta), moeq_target_decider(r, a, by, sizeof by), c->t[b->cat].name,
            moeq_gguf_plan_type_name(tb), moeq_target_decider(r, b, by2, sizeof by2));
    }
    moeq_free(&hit), moeq_free(&first);
    return st;
}
