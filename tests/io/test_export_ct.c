// test_export_ct.c: the compressed-tensors packing of io/export_ct.c against hand-written int32 words and an
// independent bit loop (compressed-tensors' pack_to_int32: element k of a row at bits [b·k, b·k + b) of the
// row's little-endian int32 word stream, the +2^(b−1) offset of signed values making the stored bits the
// unsigned code):
//   - weight_packed: a row of moeq codes (packed by moeq_qtype_pack_row) converted by moeq_export_ct_words,
//     for b = 2, 3, 4, 8 and C = 40, 64 (rows whose byte count is or is not a multiple of 4, 3-bit codes
//     straddling words), equals the reference words; two literal rows: 4-bit codes 1..8 -> 0x87654321 and
//     8-bit codes 1..4 -> 0x04030201;
//   - weight_zero_point: the zero plane (R·n_g codes, row-major, one packed string) converted by
//     moeq_export_ct_zp is packed along the rows (packed_dim 0): column g's words hold zeros (0, g), (1, g),
//     ... (a 3-bit case straddles two words).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "export_impl.h" // defines: moeq_export_ct_words, moeq_export_ct_zp
#include "qformat.h"     // defines: moeq_qtype_pack_row, moeq_qtype_row_bytes

// Reference: codes (n) -> ceil(n·b/32) words, bit by bit.
static void ref_words(const uint8_t *codes, int64_t n, int b, uint32_t *w) {
    memset(w, 0, sizeof *w * (size_t)((n * b + 31) / 32));
    for (int64_t k = 0; k < n; k++)
        for (int j = 0; j < b; j++)
            if (codes[k] >> j & 1) w[(k * b + j) / 32] |= 1u << ((k * b + j) % 32);
}

static void words_of_row(int b, int64_t C, const uint8_t *codes, uint32_t *out) {
    uint8_t packed[64];
    const int64_t rb = moeq_qtype_row_bytes(b, C), ob = (C * b + 31) / 32 * 4;
    assert_true(rb > 0 && rb <= (int64_t)sizeof packed);
    assert_int_equal(moeq_qtype_pack_row(b, codes, C, packed), MOEQ_OK);
    uint8_t bytes[64];
    moeq_export_ct_words(packed, 1, rb, bytes, ob);
    memcpy(out, bytes, (size_t)ob); // little-endian host
}

static void test_words_literal(void **state) {
    (void)state;
    uint8_t c4[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c8[4] = {1, 2, 3, 4};
    uint32_t w[4];
    words_of_row(4, 8, c4, w);
    assert_int_equal(w[0], 0x87654321u);
    words_of_row(8, 4, c8, w);
    assert_int_equal(w[0], 0x04030201u);
}

static void test_words_reference(void **state) {
    (void)state;
    const int bits[] = {2, 3, 4, 8};
    const int64_t cols[] = {40, 64};
    for (int bi = 0; bi < 4; bi++)
        for (int ci = 0; ci < 2; ci++) {
            const int b = bits[bi];
            const int64_t C = cols[ci];
            uint8_t codes[64];
            for (int64_t k = 0; k < C; k++) codes[k] = (uint8_t)((k * 7 + 3) % (1 << b));
            uint32_t got[16], want[16];
            words_of_row(b, C, codes, got);
            ref_words(codes, C, b, want);
            for (int64_t k = 0; k < (C * b + 31) / 32; k++) {
                if (got[k] != want[k])
                    fail_msg("b=%d C=%lld word %lld: %08x, want %08x", b, (long long)C, (long long)k, got[k],
                             want[k]);
            }
        }
}

static void test_zero_points(void **state) {
    (void)state;
    const struct {
        int b;
        int64_t R, ng;
    } cases[] = {{4, 5, 3}, {3, 12, 2}, {8, 6, 4}, {2, 20, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int b = cases[i].b;
        const int64_t R = cases[i].R, ng = cases[i].ng, W = (R * b + 31) / 32;
        uint8_t z[128], packed[128], col[64];
        for (int64_t k = 0; k < R * ng; k++) z[k] = (uint8_t)((k * 5 + 1) % (1 << b));
        assert_int_equal(moeq_qtype_pack_row(b, z, R * ng, packed), MOEQ_OK);
        uint32_t out[64], want[8];
        assert_int_equal(moeq_export_ct_zp(packed, b, R, ng, out, "test", "t"), MOEQ_OK);
        for (int64_t g = 0; g < ng; g++) {
            for (int64_t r = 0; r < R; r++) col[r] = z[r * ng + g];
            ref_words(col, R, b, want);
            for (int64_t w = 0; w < W; w++)
                if (out[w * ng + g] != want[w])
                    fail_msg("b=%d R=%lld group %lld word %lld: %08x, want %08x", b, (long long)R,
                             (long long)g, (long long)w, out[w * ng + g], want[w]);
        }
    }
    // literal: 4-bit, R = 8, one group, zeros 8..15 -> 0xfedcba98
    uint8_t z8[8] = {8, 9, 10, 11, 12, 13, 14, 15}, p8[4];
    uint32_t o8[1];
    assert_int_equal(moeq_qtype_pack_row(4, z8, 8, p8), MOEQ_OK);
    assert_int_equal(moeq_export_ct_zp(p8, 4, 8, 1, o8, "test", "t"), MOEQ_OK);
    assert_int_equal(o8[0], 0xfedcba98u);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_literal),
        cmocka_unit_test(test_words_reference),
        cmocka_unit_test(test_zero_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
