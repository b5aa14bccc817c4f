// dtype_cpu.c: dtype traits and the CPU reference decoders (BF16/F16/F32/F8 -> fp32, block-FP8).
// Deterministic and exact: every supported source value has an exact fp32 image, so the decoded
// weights are the same whatever the backend or thread count. Not here: encoders (inline in dtype.h).
#include "dtype.h"

#include <math.h>
#include <string.h>

const moeq_dtype_traits moeq_dtypes[MOEQ_DTYPE_COUNT] = {
    [MOEQ_DTYPE_INVALID] = {"invalid", 0, 0}, [MOEQ_DTYPE_F32] = {"F32", 4, 1},
    [MOEQ_DTYPE_F16] = {"F16", 2, 1},         [MOEQ_DTYPE_BF16] = {"BF16", 2, 1},
    [MOEQ_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 1}, [MOEQ_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 1},
    [MOEQ_DTYPE_F64] = {"F64", 8, 0},         [MOEQ_DTYPE_I64] = {"I64", 8, 0},
    [MOEQ_DTYPE_I32] = {"I32", 4, 0},         [MOEQ_DTYPE_I16] = {"I16", 2, 0},
    [MOEQ_DTYPE_I8] = {"I8", 1, 0},           [MOEQ_DTYPE_U8] = {"U8", 1, 0},
    [MOEQ_DTYPE_BOOL] = {"BOOL", 1, 0},
};

moeq_dtype moeq_dtype_from_name(const char *name) {
    if (!name) return MOEQ_DTYPE_INVALID;
    for (int t = 1; t < MOEQ_DTYPE_COUNT; t++)
        if (strcmp(name, moeq_dtypes[t].name) == 0) return (moeq_dtype)t;
    return MOEQ_DTYPE_INVALID;
}

const char *moeq_dtype_name(moeq_dtype t) {
    if ((int)t <= 0 || t >= MOEQ_DTYPE_COUNT) return "invalid";
    return moeq_dtypes[t].name;
}

size_t moeq_dtype_size(moeq_dtype t) {
    if ((int)t <= 0 || t >= MOEQ_DTYPE_COUNT) return 0;
    return moeq_dtypes[t].size;
}

// The 256 fp32 images of an FP8 format, from the exact scalar decoders in dtype.h: a table lookup
// per byte instead of a branchy conversion (identical bits, NaN payloads included). Built per call: 256
// conversions against the millions of elements of a weight.
static void fp8_table(moeq_dtype t, float lut[256]) {
    for (int b = 0; b < 256; b++)
        lut[b] = t == MOEQ_DTYPE_F8_E4M3 ? moeq_fp8e4m3_to_f32((uint8_t)b) : moeq_fp8e5m2_to_f32((uint8_t)b);
}

moeq_status moeq_decode_cpu(moeq_dtype t, const void *src, float *dst, int64_t n) {
    if (n < 0 || (n > 0 && (!src || !dst))) return MOEQ_FAIL(MOEQ_ERR_ARG, "decode: n=%lld", (long long)n);
    switch (t) {
    case MOEQ_DTYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return MOEQ_OK;
    case MOEQ_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src;
#pragma omp parallel for schedule(static) if (n > (1 << 20))
        for (int64_t i = 0; i < n; i++) dst[i] = moeq_bf16_to_f32(s[i]);
        return MOEQ_OK;
    }
    case MOEQ_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src;
#pragma omp parallel for schedule(static) if (n > (1 << 20))
        for (int64_t i = 0; i < n; i++) dst[i] = moeq_f16_to_f32(s[i]);
        return MOEQ_OK;
    }
    case MOEQ_DTYPE_F8_E4M3:
    case MOEQ_DTYPE_F8_E5M2: {
        float lut[256];
        fp8_table(t, lut);
        const uint8_t *s = (const uint8_t *)src;
#pragma omp parallel for schedule(static) if (n > (1 << 20))
        for (int64_t i = 0; i < n; i++) dst[i] = lut[s[i]];
        return MOEQ_OK;
    }
    default:
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "dtype %s cannot be decoded to fp32\n---> HINT: moeq reads "
                         "F32, F16, BF16, F8_E4M3 and F8_E5M2 weights",
                         moeq_dtype_name(t));
    }
}

