// qformat.c: the traits table of the storage formats (see qformat.h for the bit layout), the pack/unpack
// reference functions of the grouped family, formats registered at run time, and every size derived from
// the table (row bytes, the planes of a stored matrix, bits per weight: moeq_qlayout_make).
// Packing is plain byte arithmetic: the bit stream is little-endian, code k at bits [b·k, b·k + b).
// Not here: the reference quantizer and dequantizer of the grouped family (quant_cpu.c) and of the integer
// family (quant_int_cpu.c), the factors' codecs (lowrank_cpu.c).
#include "qformat.h"

#include <stdio.h>
#include <string.h>

#include "ggml_quant.h" // defines: the llama.cpp block types' codecs (MOEQ_QFAMILY_GGML)
#include "quant.h"      // defines: moeq_rtn_quantize_cpu, moeq_qmat_dequantize_cpu, moeq_int_* (the codecs)

// ---- pack / unpack per format ----

static void moeq_pack_q2(const uint8_t *q, int64_t n_units, uint8_t *dst) {
    for (int64_t u = 0; u < n_units; u++, q += 4)
        dst[u] = (uint8_t)(q[0] | (q[1] << 2) | (q[2] << 4) | (q[3] << 6));
}
static void moeq_unpack_q2(const uint8_t *src, int64_t n_units, uint8_t *q) {
    for (int64_t u = 0; u < n_units; u++, q += 4) {
        const unsigned b = src[u];
        q[0] = (uint8_t)(b & 3u), q[1] = (uint8_t)((b >> 2) & 3u);
        q[2] = (uint8_t)((b >> 4) & 3u), q[3] = (uint8_t)(b >> 6);
    }
}

// 3-bit: a unit of 32 codes is four 24-bit groups of 8 codes (3 bytes each); in the 96-bit stream that is
// the same as code k at bits [3k, 3k+3). On little-endian hosts 8 codes are compacted as one uint64 (byte j =
// code j) in three shift-or-mask steps (8 -> 16 -> 32 -> 24-bit spacing), and spread back the same way.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline uint32_t moeq_q3_compact8(const uint8_t *q) {
    uint64_t x;
    memcpy(&x, q, 8);
    x = (x | (x >> 5)) & 0x003f003f003f003full;
    x = (x | (x >> 10)) & 0x00000fff00000fffull;
    x = (x | (x >> 20)) & 0xffffffull;
    return (uint32_t)x;
}
static inline void moeq_q3_spread8(uint32_t v, uint8_t *q) {
    uint64_t x = v;
    x = (x | (x << 20)) & 0x00000fff00000fffull;
    x = (x | (x << 10)) & 0x003f003f003f003full;
    x = (x | (x << 5)) & 0x0707070707070707ull;
    memcpy(q, &x, 8);
}
#else
static inline uint32_t moeq_q3_compact8(const uint8_t *q) {
    uint32_t v = 0;
    for (int j = 0; j < 8; j++) v |= (uint32_t)q[j] << (3 * j);
    return v;
}
static inline void moeq_q3_spread8(uint32_t v, uint8_t *q) {
    for (int j = 0; j < 8; j++) q[j] = (uint8_t)((v >> (3 * j)) & 7u);
}
#endif

static void moeq_pack_q3(const uint8_t *q, int64_t n_units, uint8_t *dst) {
    for (int64_t u = 0; u < 4 * n_units; u++, q += 8, dst += 3) {
        const uint32_t v = moeq_q3_compact8(q);
        dst[0] = (uint8_t)v, dst[1] = (uint8_t)(v >> 8), dst[2] = (uint8_t)(v >> 16);
    }
}
static void moeq_unpack_q3(const uint8_t *src, int64_t n_units, uint8_t *q) {
    for (int64_t u = 0; u < 4 * n_units; u++, q += 8, src += 3)
        moeq_q3_spread8((uint32_t)src[0] | ((uint32_t)src[1] << 8) | ((uint32_t)src[2] << 16), q);
}

