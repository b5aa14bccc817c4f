// recipe.c: binding a recipe's syntax tree (io/ydoc.h) to moeq's tensors (see recipe.h): the top level, the
// settings mappings (every key a field of the method registry's table, kernels/method.h), match mappings,
// rules, per-tensor resolution, settings checked against a tensor, and relative layer ranges bound to a
// model. Not here: the syntax of policies (recipe_policy.c), applying them (policy.c), the YAML parser (io).
#include "recipe.h"

#include <errno.h>
#include <stdarg.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe_impl.h" // defines: y_int, y_bool, the parsers lent to recipe_policy.c

// ---- settings, match, rules (the shared YAML helpers are in recipe_impl.h) ----

// One key of a settings mapping: field f's value from node v.
static moeq_status parse_field(const moeq_ydoc *d, const moeq_ynode *v, int f, moeq_qsettings *s,
                               unsigned *mask) {
    char why[256];
    if (moeq_setting_parse(s, f, moeq_yscalar(v), why, sizeof why) != MOEQ_OK)
        return MOEQ_YFAIL(d, v, "%s", why);
    *mask |= 1u << f;
    return MOEQ_OK;
}

// Parses a settings mapping (defaults:, set:, a candidate) into s, recording the fields named in *mask. Keys
// are the registry's fields (kernels/method.h); "hqq" and "svd" are mappings of their dotted keys.
moeq_status moeq_recipe_parse_settings_(const moeq_ydoc *d, const moeq_ynode *map, moeq_qsettings *s,
                                        unsigned *mask) {
    if (!map || map->type != MOEQ_Y_MAP) return MOEQ_YFAIL(d, map, "expected a mapping of settings");
    for (int i = 0; i < map->n; i++) {
        const moeq_ynode *k = map->key[i], *v = map->item[i];
        const char *key = moeq_yscalar(k);
        if (!key) return MOEQ_YFAIL(d, k, "keys must be plain words");
        if (moeq_setting_section_exists(key)) {
            if (!v || v->type != MOEQ_Y_MAP) return MOEQ_YFAIL(d, v, "\"%s\" must be a mapping", key);
            for (int j = 0; j < v->n; j++) {
                const char *sub = moeq_yscalar(v->key[j]);
                if (!sub) return MOEQ_YFAIL(d, v->key[j], "keys must be plain words");
                char full[128];
                snprintf(full, sizeof full, "%s.%s", key, sub);
                const int f = moeq_setting_field_find(full);
                if (f < 0) return MOEQ_YFAIL(d, v->key[j], "unknown key \"%s\" in \"%s\"", sub, key);
                MOEQ_TRY(parse_field(d, v->item[j], f, s, mask));
            }
            continue;
        }
        const int f = strchr(key, '.') ? -1 : moeq_setting_field_find(key);
        if (f < 0)
            return MOEQ_YFAIL(d, k, "unknown setting \"%s\"\n---> HINT: settings are %s", key,
                              moeq_setting_keys());
        MOEQ_TRY(parse_field(d, v, f, s, mask));
    }
    return MOEQ_OK;
}

static moeq_status parse_layers(const moeq_ydoc *d, const moeq_ynode *v, moeq_rule *r) {
    const char *s = moeq_yscalar(v);
    if (!s) return MOEQ_YFAIL(d, v, "\"layers\" must be N, \"A-B\", \"first:K\" or \"last:K\"");
    char *end;
    errno = 0;
    if (!strncmp(s, "first:", 6) || !strncmp(s, "last:", 5)) {
        const char *num = s + (s[0] == 'f' ? 6 : 5);
        long k = strtol(num, &end, 10);
        if (end == num || *end || errno || k < 1 || k > 100000)
            return MOEQ_YFAIL(d, v, "\"layers\": \"%s\" needs K >= 1 MoE blocks, e.g. \"first:2\"", s);
        r->layer_rel = s[0] == 'f' ? MOEQ_LAYERS_FIRST : MOEQ_LAYERS_LAST;
        r->layer_k = (int)k;
        r->layer_lo = r->layer_hi = -2; // unbound: matches nothing until moeq_recipe_bind
        return MOEQ_OK;
    }
    long a = strtol(s, &end, 10), b = a;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    if (end == s || *end || errno || a < 0 || b < a || b > 100000)
        return MOEQ_YFAIL(
            d, v, "\"layers\" must be N or \"A-B\" with A <= B, or \"first:K\" / \"last:K\" (got \"%s\")", s);
    r->layer_lo = (int)a;
    r->layer_hi = (int)b;
    return MOEQ_OK;
}

