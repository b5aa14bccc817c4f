// recipe_impl.h: internal to schedulers/recipe.c and schedulers/recipe_policy.c, not a public header (include
// recipe.h). Checked scalars of the YAML syntax tree (io/ydoc.h) with file:line errors, and the parsers each
// file lends the other: the settings and match mappings (recipe.c) for policies, the policy parser
// (recipe_policy.c) for the recipe's policies: list.
#ifndef MOEQ_RECIPE_IMPL_H
#define MOEQ_RECIPE_IMPL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe.h"

// An integer in [lo, hi] (key names it in the message).
static inline moeq_status y_int(const moeq_ydoc *d, const moeq_ynode *n, const char *key, long lo, long hi,
                                int *out) {
    const char *s = moeq_yscalar(n);
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return MOEQ_YFAIL(d, n, "\"%s\" must be an integer in [%ld, %ld]", key, lo, hi);
    *out = (int)v;
    return MOEQ_OK;
}

static inline moeq_status y_bool(const moeq_ydoc *d, const moeq_ynode *n, const char *key, int *out) {
    const char *s = moeq_yscalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *out = 0;
    else
        return MOEQ_YFAIL(d, n, "\"%s\" must be true or false", key);
    return MOEQ_OK;
}

// ---- parsers lent across the two files ----

// recipe.c: a settings mapping (defaults:, set:, a candidate) into s, recording the fields named in *mask.
moeq_status moeq_recipe_parse_settings_(const moeq_ydoc *d, const moeq_ynode *map, moeq_qsettings *s,
                                        unsigned *mask);
// recipe.c: a match: mapping (class, proj, layers, name) into r.
moeq_status moeq_recipe_parse_match_(const moeq_ydoc *d, const moeq_ynode *v, moeq_rule *r);
// recipe_policy.c: one item of policies: into p (defaults filled in, required keys checked).
moeq_status moeq_recipe_parse_policy_(const moeq_ydoc *d, const moeq_ynode *n, moeq_policy *p);

#endif