static void moeq_pack_q4(const uint8_t *q, int64_t n_units, uint8_t *dst) {
    for (int64_t u = 0; u < n_units; u++, q += 2) dst[u] = (uint8_t)(q[0] | (q[1] << 4));
}
static void moeq_unpack_q4(const uint8_t *src, int64_t n_units, uint8_t *q) {
    for (int64_t u = 0; u < n_units; u++, q += 2)
        q[0] = (uint8_t)(src[u] & 15u), q[1] = (uint8_t)(src[u] >> 4);
}

static void moeq_pack_q8(const uint8_t *q, int64_t n_units, uint8_t *dst) {
    for (int64_t u = 0; u < n_units; u++) dst[u] = q[u];
}
static void moeq_unpack_q8(const uint8_t *src, int64_t n_units, uint8_t *q) {
    for (int64_t u = 0; u < n_units; u++) q[u] = src[u];
}

// ---- the table ----

#define GROUPED_MODEL "w = (q - z)*s; b-bit codes, fp16 scale s and fp16 fractional zero z per group of G"
#define GROUPED(b, cpu, ub, p, u)                                                                            \
    {                                                                                                        \
        .name = "q" #b, .bits = b, .family = MOEQ_QFAMILY_GROUPED, .codes_per_unit = cpu, .unit_bytes = ub,  \
        .block = 0, .planes = (1u << MOEQ_PLANE_SCALE) | (1u << MOEQ_PLANE_ZERO), .model = GROUPED_MODEL,    \
        .pack = p, .unpack = u, .quantize = moeq_rtn_quantize_cpu, .dequantize = moeq_qmat_dequantize_cpu    \
    }

// The integer-zero family: the grouped format's codes and packing, an fp16 scale, an integer zero stored as
// b-bit codes (asymmetric) or implied (symmetric, zp = 2^(b-1)).
#define INT_MODEL  "w = (q - z)*s; b-bit codes, fp16 scale s and integer zero z in [0, 2^b-1] per group of G"
#define INTS_MODEL "w = (q - 2^(b-1))*s; b-bit codes, fp16 scale s per group of G (symmetric)"
#define INTFMT(T, nm, b, cpu, ub, p, u, sym)                                                                 \
    [MOEQ_QTYPE_##T] = {.name = nm,                                                                          \
                        .bits = b,                                                                           \
                        .family = MOEQ_QFAMILY_INT,                                                          \
                        .codes_per_unit = cpu,                                                               \
                        .unit_bytes = ub,                                                                    \
                        .block = 0,                                                                          \
                        .planes = (1u << MOEQ_PLANE_SCALE) | (sym ? 0u : (1u << MOEQ_PLANE_ZERO)),           \
                        .model = sym ? INTS_MODEL : INT_MODEL,                                               \
                        .zero_point = sym ? 1 << (b - 1) : 0,                                                \
                        .pack = p,                                                                           \
                        .unpack = u,                                                                         \
                        .quantize = moeq_int_quantize_cpu,                                                   \
                        .dequantize = moeq_int_dequantize_cpu}

