// recipe.c: YAML recipes (see recipe.h): parsing with libyaml's document API, strict validation with
// line numbers, rule resolution per tensor, and relative layer ranges bound to a model. Not here: the
// syntax of policies and the routing-count files (recipe_policy.c), applying policies
// (schedulers/policy.c), which builds on moeq_recipe_resolve.
#include "recipe.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "alloc.h"
#include "recipe_impl.h" // defines: ydoc, yline, yscalar, yerr, y_int, y_bool
#include "sysio.h"

static const char *const method_names[MOEQ_METHOD_COUNT] = {"none", "rtn", "hqq", "milo"};

const char *moeq_method_name(moeq_method m) {
    return ((int)m >= 0 && m < MOEQ_METHOD_COUNT) ? method_names[m] : "invalid";
}

moeq_method moeq_method_from_name(const char *s) {
    for (int i = 0; s && i < MOEQ_METHOD_COUNT; i++)
        if (!strcmp(s, method_names[i])) return (moeq_method)i;
    return MOEQ_METHOD_COUNT;
}

moeq_qsettings moeq_qsettings_default(void) {
    moeq_qsettings s = {
        .method = MOEQ_METHOD_HQQ,
        .bits = 4,
        .group = 64,
        .rank = 0,
        .rounds = 10,
        .compensator = MOEQ_COMP_FP16,
        .hqq_lp_norm = 0.7f,
        .hqq_beta = 10.0f,
        .hqq_kappa = 1.01f,
        .hqq_iters = 20,
        .hqq_early_stop = 1,
        .svd_oversample = 0,
        .svd_power_iters = 2,
        .seed = 0,
    };
    return s;
}

// ---- settings, match, rules (the shared YAML helpers are in recipe_impl.h) ----

static moeq_status y_float(const ydoc *d, const yaml_node_t *n, const char *key, float *out) {
    const char *s = yscalar(n);
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v <= 0)
        return yerr(d, n, "\"%s\" must be a positive number%s", key, "");
    *out = (float)v;
    return MOEQ_OK;
}

