// qformat.h: the storage formats of quantized matrices, described once for C11 and nvcc (ggml-common.h
// style). Formats are data: a traits table (moeq_qtypes[]) is the only place that knows a format: its name,
// code width, packing unit, block geometry, the planes (datasets) it stores, its pack/unpack, its reference
// quantizer and dequantizer, and what a row must be a multiple of. One geometry function, moeq_qlayout_make,
// derives every size from it: the plan's bytes and bits per weight, the artifact's datasets, the buffers of
// the quantize and eval workers and of the export.
//
// Letters: R = rows (out features), C = cols (in features), G = group size (divides C), r = rank.
//
// The grouped family (MOEQ_QFAMILY_GROUPED: q2, q3, q4, q8; HQQ semantics, asymmetric, fractional zero):
//   w ≈ (q − z) · s
//   q: b-bit unsigned code in [0, 2^b − 1], one per weight;
//   s, z: one fp16 scale and one fp16 (fractional) zero per group of G consecutive weights of a row
//         (groups run along the input dimension C: HQQ axis=1; G is the tensor's `group` setting).
// Dequantisation is defined as the fp32 expression ((float)q − z) * s, two IEEE operations in that
// order, with s and z widened exactly from fp16 (no FMA: a CUDA port must use __fsub_rn/__fmul_rn).
//
// The integer-zero family (MOEQ_QFAMILY_INT: i2, i3, i4, i8 asymmetric; i2s, i3s, i4s, i8s symmetric; GPTQ,
// compressed-tensors pack-quantized, vLLM Marlin/moe_wna16 semantics):
//   w ≈ (q − z) · s
//   q: b-bit unsigned code in [0, 2^b − 1], packed as the grouped format of the same width (same
//   pack/unpack); s: one fp16 scale per group of G along C (G: the `group` setting; `group: channel` is G =
//   C); z: an INTEGER zero in [0, 2^b − 1] per group: asymmetric formats store it in the zero plane as b-bit
//      codes, the (R, C/G) zeros row-major packed as ONE code string (qcode k = zero of row k / (C/G), group
//      k % (C/G); so that the plane costs b/G bits per weight, as GPTQ and compressed-tensors count);
//      symmetric formats store none: z = 2^(b−1) (traits `zero_point`).
// Dequantisation is the fp32 expression (float)((int)q − (int)z) * s: the integer difference (|q − z| < 2^b)
// times s widened exactly from fp16, one product of an 8-bit and an 11-bit significand: EXACT in fp32, so
// it equals compressed-tensors' (q − zp)·scale computed in fp32, and in fp16/bf16 after rounding to them.
// Bits per weight: b + 16/G (symmetric) or b + 16/G + b/G (asymmetric), plus the packing's padding.
//
// Bit layout (all formats): each row is an independent byte string; code k of a row occupies bits
// [b·k, b·k + b) of the row read as one little-endian bit stream (bit j of the stream = bit j%8 of
// byte j/8). The packing unit is the smallest whole number of codes filling whole bytes (32 codes for
// 3-bit so that a unit is three little-endian uint32 words, as the MiLo kernel layout and HQQ's
// 3bit_32 word size). A row of C codes takes ceil(C / unit_codes) units; when C is not a multiple of
// the unit, the last unit is padded with zero codes (pack writes zeros, unpack ignores them).
//
//   format  codes/unit  bytes/unit  bits/code  row bytes
//   q2       4           1           2          ceil(C/4)
//   q3      32          12           3          12·ceil(C/32)   (code 10 straddles words 0 and 1, etc.)
//   q4       2           1           4          ceil(C/2)       (low nibble first)
//   q8       1           1           8          C
//
// Planes of a stored matrix (moeq_qlayout; the artifact's datasets, docs/ARTIFACT.md):
//   codes    uint8 (R, row_bytes)       every format
//   scale    fp16  (R, C/B)             formats with MOEQ_PLANE_SCALE in `planes` (B: block, or G)
//   zero     fp16  (R, C/B)             formats with MOEQ_PLANE_ZERO (the integer family: uint8,
//                                       row_bytes(R·C/B) bytes, 1-D: the packed integer zeros)
//   U, V     compensator factors of rank r > 0: fp16 (R, r) / (r, C), or int3 uint8 bytes + fp16 scales
//            (U_scale, V_scale: one per 64 flattened elements)
// Bits per weight: 8·bytes/(R·C) over all planes, i.e. for the grouped family
//   8·row_bytes(C)/C  (= b when C is a multiple of the unit)  +  32/G  (fp16 scale + fp16 zero)
//   + compensator:  fp16 factors  16·r·(R+C)/(R·C);
//                   int3 factors  8·(factor_bytes(R·r) + factor_bytes(r·C)))/(R·C), where
//                   factor_bytes(n) = 12·ceil(n/32) + 2·ceil(n/64)  (3-bit codes + an fp16 scale per 64).
// Enum values are stable (written into artifacts and plan digests): a retired format keeps its slot with
// bits = 0; the grouped formats' values are their bit widths, so that `bits: 3` in a recipe names q3; the
// integer family's are 8 + b (asymmetric) and 16 + b (symmetric).
#ifndef MOEQ_QFORMAT_H
#define MOEQ_QFORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_status.h"

