// test_qformat.c: the packed formats as data: every traits entry is consistent, pack∘unpack is the identity
// for every code value of every format (whole units and padded tails), moeq_qcode_get reads what unpack
// reads, padding is zero, bad codes are refused, and bits per weight follow the documented formula; the
// integer family's traits, layout and packed zeros.
#include "test_util.h"

#include <math.h>
#include <string.h>

static const int k_bits[] = {2, 3, 4, 8};
static const int64_t k_groups[] = {32, 64, 128};
#define N_BITS   4
#define N_GROUPS 3

static void test_traits(void **state) {
    (void)state;
    // enum values are stored in artifacts: they must never change
    assert_int_equal(MOEQ_QTYPE_Q2, 2);
    assert_int_equal(MOEQ_QTYPE_Q3, 3);
    assert_int_equal(MOEQ_QTYPE_Q4, 4);
    assert_int_equal(MOEQ_QTYPE_Q8, 8);
    assert_int_equal(MOEQ_FACTOR_FP16, 0);
    assert_int_equal(MOEQ_FACTOR_INT3, 1);
    int n_valid = 0, n_ggml = 0, n_int = 0;
    for (int t = 0; t < MOEQ_QTYPE_COUNT; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        if (!tr) {
            assert_int_equal(moeq_qtypes[t].bits, 0);
            assert_string_equal(moeq_qtype_name(t), "invalid");
            continue;
        }
        assert_non_null(tr->name);
        if (tr->family & MOEQ_QFAMILY_GGML) { // llama.cpp's blocks: one block per unit, GGUF's type id
            assert_true(t > MOEQ_QTYPE_GGML_BASE);
            assert_int_equal(moeq_qtype_ggml_id(t), t - MOEQ_QTYPE_GGML_BASE);
            assert_int_equal(tr->block, tr->codes_per_unit);
            assert_int_equal(tr->planes, 0);
            assert_null(tr->pack);
            assert_null(tr->unpack);
            assert_non_null(tr->ggml_quantize_row);
            assert_non_null(tr->ggml_dequantize_row);
            n_ggml++;
            continue;
        }
        if (tr->family & MOEQ_QFAMILY_INT) { // 8 + b asymmetric (zero plane), 16 + b symmetric (implied zero)
            const int sym = t > 16;
            assert_int_equal(tr->bits, t - (sym ? 16 : 8));
            assert_int_equal(tr->zero_point, sym ? 1 << (tr->bits - 1) : 0);
            assert_int_equal(!!(tr->planes & (1u << MOEQ_PLANE_ZERO)), !sym);
            assert_true(tr->pack == moeq_qtypes[tr->bits].pack && tr->unpack == moeq_qtypes[tr->bits].unpack);
            assert_int_equal(tr->codes_per_unit, moeq_qtypes[tr->bits].codes_per_unit);
            n_int++;
            continue;
        }
        n_valid++;
        assert_int_equal(tr->bits, t);
        assert_int_equal(moeq_qtype_ggml_id(t), -1);
        assert_int_equal(tr->codes_per_unit * tr->bits, tr->unit_bytes * 8); // no wasted bits
        assert_non_null(tr->pack);
        assert_non_null(tr->unpack);
        assert_null(tr->ggml_quantize_row);
    }
    assert_int_equal(n_valid, N_BITS);
    assert_int_equal(n_int, 2 * N_BITS);
    assert_int_equal(MOEQ_QTYPE_I2, 10), assert_int_equal(MOEQ_QTYPE_I3, 11);
    assert_int_equal(MOEQ_QTYPE_I4, 12), assert_int_equal(MOEQ_QTYPE_I8, 16);
    assert_int_equal(MOEQ_QTYPE_I2S, 18), assert_int_equal(MOEQ_QTYPE_I3S, 19);
    assert_int_equal(MOEQ_QTYPE_I4S, 20), assert_int_equal(MOEQ_QTYPE_I8S, 24);
    assert_int_equal(moeq_qtype_from_name("i4"), MOEQ_QTYPE_I4);
    assert_int_equal(moeq_qtype_from_name("i3s"), MOEQ_QTYPE_I3S);
    assert_true(n_ggml >= 1);
    // llama.cpp's ids (ggml.h's enum ggml_type) + 32: stored in artifacts, and GGUF's tensor types
    assert_int_equal(MOEQ_QTYPE_Q4_0, 32 + 2);
    assert_int_equal(MOEQ_QTYPE_Q8_0, 32 + 8);
    assert_int_equal(MOEQ_QTYPE_Q2_K, 32 + 10);
    assert_int_equal(MOEQ_QTYPE_Q6_K, 32 + 14);
    assert_int_equal(MOEQ_QTYPE_IQ4_NL, 32 + 20);
    assert_int_equal(MOEQ_QTYPE_IQ4_XS, 32 + 23);
    assert_null(moeq_qtype_get(-1));
    assert_null(moeq_qtype_get(MOEQ_QTYPE_COUNT));
    // row bytes by hand
    assert_int_equal(moeq_qtype_row_bytes(3, 64), 24);
    assert_int_equal(moeq_qtype_row_bytes(3, 40), 24); // padded to 2 units of 32
    assert_int_equal(moeq_qtype_row_bytes(3, 14336), 14336 * 3 / 8);
    assert_int_equal(moeq_qtype_row_bytes(2, 6), 2);
    assert_int_equal(moeq_qtype_row_bytes(4, 3), 2);
    assert_int_equal(moeq_qtype_row_bytes(8, 5), 5);
    assert_int_equal(moeq_qtype_row_bytes(5, 64), -1);
    assert_int_equal(moeq_qtype_row_bytes(3, -1), -1);
}

