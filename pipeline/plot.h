// plot.h: what moeq's gnuplot figures share (eval --plot, moeq report): a scratch directory for the data
// files, running gnuplot with its error in the message, a colour-blind-safe palette (viridis for maps,
// Okabe-Ito for series) and the layout of a layer-by-class map that stays readable at 61 layers and more.
// Pipeline-internal. Not here: the figures themselves (eval_report.c, cmd_report.c).
#ifndef MOEQ_PLOT_H
#define MOEQ_PLOT_H

#include <stdio.h>

#include "moeq_kernels.h" // defines: moeq_status

// Okabe & Ito (2008) colours, distinguishable with every common colour-vision deficiency.
extern const char *const moeq_plot_colors[8];
// `set palette ...` for viridis (perceptually uniform, colour-blind safe, readable in grey).
void moeq_plot_palette_viridis(FILE *f);

// A heat map of rows (layers) x cols (classes): per-cell numbers only while they fit (cells <= 96), a tic
// every `tic_step` rows (about 16 tics at most), and the PNG height in pixels.
typedef struct moeq_plot_map_layout {
    int cell_labels; // 1: print each cell's value
    int tic_step;    // rows between tics
    int height_px;   // 560 up to 16 rows, growing to 1200 at 61 rows and more
} moeq_plot_map_layout;
moeq_plot_map_layout moeq_plot_map_layout_of(int rows, int cols);

// Runs `gnuplot SCRIPT`; its stderr goes to DIR/gnuplot.err and into the error (MOEQ_ERR_IO with a hint to
// install gnuplot) when it fails.
moeq_status moeq_plot_run(const char *dir, const char *script);

#endif
