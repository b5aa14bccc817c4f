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

// moeq_factor_dequantize_cpu over all cores: element-wise, so the same floats, in chunks of 64 elements
// (an int3 chunk then starts on a whole 32-code unit and its own fp16 scale).
static moeq_status dequantize_par(moeq_factor_type ft, const void *codes, const uint16_t *scales, int64_t n,
                                  float *out) {
    enum { CHUNK = 64 * 256 };
    const int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    moeq_status st = MOEQ_OK;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n_chunks; k++) {
        const int64_t off = k * CHUNK, len = n - off < CHUNK ? n - off : CHUNK;
        const moeq_status s = moeq_factor_dequantize_cpu(
            ft, (const uint8_t *)codes + moeq_factor_code_bytes(ft, off),
            ft == MOEQ_FACTOR_INT3 ? scales + off / MOEQ_FACTOR_INT3_GROUP : scales, len, out + off);
        if (s != MOEQ_OK) {
#pragma omp critical
            st = s;
        }
    }
    return st;
}

// Low-rank factors as fp32 (R·r + r·C floats: small next to the codes) and t = x·Vᵀ (B, r), in one buffer
// (*uf; vf and t inside it). Nothing is allocated for rank 0.
static moeq_status lowrank_prepare(const moeq_qlinear *ql, const float *x, int64_t B, float **uf, float **t) {
    const int64_t R = ql->q.R, C = ql->q.C, r = ql->rank;
    *uf = *t = NULL;
    if (r == 0) return MOEQ_OK;
    float *u = malloc(sizeof(float) * (size_t)(R * r + r * C + B * r));
    if (!u)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "qlinear_matmul: factors of %lldx%lld rank %lld", (long long)R,
                         (long long)C, (long long)r);
    float *vf = u + R * r, *tt = vf + r * C;
    moeq_status st = dequantize_par(ql->ftype, ql->u, ql->u_scale, R * r, u);
    if (st == MOEQ_OK) st = dequantize_par(ql->ftype, ql->v, ql->v_scale, r * C, vf);
    if (st != MOEQ_OK) {
        free(u);
        return st;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < r; j++) tt[b * r + j] = dot8(x + b * C, vf + j * C, C);
    *uf = u, *t = tt;
    return MOEQ_OK;
}

moeq_status moeq_qlinear_matmul_cpu(const moeq_qlinear *ql, const float *x, int64_t B, float *y) {
    MOEQ_TRY(check_args(ql, x, B, y));
    const moeq_qmat *q = &ql->q;
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G, r = ql->rank;
    const int64_t rb = moeq_qtype_row_bytes(q->bits, C);
    float *uf, *t;
    MOEQ_TRY(lowrank_prepare(ql, x, B, &uf, &t));

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

// ---- fast path: q3 with AVX2, bit-identical to the reference ----
// The reference's arithmetic, vectorised: lane l of an 8-wide accumulator is the reference's partial sum
// p[l] (k ≡ l mod 8, k increasing), each weight is ((float)code − z)·s, each step is a separate multiply
// and add (this file is compiled with -ffp-contract=off, so neither path fuses them), the lanes are
// combined in the reference's order and the low-rank term is the same dot8. So y is bit-identical to
// moeq_qlinear_matmul_cpu, which test_infer asserts. What changes is the work: the 8 possible weights of a
// group are computed once (a table in one register), 8 codes come from one 3-byte load and become weights
// through a shift and a table lookup (where the reference unpacks the row into a byte buffer and converts
// every code), each weight serves up to 4 batch rows, and up to 4 rows run side by side so that their
// accumulators are independent chains.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <string.h>
#define MOEQ_INFER_AVX2 1
#if defined(__clang__)
#define UNROLL4 _Pragma("clang loop unroll(full)")
#else
#define UNROLL4 _Pragma("GCC unroll 4")
#endif

typedef struct q3_ctx {
    const moeq_qmat *q;
    int64_t rb; // row bytes
    const float *x, *t, *uf;
    int64_t r;
    float *y;
} q3_ctx;

// The 8 weights of codes 8j .. 8j+7 of a row (bits [24j, 24j + 24) of its byte stream), given the group's
// table tab[c] = ((float)c − z)·s: one broadcast of the 3 bytes, a per-lane shift, and vpermps, which reads
// only the low 3 bits of each lane (the code) as the table index.
__attribute__((target("avx2"), always_inline)) static inline __m256 q3_weights8(const uint8_t *row, int64_t j,
                                                                                int64_t rb, __m256 tab) {
    const uint8_t *p = row + 3 * j;
    uint32_t w;
    if (3 * j + 4 <= rb)
        memcpy(&w, p, 4); // the 4th byte (the next codes) is shifted out of every lane's low 3 bits
    else
        w = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; // the row's last bytes
    const __m256i c =
        _mm256_srlv_epi32(_mm256_set1_epi32((int)w), _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21));
    return _mm256_permutevar8x32_ps(tab, c);
}

