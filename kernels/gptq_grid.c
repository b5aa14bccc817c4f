// gptq_grid.c: the code grids of llama.cpp's block types for GPTQ (gptq.h, moeq_gptq_codec): per type, how
// a block's stored parameters (fp16 d, dmin, the sub-block scales and mins) define an affine grid per
// sub-block, v(c) = a·t(c) − m, with a and m computed by the same fp32 operations as the type's dequantizer
// (ggml_legacy.c, ggml_kquant.c: a = d·sc, m = dmin·mn, or −m for the "+ m" types), and how codes are written
// into a block without touching its parameters (the inverse of the dequantizer's bit layout).
// Not here: choosing the parameters (the format's own quantizer does) or the rounding (gptq_cpu.c).
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32
#include "ggml_quant.h"
#include "gptq.h"

// ---- code writers ----

// 32 codes < 16 -> nibbles: weight j in the low nibble of byte j, weight j + 16 in the high nibble.
static void put_nibbles32(uint8_t *qs, const uint8_t *c) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((c[j] & 0x0F) | ((c[j + 16] & 0x0F) << 4));
}

// 32 codes < 32: low nibbles as above, fifth bits in qh (weight j at bit j, little-endian).
static void put_q5_32(uint8_t *qs, uint8_t *qh, const uint8_t *c) {
    put_nibbles32(qs, c);
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((c[j] >> 4) & 1u) << j;
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

// 256 codes, their low 2 bits: weight n = 128·h + 32·s + l at qs[32·h + l], bits 2s..2s+1 (q2_K, q3_K).
static void put_2bit256(uint8_t *qs, const uint8_t *c) {
    memset(qs, 0, MOEQ_QK_K / 4);
    for (int n = 0; n < MOEQ_QK_K; n++)
        qs[32 * (n / 128) + n % 32] |= (uint8_t)((c[n] & 3) << (2 * (n / 32 % 4)));
}

// 256 codes < 16 of q4_K/q5_K: sub-block j in nibble j % 2 of qs[32·(j / 2) + l].
static void put_k4_nibbles(uint8_t *qs, const uint8_t *c) {
    memset(qs, 0, MOEQ_QK_K / 2);
    for (int n = 0; n < MOEQ_QK_K; n++)
        qs[32 * (n / 64) + n % 32] |= (uint8_t)((c[n] & 0xF) << (4 * (n / 32 % 2)));
}

// ---- 32-weight blocks ----

static void grids_q4_0(const void *blk, float *a, float *m) {
    a[0] = moeq_f16_to_f32(((const moeq_block_q4_0 *)blk)->d), m[0] = 0.0f;
}
static void put_q4_0(void *blk, const uint8_t *c) {
    put_nibbles32(((moeq_block_q4_0 *)blk)->qs, c);
}
static void grids_q4_1(const void *blk, float *a, float *m) { // (float)q·d + m
    const moeq_block_q4_1 *b = blk;
    a[0] = moeq_f16_to_f32(b->d), m[0] = -moeq_f16_to_f32(b->m);
}
static void put_q4_1(void *blk, const uint8_t *c) {
    put_nibbles32(((moeq_block_q4_1 *)blk)->qs, c);
}
static void grids_q5_0(const void *blk, float *a, float *m) {
    a[0] = moeq_f16_to_f32(((const moeq_block_q5_0 *)blk)->d), m[0] = 0.0f;
}
static void put_q5_0(void *blk, const uint8_t *c) {
    moeq_block_q5_0 *b = blk;
    put_q5_32(b->qs, b->qh, c);
}
static void grids_q5_1(const void *blk, float *a, float *m) {
    const moeq_block_q5_1 *b = blk;
    a[0] = moeq_f16_to_f32(b->d), m[0] = -moeq_f16_to_f32(b->m);
}
static void put_q5_1(void *blk, const uint8_t *c) {
    moeq_block_q5_1 *b = blk;
    put_q5_32(b->qs, b->qh, c);
}
static void grids_q8_0(const void *blk, float *a, float *m) {
    a[0] = moeq_f16_to_f32(((const moeq_block_q8_0 *)blk)->d), m[0] = 0.0f;
}
static void put_q8_0(void *blk, const uint8_t *c) {
    moeq_block_q8_0 *b = blk;
    for (int j = 0; j < MOEQ_QK8_0; j++) b->qs[j] = (int8_t)((int)c[j] - 128);
}
static void grids_iq4_nl(const void *blk, float *a, float *m) {
    a[0] = moeq_f16_to_f32(((const moeq_block_iq4_nl *)blk)->d), m[0] = 0.0f;
}
static void put_iq4_nl(void *blk, const uint8_t *c) {
    put_nibbles32(((moeq_block_iq4_nl *)blk)->qs, c);
}

// ---- super-blocks of 256 ----

static void grids_q2_K(const void *blk, float *a, float *m) { // dl·q − ml per 16
    const moeq_block_q2_K *b = blk;
    const float d = moeq_f16_to_f32(b->d), dmin = moeq_f16_to_f32(b->dmin);
    for (int s = 0; s < MOEQ_QK_K / 16; s++)
        a[s] = d * (float)(b->scales[s] & 0xF), m[s] = dmin * (float)(b->scales[s] >> 4);
}
static void put_q2_K(void *blk, const uint8_t *c) {
    put_2bit256(((moeq_block_q2_K *)blk)->qs, c);
}
static void grids_q3_K(const void *blk, float *a, float *m) { // dl·(c − 4) per 16
    const moeq_block_q3_K *b = blk;
    const float d = moeq_f16_to_f32(b->d);
    for (int s = 0; s < MOEQ_QK_K / 16; s++)
        a[s] = d * (float)(moeq_ggml_q3_K_scale(b->scales, s) - 32), m[s] = 0.0f;
}
static void put_q3_K(void *blk, const uint8_t *c) { // c = lo + 4·hbit: t = lo − 4·!hbit = c − 4
    moeq_block_q3_K *b = blk;
    put_2bit256(b->qs, c);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int n = 0; n < MOEQ_QK_K; n++) b->hmask[n % 32] |= (uint8_t)((c[n] >> 2) << (n / 32));
}
static void grids_k4(const uint8_t *scales, uint16_t dh, uint16_t dminh, float *a, float *m) {
    const float d = moeq_f16_to_f32(dh), dmin = moeq_f16_to_f32(dminh);
    for (int j = 0; j < MOEQ_QK_K / 32; j++) {
        uint8_t sc, mn;
        moeq_ggml_k4_scale_min(scales, j, &sc, &mn);
        a[j] = d * (float)sc, m[j] = dmin * (float)mn;
    }
}
static void grids_q4_K(const void *blk, float *a, float *m) {
    const moeq_block_q4_K *b = blk;
    grids_k4(b->scales, b->d, b->dmin, a, m);
}
static void put_q4_K(void *blk, const uint8_t *c) {
    put_k4_nibbles(((moeq_block_q4_K *)blk)->qs, c);
}
static void grids_q5_K(const void *blk, float *a, float *m) {
    const moeq_block_q5_K *b = blk;
    grids_k4(b->scales, b->d, b->dmin, a, m);
}
static void put_q5_K(void *blk, const uint8_t *c) { // fifth bit of sub-block j's weight l: qh[l] bit j
    moeq_block_q5_K *b = blk;
    put_k4_nibbles(b->qs, c);
    memset(b->qh, 0, sizeof b->qh);
    for (int n = 0; n < MOEQ_QK_K; n++) b->qh[n % 32] |= (uint8_t)(((c[n] >> 4) & 1) << (n / 32));
}
static void grids_q6_K(const void *blk, float *a, float *m) { // d·sc·(c − 32) per 16: (d·sc)·t
    const moeq_block_q6_K *b = blk;
    const float d = moeq_f16_to_f32(b->d);
    for (int s = 0; s < MOEQ_QK_K / 16; s++) a[s] = d * (float)b->scales[s], m[s] = 0.0f;
}
static void put_q6_K(void *blk, const uint8_t *c) { // n = 128h + 32s + l: low nibble in ql, 2 high bits in qh
    moeq_block_q6_K *b = blk;
    memset(b->ql, 0, sizeof b->ql), memset(b->qh, 0, sizeof b->qh);
    for (int n = 0; n < MOEQ_QK_K; n++) {
        const int h = n / 128, s = n / 32 % 4, l = n % 32;
        b->ql[64 * h + 32 * (s % 2) + l] |= (uint8_t)((c[n] & 0xF) << (4 * (s / 2)));
        b->qh[32 * h + l] |= (uint8_t)((c[n] >> 4) << (2 * s));
    }
}
static void grids_iq4_xs(const void *blk, float *a, float *m) { // d·(ls − 32)·kvalues[c] per 32
    const moeq_block_iq4_xs *b = blk;
    const float d = moeq_f16_to_f32(b->d);
    for (int ib = 0; ib < MOEQ_QK_K / 32; ib++) {
        const int ls =
            ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((b->scales_h >> (2 * ib)) & 3) << 4);
        a[ib] = d * (float)(ls - 32), m[ib] = 0.0f;
    }
}
static void put_iq4_xs(void *blk, const uint8_t *c) {
    moeq_block_iq4_xs *b = blk;
    for (int ib = 0; ib < MOEQ_QK_K / 32; ib++) put_nibbles32(b->qs + 16 * ib, c + 32 * ib);
}