// codes of row k: cycle through every value, shifted per row so that all positions see all values
static void fill_codes(uint8_t *c, int64_t n, int bits, int shift) {
    const int nv = 1 << bits;
    for (int64_t k = 0; k < n; k++) c[k] = (uint8_t)((k * 5 + shift + k / nv) % nv);
}

static void test_pack_roundtrip(void **state) {
    (void)state;
    uint8_t codes[1024 + 64], back[1024 + 64], packed[1024 + 64], unit_back[1024 + 64];
    for (int b = 0; b < N_BITS; b++) {
        const int bits = k_bits[b];
        const moeq_qtype_traits *tr = moeq_qtype_get(bits);
        // lengths: multiples of every group size, and lengths that end inside a packing unit
        int64_t lens[N_GROUPS * 3 + 4];
        int nl = 0;
        for (int g = 0; g < N_GROUPS; g++)
            for (int m = 1; m <= 7; m += 3) lens[nl++] = k_groups[g] * m;
        lens[nl++] = 1, lens[nl++] = 7, lens[nl++] = 40, lens[nl++] = 1000;
        for (int li = 0; li < nl; li++) {
            const int64_t C = lens[li];
            for (int shift = 0; shift < (1 << bits) && shift < 8; shift++) {
                fill_codes(codes, C, bits, shift);
                const int64_t rb = moeq_qtype_row_bytes(bits, C);
                memset(packed, 0xa5, sizeof packed);
                assert_int_equal(moeq_qtype_pack_row(bits, codes, C, packed), MOEQ_OK);
                assert_int_equal(packed[rb], 0xa5); // wrote exactly row_bytes
                memset(back, 0xee, sizeof back);
                assert_int_equal(moeq_qtype_unpack_row(bits, packed, C, back), MOEQ_OK);
                assert_memory_equal(back, codes, (size_t)C);
                assert_int_equal(back[C], 0xee); // wrote exactly C codes
                for (int64_t k = 0; k < C; k++) assert_int_equal(moeq_qcode_get(bits, packed, k), codes[k]);
                // the padding of the last unit unpacks to zero codes
                const int64_t units = rb / tr->unit_bytes;
                tr->unpack(packed, units, unit_back);
                for (int64_t k = C; k < units * tr->codes_per_unit; k++) assert_int_equal(unit_back[k], 0);
            }
        }
        // every code value at every position of a unit
        for (int v = 0; v < (1 << bits); v++) {
            const int64_t C = tr->codes_per_unit * 2;
            memset(codes, v, (size_t)C);
            assert_int_equal(moeq_qtype_pack_row(bits, codes, C, packed), MOEQ_OK);
            assert_int_equal(moeq_qtype_unpack_row(bits, packed, C, back), MOEQ_OK);
            assert_memory_equal(back, codes, (size_t)C);
        }
        // a code that does not fit is refused, naming the column
        if (bits < 8) {
            memset(codes, 0, 64);
            codes[17] = (uint8_t)(1 << bits);
            assert_status(moeq_qtype_pack_row(bits, codes, 64, packed), MOEQ_ERR_ARG, "column 17");
        }
    }
    assert_status(moeq_qtype_pack_row(5, codes, 8, packed), MOEQ_ERR_ARG, "bits=5");
}

