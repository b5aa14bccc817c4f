// recipe_help.c: `moeq plan|quantize --help-recipe[=markdown]`: the reference of what a recipe can say,
// printed from the registries themselves (kernels/method.h: methods and settings fields; kernels/qformat.h:
// storage formats), so that --help, configs/README.md's tables (the markdown form, checked against the file
// by tests/pipeline/test_cli_plan.sh) and the recipe parser never disagree.
#include <stdio.h>
#include <string.h>

#include "cli.h"

// The values a field accepts, in words.
static void values_of(const moeq_setting_field *f, char *out, size_t cap) {
    char names[256];
    switch (f->type) {
    case MOEQ_FT_INT:
    case MOEQ_FT_U64:
        snprintf(out, cap, "integer %.0f..%.0f%s", f->lo, f->hi,
                 f == moeq_setting_field_get(MOEQ_F_GROUP) ? ", or channel" : ""); // method.c parses it
        break;
    case MOEQ_FT_POS:
        snprintf(out, cap, "number > 0");
        break;
    case MOEQ_FT_BOOL:
        snprintf(out, cap, "true, false%s", f == moeq_setting_field_get(MOEQ_F_GPTQ_CLIP) ? ", auto" : "");
        break;
    case MOEQ_FT_METHOD:
        snprintf(out, cap, "%s", moeq_method_names());
        break;
    case MOEQ_FT_FACTOR:
        snprintf(out, cap, "fp16, int3");
        break;
    case MOEQ_FT_BITS:
        moeq_qtype_grouped_bits(", ", out, cap);
        break;
    case MOEQ_FT_FORMAT:
        snprintf(out, cap, "%s", moeq_qtype_names(MOEQ_QFAMILY_ANY, names, sizeof names));
        break;
    }
}

// The methods that read field f, comma-separated.
static void readers_of(int f, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (int m = 0; m < MOEQ_METHOD_COUNT && n < cap; m++) {
        const moeq_method_traits *t = moeq_method_get((moeq_method)m);
        if (t && t->quantizes && (t->fields & (1u << f)))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", t->name);
    }
    if (!n) snprintf(out, cap, "all");
}

// The recipe keys a method reads, comma-separated ("method" left out).
static void fields_of(const moeq_method_traits *t, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (int f = MOEQ_F_METHOD + 1; f < MOEQ_F_COUNT && n < cap; f++)
        if (t->fields & (1u << f))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", moeq_setting_field_get(f)->key);
    if (!n) snprintf(out, cap, "-");
}

static void planes_of(const moeq_qtype_traits *t, char *out, size_t cap) {
    snprintf(out, cap, "codes%s%s", (t->planes & (1u << MOEQ_PLANE_SCALE)) ? ", scale" : "",
             (t->planes & (1u << MOEQ_PLANE_ZERO)) ? ", zero" : "");
}

void moeq_recipe_help_print(FILE *f, int markdown) {
    const moeq_qsettings d = moeq_qsettings_default();
    char a[256], b[256], c[64];
    if (markdown) {
        fprintf(f, "| method | what it does | reads |\n|---|---|---|\n");
        for (int m = 0; m < MOEQ_METHOD_COUNT; m++) {
            const moeq_method_traits *t = moeq_method_get((moeq_method)m);
            if (!t) continue;
            fields_of(t, a, sizeof a);
            fprintf(f, "| `%s` | %s%s | %s |\n", t->name, t->summary,
                    t->needs_calibration ? " (needs calibration inputs)" : "", a);
        }
        fprintf(f, "\n| key | values | default | read by | what |\n|---|---|---|---|---|\n");
        for (int k = 0; k < MOEQ_F_COUNT; k++) {
            const moeq_setting_field *fd = moeq_setting_field_get(k);
            values_of(fd, a, sizeof a), readers_of(k, b, sizeof b), moeq_setting_format(&d, k, c, sizeof c);
            fprintf(f, "| `%s` | %s | %s | %s | %s |\n", fd->key, a, c, b, fd->help);
        }
        fprintf(f, "\n| format | bits | block | planes | weight model |\n|---|---|---|---|---|\n");
        for (int q = 1; q < MOEQ_QTYPE_COUNT; q++) {
            const moeq_qtype_traits *t = moeq_qtype_get(q);
            if (!t) continue;
            planes_of(t, a, sizeof a);
            if (t->block)
                snprintf(b, sizeof b, "%d", t->block);
            else
                snprintf(b, sizeof b, "`group`");
            fprintf(f, "| `%s` | %d | %s | %s | %s |\n", t->name, t->bits, b, a, t->model);
        }
        return;
    }
    fprintf(f, "Recipe settings (defaults:, a rule's set:, a budget candidate; `hqq.iters: 5` is written "
               "hqq: {iters: 5}):\n");
    for (int k = 0; k < MOEQ_F_COUNT; k++) {
        const moeq_setting_field *fd = moeq_setting_field_get(k);
        values_of(fd, a, sizeof a), readers_of(k, b, sizeof b), moeq_setting_format(&d, k, c, sizeof c);
        fprintf(f, "  %-16s %s\n  %-16s   values: %s; default: %s; read by: %s\n", fd->key, fd->help, "", a,
                c, b);
    }
    fprintf(
        f,
        "\nTop level (besides version, defaults, rules, policies):\n"
        "  target: gguf     the artifact is for `moeq export --format gguf` (llama.cpp): quantized tensors\n"
        "                   must be in llama.cpp's block types (or method none), the routed experts of a\n"
        "                   (layer, proj) share one type (one stacked GGUF tensor; policies and the budget\n"
        "                   solver choose per stack), no compensator on routed experts, no quantized\n"
        "                   router; a type whose block does not divide a row takes llama-quantize's\n"
        "                   fallback (q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, iq4_xs\n"
        "                   -> iq4_nl; else stored as it came) with a warning; `moeq plan` shows the GGUF\n"
        "                   types and file size (configs/README.md, \"Target: gguf\")\n"
        "  target: vllm     the artifact is for `moeq export --format compressed-tensors` served by vLLM:\n"
        "                   quantized tensors in i4, i4s, i8 or i8s, one format and group for every expert\n"
        "                   and projection of a MoE layer, a group dividing the hidden and expert FFN\n"
        "                   widths, no quantized router (configs/README.md, \"Target: vllm\")\n");
    fprintf(f, "\nMethods:\n");
    for (int m = 0; m < MOEQ_METHOD_COUNT; m++) {
        const moeq_method_traits *t = moeq_method_get((moeq_method)m);
        if (t) fprintf(f, "  %-6s %s\n", t->name, t->summary);
    }
    fprintf(f, "\nStorage formats (format: NAME, or bits: B for the grouped ones):\n");
    for (int q = 1; q < MOEQ_QTYPE_COUNT; q++) {
        const moeq_qtype_traits *t = moeq_qtype_get(q);
        if (t) fprintf(f, "  %-6s %d-bit codes: %s\n", t->name, t->bits, t->model);
    }
}