// llama.cpp's block types: one block is one packing unit and the fixed block; no side planes.
#define GGML(T, t, b, qk, model_)                                                                            \
    [MOEQ_QTYPE_##T] = {.name = #t,                                                                          \
                        .bits = b,                                                                           \
                        .family = MOEQ_QFAMILY_GGML,                                                         \
                        .codes_per_unit = qk,                                                                \
                        .unit_bytes = (int)sizeof(moeq_block_##t),                                           \
                        .block = qk,                                                                         \
                        .planes = 0,                                                                         \
                        .model = model_,                                                                     \
                        .pack = NULL,                                                                        \
                        .unpack = NULL,                                                                      \
                        .quantize = moeq_ggml_quantize,                                                      \
                        .dequantize = moeq_ggml_dequantize,                                                  \
                        .ggml_quantize_row = moeq_ggml_quantize_row_##t,                                     \
                        .ggml_dequantize_row = moeq_ggml_dequantize_row_##t}

const moeq_qtype_traits moeq_qtypes[MOEQ_QTYPE_COUNT] = {
    [MOEQ_QTYPE_Q2] = GROUPED(2, 4, 1, moeq_pack_q2, moeq_unpack_q2),
    [MOEQ_QTYPE_Q3] = GROUPED(3, 32, 12, moeq_pack_q3, moeq_unpack_q3),
    [MOEQ_QTYPE_Q4] = GROUPED(4, 2, 1, moeq_pack_q4, moeq_unpack_q4),
    [MOEQ_QTYPE_Q8] = GROUPED(8, 1, 1, moeq_pack_q8, moeq_unpack_q8),
    INTFMT(I2, "i2", 2, 4, 1, moeq_pack_q2, moeq_unpack_q2, 0),
    INTFMT(I3, "i3", 3, 32, 12, moeq_pack_q3, moeq_unpack_q3, 0),
    INTFMT(I4, "i4", 4, 2, 1, moeq_pack_q4, moeq_unpack_q4, 0),
    INTFMT(I8, "i8", 8, 1, 1, moeq_pack_q8, moeq_unpack_q8, 0),
    INTFMT(I2S, "i2s", 2, 4, 1, moeq_pack_q2, moeq_unpack_q2, 1),
    INTFMT(I3S, "i3s", 3, 32, 12, moeq_pack_q3, moeq_unpack_q3, 1),
    INTFMT(I4S, "i4s", 4, 2, 1, moeq_pack_q4, moeq_unpack_q4, 1),
    INTFMT(I8S, "i8s", 8, 1, 1, moeq_pack_q8, moeq_unpack_q8, 1),
    GGML(Q4_0, q4_0, 4, MOEQ_QK4_0,
         "llama.cpp q4_0: w = d*(q - 8), 4-bit q, fp16 d per block of 32 (4.5 bpw)"),
    GGML(Q4_1, q4_1, 4, MOEQ_QK4_1,
         "llama.cpp q4_1: w = d*q + m, 4-bit q, fp16 d and m per block of 32 (5 bpw)"),
    GGML(Q5_0, q5_0, 5, MOEQ_QK5_0,
         "llama.cpp q5_0: w = d*(q - 16), 5-bit q, fp16 d per block of 32 (5.5 bpw)"),
    GGML(Q5_1, q5_1, 5, MOEQ_QK5_1,
         "llama.cpp q5_1: w = d*q + m, 5-bit q, fp16 d and m per block of 32 (6 bpw)"),
    GGML(Q8_0, q8_0, 8, MOEQ_QK8_0, "llama.cpp q8_0: w = d*q, int8 q, fp16 d per block of 32 (8.5 bpw)"),
    GGML(Q2_K, q2_K, 2, MOEQ_QK_K,
         "llama.cpp q2_K: w = d*sc*q - dmin*m, 2-bit q, 4-bit sc and m per 16, fp16 d, dmin per 256 (2.625 "
         "bpw)"),
    GGML(Q3_K, q3_K, 3, MOEQ_QK_K,
         "llama.cpp q3_K: w = d*(sc-32)*(q-4), 3-bit q, 6-bit sc per 16, fp16 d per 256 (3.4375 bpw)"),
    GGML(Q4_K, q4_K, 4, MOEQ_QK_K,
         "llama.cpp q4_K: w = d*sc*q - dmin*m, 4-bit q, 6-bit sc and m per 32, fp16 d, dmin per 256 (4.5 "
         "bpw)"),
    GGML(Q5_K, q5_K, 5, MOEQ_QK_K,
         "llama.cpp q5_K: w = d*sc*q - dmin*m, 5-bit q, 6-bit sc and m per 32, fp16 d, dmin per 256 (5.5 "
         "bpw)"),
    GGML(Q6_K, q6_K, 6, MOEQ_QK_K,
         "llama.cpp q6_K: w = d*sc*(q-32), 6-bit q, int8 sc per 16, fp16 d per 256 (6.5625 bpw)"),
    GGML(IQ4_NL, iq4_nl, 4, MOEQ_QK4_NL,
         "llama.cpp iq4_nl: w = d*kvalues[q], 4-bit index into a 16-value grid, fp16 d per 32 (4.5 bpw)"),
    GGML(IQ4_XS, iq4_xs, 4, MOEQ_QK_K,
         "llama.cpp iq4_xs: w = d*(ls - 32)*kvalues[q], 6-bit ls per 32, fp16 d per 256 (4.25 bpw)"),
};

// Formats registered at run time (tests, kernel labs): set once, before use, from one thread.
static const moeq_qtype_traits *user_qtypes[MOEQ_QTYPE_USER_END - MOEQ_QTYPE_USER_FIRST];

const moeq_qtype_traits *moeq_qtype_get(int t) {
    if (t > 0 && t < MOEQ_QTYPE_COUNT) return moeq_qtypes[t].bits ? &moeq_qtypes[t] : NULL;
    if (t >= MOEQ_QTYPE_USER_FIRST && t < MOEQ_QTYPE_USER_END) return user_qtypes[t - MOEQ_QTYPE_USER_FIRST];
    return NULL;
}

const char *moeq_qtype_name(int t) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    return tr ? tr->name : "invalid";
}

moeq_qtype moeq_qtype_from_name(const char *s) {
    for (int t = 1; s && t < MOEQ_QTYPE_USER_END; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        if (tr && !strcmp(tr->name, s)) return (moeq_qtype)t;
    }
    return MOEQ_QTYPE_INVALID;
}

const char *moeq_qtype_names(unsigned families, char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int t = 1; t < MOEQ_QTYPE_USER_END && n < cap; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        if (tr && (tr->family & families)) {
            const int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", tr->name);
            n += w > 0 ? (size_t)w : 0;
        }
    }
    return buf;
}

