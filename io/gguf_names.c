// gguf_names.c: TEMPORARY stand-in (branch imatrix) for gguf-export's name map: the linear weights of the
// GQA families (what the importance matrix names), from the family's templates.
#include "gguf_names.h"

#include <stdio.h>
#include <string.h>

#include "arch_desc.h"

static const char *proj_suffix(const moeq_arch_proj *t, const char *s) {
    for (int k = 0; k < 3; k++)
        if (t[k].name && !strcmp(t[k].name, s))
            return t[k].proj == MOEQ_PROJ_GATE ? "gate" : t[k].proj == MOEQ_PROJ_UP ? "up" : "down";
    return NULL;
}

moeq_status moeq_gguf_tensor_name(const moeq_model_config *cfg, const char *hf, char *out, size_t cap,
                                  int *expert) {
    *expert = -1;
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    int l = -1, n = 0;
    if (!d || sscanf(hf, "model.layers.%d.%n", &l, &n) != 1 || n == 0) return MOEQ_GGUF_NAME_NONE;
    const char *r = hf + n;
    char a[128], b[64];
    static const char *attn[][2] = {{"self_attn.q_proj.weight", "attn_q"},
                                    {"self_attn.k_proj.weight", "attn_k"},
                                    {"self_attn.v_proj.weight", "attn_v"},
                                    {"self_attn.o_proj.weight", "attn_output"}};
    for (int k = 0; k < 4; k++)
        if (!strcmp(r, attn[k][0])) return snprintf(out, cap, "blk.%d.%s.weight", l, attn[k][1]), MOEQ_OK;
    snprintf(a, sizeof a, "%s.weight", d->router);
    if (!strcmp(r, a)) return snprintf(out, cap, "blk.%d.ffn_gate_inp.weight", l), MOEQ_OK;
    if (d->shared_gate && (snprintf(a, sizeof a, "%s.weight", d->shared_gate), !strcmp(r, a)))
        return snprintf(out, cap, "blk.%d.ffn_gate_inp_shexp.weight", l), MOEQ_OK;
    int e = -1, m = 0;
    snprintf(a, sizeof a, "%s.%%d.%%63[^.].weight%%n", d->experts);
    if (sscanf(r, a, &e, b, &m) == 2 && m && !r[m] && proj_suffix(d->expert_proj, b)) {
        *expert = e;
        return snprintf(out, cap, "blk.%d.ffn_%s_exps.weight", l, proj_suffix(d->expert_proj, b)), MOEQ_OK;
    }
    const char *pre[2] = {d->shared_expert, d->dense_mlp}, *suf[2] = {"_shexp", ""};
    for (int k = 0; k < 2; k++) {
        if (!pre[k]) continue;
        snprintf(a, sizeof a, "%s.%%63[^.].weight%%n", pre[k]);
        m = 0;
        if (sscanf(r, a, b, &m) == 1 && m && !r[m] && proj_suffix(d->mlp_proj, b))
            return snprintf(out, cap, "blk.%d.ffn_%s%s.weight", l, proj_suffix(d->mlp_proj, b), suf[k]),
                   MOEQ_OK;
    }
    return MOEQ_GGUF_NAME_NONE;
}
