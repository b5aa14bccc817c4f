// test_plot.c: the layout of eval's layer-by-class heat map (pipeline/plot.h) stays readable from 2 to 61+
// layers: per-cell numbers only on small maps, about 16 tics at most, a canvas that grows with the layers.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "plot.h"

static void test_map_layout(void **state) {
    (void)state;
    moeq_plot_map_layout m = moeq_plot_map_layout_of(4, 4); // mixtral-tiny: 16 cells, numbers printed
    assert_true(m.cell_labels);
    assert_int_equal(m.tic_step, 1);
    assert_int_equal(m.height_px, 560);
    m = moeq_plot_map_layout_of(61, 5); // DeepSeek-V3 / Kimi-K2: no numbers, a tic every 4 layers
    assert_false(m.cell_labels);
    assert_int_equal(m.tic_step, 4);
    assert_int_equal(m.height_px, 1200);
    assert_true(61 / m.tic_step <= 16);
    m = moeq_plot_map_layout_of(32, 4); // Mixtral-8x7B: 128 cells, no numbers; between the two heights
    assert_false(m.cell_labels);
    assert_int_equal(m.tic_step, 2);
    assert_true(m.height_px > 560 && m.height_px < 1200);
    m = moeq_plot_map_layout_of(24, 4); // 96 cells: the last size with numbers
    assert_true(m.cell_labels);
    for (int rows = 1; rows <= 200; rows++) {
        const moeq_plot_map_layout k = moeq_plot_map_layout_of(rows, 6);
        assert_true(rows / k.tic_step <= 16 && k.height_px >= 560 && k.height_px <= 1200);
    }
    // the palette entries are distinct colours
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < i; j++) assert_string_not_equal(moeq_plot_colors[i], moeq_plot_colors[j]);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_map_layout)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
