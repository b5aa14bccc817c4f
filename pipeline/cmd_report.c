// cmd_report.c: `moeq report A.json B.json ...`: the bits-vs-quality frontier across recipes from the JSON
// reports of `moeq eval` (docs/EVAL.md): bits per weight against the perplexity increase and against the
// weights' relative Frobenius error, the Pareto points (no other report has fewer or equal bits and a lower
// or equal error, one of them strictly) marked; a Markdown table (stdout, or --md) and a PNG (--plot,
// gnuplot). Single process, no MPI, reads only the reports. Not here: measuring (moeq eval does).
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "plot.h" // defines: moeq_plot_run, moeq_plot_colors

typedef struct {
    const char *md, *plot;
} report_opts;

typedef struct {
    const char *path; // the report, as given
    char label[96];   // the recipe's file name without .yaml ("built-in" for the default), or the artifact's
    double bpw;       // bits per weight over the quantized tensors
    double rel_fro;   // weights.overall.rel_fro
    double ppl_orig, ppl_quant, ppl_inc; // NAN without perplexity
    int pareto_ppl, pareto_w;
} entry;

static int on_opt(int opt, const char *arg, void *ctx) {
    report_opts *o = ctx;
    switch (opt) {
    case 'M':
        o->md = arg;
        return 0;
    case 'P':
        o->plot = arg;
        return 0;
    default:
        return 1;
    }
}

static double num(json_t *o, const char *path) { // "a.b.c": NAN when absent or null
    char key[64];
    for (const char *p = path; o && *p;) {
        const size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        o = json_object_get(o, key);
        p += n + (p[n] == '.');
    }
    return o && json_is_number(o) ? json_number_value(o) : NAN;
}

static void base_name(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = '\0';
}

static moeq_status entry_load(const char *path, entry *e) {
    memset(e, 0, sizeof *e);
    e->path = path;
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return MOEQ_FAIL(errno == ENOENT ? MOEQ_ERR_NOT_FOUND : MOEQ_ERR_FORMAT,
                         "%s: not a JSON file: %s (line %d)\n---> HINT: moeq report takes the --json reports "
                         "of moeq eval",
                         path, err.text, err.line);
    moeq_status st = MOEQ_OK;
    const double version = num(j, "moeq_eval_version");
    e->bpw = num(j, "bits_per_weight");
    e->rel_fro = num(j, "weights.overall.rel_fro");
    if (version != 1)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                       "%s: not a moeq eval report of a version this moeq reads (moeq_eval_version %g, want "
                       "1)\n---> HINT: moeq report takes the --json reports of moeq eval (docs/EVAL.md)",
                       path, version);
    else if (!isfinite(e->bpw) || !isfinite(e->rel_fro))
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no bits_per_weight or weights.overall.rel_fro", path);
    e->ppl_orig = num(j, "perplexity.original.perplexity");
    e->ppl_quant = num(j, "perplexity.quantized.perplexity");
    e->ppl_inc = num(j, "perplexity.increase");
    const char *recipe = json_string_value(json_object_get(j, "recipe_path"));
    const char *artifact = json_string_value(json_object_get(j, "artifact"));
    if (recipe && recipe[0] && recipe[0] != '<')
        base_name(recipe, e->label, sizeof e->label);
    else if (recipe)
        snprintf(e->label, sizeof e->label, "built-in");
    else
        base_name(artifact ? artifact : path, e->label, sizeof e->label);
    json_decref(j);
    return st;
}

// Pareto-optimal among the entries with a finite y: no other has bpw <= and y <= with one strictly less.
static void mark_pareto(entry *e, int n, int use_ppl) {
    for (int i = 0; i < n; i++) {
        const double yi = use_ppl ? e[i].ppl_inc : e[i].rel_fro;
        int opt = isfinite(yi);
        for (int k = 0; k < n && opt; k++) {
            const double yk = use_ppl ? e[k].ppl_inc : e[k].rel_fro;
            if (k != i && isfinite(yk) && e[k].bpw <= e[i].bpw && yk <= yi &&
                (e[k].bpw < e[i].bpw || yk < yi))
                opt = 0;
        }
        if (use_ppl)
            e[i].pareto_ppl = opt;
        else
            e[i].pareto_w = opt;
    }
}