// Parses a settings mapping (defaults: or set:) into s, recording the fields named in *mask.
moeq_status moeq_recipe_parse_settings_(const ydoc *d, yaml_node_t *map, moeq_qsettings *s, unsigned *mask) {
    if (!map || map->type != YAML_MAPPING_NODE) return yerr(d, map, "expected a mapping of settings%s%s", "", "");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d->doc, p->key), *v = yaml_document_get_node(d->doc, p->value);
        const char *key = yscalar(k);
        if (!key) return yerr(d, k, "keys must be plain words%s%s", "", "");
        if (!strcmp(key, "method")) {
            const char *m = yscalar(v);
            const moeq_method found = moeq_method_from_name(m);
            if (found == MOEQ_METHOD_COUNT)
                return yerr(d, v, "method \"%s\" is not one of none, rtn, hqq, milo%s", m ? m : "?", "");
            s->method = found;
            *mask |= MOEQ_SET_METHOD;
        } else if (!strcmp(key, "bits")) {
            MOEQ_TRY(y_int(d, v, key, 2, 8, &s->bits));
            if (s->bits != 2 && s->bits != 3 && s->bits != 4 && s->bits != 8)
                return yerr(d, v, "bits must be 2, 3, 4 or 8 (got %s)%s", yscalar(v), "");
            *mask |= MOEQ_SET_BITS;
        } else if (!strcmp(key, "group")) {
            MOEQ_TRY(y_int(d, v, key, 8, 1 << 20, &s->group));
            *mask |= MOEQ_SET_GROUP;
        } else if (!strcmp(key, "rank")) {
            MOEQ_TRY(y_int(d, v, key, 0, 1 << 16, &s->rank));
            *mask |= MOEQ_SET_RANK;
        } else if (!strcmp(key, "rounds")) {
            MOEQ_TRY(y_int(d, v, key, 1, 1000, &s->rounds));
            *mask |= MOEQ_SET_ROUNDS;
        } else if (!strcmp(key, "compensator")) {
            const char *c = yscalar(v);
            if (c && !strcmp(c, "fp16")) s->compensator = MOEQ_COMP_FP16;
            else if (c && !strcmp(c, "int3")) s->compensator = MOEQ_COMP_INT3;
            else return yerr(d, v, "compensator \"%s\" is not one of fp16, int3%s", c ? c : "?", "");
            *mask |= MOEQ_SET_COMP;
        } else if (!strcmp(key, "seed")) {
            int seed;
            MOEQ_TRY(y_int(d, v, key, 0, 2147483647L, &seed));
            s->seed = (uint64_t)seed;
            *mask |= MOEQ_SET_SEED;
        } else if (!strcmp(key, "hqq") || !strcmp(key, "svd")) {
            if (!v || v->type != YAML_MAPPING_NODE) return yerr(d, v, "\"%s\" must be a mapping%s", key, "");
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *k2 = yaml_document_get_node(d->doc, q->key), *v2 = yaml_document_get_node(d->doc, q->value);
                const char *sub = yscalar(k2);
                if (!sub) return yerr(d, k2, "keys must be plain words%s%s", "", "");
                if (!strcmp(key, "hqq") && !strcmp(sub, "lp_norm")) {
                    MOEQ_TRY(y_float(d, v2, "hqq.lp_norm", &s->hqq_lp_norm));
                    *mask |= MOEQ_SET_HQQ_LP;
                } else if (!strcmp(key, "hqq") && !strcmp(sub, "beta")) {
                    MOEQ_TRY(y_float(d, v2, "hqq.beta", &s->hqq_beta));
                    *mask |= MOEQ_SET_HQQ_BETA;
                } else if (!strcmp(key, "hqq") && !strcmp(sub, "kappa")) {
                    MOEQ_TRY(y_float(d, v2, "hqq.kappa", &s->hqq_kappa));
                    *mask |= MOEQ_SET_HQQ_KAPPA;
                } else if (!strcmp(key, "hqq") && !strcmp(sub, "iters")) {
                    MOEQ_TRY(y_int(d, v2, "hqq.iters", 0, 10000, &s->hqq_iters));
                    *mask |= MOEQ_SET_HQQ_ITERS;
                } else if (!strcmp(key, "hqq") && !strcmp(sub, "early_stop")) {
                    MOEQ_TRY(y_bool(d, v2, "hqq.early_stop", &s->hqq_early_stop));
                    *mask |= MOEQ_SET_HQQ_EARLY;
                } else if (!strcmp(key, "svd") && !strcmp(sub, "oversample")) {
                    MOEQ_TRY(y_int(d, v2, "svd.oversample", 0, 4096, &s->svd_oversample));
                    *mask |= MOEQ_SET_SVD_OVER;
                } else if (!strcmp(key, "svd") && !strcmp(sub, "power_iters")) {
                    MOEQ_TRY(y_int(d, v2, "svd.power_iters", 0, 100, &s->svd_power_iters));
                    *mask |= MOEQ_SET_SVD_POWER;
                } else {
                    return yerr(d, k2, "unknown key \"%s\" in \"%s\"", sub, key);
                }
            }
        } else {
            return yerr(d, k,
                        "unknown setting \"%s\"%s\n---> HINT: settings are method, bits, group, rank, rounds, "
                        "compensator, hqq, svd, seed",
                        key, "");
        }
    }
    return MOEQ_OK;
}

static moeq_status parse_layers(const ydoc *d, yaml_node_t *v, moeq_rule *r) {
    const char *s = yscalar(v);
    if (!s) return yerr(d, v, "\"layers\" must be N, \"A-B\", \"first:K\" or \"last:K\"%s%s", "", "");
    char *end;
    errno = 0;
    if (!strncmp(s, "first:", 6) || !strncmp(s, "last:", 5)) {
        const char *num = s + (s[0] == 'f' ? 6 : 5);
        long k = strtol(num, &end, 10);
        if (end == num || *end || errno || k < 1 || k > 100000)
            return yerr(d, v, "\"layers\": \"%s\" needs K >= 1 MoE blocks, e.g. \"first:2\"%s", s, "");
        r->layer_rel = s[0] == 'f' ? MOEQ_LAYERS_FIRST : MOEQ_LAYERS_LAST;
        r->layer_k = (int)k;
        r->layer_lo = r->layer_hi = -2; // unbound: matches nothing until moeq_recipe_bind
        return MOEQ_OK;
    }
    long a = strtol(s, &end, 10), b = a;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    if (end == s || *end || errno || a < 0 || b < a || b > 100000)
        return yerr(d, v, "\"layers\" must be N or \"A-B\" with A <= B, or \"first:K\" / \"last:K\" (got \"%s\")%s", s, "");
    r->layer_lo = (int)a;
    r->layer_hi = (int)b;
    return MOEQ_OK;
}

