// dtype.h: element types of source checkpoints (safetensors dtypes) and their decoders to fp32.
//
// Traits table, not switch statements: name (as spelled in safetensors headers), element size, and
// whether moeq can decode it to fp32. Enum values are stable (stored in artifacts as "source dtype").
// Scalar converters are static inline so that CUDA kernels can share them (MOEQ_HD).
// FP8 E4M3 is the "fn" variant used by DeepSeek-V3/R1 and Kimi-K2: bias 7, no infinities,
// S.1111.111 = NaN, max finite 448; block-scaled by a float32 `weight_scale_inv` per 128x128 block.
#ifndef MOEQ_DTYPE_H
#define MOEQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moeq_status.h"

#ifdef __CUDACC__
#define MOEQ_HD __host__ __device__
#else
#define MOEQ_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moeq_dtype {
    MOEQ_DTYPE_INVALID = 0,
    MOEQ_DTYPE_F32 = 1,
    MOEQ_DTYPE_F16 = 2,
    MOEQ_DTYPE_BF16 = 3,
    MOEQ_DTYPE_F8_E4M3 = 4,
    MOEQ_DTYPE_F8_E5M2 = 5,
    MOEQ_DTYPE_F64 = 6,
    MOEQ_DTYPE_I64 = 7,
    MOEQ_DTYPE_I32 = 8,
    MOEQ_DTYPE_I16 = 9,
    MOEQ_DTYPE_I8 = 10,
    MOEQ_DTYPE_U8 = 11,
    MOEQ_DTYPE_BOOL = 12,
    MOEQ_DTYPE_COUNT
} moeq_dtype;

typedef struct moeq_dtype_traits {
    const char *name;  // safetensors spelling, e.g. "BF16"
    size_t size;       // bytes per element
    int decodable;     // 1 when moeq_decode_cpu converts it to fp32
} moeq_dtype_traits;

extern const moeq_dtype_traits moeq_dtypes[MOEQ_DTYPE_COUNT];

// Parses a safetensors dtype name; MOEQ_DTYPE_INVALID when unknown.
moeq_dtype moeq_dtype_from_name(const char *name);
// "BF16", ...; "invalid" for out-of-range values.
const char *moeq_dtype_name(moeq_dtype t);
size_t moeq_dtype_size(moeq_dtype t);

// ---- scalar converters (exact decoders; encoders round to nearest even) ----