moeq_status moeq_recipe_parse_match_(const moeq_ydoc *d, const moeq_ynode *v, moeq_rule *r) {
    if (!v || v->type != MOEQ_Y_MAP) return MOEQ_YFAIL(d, v, "\"match\" must be a mapping");
    for (int i = 0; i < v->n; i++) {
        const moeq_ynode *mk = v->key[i], *mv = v->item[i];
        const char *m = moeq_yscalar(mk), *val = moeq_yscalar(mv);
        if (!m || !val) return MOEQ_YFAIL(d, mk, "match keys and values must be plain scalars");
        if (!strcmp(m, "class")) {
            r->cls = moeq_tclass_from_name(val);
            if (r->cls == MOEQ_TC_COUNT || r->cls == MOEQ_TC_FP8_SCALE)
                return MOEQ_YFAIL(
                    d, mv,
                    "unknown tensor class \"%s\"\n---> HINT: classes are attention, shared_expert, "
                    "routed_expert, dense_mlp, router, embedding, lm_head, norm, other",
                    val);
            r->has_class = 1;
        } else if (!strcmp(m, "proj")) {
            int found = 0;
            for (int p = 1; p < MOEQ_PROJ_COUNT && !found; p++)
                if (!strcmp(val, moeq_proj_name((moeq_proj)p))) {
                    r->proj = (moeq_proj)p;
                    found = 1;
                }
            if (!found)
                return MOEQ_YFAIL(
                    d, mv,
                    "unknown projection \"%s\"\n---> HINT: gate, up, down, q, k, v, o, q_a, q_b, kv_a, kv_b",
                    val);
            r->has_proj = 1;
        } else if (!strcmp(m, "layers")) {
            MOEQ_TRY(parse_layers(d, mv, r));
        } else if (!strcmp(m, "name")) {
            if (strlen(val) >= sizeof r->name_glob) return MOEQ_YFAIL(d, mv, "name pattern too long");
            snprintf(r->name_glob, sizeof r->name_glob, "%s", val);
        } else {
            return MOEQ_YFAIL(d, mk,
                              "unknown match key \"%s\"\n---> HINT: match on class, proj, layers, name", m);
        }
    }
    return MOEQ_OK;
}

static moeq_status parse_rule(const moeq_ydoc *d, const moeq_ynode *n, moeq_rule *r) {
    memset(r, 0, sizeof *r);
    r->line = moeq_yline(n);
    r->layer_lo = r->layer_hi = -1;
    if (n->type != MOEQ_Y_MAP) return MOEQ_YFAIL(d, n, "a rule must be a mapping with match: and set:");
    int have_set = 0;
    for (int i = 0; i < n->n; i++) {
        const moeq_ynode *k = n->key[i], *v = n->item[i];
        const char *key = moeq_yscalar(k);
        if (key && !strcmp(key, "set")) {
            MOEQ_TRY(moeq_recipe_parse_settings_(d, v, &r->set, &r->set_mask));
            have_set = 1;
        } else if (key && !strcmp(key, "match")) {
            MOEQ_TRY(moeq_recipe_parse_match_(d, v, r));
        } else {
            return MOEQ_YFAIL(d, k, "unknown rule key \"%s\" (rules have match: and set:)", key ? key : "?");
        }
    }
    if (!have_set) return MOEQ_YFAIL(d, n, "rule without \"set\"");
    return MOEQ_OK;
}