moeq_status moeq_recipe_parse_match_(const ydoc *d, yaml_node_t *v, moeq_rule *r) {
    if (!v || v->type != YAML_MAPPING_NODE) return yerr(d, v, "\"match\" must be a mapping%s%s", "", "");
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
        yaml_node_t *mk = yaml_document_get_node(d->doc, q->key), *mv = yaml_document_get_node(d->doc, q->value);
        const char *m = yscalar(mk), *val = yscalar(mv);
        if (!m || !val) return yerr(d, mk, "match keys and values must be plain scalars%s%s", "", "");
        if (!strcmp(m, "class")) {
            r->cls = moeq_tclass_from_name(val);
            if (r->cls == MOEQ_TC_COUNT || r->cls == MOEQ_TC_FP8_SCALE)
                return yerr(d, mv,
                            "unknown tensor class \"%s\"%s\n---> HINT: classes are attention, shared_expert, "
                            "routed_expert, dense_mlp, router, embedding, lm_head, norm, other",
                            val, "");
            r->has_class = 1;
        } else if (!strcmp(m, "proj")) {
            int found = 0;
            for (int i = 1; i < MOEQ_PROJ_COUNT && !found; i++)
                if (!strcmp(val, moeq_proj_name((moeq_proj)i))) {
                    r->proj = (moeq_proj)i;
                    found = 1;
                }
            if (!found)
                return yerr(d, mv, "unknown projection \"%s\"%s\n---> HINT: gate, up, down, q, k, v, o, q_a, q_b, kv_a, kv_b",
                            val, "");
            r->has_proj = 1;
        } else if (!strcmp(m, "layers")) {
            MOEQ_TRY(parse_layers(d, mv, r));
        } else if (!strcmp(m, "name")) {
            if (strlen(val) >= sizeof r->name_glob) return yerr(d, mv, "name pattern too long%s%s", "", "");
            snprintf(r->name_glob, sizeof r->name_glob, "%s", val);
        } else {
            return yerr(d, mk, "unknown match key \"%s\"%s\n---> HINT: match on class, proj, layers, name", m, "");
        }
    }
    return MOEQ_OK;
}

static moeq_status parse_rule(const ydoc *d, yaml_node_t *n, moeq_rule *r) {
    memset(r, 0, sizeof *r);
    r->line = yline(n);
    r->layer_lo = r->layer_hi = -1;
    if (n->type != YAML_MAPPING_NODE) return yerr(d, n, "a rule must be a mapping with match: and set:%s%s", "", "");
    int have_set = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d->doc, p->key), *v = yaml_document_get_node(d->doc, p->value);
        const char *key = yscalar(k);
        if (key && !strcmp(key, "set")) {
            MOEQ_TRY(moeq_recipe_parse_settings_(d, v, &r->set, &r->set_mask));
            have_set = 1;
        } else if (key && !strcmp(key, "match")) {
            MOEQ_TRY(moeq_recipe_parse_match_(d, v, r));
        } else {
            return yerr(d, k, "unknown rule key \"%s\"%s (rules have match: and set:)", key ? key : "?", "");
        }
    }
    if (!have_set) return yerr(d, n, "rule without \"set\"%s%s", "", "");
    return MOEQ_OK;
}

