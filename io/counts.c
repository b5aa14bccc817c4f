// counts.c: routing-count files (counts.h): JSON {"counts": [[...], ...]} or CSV layer,expert,count, checked
// value by value with the file and line of the first bad one.
#include "counts.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "sysio.h"

static moeq_status counts_new(int L, int E, moeq_routing_counts **out) {
    moeq_routing_counts *c = MOEQ_CALLOC(1, sizeof *c, "routing counts");
    if (!c) return MOEQ_ERR_NOMEM;
    c->n_layers = L, c->n_experts = E;
    c->c = MOEQ_CALLOC((size_t)L * (size_t)E + 1, sizeof *c->c, "routing counts");
    c->present = MOEQ_CALLOC((size_t)L + 1, sizeof *c->present, "routing counts");
    if (!c->c || !c->present) {
        moeq_routing_counts_free(&c);
        return MOEQ_ERR_NOMEM;
    }
    *out = c;
    return MOEQ_OK;
}

static moeq_status counts_json(const char *path, const char *text, moeq_routing_counts **out) {
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: JSON error: %s", path, err.line, err.text);
    json_t *a = json_object_get(root, "counts");
    moeq_status st = MOEQ_OK;
    int L = json_is_array(a) ? (int)json_array_size(a) : -1, E = 0;
    if (L <= 0)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                       "%s: expected {\"counts\": [[per-expert counts of layer 0], ...]}\n---> "
                       "HINT: configs/README.md describes routing-count files",
                       path);
    for (int l = 0; st == MOEQ_OK && l < L; l++) {
        json_t *row = json_array_get(a, (size_t)l);
        if (json_is_array(row) && (int)json_array_size(row) > E)
            E = (int)json_array_size(row);
        else if (!json_is_array(row) && !json_is_null(row))
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: counts[%d] must be a list of numbers or null", path, l);
    }
    if (st == MOEQ_OK && E == 0) st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no layer has counts", path);
    moeq_routing_counts *c = NULL;
    if (st == MOEQ_OK) st = counts_new(L, E, &c);
    for (int l = 0; st == MOEQ_OK && l < L; l++) {
        json_t *row = json_array_get(a, (size_t)l);
        if (!json_is_array(row) || json_array_size(row) == 0) continue;
        if ((int)json_array_size(row) != E)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: counts[%d] has %d experts, other layers %d", path, l,
                           (int)json_array_size(row), E);
        for (int e = 0; st == MOEQ_OK && e < E; e++) {
            json_t *x = json_array_get(row, (size_t)e);
            if (!json_is_number(x) || json_number_value(x) < 0 || !isfinite(json_number_value(x)))
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: counts[%d][%d] must be a number >= 0", path, l, e);
            else
                c->c[(size_t)l * (size_t)E + (size_t)e] = json_number_value(x);
        }
        c->present[l] = 1;
    }
    json_decref(root);
    if (st != MOEQ_OK) moeq_routing_counts_free(&c);
    *out = c;
    return st;
}

static moeq_status counts_csv(const char *path, char *text, moeq_routing_counts **out) {
    // two passes: sizes, then values
    int L = 0, E = 0;
    moeq_routing_counts *c = NULL;
    for (int pass = 0; pass < 2; pass++) {
        int lineno = 0;
        for (char *line = text; line && *line;) {
            char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            char buf[256];
            lineno++;
            if (len >= sizeof buf) {
                moeq_routing_counts_free(&c);
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: line too long", path, lineno);
            }
            memcpy(buf, line, len);
            buf[len] = '\0';
            line = nl ? nl + 1 : NULL;
            if (len && buf[len - 1] == '\r') buf[--len] = '\0';
            if (!len || buf[0] == '#' || (lineno == 1 && !strncmp(buf, "layer", 5))) continue;
            long l, e;
            double v;
            char extra;
            if (sscanf(buf, "%ld ,%ld ,%lf %c", &l, &e, &v, &extra) != 3 || l < 0 || e < 0 || l > 100000 ||
                e > 100000 || !(v >= 0) || !isfinite(v)) {
                moeq_routing_counts_free(&c);
                return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                                 "%s:%d: expected \"layer,expert,count\" (count >= 0), got \"%s\"", path,
                                 lineno, buf);
            }
            if (pass == 0) {
                if (l + 1 > L) L = (int)l + 1;
                if (e + 1 > E) E = (int)e + 1;
            } else {
                c->c[(size_t)l * (size_t)E + (size_t)e] += v;
                c->present[l] = 1;
            }
        }
        if (pass == 0) {
            if (!L) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no \"layer,expert,count\" lines", path);
            MOEQ_TRY(counts_new(L, E, &c));
        }
    }
    *out = c;
    return MOEQ_OK;
}

moeq_status moeq_routing_counts_load(const char *path, moeq_routing_counts **out) {
    *out = NULL;
    char *text = NULL;
    moeq_status st = moeq_read_file(path, 64u << 20, &text, NULL);
    if (st != MOEQ_OK) return st;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    st = *p == '{' ? counts_json(path, text, out) : counts_csv(path, text, out);
    moeq_free(&text);
    return st;
}

void moeq_routing_counts_free(moeq_routing_counts **pc) {
    if (!pc || !*pc) return;
    moeq_free(&(*pc)->c);
    moeq_free(&(*pc)->present);
    moeq_free(pc);
}