#ifdef __CUDACC__
#define MOEQ_QF_HD __host__ __device__
#else
#define MOEQ_QF_HD
#endif

#ifdef __cplusplus
#define MOEQ_STATIC_ASSERT(c, m) static_assert(c, m)
extern "C" {
#else
#define MOEQ_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

// The grouped formats' values are their bit widths, so that artifacts and recipes can store either.
typedef enum moeq_qtype {
    MOEQ_QTYPE_INVALID = 0,
    MOEQ_QTYPE_Q2 = 2,
    MOEQ_QTYPE_Q3 = 3,
    MOEQ_QTYPE_Q4 = 4,
    MOEQ_QTYPE_Q8 = 8,
    // the integer-zero family (MOEQ_QFAMILY_INT): asymmetric 8 + b, symmetric 16 + b
    MOEQ_QTYPE_I2 = 10,
    MOEQ_QTYPE_I3 = 11,
    MOEQ_QTYPE_I4 = 12,
    MOEQ_QTYPE_I8 = 16,
    MOEQ_QTYPE_I2S = 18,
    MOEQ_QTYPE_I3S = 19,
    MOEQ_QTYPE_I4S = 20,
    MOEQ_QTYPE_I8S = 24,
    // llama.cpp's block types (MOEQ_QFAMILY_GGML): 32 + their ggml_type id (ggml.h), so that the GGUF type of
    // a format is moeq_qtype_ggml_id(t) = t − 32
    MOEQ_QTYPE_GGML_BASE = 32,
    MOEQ_QTYPE_Q4_0 = 34,
    MOEQ_QTYPE_Q4_1 = 35,
    MOEQ_QTYPE_Q5_0 = 38,
    MOEQ_QTYPE_Q5_1 = 39,
    MOEQ_QTYPE_Q8_0 = 40,
    MOEQ_QTYPE_Q2_K = 42,
    MOEQ_QTYPE_Q3_K = 43,
    MOEQ_QTYPE_Q4_K = 44,
    MOEQ_QTYPE_Q5_K = 45,
    MOEQ_QTYPE_Q6_K = 46,
    MOEQ_QTYPE_IQ4_NL = 52,
    MOEQ_QTYPE_IQ4_XS = 55,
    MOEQ_QTYPE_COUNT = 56,      // built-in slots; the unused ones have bits = 0
    MOEQ_QTYPE_USER_FIRST = 64, // [64, 96): formats registered at run time (moeq_qtype_register: tests, labs)
    MOEQ_QTYPE_USER_END = 96
} moeq_qtype;

// Format families: which methods can produce a format (moeq_method_traits.formats).
#define MOEQ_QFAMILY_GROUPED 1u // b-bit codes, fp16 scale + fp16 fractional zero per group of G (HQQ, MiLo)
#define MOEQ_QFAMILY_BLOCK   2u // fixed blocks with their own reference quantizer (ggml-style types)
// llama.cpp's block types (kernels/ggml_blocks.h): self-contained blocks, scales inside, stored as they are
// in GGUF tensor data: the codes plane holds the blocks, there are no side planes, and pack/unpack are NULL
// (a block is not a string of equal-width codes).
#define MOEQ_QFAMILY_GGML 4u
// b-bit codes, fp16 scale and an integer zero (stored b-bit, or the implied 2^(b−1)) per group of G
#define MOEQ_QFAMILY_INT 8u
#define MOEQ_QFAMILY_ANY (~0u)

// The planes (datasets) of a stored matrix, in storage order; values are the artifact's dataset indices.
typedef enum moeq_plane {
    MOEQ_PLANE_CODES = 0,
    MOEQ_PLANE_SCALE = 1,
    MOEQ_PLANE_ZERO = 2,
    MOEQ_PLANE_U = 3,
    MOEQ_PLANE_U_SCALE = 4,
    MOEQ_PLANE_V = 5,
    MOEQ_PLANE_V_SCALE = 6,
    MOEQ_PLANE_COUNT
} moeq_plane;

typedef enum moeq_elem { MOEQ_ELEM_U8 = 0, MOEQ_ELEM_F16 = 1 } moeq_elem;

// Packing units as structs, so that sizes are checked by both compilers.
typedef struct moeq_pack2x4 {
    uint8_t b[1];
} moeq_pack2x4; // 4 × 2-bit codes
typedef struct moeq_pack3x32 {
    uint8_t b[12];
} moeq_pack3x32; // 32 × 3-bit codes = 3 LE uint32 words
typedef struct moeq_pack4x2 {
    uint8_t b[1];
} moeq_pack4x2; // 2 × 4-bit codes
typedef struct moeq_pack8x1 {
    uint8_t b[1];
} moeq_pack8x1; // 1 × 8-bit code
MOEQ_STATIC_ASSERT(sizeof(moeq_pack2x4) == 1, "4 x 2-bit codes in 1 byte");
MOEQ_STATIC_ASSERT(sizeof(moeq_pack3x32) == 12, "32 x 3-bit codes in 3 x 32-bit words");
MOEQ_STATIC_ASSERT(sizeof(moeq_pack4x2) == 1, "2 x 4-bit codes in 1 byte");
MOEQ_STATIC_ASSERT(sizeof(moeq_pack8x1) == 1, "1 x 8-bit code in 1 byte");

// Packs n_units · codes_per_unit codes (each < 2^bits) into n_units · unit_bytes bytes, and back.
typedef void (*moeq_pack_fn)(const uint8_t *codes, // (n_units · codes_per_unit)
                             int64_t n_units,
                             uint8_t *dst);        // (n_units · unit_bytes)
typedef void (*moeq_unpack_fn)(const uint8_t *src, // (n_units · unit_bytes)
                               int64_t n_units,
                               uint8_t *codes); // (n_units · codes_per_unit)

struct moeq_qmat; // quant.h

typedef struct moeq_qtype_traits {
    const char *name;   // "q3"; NULL for unused slots
    int bits;           // bits per code; 0 for unused slots
    unsigned family;    // MOEQ_QFAMILY_*
    int codes_per_unit; // codes in one packing unit
    int unit_bytes;     // bytes of one packing unit
    int block;          // weights of a row sharing one scale (and zero): 0 = the tensor's group setting G
    unsigned
        planes; // side planes stored besides codes: bits (1 << MOEQ_PLANE_SCALE) | (1 << MOEQ_PLANE_ZERO)
    const char *model; // one line: the model of a weight (for --help-recipe and docs)
    int zero_point;    // MOEQ_QFAMILY_INT symmetric formats: the implied integer zero 2^(bits−1); else 0
    moeq_pack_fn pack; // NULL for MOEQ_QFAMILY_GGML
    moeq_unpack_fn unpack; // NULL for MOEQ_QFAMILY_GGML
    // The reference quantizer (what method rtn runs; deterministic, defines the stored bytes) and dequantizer
    // of a moeq_qmat of this format: w (R, C) -> codes (+ scale, zero); codes (+ scale, zero) -> out (R, C).
    moeq_status (*quantize)(const float *w, struct moeq_qmat *q);
    moeq_status (*dequantize)(const struct moeq_qmat *q, float *out);
    // MOEQ_QFAMILY_GGML only (NULL otherwise): the row codecs (ggml_quant.h) behind quantize and dequantize,
    // the quantizer with an optional per-weight importance (k floats; NULL: unweighted).
    void (*ggml_quantize_row)(const float *x, void *blocks, int64_t k, const float *imp);
    void (*ggml_dequantize_row)(const void *blocks, float *y, int64_t k);
} moeq_qtype_traits;

extern const moeq_qtype_traits moeq_qtypes[MOEQ_QTYPE_COUNT];

// Traits of format t (a built-in or registered one), or NULL. For the grouped family t is the bit width.
const moeq_qtype_traits *moeq_qtype_get(int t);
// "q3", or "invalid".
const char *moeq_qtype_name(int t);
// The format named s ("q3"), MOEQ_QTYPE_INVALID when none.
moeq_qtype moeq_qtype_from_name(const char *s);
// The names of the formats of the families in mask, comma-separated (for messages).
const char *moeq_qtype_names(unsigned families, char *buf, size_t cap);
// The bit widths of the grouped formats, "2, 3, 4<last>8" (last: ", " or " or "), for messages and help.
const char *moeq_qtype_grouped_bits(const char *last, char *buf, size_t cap);
// Registers a format under id in [MOEQ_QTYPE_USER_FIRST, MOEQ_QTYPE_USER_END) (tests and kernel labs that try
// a format without touching the built-in table). t must stay valid; MOEQ_ERR_ARG for a taken or bad id, an
// incomplete entry or a name already in use.
moeq_status moeq_qtype_register(int id, const moeq_qtype_traits *t);
// The ggml_type id of a llama.cpp block format (GGUF's tensor type), -1 for any other format.
int moeq_qtype_ggml_id(int t);
// Packed bytes of one row of C codes (padded to whole units); -1 for a bad format or C < 0.
int64_t moeq_qtype_row_bytes(int t, int64_t C);

// Packs one row: codes (C) -> dst (row_bytes). The padding of the last unit is written as zeros.
// MOEQ_ERR_ARG for a bad width or a code >= 2^bits (the detail names the column).
moeq_status moeq_qtype_pack_row(int bits, const uint8_t *codes, // (C) one code per byte
                                int64_t C, uint8_t *dst);       // (row_bytes)
// Unpacks one row: src (row_bytes) -> codes (C).
moeq_status moeq_qtype_unpack_row(int bits, const uint8_t *src, // (row_bytes)
                                  int64_t C, uint8_t *codes);   // (C)

// Code k of a packed row, for any format (bits ∈ {2,3,4,8}); what a fused dequantizing GEMV reads.
static inline MOEQ_QF_HD unsigned moeq_qcode_get(int bits, const uint8_t *row, int64_t k) {
    const int64_t bit = (int64_t)bits * k;
    const int64_t byte = bit >> 3;
    const unsigned shift = (unsigned)(bit & 7);
    unsigned v = row[byte];
    if (shift + (unsigned)bits > 8u) v |= (unsigned)row[byte + 1] << 8; // 3-bit codes may straddle bytes
    return (v >> shift) & ((1u << bits) - 1u);
}

// ---- compensator factors (U: (R, r), V: (r, C)) ----

// How a low-rank factor is stored. Values stable (artifact attribute "compensator").
typedef enum moeq_factor_type {
    MOEQ_FACTOR_FP16 = 0, // IEEE half per element
    MOEQ_FACTOR_INT3 = 1, // 3-bit symmetric codes (q3 layout over the flattened factor) + fp16 absmax
                          // scale per 64 consecutive elements: x ≈ (code − 3.5) · s, s = absmax / 3.5
    MOEQ_FACTOR_F32 = 2,  // unquantized (working precision; not a storage format)
    MOEQ_FACTOR_COUNT
} moeq_factor_type;

#define MOEQ_FACTOR_INT3_GROUP 64

// "fp16", "int3", "f32"; "invalid".
const char *moeq_factor_name(moeq_factor_type t);
// The storage type named s among the storage formats (fp16, int3); MOEQ_FACTOR_COUNT when none.
moeq_factor_type moeq_factor_from_name(const char *s);

// Bytes of the codes of n factor elements (fp16: 2n; int3: 12·ceil(n/32); f32: 4n); -1 for a bad type.
int64_t moeq_factor_code_bytes(moeq_factor_type t, int64_t n);
// Number of fp16 scales of n factor elements (int3: ceil(n/64); otherwise 0).
int64_t moeq_factor_n_scales(moeq_factor_type t, int64_t n);

// ---- the one geometry function ----

typedef struct moeq_plane_spec {
    int present;
    moeq_elem elem;
    int ndim;        // 1 or 2
    int64_t dims[2]; // dims[1] unused when ndim == 1
    uint64_t bytes;
} moeq_plane_spec;

typedef struct moeq_qlayout {
    moeq_qtype type;
    int64_t R, C, G;         // G: the block of the format, or the group setting of the grouped family
    int64_t rank;            // compensator rank (0: none)
    moeq_factor_type factor; // storage of U and V when rank > 0
    int64_t row_bytes;       // code bytes per row
    int64_t n_blocks;        // scale blocks per row (C / G)
    moeq_plane_spec plane[MOEQ_PLANE_COUNT];
    uint64_t bytes;         // all planes
    double bits_per_weight; // 8·bytes / (R·C)
} moeq_qlayout;

// Layout of an R×C matrix stored in format t with group G (ignored by fixed-block formats) and a rank-r
// compensator stored as ft (ignored when r == 0). MOEQ_ERR_ARG (detail says which) for an unknown format,
// R or C <= 0, a block or group that does not divide C, r < 0 or r > min(R, C), a factor type that is not a
// storage format (fp16, int3).
moeq_status moeq_qlayout_make(int t, int64_t R, int64_t C, int64_t G, int64_t rank, moeq_factor_type ft,
                              moeq_qlayout *out);

#ifdef __cplusplus
}
#endif
#endif