// q3 layout is the documented 96-bit little-endian stream: code k at bits [3k, 3k+3) of 3 LE uint32 words
static void test_q3_layout(void **state) {
    (void)state;
    uint8_t codes[32] = {0}, packed[12];
    codes[10] = 5; // bits 30..32: straddles words 0 and 1
    codes[31] = 7; // bits 93..95: top of word 2
    assert_int_equal(moeq_qtype_pack_row(3, codes, 32, packed), MOEQ_OK);
    uint32_t w[3];
    for (int i = 0; i < 3; i++)
        w[i] = (uint32_t)packed[4 * i] | ((uint32_t)packed[4 * i + 1] << 8) |
               ((uint32_t)packed[4 * i + 2] << 16) | ((uint32_t)packed[4 * i + 3] << 24);
    assert_int_equal(w[0], 1u << 30); // low bit of 5 (0b101) at bit 30, bit 31 = 0
    assert_int_equal(w[1], 1u);       // high bit of 5 at bit 32
    assert_int_equal(w[2], 7u << 29); // bits 93..95
}

// Bits per weight of the one geometry function, -1 when it refuses the shape.
static double bpw(int t, int64_t G, int64_t r, int64_t R, int64_t C, moeq_factor_type ft) {
    moeq_qlayout l;
    return moeq_qlayout_make(t, R, C, G, r, ft, &l) == MOEQ_OK ? l.bits_per_weight : -1.0;
}

static void test_layout_bpw(void **state) {
    (void)state;
    for (int b = 0; b < N_BITS; b++)
        for (int g = 0; g < N_GROUPS; g++) {
            const int bits = k_bits[b];
            const int64_t G = k_groups[g], R = 4096, C = 14336;
            // C is a multiple of every unit: b + 32/G exactly
            assert_true(fabs(bpw(bits, G, 0, R, C, MOEQ_FACTOR_FP16) - (bits + 32.0 / (double)G)) < 1e-12);
            const double fp16 = bpw(bits, G, 32, R, C, MOEQ_FACTOR_FP16);
            assert_true(fabs(fp16 - (bits + 32.0 / (double)G + 16.0 * 32 * (R + C) / ((double)R * C))) <
                        1e-12);
            const double nu = (double)R * 32, nv = 32.0 * C;
            const double int3 =
                bits + 32.0 / (double)G +
                8.0 * (12 * ceil(nu / 32) + 2 * ceil(nu / 64) + 12 * ceil(nv / 32) + 2 * ceil(nv / 64)) /
                    ((double)R * C);
            assert_true(fabs(bpw(bits, G, 32, R, C, MOEQ_FACTOR_INT3) - int3) < 1e-12);
        }
    // the MiLo configuration: 3-bit g64 is 3.5 bits per weight before compensators
    assert_true(fabs(bpw(3, 64, 0, 4096, 14336, MOEQ_FACTOR_FP16) - 3.5) < 1e-12);
    // a padded row costs its padding
    assert_true(fabs(bpw(3, 8, 0, 1, 40, MOEQ_FACTOR_FP16) - (8.0 * 24 / 40 + 4.0)) < 1e-12);
    assert_true(bpw(5, 64, 0, 4, 64, MOEQ_FACTOR_FP16) < 0);  // no such format
    assert_true(bpw(3, 0, 0, 4, 64, MOEQ_FACTOR_FP16) < 0);   // no group
    assert_true(bpw(3, 48, 0, 4, 64, MOEQ_FACTOR_FP16) < 0);  // a group that does not divide the row
    assert_true(bpw(3, 64, -1, 4, 64, MOEQ_FACTOR_FP16) < 0); // negative rank
    assert_true(bpw(3, 64, 5, 4, 64, MOEQ_FACTOR_FP16) < 0);  // rank > min(R, C)
    assert_true(bpw(3, 64, 2, 4, 64, MOEQ_FACTOR_F32) < 0);   // f32 is not a storage format
    assert_true(bpw(3, 64, 0, 4, 64, MOEQ_FACTOR_F32) > 0);   // ... but irrelevant without factors
    assert_int_equal(moeq_factor_code_bytes(MOEQ_FACTOR_INT3, 65), 36);
    assert_int_equal(moeq_factor_n_scales(MOEQ_FACTOR_INT3, 65), 2);
    assert_int_equal(moeq_factor_n_scales(MOEQ_FACTOR_FP16, 65), 0);
    assert_int_equal(moeq_factor_code_bytes(MOEQ_FACTOR_FP16, 65), 130);
}