// A list of n items parsed by one parser into an array of `size`-byte elements.
static moeq_status parse_list(const moeq_ydoc *d, const moeq_ynode *v, const char *key, size_t size,
                              void **items, int *n_items,
                              moeq_status (*one)(const moeq_ydoc *, const moeq_ynode *, void *, void *),
                              void *ctx) {
    if (v->type != MOEQ_Y_SEQ) return MOEQ_YFAIL(d, v, "\"%s\" must be a list", key);
    char *a = MOEQ_CALLOC(v->n ? (size_t)v->n : 1, size, key);
    if (!a) return MOEQ_ERR_NOMEM;
    *items = a;
    for (int i = 0; i < v->n; i++) {
        MOEQ_TRY(one(d, v->item[i], a + (size_t)i * size, ctx));
        (*n_items)++;
    }
    return MOEQ_OK;
}

static moeq_status one_rule(const moeq_ydoc *d, const moeq_ynode *n, void *item, void *ctx) {
    (void)ctx;
    return parse_rule(d, n, item); // only the set_mask fields of its `set` are used
}

static moeq_status one_policy(const moeq_ydoc *d, const moeq_ynode *n, void *item, void *ctx) {
    (void)ctx;
    return moeq_recipe_parse_policy_(d, n, item);
}

moeq_status moeq_recipe_from_doc(const moeq_ydoc *d, const char *text, moeq_recipe **out) {
    *out = NULL;
    moeq_recipe *r = MOEQ_CALLOC(1, sizeof *r, "recipe");
    if (!r) return MOEQ_ERR_NOMEM;
    r->path = MOEQ_STRDUP(d->path);
    r->text = MOEQ_STRDUP(text ? text : "");
    r->defaults = moeq_qsettings_default();
    if (!r->path || !r->text) {
        moeq_recipe_free(&r);
        return MOEQ_ERR_NOMEM;
    }
    const moeq_ynode *root = d->root;
    moeq_status st = MOEQ_OK;
    if (!root) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: empty recipe\n---> HINT: at least \"version: 1\"", d->path);
    } else if (root->type != MOEQ_Y_MAP) {
        st = MOEQ_YFAIL(d, root, "a recipe is a mapping (version, defaults, rules)");
    } else {
        int have_version = 0;
        unsigned seen = 0; // version, defaults, rules, policies: each at most once (found by fuzzing: a
                           // second "rules:" replaced the first list and leaked it)
        for (int i = 0; st == MOEQ_OK && i < root->n; i++) {
            const moeq_ynode *k = root->key[i], *v = root->item[i];
            const char *key = moeq_yscalar(k);
            static const char *const top[] = {"version", "defaults", "rules", "policies", "target"};
            for (unsigned b = 0; key && b < 5; b++)
                if (!strcmp(key, top[b])) {
                    if (seen & (1u << b))
                        st = MOEQ_YFAIL(d, k, "duplicate key \"%s\" (each top-level key once)", key);
                    seen |= 1u << b;
                }
            if (st != MOEQ_OK) break;
            if (key && !strcmp(key, "version")) {
                int ver = 0;
                st = y_int(d, v, "version", 1, 1, &ver);
                have_version = 1;
            } else if (key && !strcmp(key, "defaults")) {
                unsigned mask = 0;
                st = moeq_recipe_parse_settings_(d, v, &r->defaults, &mask);
            } else if (key && !strcmp(key, "rules")) {
                st = parse_list(d, v, "rules", sizeof *r->rules, (void **)&r->rules, &r->n_rules, one_rule,
                                NULL);
            } else if (key && !strcmp(key, "policies")) {
                st = parse_list(d, v, "policies", sizeof *r->policies, (void **)&r->policies, &r->n_policies,
                                one_policy, NULL);
                for (int j = 0; st == MOEQ_OK && j < r->n_policies; j++)
                    if (r->policies[j].kind == MOEQ_POLICY_BUDGET && j != r->n_policies - 1)
                        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                                       "%s:%d: the budget policy must be the last policy (and there is "
                                       "one at most)\n---> HINT: it spends what the other policies leave",
                                       d->path, r->policies[j].line);
            } else if (key && !strcmp(key, "target")) {
                const char *tv = moeq_yscalar(v);
                if (tv && !strcmp(tv, "gguf"))
                    r->target = MOEQ_TARGET_GGUF, r->target_line = moeq_yline(k);
                else if (tv && !strcmp(tv, "vllm"))
                    r->target = MOEQ_TARGET_VLLM, r->target_line = moeq_yline(k);
                else
                    st = MOEQ_YFAIL(d, v,
                                    "unknown target \"%s\"\n---> HINT: \"target: gguf\" (a file llama.cpp "
                                    "loads), \"target: vllm\" (moeq export --format compressed-tensors for "
                                    "vLLM), or no target (moeq's artifact, any format)",
                                    tv ? tv : "?");
            } else {
                st = MOEQ_YFAIL(
                    d, k,
                    "unknown top-level key \"%s\"\n---> HINT: a recipe has version, defaults, rules, "
                    "policies, target",
                    key ? key : "?");
            }
        }
        if (st == MOEQ_OK && !have_version)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: missing \"version: 1\"", d->path);
        // the policies choose per stacked (layer, projection) under target gguf (policy.c)
        for (int j = 0; st == MOEQ_OK && j < r->n_policies; j++)
            r->policies[j].gguf = r->target == MOEQ_TARGET_GGUF;
    }
    if (st != MOEQ_OK) {
        moeq_recipe_free(&r);
        return st;
    }
    *out = r;
    return MOEQ_OK;
}