const char *moeq_qtype_grouped_bits(const char *last, char *buf, size_t cap) {
    int widths[MOEQ_QTYPE_COUNT], n = 0;
    for (int b = 1; b < MOEQ_QTYPE_COUNT; b++)
        if (moeq_qtype_get(b) && (moeq_qtype_get(b)->family & MOEQ_QFAMILY_GROUPED)) widths[n++] = b;
    size_t len = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        const int w = snprintf(buf + len, cap - len, "%s%d",
                               i == 0       ? ""
                               : i == n - 1 ? last
                                            : ", ",
                               widths[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

moeq_status moeq_qtype_register(int id, const moeq_qtype_traits *t) {
    if (id < MOEQ_QTYPE_USER_FIRST || id >= MOEQ_QTYPE_USER_END || user_qtypes[id - MOEQ_QTYPE_USER_FIRST])
        return MOEQ_FAIL(MOEQ_ERR_ARG, "format %d: not a free id in [%d, %d)", id, MOEQ_QTYPE_USER_FIRST,
                         MOEQ_QTYPE_USER_END);
    const int ggml = t && (t->family & MOEQ_QFAMILY_GGML);
    if (!t || !t->name || t->bits < 1 || t->bits > 8 || t->codes_per_unit < 1 ||
        t->codes_per_unit > (ggml ? 256 : 32) || t->unit_bytes < 1 || t->block < 0 ||
        (!ggml && (!t->pack || !t->unpack)) || !t->quantize || !t->dequantize)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "format %d: incomplete traits (name, bits 1..8, unit of 1..32 codes, "
                         "pack, unpack, quantize, dequantize)",
                         id);
    if (moeq_qtype_from_name(t->name) != MOEQ_QTYPE_INVALID)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "format %d: the name \"%s\" is taken", id, t->name);
    user_qtypes[id - MOEQ_QTYPE_USER_FIRST] = t;
    return MOEQ_OK;
}

int moeq_qtype_ggml_id(int t) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    return tr && (tr->family & MOEQ_QFAMILY_GGML) && t > MOEQ_QTYPE_GGML_BASE && t < MOEQ_QTYPE_COUNT
               ? t - MOEQ_QTYPE_GGML_BASE
               : -1;
}

