// qformat.c: the traits table of the packed code formats (see qformat.h for the bit layout), the
// pack/unpack reference functions, and every size derived from the table (row bytes, bits per weight).
// Packing is plain byte arithmetic: the bit stream is little-endian, code k at bits [b·k, b·k + b).
#include "qformat.h"

#include <string.h>

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

const moeq_qtype_traits moeq_qtypes[MOEQ_QTYPE_COUNT] = {
    [MOEQ_QTYPE_Q2] = {.name = "q2",
                       .bits = 2,
                       .codes_per_unit = 4,
                       .unit_bytes = 1,
                       .pack = moeq_pack_q2,
                       .unpack = moeq_unpack_q2},
    [MOEQ_QTYPE_Q3] = {.name = "q3",
                       .bits = 3,
                       .codes_per_unit = 32,
                       .unit_bytes = 12,
                       .pack = moeq_pack_q3,
                       .unpack = moeq_unpack_q3},
    [MOEQ_QTYPE_Q4] = {.name = "q4",
                       .bits = 4,
                       .codes_per_unit = 2,
                       .unit_bytes = 1,
                       .pack = moeq_pack_q4,
                       .unpack = moeq_unpack_q4},
    [MOEQ_QTYPE_Q8] = {.name = "q8",
                       .bits = 8,
                       .codes_per_unit = 1,
                       .unit_bytes = 1,
                       .pack = moeq_pack_q8,
                       .unpack = moeq_unpack_q8},
};

const moeq_qtype_traits *moeq_qtype_get(int bits) {
    if (bits <= 0 || bits >= MOEQ_QTYPE_COUNT || moeq_qtypes[bits].bits == 0) return NULL;
    return &moeq_qtypes[bits];
}

const char *moeq_qtype_name(int bits) {
    const moeq_qtype_traits *t = moeq_qtype_get(bits);
    return t ? t->name : "invalid";
}

int64_t moeq_qtype_row_bytes(int bits, int64_t C) {
    const moeq_qtype_traits *t = moeq_qtype_get(bits);
    if (!t || C < 0) return -1;
    return (C + t->codes_per_unit - 1) / t->codes_per_unit * t->unit_bytes;
}

moeq_status moeq_qtype_pack_row(int bits, const uint8_t *codes, int64_t C, uint8_t *dst) {
    const moeq_qtype_traits *t = moeq_qtype_get(bits);
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

double moeq_qtype_bpw(int bits, int64_t G, int64_t rank, int64_t R, int64_t C, moeq_factor_type ft) {
    const int64_t rb = moeq_qtype_row_bytes(bits, C);
    if (rb < 0 || G <= 0 || R <= 0 || C <= 0 || rank < 0 || ft < 0 || ft >= MOEQ_FACTOR_COUNT) return -1.0;
    const double n = (double)R * (double)C;
    double b = 8.0 * (double)rb / (double)C + 32.0 / (double)G;
    if (rank > 0) {
        const int64_t nu = R * rank, nv = rank * C;
        const double fb = (double)(moeq_factor_code_bytes(ft, nu) + moeq_factor_code_bytes(ft, nv)) +
                          2.0 * (double)(moeq_factor_n_scales(ft, nu) + moeq_factor_n_scales(ft, nv));
        b += 8.0 * fb / n;
    }
    return b;
}
