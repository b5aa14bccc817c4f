// numerics.c: the numerics probe (numerics.h): MiLo through the backend's one-tensor pipeline on fixed
// synthetic weights, every output bit hashed. The weights are moeq_rng_expert_weights (a counter-based
// generator: the same values on every machine), the settings fixed here, never taken from a recipe, so that
// the fingerprint of a machine does not depend on what is being quantized.
#include "numerics.h"

#include <cblas.h> // defines: openblas_get_config, openblas_get_corename
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "method.h" // defines: moeq_qsettings_default, moeq_tensor_seed
#include "quant.h"  // defines: moeq_qmat_alloc
#include "rng.h"    // defines: moeq_rng_expert_weights
#include "tensor.h" // defines: moeq_tq_params, moeq_tq_out

// The probe's shapes (R, C, rank): one of a real expert's proportions, one ragged (R not a multiple of any
// kernel's panel, C of 64 only), one thin.
static const struct { int64_t R, C, rank; } probe_shapes[] = {{256, 512, 16}, {72, 320, 8}, {200, 64, 4}};

const char *moeq_numerics_blas_config(void) {
    const char *c = openblas_get_config();
    return c ? c : "";
}

const char *moeq_numerics_blas_core(void) {
    const char *c = openblas_get_corename();
    return c ? c : "";
}

void moeq_numerics_hex(uint64_t fingerprint, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)fingerprint);
}

// One shape: quantize with MiLo (3 bits, group 64, int3 factors, the default rounds) and hash what comes out.
static moeq_status probe_one(const moeq_kernel_ops *ops, int64_t R, int64_t C, int64_t rank,
                             XXH3_state_t *h) {
    float *w = NULL, *work_w = NULL, *recon = NULL, *u = NULL, *v = NULL;
    moeq_qmat q = {0};
    moeq_status st = MOEQ_ERR_NOMEM;
    const size_t n = (size_t)R * (size_t)C;
    if (!(w = malloc(n * sizeof *w)) || !(u = malloc((size_t)(R * rank) * sizeof *u)) ||
        !(v = malloc((size_t)(rank * C) * sizeof *v)))
        goto done;
    if (ops->tensor_needs_work && (!(work_w = malloc(n * sizeof *w)) || !(recon = malloc(n * sizeof *w))))
        goto done;
    moeq_rng_expert_weights(w, R, C, 0x6e756d6572696373ull /* "numerics" */ ^ (uint64_t)(R * 131 + C), 0.02f);
    moeq_qsettings s = moeq_qsettings_default();
    s.method = MOEQ_METHOD_MILO;
    s.bits = 3;
    s.group = 64;
    s.rank = (int)rank;
    s.compensator = MOEQ_FACTOR_INT3;
    moeq_qsettings_normalize(&s);
    if ((st = moeq_qmat_alloc(&q, s.bits, R, C, s.group)) != MOEQ_OK) goto done;
    const moeq_raw_tensor src = {.dtype = MOEQ_DTYPE_F32, .data = w, .R = R, .C = C};
    const moeq_tq_params p = {.s = s, .seed = moeq_tensor_seed("moeq.numerics.probe", s.seed)};
    const moeq_tq_work work = {.w = work_w, .recon = recon};
    moeq_tq_out out = {.q = &q, .u = u, .v = v};
    if ((st = ops->tensor_quantize(&src, &p, &work, &out)) != MOEQ_OK) goto done;
    XXH3_64bits_update(h, q.codes, (size_t)R * (size_t)moeq_qtype_row_bytes(moeq_qmat_qtype(&q), C));
    XXH3_64bits_update(h, q.scale, (size_t)(R * (C / s.group)) * sizeof *q.scale);
    XXH3_64bits_update(h, q.zero, (size_t)(R * (C / s.group)) * sizeof *q.zero);
    XXH3_64bits_update(h, u, (size_t)(R * rank) * sizeof *u);
    XXH3_64bits_update(h, v, (size_t)(rank * C) * sizeof *v);
    XXH3_64bits_update(h, &out.best_round, sizeof out.best_round);
    const double figs[] = {out.err.rel_fro, out.err.sqnr_db, out.err.max_abs, out.err.nmse, out.err.fro_err};
    XXH3_64bits_update(h, figs, sizeof figs);
done:
    moeq_qmat_free(&q);
    free(w), free(work_w), free(recon), free(u), free(v);
    return st;
}

moeq_status moeq_numerics_probe(const moeq_kernel_ops *ops, moeq_numerics *out) {
    if (!ops) ops = &moeq_kernel_ops_cpu;
    memset(out, 0, sizeof *out);
    XXH3_state_t *h = XXH3_createState();
    if (!h) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "numerics probe: xxh3 state");
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, ops->name, strlen(ops->name));
    moeq_status st = MOEQ_OK;
    for (size_t k = 0; k < sizeof probe_shapes / sizeof probe_shapes[0] && st == MOEQ_OK; k++)
        st = probe_one(ops, probe_shapes[k].R, probe_shapes[k].C, probe_shapes[k].rank, h);
    out->fingerprint = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    if (st != MOEQ_OK) return st;
    if (strcmp(ops->name, "cpu") == 0)
        snprintf(out->desc, sizeof out->desc, "cpu: %s", moeq_numerics_blas_config());
    else
        snprintf(out->desc, sizeof out->desc, "%s (host BLAS: %s)", ops->name, moeq_numerics_blas_core());
    return MOEQ_OK;
}