moeq_status moeq_recipe_parse(const char *path, const char *text, moeq_recipe **out) {
    *out = NULL;
    moeq_recipe *r = MOEQ_CALLOC(1, sizeof *r, "recipe");
    if (!r) return MOEQ_ERR_NOMEM;
    r->path = MOEQ_STRDUP(path);
    r->text = MOEQ_STRDUP(text);
    r->defaults = moeq_qsettings_default();
    if (!r->path || !r->text) {
        moeq_recipe_free(&r);
        return MOEQ_ERR_NOMEM;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    moeq_status st = MOEQ_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: YAML error: %s %s", path, (int)parser.problem_mark.line + 1,
                       parser.problem ? parser.problem : "?", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        moeq_recipe_free(&r);
        return st;
    }
    ydoc d = {path, &doc};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: empty recipe\n---> HINT: at least \"version: 1\"", path);
    } else if (root->type != YAML_MAPPING_NODE) {
        st = yerr(&d, root, "a recipe is a mapping (version, defaults, rules)%s%s", "", "");
    } else {
        int have_version = 0;
        unsigned seen = 0; // version, defaults, rules, policies: each at most once (found by fuzzing: a second
                           // "rules:" replaced the first list and leaked it)
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; st == MOEQ_OK && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key), *v = yaml_document_get_node(&doc, p->value);
            const char *key = yscalar(k);
            static const char *const top[] = {"version", "defaults", "rules", "policies"};
            for (unsigned b = 0; key && b < 4; b++)
                if (!strcmp(key, top[b])) {
                    if (seen & (1u << b)) st = yerr(&d, k, "duplicate key \"%s\"%s", key, " (each top-level key once)");
                    seen |= 1u << b;
                }
            if (st != MOEQ_OK) break;
            if (key && !strcmp(key, "version")) {
                int ver = 0;
                st = y_int(&d, v, "version", 1, 1, &ver);
                have_version = 1;
            } else if (key && !strcmp(key, "defaults")) {
                unsigned mask = 0;
                st = moeq_recipe_parse_settings_(&d, v, &r->defaults, &mask);
            } else if (key && !strcmp(key, "rules")) {
                if (v->type != YAML_SEQUENCE_NODE) {
                    st = yerr(&d, v, "\"rules\" must be a list%s%s", "", "");
                    break;
                }
                int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
                r->rules = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *r->rules, "recipe rules");
                if (!r->rules) {
                    st = MOEQ_ERR_NOMEM;
                    break;
                }
                for (int i = 0; st == MOEQ_OK && i < n; i++) {
                    yaml_node_t *item = yaml_document_get_node(&doc, v->data.sequence.items.start[i]);
                    r->rules[i].set = r->defaults; // placeholder; only set_mask fields are used
                    st = parse_rule(&d, item, &r->rules[i]);
                    if (st == MOEQ_OK) r->n_rules++;
                }
            } else if (key && !strcmp(key, "policies")) {
                if (v->type != YAML_SEQUENCE_NODE) {
                    st = yerr(&d, v, "\"policies\" must be a list%s%s", "", "");
                    break;
                }
                int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
                r->policies = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *r->policies, "recipe policies");
                if (!r->policies) {
                    st = MOEQ_ERR_NOMEM;
                    break;
                }
                for (int i = 0; st == MOEQ_OK && i < n; i++) {
                    yaml_node_t *item = yaml_document_get_node(&doc, v->data.sequence.items.start[i]);
                    st = moeq_recipe_parse_policy_(&d, item, &r->policies[i]);
                    if (st == MOEQ_OK) r->n_policies++;
                }
                for (int i = 0; st == MOEQ_OK && i < r->n_policies; i++)
                    if (r->policies[i].kind == MOEQ_POLICY_BUDGET && i != r->n_policies - 1)
                        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: the budget policy must be the last policy (and there is "
                                       "one at most)\n---> HINT: it spends what the other policies leave", path,
                                       r->policies[i].line);
            } else {
                st = yerr(&d, k, "unknown top-level key \"%s\"%s\n---> HINT: a recipe has version, defaults, rules, "
                          "policies", key ? key : "?", "");
            }
        }
        if (st == MOEQ_OK && !have_version)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: missing \"version: 1\"", path);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st != MOEQ_OK) {
        moeq_recipe_free(&r);
        return st;
    }
    *out = r;
    return MOEQ_OK;
}