// ---- the table ----

#define CODEC(T, t, blk, sb, lv, off, kv)                                                                    \
    { MOEQ_QTYPE_##T, blk, sb, lv, off, kv, grids_##t, put_##t }

static const moeq_gptq_codec codecs[] = {
    CODEC(Q4_0, q4_0, 32, 32, 16, 8, NULL),
    CODEC(Q4_1, q4_1, 32, 32, 16, 0, NULL),
    CODEC(Q5_0, q5_0, 32, 32, 32, 16, NULL),
    CODEC(Q5_1, q5_1, 32, 32, 32, 0, NULL),
    CODEC(Q8_0, q8_0, 32, 32, 256, 128, NULL),
    CODEC(Q2_K, q2_K, 256, 16, 4, 0, NULL),
    CODEC(Q3_K, q3_K, 256, 16, 8, 4, NULL),
    CODEC(Q4_K, q4_K, 256, 32, 16, 0, NULL),
    CODEC(Q5_K, q5_K, 256, 32, 32, 0, NULL),
    CODEC(Q6_K, q6_K, 256, 16, 64, 32, NULL),
    CODEC(IQ4_NL, iq4_nl, 32, 32, 16, 0, moeq_ggml_kvalues_iq4nl),
    CODEC(IQ4_XS, iq4_xs, 256, 32, 16, 0, moeq_ggml_kvalues_iq4nl),
};

const moeq_gptq_codec *moeq_gptq_codec_get(int t) {
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
        if (codecs[i].type == t) return &codecs[i];
    return NULL;
}
