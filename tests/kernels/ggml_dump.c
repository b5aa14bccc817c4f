// ggml_dump.c: writes, for every llama.cpp block type in the format table, rows of blocks and moeq's
// dequantization of them, for tests/kernels/test_ggml_gguf.py to decode with the `gguf` package (llama.cpp's
// own Python dequantizers) and compare bit for bit. Two kinds of rows per type: random bytes (every field
// value, fp16 NaN/Inf included: the decoders must agree on them too) and blocks moeq's quantizer made from
// seeded Gaussian, heavy-tailed, constant and zero rows.
//   ggml_dump DIR   writes DIR/<type>.blocks (rows x row bytes), DIR/<type>.f32 (rows x k floats) and one
//                   line per type on stdout: "<type> <ggml id> <k> <rows>"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_kernels.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { // xorshift64*
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static float gauss(void) { // Box-Muller
    const double u = ((next() >> 11) + 0.5) / 9007199254740992.0, v = (next() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static int dump(const char *dir, int t) {
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    enum { RANDOM_ROWS = 48, MADE_ROWS = 40 };
    const int64_t k = 4 * tr->block, rows = RANDOM_ROWS + MADE_ROWS, rb = moeq_qtype_row_bytes(t, k);
    uint8_t *blocks = malloc((size_t)(rows * rb));
    float *w = malloc(sizeof(float) * (size_t)(MADE_ROWS * k)),
          *y = malloc(sizeof(float) * (size_t)(rows * k));
    if (!blocks || !w || !y) return 1;
    for (int64_t i = 0; i < RANDOM_ROWS * rb; i++) blocks[i] = (uint8_t)next();
    for (int64_t r = 0; r < MADE_ROWS; r++)
        for (int64_t j = 0; j < k; j++) {
            const float g = gauss(), s = r % 4 == 0 ? 1e-3f : r % 4 == 1 ? 1.0f : 30.0f;
            float v = g * s;
            if (r % 5 == 2) v = g * s / (0.05f + fabsf(gauss())); // heavy tails
            if (r % 10 == 7) v = 0.25f;                           // constant
            if (r % 10 == 9) v = 0.0f;                            // zero
            if (r % 7 == 3 && j % 37 == 5) v *= 40.0f;            // outliers
            w[r * k + j] = v;
        }
    moeq_qmat q = {.bits = tr->bits,
                   .R = MADE_ROWS,
                   .C = k,
                   .G = tr->block,
                   .codes = blocks + RANDOM_ROWS * rb,
                   .type = (moeq_qtype)t};
    if (tr->quantize(w, &q) != MOEQ_OK) {
        fprintf(stderr, "%s: quantize: %s\n", tr->name, moeq_error_detail());
        return 1;
    }
    moeq_qmat all = {
        .bits = tr->bits, .R = rows, .C = k, .G = tr->block, .codes = blocks, .type = (moeq_qtype)t};
    if (tr->dequantize(&all, y) != MOEQ_OK) {
        fprintf(stderr, "%s: dequantize: %s\n", tr->name, moeq_error_detail());
        return 1;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.blocks", dir, tr->name);
    FILE *f = fopen(p, "wb");
    int bad = !f || fwrite(blocks, 1, (size_t)(rows * rb), f) != (size_t)(rows * rb);
    if (f) bad |= fclose(f) != 0;
    snprintf(p, sizeof p, "%s/%s.f32", dir, tr->name);
    f = fopen(p, "wb");
    bad |= !f || fwrite(y, sizeof(float), (size_t)(rows * k), f) != (size_t)(rows * k);
    if (f) bad |= fclose(f) != 0;
    printf("%s %d %lld %lld\n", tr->name, moeq_qtype_ggml_id(t), (long long)k, (long long)rows);
    free(blocks), free(w), free(y);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ggml_dump DIR\n");
        return 2;
    }
    int n = 0;
    for (int t = 1; t < MOEQ_QTYPE_COUNT; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        if (!tr || !(tr->family & MOEQ_QFAMILY_GGML)) continue;
        if (dump(argv[1], t) != 0) return 1;
        n++;
    }
    return n ? 0 : 1;
}