moeq_status moeq_recipe_load(const char *path, moeq_recipe **out) {
    char *text = NULL;
    moeq_status st = moeq_read_file(path, 1u << 20, &text, NULL);
    if (st != MOEQ_OK) return st;
    st = moeq_recipe_parse(path, text, out);
    moeq_free(&text);
    return st;
}

void moeq_recipe_free(moeq_recipe **pr) {
    if (!pr || !*pr) return;
    moeq_free(&(*pr)->rules);
    moeq_free(&(*pr)->policies);
    moeq_free(&(*pr)->text);
    moeq_free(&(*pr)->path);
    moeq_free(pr);
}

int moeq_tensor_quantizable(const moeq_tensor_info *t) {
    return t->c.is_weight && t->ndim == 2 && t->c.cls != MOEQ_TC_FP8_SCALE && t->shape[0] > 0 && t->shape[1] > 0 &&
           moeq_dtypes[t->dtype].decodable;
}

int moeq_rule_matches(const moeq_rule *r, const moeq_tensor_info *t) {
    if (r->has_class && t->c.cls != r->cls) return 0;
    if (r->has_proj && t->c.proj != r->proj) return 0;
    if (r->layer_rel && r->layer_lo < 0) return 0; // relative range not bound to a model
    if (r->layer_lo >= 0 && (t->c.layer < r->layer_lo || t->c.layer > r->layer_hi)) return 0;
    if (r->name_glob[0] && fnmatch(r->name_glob, t->name, 0) != 0) return 0;
    return 1;
}

void moeq_qsettings_apply(moeq_qsettings *s, const moeq_qsettings *o, unsigned m) {
    if (m & MOEQ_SET_METHOD) s->method = o->method;
    if (m & MOEQ_SET_BITS) s->bits = o->bits;
    if (m & MOEQ_SET_GROUP) s->group = o->group;
    if (m & MOEQ_SET_RANK) s->rank = o->rank;
    if (m & MOEQ_SET_ROUNDS) s->rounds = o->rounds;
    if (m & MOEQ_SET_COMP) s->compensator = o->compensator;
    if (m & MOEQ_SET_HQQ_LP) s->hqq_lp_norm = o->hqq_lp_norm;
    if (m & MOEQ_SET_HQQ_BETA) s->hqq_beta = o->hqq_beta;
    if (m & MOEQ_SET_HQQ_KAPPA) s->hqq_kappa = o->hqq_kappa;
    if (m & MOEQ_SET_HQQ_ITERS) s->hqq_iters = o->hqq_iters;
    if (m & MOEQ_SET_HQQ_EARLY) s->hqq_early_stop = o->hqq_early_stop;
    if (m & MOEQ_SET_SVD_OVER) s->svd_oversample = o->svd_oversample;
    if (m & MOEQ_SET_SVD_POWER) s->svd_power_iters = o->svd_power_iters;
    if (m & MOEQ_SET_SEED) s->seed = o->seed;
}

moeq_qsettings moeq_recipe_resolve(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by) {
    moeq_qsettings s = r->defaults;
    if (decided_by) *decided_by = -1;
    // Built-in: only the linears of attention and MLPs are quantized by default.
    moeq_tclass c = t->c.cls;
    int default_on = c == MOEQ_TC_ATTENTION || c == MOEQ_TC_SHARED_EXPERT || c == MOEQ_TC_ROUTED_EXPERT ||
                     c == MOEQ_TC_DENSE_MLP;
    if (!default_on) s.method = MOEQ_METHOD_NONE;
    for (int i = 0; i < r->n_rules; i++) {
        const moeq_rule *rule = &r->rules[i];
        if (!moeq_rule_matches(rule, t)) continue;
        // A rule turns on a default-off class only when it names that class explicitly.
        unsigned mask = rule->set_mask;
        if (!default_on && !(rule->has_class && rule->cls == c)) mask &= ~(unsigned)MOEQ_SET_METHOD;
        moeq_qsettings_apply(&s, &rule->set, mask);
        if (mask && decided_by) *decided_by = i;
    }
    if (!moeq_tensor_quantizable(t)) s.method = MOEQ_METHOD_NONE;
    if (s.method != MOEQ_METHOD_MILO) s.rank = 0;
    return s;
}

