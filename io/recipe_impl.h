// recipe_impl.h: internal to io/recipe.c and io/recipe_policy.c, not a public header (include recipe.h).
// The libyaml document helpers both parsers use (line numbers, scalars, the error that names file:line,
// checked integers and booleans), and the parsers each file lends the other: the rules parser's settings
// and match mappings (recipe.c) for policies, the policy parser (recipe_policy.c) for the recipe's
// policies: list.
#ifndef MOEQ_RECIPE_IMPL_H
#define MOEQ_RECIPE_IMPL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "recipe.h"

// A parsed recipe document: the file name for errors, the libyaml node tree (borrowed).

typedef struct {
    const char *path;
    yaml_document_t *doc;
} ydoc;

static inline int yline(const yaml_node_t *n) {
    return n ? (int)n->start_mark.line + 1 : 0;
}

static inline const char *yscalar(const yaml_node_t *n) {
    return (n && n->type == YAML_SCALAR_NODE) ? (const char *)n->data.scalar.value : NULL;
}

static inline moeq_status yerr(const ydoc *d, const yaml_node_t *n, const char *fmt, const char *a,
                               const char *b) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: %s", d->path, yline(n), msg);
}

static inline moeq_status y_int(const ydoc *d, const yaml_node_t *n, const char *key, long lo, long hi,
                                int *out) {
    const char *s = yscalar(n);
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "[%ld, %ld]", lo, hi);
        return yerr(d, n, "\"%s\" must be an integer in %s", key, range);
    }
    *out = (int)v;
    return MOEQ_OK;
}

static inline moeq_status y_bool(const ydoc *d, const yaml_node_t *n, const char *key, int *out) {
    const char *s = yscalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))) *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))) *out = 0;
    else return yerr(d, n, "\"%s\" must be true or false%s", key, "");
    return MOEQ_OK;
}

// ---- parsers lent across the two files ----

// recipe.c: a settings mapping (defaults:, set:, a candidate) into s, recording the fields named in *mask.
moeq_status moeq_recipe_parse_settings_(const ydoc *d, yaml_node_t *map, moeq_qsettings *s, unsigned *mask);
// recipe.c: a match: mapping (class, proj, layers, name) into r.
moeq_status moeq_recipe_parse_match_(const ydoc *d, yaml_node_t *v, moeq_rule *r);
// recipe_policy.c: one item of policies: into p (defaults filled in, required keys checked).
moeq_status moeq_recipe_parse_policy_(const ydoc *d, yaml_node_t *n, moeq_policy *p);

#endif
