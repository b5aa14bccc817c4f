// target_vllm.c: `target: vllm` (target.h): the plan refusals that keep an artifact servable by vLLM through
// `moeq export --format compressed-tensors`. Pure function of the catalog, the recipe and the plan. The
// constraints, read in vLLM's source (vllm/model_executor/layers/quantization/compressed_tensors/):
// compressed_tensors_wNa16.py's WNA16_SUPPORTED_BITS = [4, 8] (its MoE methods, Marlin MoE and moe_wna16,
// import it), compressed_tensors_moe.py's one scheme per FusedMoE layer (checked on expert 0's gate, up and
// down: "All MoE projections need to have same quantization scheme"), the fused w13 / w2 weights whose
// groups run along the hidden size and the expert FFN width. docs/EXPORT.md lists them with the sources.
#include <stdio.h>
#include <string.h>

#include "alloc.h"  // defines: MOEQ_CALLOC, moeq_free
#include "target.h" // defines: moeq_target_decider, moeq_target_first_names

#define HINT "\n---> HINT: "

static int vllm_bits_ok(const moeq_qsettings *q) {
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qsettings_qtype(q));
    return tr && (tr->family & MOEQ_QFAMILY_INT) && (tr->bits == 4 || tr->bits == 8);
}

moeq_status moeq_vllm_plan_check(const moeq_catalog *c, const moeq_recipe *r, const moeq_plan *p) {
    const int n = p->n_tensors, L = moeq_config_n_layers_total(&c->cfg);
    unsigned char *hit = MOEQ_CALLOC((size_t)n + 1, 1, "vllm check");
    int *first = MOEQ_CALLOC((size_t)L + 1, sizeof *first, "vllm layers");
    if (!hit || !first) {
        moeq_free(&hit), moeq_free(&first);
        return MOEQ_ERR_NOMEM;
    }
    char names[768], by[512], by2[512];
    moeq_status st = MOEQ_OK;
    // 1. integer formats of 4 or 8 bits
    int cnt = 0, f0 = -1;
    for (int i = 0; i < n; i++)
        if ((hit[i] = p->t[i].q.method != MOEQ_METHOD_NONE && !vllm_bits_ok(&p->t[i].q)) && !cnt++) f0 = i;
    if (cnt)
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: target vllm: %d tensor%s would be stored in format %s, which vLLM's "
            "compressed-tensors kernels do not run (integer weights of 4 or 8 bits: "
            "WNA16_SUPPORTED_BITS): %s (the first decided by %s)" HINT
            "format i4, i4s, i8 or i8s (asymmetric with an integer zero, or symmetric), or method none",
            r->path, cnt, cnt == 1 ? "" : "s", moeq_qtype_name(moeq_qsettings_qtype(&p->t[f0].q)),
            moeq_target_first_names(c, p, hit, names, sizeof names),
            moeq_target_decider(r, &p->t[f0], by, sizeof by));
    // 2. a quantized router
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        if (p->t[i].q.method != MOEQ_METHOD_NONE && t->c.cls == MOEQ_TC_ROUTER)
            st =
                MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                          "%s: target vllm: the router %s is quantized (decided by %s), but vLLM builds the "
                          "MoE gate without a quantization config" HINT "no rule for class router under this "
                          "target",
                          r->path, t->name, moeq_target_decider(r, &p->t[i], by, sizeof by));
    }
    // 3. one setting per MoE layer (all experts, all projections); its group divides H and the FFN width
    for (int l = 0; l < L; l++) first[l] = -1;
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_plan_tensor *b = &p->t[i];
        const moeq_tensor_info *t = &c->t[b->cat];
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || t->c.layer < 0 || t->c.layer >= L) continue;
        if (first[t->c.layer] < 0) {
            first[t->c.layer] = i;
            const int64_t H = c->cfg.hidden, I = c->cfg.moe_intermediate;
            const int G = b->q.group;
            if (b->q.method != MOEQ_METHOD_NONE && G > 0 && (H % G || I % G) && !(G == t->shape[1]))
                st = MOEQ_FAIL(
                    MOEQ_ERR_UNSUPPORTED,
                    "%s: target vllm: group %d of %s (decided by %s) does not divide both the hidden "
                    "size %lld and the expert FFN width %lld: vLLM's fused w13 and w2 of a layer "
                    "take one group along both" HINT "a group dividing both (32, 64, 128), or group: channel",
                    r->path, G, t->name, moeq_target_decider(r, b, by, sizeof by), (long long)H,
                    (long long)I);
            continue;
        }
        const moeq_plan_tensor *a = &p->t[first[t->c.layer]];
        const int same = a->q.method == MOEQ_METHOD_NONE
                             ? b->q.method == MOEQ_METHOD_NONE
                             : b->q.method != MOEQ_METHOD_NONE &&
                                   moeq_qsettings_qtype(&a->q) == moeq_qsettings_qtype(&b->q) &&
                                   (a->q.group == b->q.group ||
                                    (a->q.group == c->t[a->cat].shape[1] && b->q.group == t->shape[1]));
        if (!same)
            st =
                MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                          "%s: target vllm: the routed experts of layer %d are one FusedMoE in vLLM with one "
                          "quantization scheme, but %s is %s g%d (decided by %s) and %s is %s g%d (decided "
                          "by %s)" HINT "one format and group for every expert and projection of a layer: "
                          "rules that match class routed_expert and layers, not projections or experts",
                          r->path, t->c.layer, c->t[a->cat].name,
                          a->q.method == MOEQ_METHOD_NONE ? "unquantized"
                                                          : moeq_qtype_name(moeq_qsettings_qtype(&a->q)),
                          a->q.group, moeq_target_decider(r, a, by, sizeof by), t->name,
                          b->q.method == MOEQ_METHOD_NONE ? "unquantized"
                                                          : moeq_qtype_name(moeq_qsettings_qtype(&b->q)),
                          b->q.group, moeq_target_decider(r, b, by2, sizeof by2));
    }
    moeq_free(&hit), moeq_free(&first);
    return st;
}