// text: len bytes (and a terminating NUL); a NUL among them is refused by the parser.
static moeq_status parse_n(const char *path, const char *text, size_t len, moeq_recipe **out) {
    *out = NULL;
    moeq_ydoc *d = NULL;
    MOEQ_TRY(moeq_ydoc_parse_n(path, text, len, &d));
    moeq_status st = moeq_recipe_from_doc(d, text, out);
    moeq_ydoc_free(&d);
    return st;
}

moeq_status moeq_recipe_parse(const char *path, const char *text, moeq_recipe **out) {
    return parse_n(path, text, strlen(text), out);
}

moeq_status moeq_recipe_load(const char *path, moeq_recipe **out) {
    char *text = NULL;
    size_t len = 0;
    moeq_status st = moeq_read_file(path, 1u << 20, &text, &len);
    if (st == MOEQ_ERR_NOT_FOUND)
        return MOEQ_FAIL(st,
                         "recipe %s does not exist\n---> HINT: --recipe takes a YAML file; the recipes "
                         "moeq ships are in its configs/ folder (configs/README.md), and without "
                         "--recipe the built-in default (hqq, 4 bits, group 64) is used",
                         path);
    if (st != MOEQ_OK) return st;
    st = parse_n(path, text, len, out);
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
    return t->c.is_weight && t->ndim == 2 && t->c.cls != MOEQ_TC_FP8_SCALE && t->shape[0] > 0 &&
           t->shape[1] > 0 && moeq_dtypes[t->dtype].decodable;
}