int64_t moeq_qtype_row_bytes(int t, int64_t C) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    if (!tr || C < 0) return -1;
    return (C + tr->codes_per_unit - 1) / tr->codes_per_unit * tr->unit_bytes;
}

moeq_status moeq_qtype_pack_row(int bits, const uint8_t *codes, int64_t C, uint8_t *dst) {
    const moeq_qtype_traits *t = moeq_qtype_get(bits);
    bits = t ? t->bits : bits;
    if (!t || C < 0 || (C > 0 && (!codes || !dst)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "pack: bad arguments (bits=%d C=%lld)", bits, (long long)C);
    const unsigned qmax = (1u << bits) - 1u;
    for (int64_t k = 0; k < C; k++)
        if (codes[k] > qmax)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "pack: code %u at column %lld does not fit %d bits", codes[k],
                             (long long)k, bits);
    const int64_t full = C / t->codes_per_unit, rest = C - full * t->codes_per_unit;
    t->pack(codes, full, dst);
    if (rest) { // pad the last unit with zero codes
        uint8_t tail[32] = {0};
        for (int64_t k = 0; k < rest; k++) tail[k] = codes[full * t->codes_per_unit + k];
        t->pack(tail, 1, dst + full * t->unit_bytes);
    }
    return MOEQ_OK;
}

