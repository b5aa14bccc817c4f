// eval_calib.c: the calibration section of `moeq eval`'s report for an artifact made with --calib (GPTQ):
// the calibration set it recorded, the inputs each calibrated tensor's Hessian summed (/calib_inputs), the
// tokens that reached each routed expert (the inputs of its gate/up projections: one per token and top-k
// slot), and the tensors that had too few for GPTQ and were quantized by the weight-space fallback.
#include "eval_calib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib_pass.h" // defines: moeq_calib_class_of
#include "moeq_worker.h"

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

moeq_status moeq_eval_calib_report(const ev_state *s, FILE *table, json_t *root) {
    if (!s->info->calib || !s->info->calib[0]) return MOEQ_OK;
    const moeq_plan *p = s->plan;
    int32_t *v =
        MOEQ_MALLOC(sizeof(int32_t) * (size_t)(p->n_tensors ? p->n_tensors : 1), "calibration inputs");
    int32_t *ex = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(p->n_tensors ? p->n_tensors : 1), "expert tokens");
    if (!v || !ex) {
        moeq_free(&v), moeq_free(&ex);
        return MOEQ_ERR_NOMEM;
    }
    moeq_status st = moeq_artifact_read_calib_inputs(s->o->artifact, v, p->n_tensors);
    if (st == MOEQ_ERR_NOT_FOUND) { // calibrated but never sealed with the counts: say so, no figures
        moeq_error_clear();
        if (table) printf("  calibration: %s (per-tensor input counts not recorded)\n", s->info->calib);
        if (root) json_object_set_new(root, "calibration", json_pack("{s:s}", "set", s->info->calib));
        moeq_free(&v), moeq_free(&ex);
        return MOEQ_OK;
    }
    json_t *experts = root ? json_array() : NULL, *fallback = root ? json_array() : NULL;
    int n_ex = 0, n_fb = 0, n_cal = 0, last_l = -2, last_c = -1;
    for (int i = 0; i < p->n_tensors && st == MOEQ_OK; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_method_traits *mt = moeq_method_get(pt->q.method);
        if (!mt || !mt->needs_calibration) continue;
        n_cal++;
        const moeq_artifact_entry *e = &s->e[i];
        if (v[i] < pt->q.gptq_min_inputs) {
            n_fb++;
            if (fallback)
                json_array_append_new(fallback,
                                      json_pack("{s:s,s:i,s:s}", "tensor", e->name, "inputs", (int)v[i],
                                                "method", moeq_method_name(moeq_method_fallback(&pt->q))));
        }
        // a routed expert's tokens: the inputs of its gate/up projections (counted once per expert)
        int layer = -1;
        const int cls = moeq_calib_class_of(&s->cat->cfg, e->name, &layer);
        if (cls >= MOEQ_CIN_EXPERT0 && (cls - MOEQ_CIN_EXPERT0) % 2 == 0 &&
            (layer != last_l || cls != last_c)) {
            last_l = layer, last_c = cls;
            ex[n_ex++] = v[i];
            if (experts)
                json_array_append_new(experts, json_pack("{s:i,s:i,s:i}", "layer", layer, "expert",
                                                         (cls - MOEQ_CIN_EXPERT0) / 2, "tokens", (int)v[i]));
        }
    }
    if (table) {
        printf("  calibration: %s; %d calibrated tensors", s->info->calib, n_cal);
        if (n_ex) {
            qsort(ex, (size_t)n_ex, sizeof *ex, cmp_i32);
            printf("; tokens per routed expert: min %d, median %d, max %d over %d experts", (int)ex[0],
                   (int)ex[n_ex / 2], (int)ex[n_ex - 1], n_ex);
        }
        printf("; %d fell back to the weight-space quantizer (fewer inputs than gptq.min_inputs)\n", n_fb);
        for (int i = 0, shown = 0; i < p->n_tensors && shown < 8; i++) {
            const moeq_method_traits *mt = moeq_method_get(p->t[i].q.method);
            if (!mt || !mt->needs_calibration || v[i] >= p->t[i].q.gptq_min_inputs) continue;
            printf("    fallback: %s (%d inputs): %s\n", s->e[i].name, (int)v[i],
                   moeq_method_name(moeq_method_fallback(&p->t[i].q)));
            shown++;
        }
    }
    if (root)
        json_object_set_new(root, "calibration",
                            json_pack("{s:s,s:I,s:i,s:o,s:o}", "set", s->info->calib, "xxh3",
                                      (json_int_t)s->info->calib_xxh3, "calibrated_tensors", n_cal,
                                      "expert_tokens", experts, "fallback", fallback));
    moeq_free(&v), moeq_free(&ex);
    return st;
}