// Appends ", " (after the first key) and one "key: value" to buf (n: its length so far, capped at cap - 1).
static size_t append_key(char *buf, size_t cap, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static size_t append_key(char *buf, size_t cap, size_t n, const char *fmt, ...) {
    if (n > 1 && n < cap) n += (size_t)snprintf(buf + n, cap - n, ", ");
    if (n < cap) {
        va_list ap;
        va_start(ap, fmt);
        n += (size_t)vsnprintf(buf + n, cap - n, fmt, ap);
        va_end(ap);
    }
    return n < cap ? n : cap - 1;
}

const char *moeq_rule_match_str(const moeq_rule *r, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "{");
    if (r->has_class) n = append_key(buf, cap, n, "class: %s", moeq_tclass_name(r->cls));
    if (r->has_proj) n = append_key(buf, cap, n, "proj: %s", moeq_proj_name(r->proj));
    if (r->layer_rel)
        n = append_key(buf, cap, n, "layers: \"%s:%d\"", r->layer_rel == MOEQ_LAYERS_FIRST ? "first" : "last",
                       r->layer_k);
    else if (r->layer_lo >= 0 && r->layer_lo == r->layer_hi)
        n = append_key(buf, cap, n, "layers: %d", r->layer_lo);
    else if (r->layer_lo >= 0)
        n = append_key(buf, cap, n, "layers: \"%d-%d\"", r->layer_lo, r->layer_hi);
    if (r->name_glob[0]) n = append_key(buf, cap, n, "name: \"%s\"", r->name_glob);
    if (n < cap) snprintf(buf + n, cap - n, "}");
    return buf;
}

int moeq_rule_matches(const moeq_rule *r, const moeq_tensor_info *t) {
    if (r->has_class && t->c.cls != r->cls) return 0;
    if (r->has_proj && t->c.proj != r->proj) return 0;
    if (r->layer_rel && r->layer_lo < 0) return 0; // relative range not bound to a model
    if (r->layer_lo >= 0 && (t->c.layer < r->layer_lo || t->c.layer > r->layer_hi)) return 0;
    if (r->name_glob[0] && fnmatch(r->name_glob, t->name, 0) != 0) return 0;
    return 1;
}

moeq_qsettings moeq_recipe_resolve(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by) {
    return moeq_recipe_resolve_ex(r, t, decided_by, NULL);
}

// The largest group from the registry's least (8) to `asked` that divides C, or 0 when none does.
static int group_dividing(int64_t C, int asked) {
    const int lo = (int)moeq_setting_field_get(MOEQ_F_GROUP)->lo;
    for (int g = asked < C ? asked : (int)C; g >= lo; g--)
        if (C % g == 0) return g;
    return 0;
}

int moeq_qsettings_fit_group(moeq_qsettings *s, const moeq_tensor_info *t) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qsettings_qtype(s));
    if (!m || !m->quantizes || !f || f->block || !moeq_tensor_quantizable(t)) return 0;
    const int64_t C = t->shape[1];
    if (C % s->group == 0) return 0;
    const int g = group_dividing(C, s->group);
    if (!g) return -1;
    const int asked = s->group;
    s->group = g;
    return asked == MOEQ_GROUP_CHANNEL && g == C ? 0 : asked; // per channel: nothing to report
}

moeq_qsettings moeq_recipe_resolve_ex(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by,
                                      int *group_asked) {
    moeq_qsettings s = r->defaults;
    if (decided_by) *decided_by = -1;
    // Built-in: only the linears of attention and MLPs are quantized by default.
    moeq_tclass c = t->c.cls;
    int default_on = c == MOEQ_TC_ATTENTION || c == MOEQ_TC_SHARED_EXPERT || c == MOEQ_TC_ROUTED_EXPERT ||
                     c == MOEQ_TC_DENSE_MLP;
    if (!default_on) s.method = MOEQ_METHOD_NONE;
    int named = 0, method_set = 0; // a matching rule named this class; set its method
    for (int i = 0; i < r->n_rules; i++) {
        const moeq_rule *rule = &r->rules[i];
        if (!moeq_rule_matches(rule, t)) continue;
        // A rule turns on a default-off class only when it names that class explicitly.
        unsigned mask = rule->set_mask;
        const int names = rule->has_class && rule->cls == c;
        if (!default_on && !names) mask &= ~(unsigned)MOEQ_SET_METHOD;
        moeq_qsettings_apply(&s, &rule->set, mask);
        named |= names;
        method_set |= (mask & MOEQ_SET_METHOD) != 0;
        // ... and a rule naming it that says how to store it (bits, group, format, ...) but not the method
        // asks for it quantized: the recipe's default method, not a silent "stored as it came"
        if (!default_on && names && mask && !method_set) s.method = r->defaults.method;
        if (mask && decided_by) *decided_by = i;
    }
    // a default-off class no rule named stays as it came whatever other rules set: the defaults decided
    if (!default_on && !named && decided_by) *decided_by = -1;
    if (!moeq_tensor_quantizable(t)) s.method = MOEQ_METHOD_NONE;
    moeq_qsettings_normalize(&s);
    const int asked = moeq_qsettings_fit_group(&s, t);
    if (group_asked) *group_asked = asked > 0 ? asked : 0;
    return s;
}

