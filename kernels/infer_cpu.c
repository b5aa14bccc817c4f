// infer_cpu.c: CPU reference of the quantized + low-rank linear product (infer.h):
//   y (B, R) = x (B, C) · (deq(Q) + U·V)ᵀ, computed as x·deq(Q)ᵀ + (x·Vᵀ)·Uᵀ.
// Plain loops a reviewer can check: each row's codes are unpacked through the qtype traits and dequantized
// with the exact arithmetic of moeq_qmat_dequantize_cpu, then dotted with every batch row. It is the
// reference the CUDA port (infer_cuda.cu) is tested against, not a fast CPU path (no blocking over rows,
// no SIMD beyond what the compiler finds in the 8-way interleaved sums).
// Letters: B = batch, R = rows, C = cols, G = group, r = rank.
// Determinism: every sum runs over k in increasing order into 8 partial sums (k mod 8), combined as
// ((p0+p1)+(p2+p3))+((p4+p5)+(p6+p7)); rows are independent, so results do not depend on threads.
#include "infer.h"

#include <omp.h>
#include <stdlib.h>

#include "dtype.h"   // defines: moeq_f16_to_f32
#include "lowrank.h" // defines: moeq_factor_dequantize_cpu

// Σ_k a[k]·b[k] with the fixed 8-way order stated above.
static float dot8(const float *a, const float *b, int64_t n) {
    float p[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) p[l] += a[k + l] * b[k + l];
    for (int l = 0; k < n; k++, l++) p[l] += a[k] * b[k];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

static moeq_status check_args(const moeq_qlinear *ql, const float *x, int64_t B, const float *y) {
    if (!ql || !x || !y || B < 1) return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul: NULL argument or B=%lld < 1",
                                                   (long long)(ql ? B : 0));
    MOEQ_TRY(moeq_qmat_check(&ql->q));
    if (ql->rank < 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul: rank %lld < 0", (long long)ql->rank);
    if (ql->rank > 0) {
        if (moeq_factor_code_bytes(ql->ftype, 1) < 0)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul: unknown factor type %d", (int)ql->ftype);
        if (!ql->u || !ql->v || (ql->ftype == MOEQ_FACTOR_INT3 && (!ql->u_scale || !ql->v_scale)))
            return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul: rank %lld but NULL factor codes or int3 scales",
                             (long long)ql->rank);
    }
    return MOEQ_OK;
}

moeq_status moeq_qlinear_matmul_cpu(const moeq_qlinear *ql, const float *x, int64_t B, float *y) {
    MOEQ_TRY(check_args(ql, x, B, y));
    const moeq_qmat *q = &ql->q;
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G, r = ql->rank;
    const int64_t rb = moeq_qtype_row_bytes(q->bits, C);

    // Low-rank factors as fp32 (R·r + r·C floats: small next to the codes), and t = x·Vᵀ (B, r).
    float *uf = NULL, *vf = NULL, *t = NULL;
    if (r > 0) {
        uf = malloc(sizeof(float) * (size_t)(R * r + r * C + B * r));
        if (!uf) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "qlinear_matmul: factors of %lldx%lld rank %lld", (long long)R,
                                  (long long)C, (long long)r);
        vf = uf + R * r;
        t = vf + r * C;
        moeq_status st = moeq_factor_dequantize_cpu(ql->ftype, ql->u, ql->u_scale, R * r, uf);
        if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(ql->ftype, ql->v, ql->v_scale, r * C, vf);
        if (st != MOEQ_OK) {
            free(uf);
            return st;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < r; j++) t[b * r + j] = dot8(x + b * C, vf + j * C, C);
    }

    const int nt = omp_get_max_threads();
    const size_t stride = ((size_t)C + 64) & ~(size_t)31; // codes (C + unit padding) or floats (C)
    uint8_t *work = malloc((size_t)nt * stride * (1 + sizeof(float)));
    if (!work) {
        free(uf);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "qlinear_matmul: %d row buffers of %lld", nt, (long long)C);
    }
    moeq_status st = MOEQ_OK;
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        uint8_t *codes = work + (size_t)tid * stride;
        float *w = (float *)(work + (size_t)nt * stride) + (size_t)tid * stride;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R; i++) {
            // one row of deq(Q): (code − z)·s, the definition in qformat.h
            if (moeq_qtype_unpack_row(q->bits, q->codes + i * rb, C, codes) != MOEQ_OK) {
#pragma omp atomic write
                st = MOEQ_ERR_ARG;
                continue;
            }
            for (int64_t g = 0; g < ng; g++) {
                const float s = moeq_f16_to_f32(q->scale[i * ng + g]), z = moeq_f16_to_f32(q->zero[i * ng + g]);
                for (int64_t k = g * G; k < (g + 1) * G; k++) w[k] = ((float)codes[k] - z) * s;
            }
            for (int64_t b = 0; b < B; b++) {
                float acc = dot8(x + b * C, w, C);
                if (r > 0) acc += dot8(t + b * r, uf + i * r, r);
                y[b * R + i] = acc;
            }
        }
    }
    free(work);
    free(uf);
    return st == MOEQ_OK ? MOEQ_OK : MOEQ_FAIL(st, "qlinear_matmul: unpacking a %d-bit row failed", q->bits);
}