// Rows i0 .. i0+NR−1 × batch rows b0 .. b0+NB−1 (NR, NB ≤ 4; constants after inlining).
__attribute__((target("avx2"), always_inline)) static inline void q3_block(const q3_ctx *c, int64_t i0,
                                                                           int NR, int64_t b0, int NB) {
    const moeq_qmat *q = c->q;
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G;
    __m256 acc[4][4];
    // NR and NB are constants here: the loops over them unroll fully, so acc stays in registers.
    UNROLL4 for (int a = 0; a < NR; a++) UNROLL4 for (int b = 0; b < NB; b++) acc[a][b] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256 tab[4]; // ((float)c − z)·s for c = 0..7: the reference's weight of each code
        UNROLL4 for (int a = 0; a < NR; a++) {
            const __m256 sv = _mm256_set1_ps(moeq_f16_to_f32(q->scale[(i0 + a) * ng + g]));
            const __m256 zv = _mm256_set1_ps(moeq_f16_to_f32(q->zero[(i0 + a) * ng + g]));
            tab[a] = _mm256_mul_ps(_mm256_sub_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), zv), sv);
        }
        for (int64_t j = g * G / 8; j < (g + 1) * G / 8; j++) { // 8 codes k = 8j .. 8j+7
            __m256 xv[4];
            UNROLL4 for (int b = 0; b < NB; b++) xv[b] = _mm256_loadu_ps(c->x + (b0 + b) * C + 8 * j);
            UNROLL4 for (int a = 0; a < NR; a++) {
                const __m256 w = q3_weights8(q->codes + (i0 + a) * c->rb, j, c->rb, tab[a]);
                UNROLL4 for (int b = 0; b < NB; b++) acc[a][b] =
                    _mm256_add_ps(acc[a][b], _mm256_mul_ps(xv[b], w));
            }
        }
    }
    for (int a = 0; a < NR; a++)
        for (int b = 0; b < NB; b++) {
            float p[8];
            _mm256_storeu_ps(p, acc[a][b]);
            float v = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
            if (c->r > 0) v += dot8(c->t + (b0 + b) * c->r, c->uf + (i0 + a) * c->r, c->r);
            c->y[(b0 + b) * R + i0 + a] = v;
        }
}

#define Q3_CASE(nr, nb)                                                                                      \
    case (nr)*8 + (nb):                                                                                      \
        q3_block(c, i0, nr, b0, nb);                                                                         \
        break;
__attribute__((target("avx2"))) static void q3_rows(const q3_ctx *c, int64_t i0, int nr, int64_t b0, int nb) {
    // clang-format off
    switch (nr * 8 + nb) {
        Q3_CASE(1, 1) Q3_CASE(1, 2) Q3_CASE(1, 3) Q3_CASE(1, 4)
        Q3_CASE(2, 1) Q3_CASE(2, 2) Q3_CASE(2, 3) Q3_CASE(2, 4)
        Q3_CASE(3, 1) Q3_CASE(3, 2) Q3_CASE(3, 3) Q3_CASE(3, 4)
        Q3_CASE(4, 1) Q3_CASE(4, 2) Q3_CASE(4, 3) Q3_CASE(4, 4)
        default: break;
    }
    // clang-format on
}
#undef Q3_CASE
#endif

static int fast_applies(const moeq_qlinear *ql) {
#ifdef MOEQ_INFER_AVX2
    const moeq_qmat *q = &ql->q;
    return q->bits == 3 && q->G % 8 == 0 && q->C % 8 == 0 && __builtin_cpu_supports("avx2");
#else
    (void)ql;
    return 0;
#endif
}

const char *moeq_qlinear_matmul_fast_cpu_path(const moeq_qlinear *ql) {
    return ql && fast_applies(ql) ? "avx2-q3" : "reference";
}

moeq_status moeq_qlinear_matmul_fast_cpu(const moeq_qlinear *ql, const float *x, int64_t B, float *y) {
    MOEQ_TRY(check_args(ql, x, B, y));
    if (!fast_applies(ql)) return moeq_qlinear_matmul_cpu(ql, x, B, y);
#ifdef MOEQ_INFER_AVX2
    float *uf, *t;
    MOEQ_TRY(lowrank_prepare(ql, x, B, &uf, &t));
    const q3_ctx c = {
        .q = &ql->q, .rb = moeq_qtype_row_bytes(3, ql->q.C), .x = x, .t = t, .uf = uf, .r = ql->rank, .y = y};
    const int64_t R = ql->q.R, n_quads = (R + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t qd = 0; qd < n_quads; qd++) {
        const int64_t i0 = 4 * qd;
        const int nrows = (int)(R - i0 < 4 ? R - i0 : 4);
        for (int64_t b0 = 0; b0 < B; b0 += 4) {
            const int nb = (int)(B - b0 < 4 ? B - b0 : 4);
            const int per = nb <= 2 ? 4 : 2; // rows side by side: at most 8 accumulators
            for (int i = 0; i < nrows; i += per)
                q3_rows(&c, i0 + i, nrows - i < per ? nrows - i : per, b0, nb);
        }
    }
    free(uf);
#endif
    return MOEQ_OK;
}