moeq_status moeq_qsettings_check(const moeq_qsettings *s, const moeq_tensor_info *t) {
    if (s->method == MOEQ_METHOD_NONE) return MOEQ_OK;
    const int64_t R = t->shape[0], C = t->shape[1];
    if (C % s->group != 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "tensor '%s' [%lld, %lld]: group %d does not divide the input dimension %lld\n---> HINT: "
                         "choose a group size that divides %lld (e.g. with a rule for this class)",
                         t->name, (long long)R, (long long)C, s->group, (long long)C, (long long)C);
    if (s->rank > R || s->rank > C)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s' [%lld, %lld]: rank %d exceeds min(rows, cols)", t->name,
                         (long long)R, (long long)C, s->rank);
    return MOEQ_OK;
}

// ---- binding relative layer ranges; weights needed ----

int moeq_recipe_needs_weights(const moeq_recipe *r) {
    for (int i = 0; i < r->n_policies; i++)
        if (r->policies[i].kind != MOEQ_POLICY_FREQUENCY && r->policies[i].kind != MOEQ_POLICY_FREQUENCY_RANK) return 1;
    return 0;
}

static moeq_status bind_rule(const moeq_recipe *r, moeq_rule *rule, const moeq_model_config *cfg) {
    if (!rule->layer_rel) return MOEQ_OK;
    int moe[4096], n = 0;
    for (int l = 0; l < cfg->n_layers && n < 4096; l++)
        if (moeq_config_layer_is_moe(cfg, l)) moe[n++] = l;
    if (rule->layer_k > n)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s:%d: layers \"%s:%d\" but the model has %d MoE blocks\n---> HINT: K at most %d",
                         r->path, rule->line, rule->layer_rel == MOEQ_LAYERS_FIRST ? "first" : "last", rule->layer_k, n, n);
    if (rule->layer_rel == MOEQ_LAYERS_FIRST) rule->layer_lo = moe[0], rule->layer_hi = moe[rule->layer_k - 1];
    else rule->layer_lo = moe[n - rule->layer_k], rule->layer_hi = moe[n - 1];
    return MOEQ_OK;
}

moeq_status moeq_recipe_bind(moeq_recipe *r, const moeq_model_config *cfg) {
    for (int i = 0; i < r->n_rules; i++) MOEQ_TRY(bind_rule(r, &r->rules[i], cfg));
    for (int i = 0; i < r->n_policies; i++) MOEQ_TRY(bind_rule(r, &r->policies[i].match, cfg));
    return MOEQ_OK;
}

moeq_status moeq_recipe_bound_copy(const moeq_recipe *r, const moeq_model_config *cfg, moeq_recipe **out) {
    *out = NULL;
    moeq_recipe *c = MOEQ_CALLOC(1, sizeof *c, "recipe copy");
    if (!c) return MOEQ_ERR_NOMEM;
    *c = *r;
    c->path = MOEQ_STRDUP(r->path);
    c->text = MOEQ_STRDUP(r->text);
    c->rules = MOEQ_CALLOC(r->n_rules ? (size_t)r->n_rules : 1, sizeof *c->rules, "rules copy");
    c->policies = MOEQ_CALLOC(r->n_policies ? (size_t)r->n_policies : 1, sizeof *c->policies, "policies copy");
    if (!c->path || !c->text || !c->rules || !c->policies) {
        moeq_recipe_free(&c);
        return MOEQ_ERR_NOMEM;
    }
    if (r->n_rules) memcpy(c->rules, r->rules, sizeof *c->rules * (size_t)r->n_rules);
    if (r->n_policies) memcpy(c->policies, r->policies, sizeof *c->policies * (size_t)r->n_policies);
    moeq_status st = moeq_recipe_bind(c, cfg);
    if (st != MOEQ_OK) {
        moeq_recipe_free(&c);
        return st;
    }
    *out = c;
    return MOEQ_OK;
}
