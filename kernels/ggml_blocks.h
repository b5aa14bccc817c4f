// ggml_blocks.h: llama.cpp's block types, byte for byte (ggml-common.h defines them; these are moeq's own
// declarations of the same layouts, checked by size here and by the `gguf` package's dequantizers in
// tests/kernels/test_ggml_gguf.py). A row of C weights is C / QK blocks laid end to end along the input
// dimension; a block is self-contained (its scales sit inside it), so a moeq artifact's `codes` plane of a
// ggml format is exactly the tensor data of a GGUF file. All multi-byte fields are little-endian; `d`,
// `m`, `dmin` are IEEE fp16 bit patterns.
//
//   type     QK   bytes  bpw      model (per weight, j in the block)
//   q4_0     32   18     4.5      w = d·(q − 8),            q 4-bit
//   q4_1     32   20     5.0      w = d·q + m,              q 4-bit
//   q5_0     32   22     5.5      w = d·(q − 16),           q 5-bit (high bits in qh)
//   q5_1     32   24     6.0      w = d·q + m,              q 5-bit
//   q8_0     32   34     8.5      w = d·q,                  q int8
//   q2_K    256   84     2.625    w = d·sc·q − dmin·mn,     16 sub-blocks of 16, 4-bit sc and mn
//   q3_K    256  110     3.4375   w = d·(sc − 32)·(q − 4·!hbit), 16 sub-blocks of 16, 6-bit sc
//   q4_K    256  144     4.5      w = d·sc·q − dmin·mn,     8 sub-blocks of 32, 6-bit sc and mn
//   q5_K    256  176     5.5      as q4_K with a 5th bit in qh
//   q6_K    256  210     6.5625   w = d·sc·(q − 32),        16 sub-blocks of 16, int8 sc
//   iq4_nl   32   18     4.5      w = d·kvalues[q],         non-linear 4-bit grid
//   iq4_xs  256  136     4.25     w = d·(ls − 32)·kvalues[q], 8 sub-blocks of 32, 6-bit ls
#ifndef MOEQ_GGML_BLOCKS_H
#define MOEQ_GGML_BLOCKS_H

#include <stdint.h>

#include "qformat.h" // defines: MOEQ_STATIC_ASSERT

#define MOEQ_QK4_0        32
#define MOEQ_QK4_1        32
#define MOEQ_QK5_0        32
#define MOEQ_QK5_1        32
#define MOEQ_QK8_0        32
#define MOEQ_QK_K         256
#define MOEQ_QK4_NL       32
#define MOEQ_K_SCALE_SIZE 12

typedef uint16_t moeq_ggml_half; // IEEE fp16 bits

typedef struct {
    moeq_ggml_half d;
    uint8_t qs[MOEQ_QK4_0 / 2]; // nibbles: weight j in qs[j] low (j < 16) or qs[j - 16] high
} moeq_block_q4_0;
typedef struct {
    moeq_ggml_half d, m;
    uint8_t qs[MOEQ_QK4_1 / 2];
} moeq_block_q4_1;
typedef struct {
    moeq_ggml_half d;
    uint8_t qh[4]; // 5th bits, weight j at bit j (little-endian uint32)
    uint8_t qs[MOEQ_QK5_0 / 2];
} moeq_block_q5_0;
typedef struct {
    moeq_ggml_half d, m;
    uint8_t qh[4];
    uint8_t qs[MOEQ_QK5_1 / 2];
} moeq_block_q5_1;
typedef struct {
    moeq_ggml_half d;
    int8_t qs[MOEQ_QK8_0];
} moeq_block_q8_0;
typedef struct {
    uint8_t scales[MOEQ_QK_K / 16]; // low nibble: scale, high nibble: min, per sub-block of 16
    uint8_t qs[MOEQ_QK_K / 4];      // 2-bit quants
    moeq_ggml_half d, dmin;
} moeq_block_q2_K;
typedef struct {
    uint8_t hmask[MOEQ_QK_K / 8]; // high bits
    uint8_t qs[MOEQ_QK_K / 4];    // low 2 bits
    uint8_t scales[12];           // 16 6-bit scales, packed
    moeq_ggml_half d;
} moeq_block_q3_K;
typedef struct {
    moeq_ggml_half d, dmin;
    uint8_t scales[MOEQ_K_SCALE_SIZE]; // 8 6-bit scales and 8 6-bit mins, packed
    uint8_t qs[MOEQ_QK_K / 2];
} moeq_block_q4_K;
typedef struct {
    moeq_ggml_half d, dmin;
    uint8_t scales[MOEQ_K_SCALE_SIZE];
    uint8_t qh[MOEQ_QK_K / 8];
    uint8_t qs[MOEQ_QK_K / 2];
} moeq_block_q5_K;
typedef struct {
    uint8_t ql[MOEQ_QK_K / 2]; // low 4 bits
    uint8_t qh[MOEQ_QK_K / 4]; // high 2 bits
    int8_t scales[MOEQ_QK_K / 16];
    moeq_ggml_half d;
} moeq_block_q6_K;
typedef struct {
    moeq_ggml_half d;
    uint8_t qs[MOEQ_QK4_NL / 2];
} moeq_block_iq4_nl;
typedef struct {
    moeq_ggml_half d;
    uint16_t scales_h;
    uint8_t scales_l[MOEQ_QK_K / 64];
    uint8_t qs[MOEQ_QK_K / 2];
} moeq_block_iq4_xs;

MOEQ_STATIC_ASSERT(sizeof(moeq_block_q4_0) == 18, "block_q4_0 is 18 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q4_1) == 20, "block_q4_1 is 20 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q5_0) == 22, "block_q5_0 is 22 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q5_1) == 24, "block_q5_1 is 24 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q8_0) == 34, "block_q8_0 is 34 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q2_K) == 84, "block_q2_K is 84 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q3_K) == 110, "block_q3_K is 110 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q4_K) == 144, "block_q4_K is 144 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q5_K) == 176, "block_q5_K is 176 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_q6_K) == 210, "block_q6_K is 210 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");
MOEQ_STATIC_ASSERT(sizeof(moeq_block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");

#endif
