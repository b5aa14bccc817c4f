// plot.c: see plot.h. The viridis stops are matplotlib's (0, 1/4, 1/2, 3/4, 1); gnuplot interpolates
// between them in RGB, close enough to the full table for a heat map.
#include "plot.h"

#include <stdlib.h>
#include <sys/wait.h>

#include "moeq_io.h" // defines: moeq_read_file, moeq_free

const char *const moeq_plot_colors[8] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                         "#56B4E9", "#D55E00", "#F0E442", "#000000"};

void moeq_plot_palette_viridis(FILE *f) {
    fprintf(f, "set palette defined (0 '#440154', 1 '#3B528B', 2 '#21918C', 3 '#5EC962', 4 '#FDE725')\n");
}

moeq_plot_map_layout moeq_plot_map_layout_of(int rows, int cols) {
    moeq_plot_map_layout m;
    m.cell_labels = rows * cols <= 96;
    m.tic_step = rows <= 16 ? 1 : (rows + 15) / 16;
    m.height_px = rows <= 16 ? 560 : rows >= 61 ? 1200 : 560 + (rows - 16) * 640 / 45;
    return m;
}

moeq_status moeq_plot_run(const char *dir, const char *script) {
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>'%s/gnuplot.err'", script, dir);
    const int rc = system(cmd);
    if (rc == 0) return MOEQ_OK;
    char ep[4200], *etext = NULL;
    size_t elen = 0;
    snprintf(ep, sizeof ep, "%s/gnuplot.err", dir);
    moeq_read_file(ep, 1 << 16, &etext, &elen);
    const int missing = WIFEXITED(rc) && WEXITSTATUS(rc) == 127; // the shell found no gnuplot
    const moeq_status st =
        MOEQ_FAIL(MOEQ_ERR_IO, "plot: gnuplot failed (status %d): %.400s%s", rc, etext ? etext : "",
                  missing ? "\n---> HINT: install gnuplot (Debian: apt-get install gnuplot-nox; "
                            "scripts/install-deps.sh does)"
                          : "");
    moeq_free(&etext);
    return st;
}