moeq_status moeq_qsettings_check(const moeq_qsettings *s, const moeq_tensor_info *t) {
    if (!moeq_method_get(s->method) || !moeq_method_get(s->method)->quantizes) return MOEQ_OK;
    const int64_t R = t->shape[0], C = t->shape[1];
    MOEQ_TRY(moeq_method_check_format(s, t->name));
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qsettings_qtype(s));
    if (f->block && C % f->block)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "tensor '%s' [%lld, %lld]: format %s stores blocks of %d weights, which do not divide the input "
            "dimension %lld\n---> HINT: give this tensor another format (a rule for its class or name)",
            t->name, (long long)R, (long long)C, f->name, f->block, (long long)C);
    if (!f->block && C % s->group != 0) {
        const int g = group_dividing(C, s->group);
        if (g)
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "tensor '%s' [%lld, %lld]: group %d does not divide the input dimension %lld\n---> "
                "HINT: group %d does (the plan takes it by itself: moeq_qsettings_fit_group)",
                t->name, (long long)R, (long long)C, s->group, (long long)C, g);
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "tensor '%s' [%lld, %lld]: group %d does not divide the input dimension %lld, nor does "
            "any group from %d to %d\n---> HINT: store it another way with a rule for its name or "
            "class (method: none, or a group that divides %lld if one above %d does)",
            t->name, (long long)R, (long long)C, s->group, (long long)C,
            (int)moeq_setting_field_get(MOEQ_F_GROUP)->lo, s->group, (long long)C, s->group);
    }
    if (s->rank > R || s->rank > C)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s' [%lld, %lld]: rank %d exceeds min(rows, cols)",
                         t->name, (long long)R, (long long)C, s->rank);
    return MOEQ_OK;
}

int moeq_qsettings_fits(const moeq_qsettings *s, const moeq_tensor_info *t) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    return m && m->quantizes && moeq_tensor_quantizable(t) && moeq_qsettings_check(s, t) == MOEQ_OK;
}

// ---- binding relative layer ranges; weights needed ----

int moeq_recipe_needs_weights(const moeq_recipe *r) {
    for (int i = 0; i < r->n_policies; i++)
        if (r->policies[i].kind != MOEQ_POLICY_FREQUENCY && r->policies[i].kind != MOEQ_POLICY_FREQUENCY_RANK)
            return 1;
    return 0;
}

static moeq_status bind_rule(const moeq_recipe *r, moeq_rule *rule, const moeq_model_config *cfg) {
    if (!rule->layer_rel) return MOEQ_OK;
    int moe[4096], n = 0;
    for (int l = 0; l < cfg->n_layers && n < 4096; l++)
        if (moeq_config_layer_is_moe(cfg, l)) moe[n++] = l;
    if (rule->layer_k > n)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s:%d: layers \"%s:%d\" but the model has %d MoE blocks\n---> HINT: K at most %d",
                         r->path, rule->line, rule->layer_rel == MOEQ_LAYERS_FIRST ? "first" : "last",
                         rule->layer_k, n, n);
    if (rule->layer_rel == MOEQ_LAYERS_FIRST)
        rule->layer_lo = moe[0], rule->layer_hi = moe[rule->layer_k - 1];
    else
        rule->layer_lo = moe[n - rule->layer_k], rule->layer_hi = moe[n - 1];
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
    c->policies =
        MOEQ_CALLOC(r->n_policies ? (size_t)r->n_policies : 1, sizeof *c->policies, "policies copy");
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