moeq_status moeq_fp8_block_dequant_rows_cpu(const uint8_t *q, const float *scale_inv, int64_t R, int64_t C,
                                            int64_t B, int64_t r0, int64_t nr, float *out) {
    if (R <= 0 || C <= 0 || B <= 0 || r0 < 0 || nr < 0 || r0 + nr > R)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "fp8 block dequant: R=%lld C=%lld B=%lld rows [%lld, %lld)",
                         (long long)R, (long long)C, (long long)B, (long long)r0, (long long)(r0 + nr));
    const int64_t nbc = (C + B - 1) / B;
    float lut[256];
    fp8_table(MOEQ_DTYPE_F8_E4M3, lut);
#pragma omp parallel for schedule(static) if (nr * C > (1 << 20))
    for (int64_t i = 0; i < nr; i++) {
        const float *srow = scale_inv + ((r0 + i) / B) * nbc;
        const uint8_t *qrow = q + i * C;
        float *orow = out + i * C;
        for (int64_t jb = 0; jb < nbc; jb++) { // one scale per B columns: no division per element
            const float sc = srow[jb];
            const int64_t j1 = jb * B + B < C ? jb * B + B : C;
            for (int64_t j = jb * B; j < j1; j++) orow[j] = lut[qrow[j]] * sc;
        }
    }
    return MOEQ_OK;
}

moeq_status moeq_fp8_block_dequant_cpu(const uint8_t *q, const float *scale_inv, int64_t R, int64_t C,
                                       int64_t B, float *out) {
    return moeq_fp8_block_dequant_rows_cpu(q, scale_inv, R, C, B, 0, R, out);
}

// ---- moeq_raw_tensor ----

size_t moeq_raw_tensor_bytes(const moeq_raw_tensor *t) {
    return t && t->R > 0 && t->C > 0 ? (size_t)t->R * (size_t)t->C * moeq_dtype_size(t->dtype) : 0;
}

size_t moeq_raw_tensor_scale_bytes(const moeq_raw_tensor *t) {
    if (!t || !t->block_scale || t->block <= 0 || t->R <= 0 || t->C <= 0) return 0;
    const int64_t B = t->block;
    return (size_t)((t->R + B - 1) / B) * (size_t)((t->C + B - 1) / B) * sizeof(float);
}

moeq_status moeq_raw_tensor_check(const moeq_raw_tensor *t, const char *who) {
    who = who ? who : "raw tensor";
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL", who);
    if (t->R <= 0 || t->C <= 0 || !t->data)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %lld x %lld %s with %s data", who, (long long)t->R,
                         (long long)t->C, moeq_dtype_name(t->dtype), t->data ? "its" : "NULL");
    if ((int)t->dtype <= 0 || t->dtype >= MOEQ_DTYPE_COUNT || !moeq_dtypes[t->dtype].decodable)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: dtype %s cannot be decoded to fp32", who,
                         moeq_dtype_name(t->dtype));
    if (t->block_scale && (t->dtype != MOEQ_DTYPE_F8_E4M3 || t->block <= 0))
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: a block scale (B=%lld) on %s data (only F8_E4M3 with B > 0 has one)", who,
                         (long long)t->block, moeq_dtype_name(t->dtype));
    const size_t es = moeq_dtype_size(t->dtype);
    if ((uintptr_t)t->data % es != 0 || (uintptr_t)t->block_scale % sizeof(float) != 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %s is not aligned to its %zu-byte elements", who,
                         (uintptr_t)t->data % es ? "data" : "the block scale",
                         (uintptr_t)t->data % es ? es : sizeof(float));
    return MOEQ_OK;
}

moeq_status moeq_raw_decode_cpu(const moeq_raw_tensor *t, float *out) {
    MOEQ_TRY(moeq_raw_tensor_check(t, "decode"));
    if (!out) return MOEQ_FAIL(MOEQ_ERR_ARG, "decode: NULL output");
    if (t->block_scale) return moeq_fp8_block_dequant_cpu(t->data, t->block_scale, t->R, t->C, t->block, out);
    return moeq_decode_cpu(t->dtype, t->data, out, t->R * t->C);
}

int moeq_f16_exact_cpu(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float y = moeq_f16_to_f32(moeq_f32_to_f16(x[i]));
        if (memcmp(&y, &x[i], sizeof y)) return 0;
    }
    return 1;
}