static int by_bits(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return (x->bpw > y->bpw) - (x->bpw < y->bpw);
}

static void write_md(FILE *f, const entry *e, int n) {
    fprintf(f,
            "| recipe | report | bits/weight | weight rel. error | perplexity | ppl increase | frontier |\n"
            "|---|---|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < n; i++) {
        char ppl[64] = "n/a", inc[32] = "n/a";
        if (isfinite(e[i].ppl_quant))
            snprintf(ppl, sizeof ppl, "%.4f (orig. %.4f)", e[i].ppl_quant, e[i].ppl_orig);
        if (isfinite(e[i].ppl_inc)) snprintf(inc, sizeof inc, "%+.3f%%", 100 * e[i].ppl_inc);
        const char *fr = e[i].pareto_ppl && e[i].pareto_w ? "ppl, weights"
                         : e[i].pareto_ppl                ? "ppl"
                         : e[i].pareto_w                  ? "weights"
                                                          : "";
        fprintf(f, "| %s | %s | %.4f | %.5f | %s | %s | %s |\n", e[i].label, e[i].path, e[i].bpw,
                e[i].rel_fro, ppl, inc, fr);
    }
    fprintf(f, "\nfrontier: Pareto-optimal in bits per weight against the perplexity increase (ppl) or the "
               "weights' relative Frobenius error (weights): no other report has as few bits and as low an "
               "error.\n");
}

// Two panels (perplexity increase, weight error) against bits per weight; the frontier as a line, every
// report a labelled point, the Pareto ones filled.
static moeq_status write_plot(const entry *e, int n, const char *png) {
    char dir[] = "/tmp/moeq-report-plot-XXXXXX";
    if (!mkdtemp(dir))
        return MOEQ_FAIL(MOEQ_ERR_IO, "plot: cannot make a temporary directory: %s", strerror(errno));
    char data[4200], script[4200];
    snprintf(data, sizeof data, "%s/points.dat", dir);
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    moeq_status st = MOEQ_OK;
    FILE *f = fopen(data, "w");
    if (!f) st = MOEQ_FAIL(MOEQ_ERR_IO, "plot: %s: %s", data, strerror(errno));
    // index 0: every report (bpw, ppl increase in %, rel_fro, label), sorted by bits; index 1 and 2: the
    // perplexity and the weights frontier (bpw, y), so that each is one unbroken line
    for (int i = 0; f && i < n; i++)
        fprintf(f, "%.6f %.8g %.8g \"%s\"\n", e[i].bpw, 100 * e[i].ppl_inc, e[i].rel_fro, e[i].label);
    for (int k = 0; f && k < 2; k++) {
        fprintf(f, "\n\n");
        for (int i = 0; i < n; i++)
            if (k ? e[i].pareto_w : e[i].pareto_ppl)
                fprintf(f, "%.6f %.8g\n", e[i].bpw, k ? e[i].rel_fro : 100 * e[i].ppl_inc);
    }
    if (f) fclose(f);
    f = st == MOEQ_OK ? fopen(script, "w") : NULL;
    if (!f && st == MOEQ_OK) st = MOEQ_FAIL(MOEQ_ERR_IO, "plot: %s: %s", script, strerror(errno));
    if (f) {
        const char *c0 = moeq_plot_colors[0], *c1 = moeq_plot_colors[1];
        fprintf(f,
                "set terminal pngcairo size 1400,560 font ',10'\nset output '%s'\nset termoption noenhanced\n"
                "set datafile missing 'nan'\nset multiplot layout 1,2 title 'moeq report: bits per weight "
                "against quality (%d reports; filled: Pareto frontier)'\nset xlabel 'bits per weight'\n"
                "set grid\nset key top right\nset offsets graph 0.08, graph 0.08, graph 0.08, graph 0.08\n",
                png, n);
        const struct {
            const char *title, *ylabel;
            int col;
        } panel[2] = {{"perplexity increase", "perplexity increase (%)", 2},
                      {"weight error", "rel. Frobenius error (all quantized tensors)", 3}};
        for (int k = 0; k < 2; k++)
            fprintf(f,
                    "set title '%s'\nset ylabel '%s'\n"
                    "plot '%s' index %d using 1:2 with linespoints lw 2 pt 7 ps 1.6 lc rgb '%s' title "
                    "'frontier', '' index 0 using 1:%d with points pt 6 ps 1.6 lc rgb '%s' title 'report', "
                    "'' index 0 using 1:%d:4 with labels offset 0,1 notitle\n",
                    panel[k].title, panel[k].ylabel, data, k + 1, c0, panel[k].col, c1, panel[k].col);
        fprintf(f, "unset multiplot\n");
        fclose(f);
        st = moeq_plot_run(dir, script);
    }
    const char *const names[] = {"points.dat", "plot.gp", "gnuplot.err"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        snprintf(data, sizeof data, "%s/%s", dir, names[k]);
        unlink(data);
    }
    rmdir(dir);
    return st;
}