moeq_status moeq_qtype_unpack_row(int bits, const uint8_t *src, int64_t C, uint8_t *codes) {
    const moeq_qtype_traits *t = moeq_qtype_get(bits);
    if (!t || C < 0 || (C > 0 && (!codes || !src)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "unpack: bad arguments (bits=%d C=%lld)", bits, (long long)C);
    const int64_t full = C / t->codes_per_unit, rest = C - full * t->codes_per_unit;
    t->unpack(src, full, codes);
    if (rest) {
        uint8_t tail[32];
        t->unpack(src + full * t->unit_bytes, 1, tail);
        for (int64_t k = 0; k < rest; k++) codes[full * t->codes_per_unit + k] = tail[k];
    }
    return MOEQ_OK;
}

// ---- factor storage sizes ----

int64_t moeq_factor_code_bytes(moeq_factor_type t, int64_t n) {
    if (n < 0) return -1;
    switch (t) { // three cases of a closed enum; the codes themselves use the q3 traits
    case MOEQ_FACTOR_FP16:
        return 2 * n;
    case MOEQ_FACTOR_INT3:
        return moeq_qtype_row_bytes(3, n);
    case MOEQ_FACTOR_F32:
        return 4 * n;
    default:
        return -1;
    }
}

int64_t moeq_factor_n_scales(moeq_factor_type t, int64_t n) {
    if (t != MOEQ_FACTOR_INT3 || n <= 0) return 0;
    return (n + MOEQ_FACTOR_INT3_GROUP - 1) / MOEQ_FACTOR_INT3_GROUP;
}

const char *moeq_factor_name(moeq_factor_type t) {
    static const char *const names[MOEQ_FACTOR_COUNT] = {"fp16", "int3", "f32"};
    return ((int)t >= 0 && t < MOEQ_FACTOR_COUNT) ? names[t] : "invalid";
}

moeq_factor_type moeq_factor_from_name(const char *s) {
    if (s && !strcmp(s, "fp16")) return MOEQ_FACTOR_FP16;
    if (s && !strcmp(s, "int3")) return MOEQ_FACTOR_INT3;
    return MOEQ_FACTOR_COUNT; // f32 is the working precision, not a storage format
}

// ---- the one geometry function ----

static void plane(moeq_plane_spec *p, moeq_elem e, int ndim, int64_t d0, int64_t d1) {
    p->present = 1;
    p->elem = e;
    p->ndim = ndim;
    p->dims[0] = d0;
    p->dims[1] = ndim > 1 ? d1 : 0;
    p->bytes = (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1) * (e == MOEQ_ELEM_F16 ? 2u : 1u);
}

// A factor of n elements: fp16 (rows, cols) 2-D, or int3 bytes + fp16 scales 1-D.
static void factor_planes(moeq_qlayout *l, moeq_plane codes, moeq_plane scales, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    if (l->factor == MOEQ_FACTOR_FP16) {
        plane(&l->plane[codes], MOEQ_ELEM_F16, 2, rows, cols);
        return;
    }
    plane(&l->plane[codes], MOEQ_ELEM_U8, 1, moeq_factor_code_bytes(MOEQ_FACTOR_INT3, n), 0);
    plane(&l->plane[scales], MOEQ_ELEM_F16, 1, moeq_factor_n_scales(MOEQ_FACTOR_INT3, n), 0);
}

moeq_status moeq_qlayout_make(int t, int64_t R, int64_t C, int64_t G, int64_t rank, moeq_factor_type ft,
                              moeq_qlayout *l) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    if (!tr) return MOEQ_FAIL(MOEQ_ERR_ARG, "layout: %d is not a storage format", t);
    const int64_t B = tr->block ? tr->block : G;
    if (R <= 0 || C <= 0 || B <= 0 || C % B)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "layout: a %s matrix of %lld x %lld needs %s %lld dividing its %lld columns",
                         tr->name, (long long)R, (long long)C, tr->block ? "its block" : "a group",
                         (long long)B, (long long)C);
    if (rank < 0 || rank > (R < C ? R : C) || (rank > 0 && ft != MOEQ_FACTOR_FP16 && ft != MOEQ_FACTOR_INT3))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "layout: rank %lld (%s factors) for a %lld x %lld matrix",
                         (long long)rank, moeq_factor_name(ft), (long long)R, (long long)C);
    memset(l, 0, sizeof *l);
    l->type = (moeq_qtype)t, l->R = R, l->C = C, l->G = B, l->rank = rank, l->factor = ft;
    l->row_bytes = moeq_qtype_row_bytes(t, C);
    l->n_blocks = C / B;
    plane(&l->plane[MOEQ_PLANE_CODES], MOEQ_ELEM_U8, 2, R, l->row_bytes);
    if (tr->planes & (1u << MOEQ_PLANE_SCALE)) plane(&l->plane[MOEQ_PLANE_SCALE], MOEQ_ELEM_F16, 2, R, C / B);
    if ((tr->planes & (1u << MOEQ_PLANE_ZERO)) && (tr->family & MOEQ_QFAMILY_INT)) // packed integer zeros
        plane(&l->plane[MOEQ_PLANE_ZERO], MOEQ_ELEM_U8, 1, moeq_qtype_row_bytes(t, R * (C / B)), 0);
    else if (tr->planes & (1u << MOEQ_PLANE_ZERO))
        plane(&l->plane[MOEQ_PLANE_ZERO], MOEQ_ELEM_F16, 2, R, C / B);
    if (rank > 0) {
        factor_planes(l, MOEQ_PLANE_U, MOEQ_PLANE_U_SCALE, R, rank);
        factor_planes(l, MOEQ_PLANE_V, MOEQ_PLANE_V_SCALE, rank, C);
    }
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++) l->bytes += l->plane[p].bytes;
    l->bits_per_weight = 8.0 * (double)l->bytes / ((double)R * (double)C);
    return MOEQ_OK;
}