static inline MOEQ_HD float moeq_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline MOEQ_HD uint32_t moeq_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline MOEQ_HD float moeq_bf16_to_f32(uint16_t h) {
    return moeq_bits_f32((uint32_t)h << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN.
static inline MOEQ_HD uint16_t moeq_f32_to_bf16(float f) {
    uint32_t u = moeq_f32_bits(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline MOEQ_HD float moeq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return moeq_bits_f32(sign | 0x7f800000u | (man << 13)); // inf / nan
    if (exp == 0) {
        // zero or subnormal: man * 2^-24, exact in fp32
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return moeq_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// fp32 -> fp16, round to nearest even, overflow to inf, NaN to NaN.
static inline MOEQ_HD uint16_t moeq_f32_to_f16(float f) {
    uint32_t u = moeq_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // >= 65520 rounds to inf
    if (a < 0x38800000u) {
        // result is subnormal (or zero): value / 2^-24 rounded to nearest even
        if (a < 0x33000000u) return sign; // < 2^-25: rounds to zero
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; // 14 + (113 - e) - 1 ... gives m >> (126 - e) units of 2^-24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a - 0x38000000u; // rebias 127 -> 15
    uint32_t q = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

// FP8 E4M3 (fn): exact decode. 0x7f / 0xff are NaN.
static inline MOEQ_HD float moeq_fp8e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t exp = (b >> 3) & 0xfu, man = b & 0x7u;
    if (exp == 0xf && man == 0x7) return moeq_bits_f32(0x7fc00000u | sign);
    if (exp == 0) {
        float v = (float)man * (1.0f / 512.0f); // man/8 * 2^-6
        return sign ? -v : v;
    }
    return moeq_bits_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

// fp32 -> FP8 E4M3 (fn), round to nearest even, saturating to +-448 (as torch's float8_e4m3fn cast of
// clamped values); NaN -> 0x7f.
static inline MOEQ_HD uint8_t moeq_f32_to_fp8e4m3(float f) {
    uint32_t u = moeq_f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7f;
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7e); // >= 448 (incl. inf) saturates
    if (a < 0x3c800000u) {
        // below 2^-6: subnormal grid of 2^-9
        float v = moeq_bits_f32(a) * 512.0f;  // exact scaling by a power of two
        uint32_t q = (uint32_t)v;
        float rem = v - (float)q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u))) q++;
        return (uint8_t)(sign | q); // q == 8 is the smallest normal 0x08, which is correct
    }
    uint32_t e = (a >> 23) - 120u; // rebias 127 -> 7
    uint32_t m = a & 0x7fffffu;
    uint32_t q = (e << 3) | (m >> 20), rem = m & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (q & 1u))) q++;
    if (q > 0x7eu) q = 0x7eu;
    return (uint8_t)(sign | q);
}

static inline MOEQ_HD float moeq_fp8e5m2_to_f32(uint8_t b) {
    // E5M2 is the top byte of an fp16
    return moeq_f16_to_f32((uint16_t)((uint16_t)b << 8));
}

// ---- array decoders (CPU reference) ----

// dst[i] = fp32(src[i]) for i < n. MOEQ_ERR_UNSUPPORTED for integer/bool/F64 types.
// FP8 is decoded without its block scale here: see moeq_fp8_block_dequant_cpu.
moeq_status moeq_decode_cpu(moeq_dtype t, const void *src, float *dst, int64_t n);

// 1 when each of the n values survives fp32 -> fp16 -> fp32 bit for bit (storing them as F16 loses nothing),
// 0 otherwise.
int moeq_f16_exact_cpu(const float *x, int64_t n);

// DeepSeek/Kimi block-FP8 dequantization of a whole (R, C) weight:
//   out[i, j] = fp8(q[i, j]) * scale_inv[i / B, j / B],  scale_inv: (ceil(R/B), ceil(C/B)) row-major
// (edges of partial blocks use the same scale; the padding was cropped by the writer).
moeq_status moeq_fp8_block_dequant_cpu(const uint8_t *q, // (R, C) row-major FP8 E4M3
                                       const float *scale_inv, int64_t R, int64_t C, int64_t B,
                                       float *out);          // (R, C) fp32

// Rows [r0, r0 + nr) of the same dequantization, for streaming a large weight in row panels.
moeq_status moeq_fp8_block_dequant_rows_cpu(const uint8_t *q, // (nr, C) the panel's bytes
                                            const float *scale_inv, int64_t R, int64_t C, int64_t B,
                                            int64_t r0, int64_t nr, float *out); // (nr, C)

// ---- a weight as stored: what the decoders need to turn its bytes into fp32 ----
// The io layer fills it from a checkpoint (moeq_catalog_raw_view); the kernels need no file. The CPU
// functions take host pointers; the CUDA ones (moeq_raw_decode_cuda) a copy whose data and block_scale
// point to device memory.
typedef struct moeq_raw_tensor {
    moeq_dtype dtype;         // a decodable dtype (moeq_dtypes[dtype].decodable)
    const void *data;         // (R, C) elements in dtype, row-major, aligned to the element size
    const float *block_scale; // FP8 E4M3 with block scales: (ceil(R/B), ceil(C/B)) scale_inv; else NULL
    int64_t block;            // B when block_scale is set
    int64_t R, C;
} moeq_raw_tensor;

// Bytes of t's data and of its block scale (0 without one).
size_t moeq_raw_tensor_bytes(const moeq_raw_tensor *t);
size_t moeq_raw_tensor_scale_bytes(const moeq_raw_tensor *t);
// MOEQ_OK, or MOEQ_ERR_ARG / MOEQ_ERR_UNSUPPORTED naming `who` (bad geometry, NULL data, an undecodable
// dtype, a block scale on anything but FP8 E4M3, B <= 0, misaligned data).
moeq_status moeq_raw_tensor_check(const moeq_raw_tensor *t, const char *who);
// out (R, C) = fp32 of t: moeq_fp8_block_dequant_cpu when t has a block scale, else moeq_decode_cpu.
moeq_status moeq_raw_decode_cpu(const moeq_raw_tensor *t, float *out);

#ifdef __cplusplus
}
#endif
#endif