// The integer family: bits per weight as GPTQ and compressed-tensors count them (b + 16/G, + b/G with the
// integer zero), the zero plane's packed bytes, and the zeros read back one by one.
static void test_int_layout(void **state) {
    (void)state;
    moeq_qlayout l;
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_I4, 4096, 14336, 128, 0, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
    assert_true(fabs(l.bits_per_weight - 4.15625) < 1e-12);
    assert_int_equal(l.plane[MOEQ_PLANE_ZERO].elem, MOEQ_ELEM_U8);
    assert_int_equal(l.plane[MOEQ_PLANE_ZERO].ndim, 1);
    assert_int_equal(l.plane[MOEQ_PLANE_ZERO].bytes, 4096 * (14336 / 128) / 2);
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_I4S, 4096, 14336, 128, 0, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
    assert_true(fabs(l.bits_per_weight - 4.125) < 1e-12);
    assert_false(l.plane[MOEQ_PLANE_ZERO].present);
    for (int b = 0; b < N_BITS; b++)
        for (int g = 0; g < N_GROUPS; g++) {
            const int bits = k_bits[b];
            const int64_t G = k_groups[g], R = 256, C = 1024;
            assert_int_equal(moeq_qlayout_make(8 + bits, R, C, G, 0, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
            assert_true(fabs(l.bits_per_weight - (bits + (16.0 + bits) / (double)G)) < 1e-12);
            assert_int_equal(moeq_qlayout_make(16 + bits, R, C, G, 0, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
            assert_true(fabs(l.bits_per_weight - (bits + 16.0 / (double)G)) < 1e-12);
        }
    // 3-bit zeros of 5 rows x 2 groups: one string of 10 codes, padded to a unit of 32 (12 bytes)
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_I3, 5, 64, 32, 0, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
    assert_int_equal(l.plane[MOEQ_PLANE_ZERO].bytes, 12);
    moeq_qmat q;
    assert_int_equal(moeq_qmat_alloc_format(&q, MOEQ_QTYPE_I3, 5, 64, 32), MOEQ_OK);
    assert_non_null(q.izero);
    assert_null(q.zero);
    assert_int_equal(q.bits, 3), assert_int_equal(q.type, MOEQ_QTYPE_I3);
    assert_int_equal(moeq_qmat_bytes(&q), (int64_t)l.bytes);
    uint8_t z[10];
    for (int k = 0; k < 10; k++) z[k] = (uint8_t)((k * 5 + 3) & 7);
    assert_int_equal(moeq_qtype_pack_row(3, z, 10, q.izero), MOEQ_OK);
    for (int r = 0; r < 5; r++)
        for (int g = 0; g < 2; g++) assert_int_equal(moeq_qmat_int_zero(&q, r, g), z[r * 2 + g]);
    moeq_qmat_free(&q);
    assert_int_equal(moeq_qmat_alloc_format(&q, MOEQ_QTYPE_I3S, 5, 64, 32), MOEQ_OK);
    assert_null(q.izero), assert_null(q.zero);
    assert_int_equal(moeq_qmat_int_zero(&q, 4, 1), 4); // implied 2^(b-1)
    moeq_qmat_free(&q);
}

// The planes of a layout: what the artifact's datasets and the workers' buffers are made of.
static void test_layout_planes(void **state) {
    (void)state;
    moeq_qlayout l;
    const int64_t R = 96, C = 320, G = 32, r = 8;
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_Q3, R, C, G, r, MOEQ_FACTOR_FP16, &l), MOEQ_OK);
    assert_int_equal(l.row_bytes, 120), assert_int_equal(l.n_blocks, 10), assert_int_equal(l.G, G);
    const struct {
        moeq_plane p;
        moeq_elem e;
        int ndim;
        int64_t d0, d1;
    } fp16[] = {{MOEQ_PLANE_CODES, MOEQ_ELEM_U8, 2, R, 120},
                {MOEQ_PLANE_SCALE, MOEQ_ELEM_F16, 2, R, C / G},
                {MOEQ_PLANE_ZERO, MOEQ_ELEM_F16, 2, R, C / G},
                {MOEQ_PLANE_U, MOEQ_ELEM_F16, 2, R, r},
                {MOEQ_PLANE_V, MOEQ_ELEM_F16, 2, r, C}};
    uint64_t total = 0;
    for (size_t k = 0; k < sizeof fp16 / sizeof fp16[0]; k++) {
        const moeq_plane_spec *ps = &l.plane[fp16[k].p];
        assert_true(ps->present);
        assert_int_equal(ps->elem, fp16[k].e), assert_int_equal(ps->ndim, fp16[k].ndim);
        assert_int_equal(ps->dims[0], fp16[k].d0), assert_int_equal(ps->dims[1], fp16[k].d1);
        assert_int_equal(ps->bytes,
                         (uint64_t)(fp16[k].d0 * fp16[k].d1) * (fp16[k].e == MOEQ_ELEM_F16 ? 2u : 1u));
        total += ps->bytes;
    }
    assert_false(l.plane[MOEQ_PLANE_U_SCALE].present || l.plane[MOEQ_PLANE_V_SCALE].present);
    assert_int_equal(l.bytes, total);
    // int3 factors: 1-D bytes (q3 layout of the flattened factor) and one fp16 scale per 64
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_Q2, R, C, G, r, MOEQ_FACTOR_INT3, &l), MOEQ_OK);
    assert_int_equal(l.plane[MOEQ_PLANE_U].ndim, 1),
        assert_int_equal(l.plane[MOEQ_PLANE_U].elem, MOEQ_ELEM_U8);
    assert_int_equal(l.plane[MOEQ_PLANE_U].bytes, 12 * ((R * r + 31) / 32));
    assert_int_equal(l.plane[MOEQ_PLANE_U_SCALE].dims[0], (R * r + 63) / 64);
    assert_int_equal(l.plane[MOEQ_PLANE_V].bytes, 12 * ((r * C + 31) / 32));
    assert_int_equal(l.plane[MOEQ_PLANE_V_SCALE].bytes, 2 * ((r * C + 63) / 64));
    // no compensator: no factor planes
    assert_int_equal(moeq_qlayout_make(MOEQ_QTYPE_Q8, R, C, G, 0, MOEQ_FACTOR_INT3, &l), MOEQ_OK);
    for (int p = MOEQ_PLANE_U; p < MOEQ_PLANE_COUNT; p++) assert_false(l.plane[p].present);
    assert_int_equal(l.bytes, (uint64_t)(R * C + 4 * R * (C / G)));
    // names and families
    assert_int_equal(moeq_qtype_from_name("q3"), MOEQ_QTYPE_Q3);
    assert_int_equal(moeq_qtype_from_name("q5"), MOEQ_QTYPE_INVALID);
    char names[64];
    assert_string_equal(moeq_qtype_names(MOEQ_QFAMILY_GROUPED, names, sizeof names), "q2, q3, q4, q8");
    assert_string_equal(moeq_factor_name(MOEQ_FACTOR_INT3), "int3");
    assert_int_equal(moeq_factor_from_name("fp16"), MOEQ_FACTOR_FP16);
    assert_int_equal(moeq_factor_from_name("f32"), MOEQ_FACTOR_COUNT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits),        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_q3_layout),     cmocka_unit_test(test_layout_bpw),
        cmocka_unit_test(test_layout_planes), cmocka_unit_test(test_int_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