static int run(int argc, char **argv) {
    static const struct option longopts[] = {
        {"md", required_argument, NULL, 'M'},
        {"plot", required_argument, NULL, 'P'},
        {0, 0, 0, 0},
    };
    report_opts o = {0};
    int r = moeq_cli_parse(&moeq_cmd_report, argc, argv, "M:P:", longopts, on_opt, &o, NULL);
    if (r == 1) return MOEQ_EXIT_OK;
    if (r) return MOEQ_EXIT_USAGE;
    const int n = argc - optind;
    if (n < 1) {
        fprintf(stderr,
                "moeq report: give one or more eval reports (moeq eval --json)\n---> HINT: moeq report "
                "--help\n");
        return MOEQ_EXIT_USAGE;
    }
    entry *e = calloc((size_t)n, sizeof *e);
    if (!e) return moeq_cli_fail("report", MOEQ_ERR_NOMEM);
    moeq_status st = MOEQ_OK;
    for (int i = 0; i < n && st == MOEQ_OK; i++) st = entry_load(argv[optind + i], &e[i]);
    if (st == MOEQ_OK) {
        qsort(e, (size_t)n, sizeof *e, by_bits);
        mark_pareto(e, n, 1);
        mark_pareto(e, n, 0);
        FILE *f = o.md ? fopen(o.md, "w") : stdout;
        if (!f) st = MOEQ_FAIL(MOEQ_ERR_IO, "--md %s: cannot create it: %s", o.md, strerror(errno));
        if (f) write_md(f, e, n);
        if (f && f != stdout && fclose(f) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "--md %s: %s", o.md, strerror(errno));
    }
    if (st == MOEQ_OK && o.plot) st = write_plot(e, n, o.plot);
    free(e);
    return st == MOEQ_OK ? MOEQ_EXIT_OK : moeq_cli_fail("report", st);
}

const moeq_command moeq_cmd_report = {
    .name = "report",
    .summary = "the bits-vs-quality frontier across recipes from eval reports: Markdown table and PNG",
    .usage =
        "moeq report EVAL.json... [--md OUT.md] [--plot OUT.png]\n\n"
        "Reads the JSON reports of `moeq eval --json` (docs/EVAL.md), one per recipe or artifact, and\n"
        "compares them: bits per weight against the perplexity increase and against the weights'\n"
        "relative Frobenius error. A report is on the frontier (Pareto-optimal) when no other has as few\n"
        "bits and as low an error, one of them strictly; reports without perplexity (no text) are on the\n"
        "weights' frontier only. Rows are labelled by the recipe's file name.\n\n"
        "Options:\n"
        "  --md FILE      write the Markdown table there (default: stdout)\n"
        "  --plot FILE    a PNG (gnuplot): the two frontiers, every report labelled\n\n"
        "Example:\n"
        "  for r in a b c; do mpirun -n 4 moeq eval --model M $r.h5 --json $r.json; done\n"
        "  moeq report a.json b.json c.json --md frontier.md --plot frontier.png",
    .run = run,
};
