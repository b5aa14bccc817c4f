// recipe_policy.c: the policies: section of a recipe (see recipe.h and configs/README.md): each policy's
// keys, defaults and required keys, checked with line numbers; and the routing-count files that the
// frequency policies read (JSON {"counts": [[...], ...]} or CSV layer,expert,count), found next to the
// recipe. Not here: the recipe's rules (recipe.c), applying policies (schedulers/policy.c).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <yaml.h>

#include "alloc.h"
#include "recipe_impl.h" // defines: ydoc, yline, yscalar, yerr, y_int, y_bool
#include "sysio.h"

// ---- policies ----

static const char *const policy_names[MOEQ_POLICY_KIND_COUNT] = {"outlier", "block", "frequency", "kurtosis_rank",
                                                                   "frequency_rank", "budget"};

const char *moeq_policy_kind_name(moeq_policy_kind k) {
    return ((int)k >= 0 && k < MOEQ_POLICY_KIND_COUNT) ? policy_names[k] : "invalid";
}

// "25%" (a percentage in (0, 100]) or "N" (a count >= 1).
static moeq_status parse_top(const ydoc *d, yaml_node_t *v, moeq_policy *p) {
    const char *s = yscalar(v);
    char *end = NULL;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    int pct = end && *end == '%';
    if (!s || end == s || errno || (pct ? end[1] != '\0' : *end != '\0') || !isfinite(x) || x <= 0 ||
        (pct && x > 100) || (!pct && x != floor(x)))
        return yerr(d, v, "\"top\" must be a count N >= 1 or a percentage \"P%%\" in (0, 100] (got \"%s\")%s",
                    s ? s : "?", "");
    p->top = x;
    p->top_percent = pct;
    return MOEQ_OK;
}

static moeq_status y_double(const ydoc *d, const yaml_node_t *n, const char *key, double lo, double hi, double *out) {
    const char *s = yscalar(n);
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "[%g, %g]", lo, hi);
        return yerr(d, n, "\"%s\" must be a number in %s", key, range);
    }
    *out = v;
    return MOEQ_OK;
}

// Which keys each kind accepts (besides kind, match).
static int policy_key_ok(moeq_policy_kind k, const char *key) {
    static const char *const keys[MOEQ_POLICY_KIND_COUNT] = {
        [MOEQ_POLICY_OUTLIER] = " top set by_proj ",
        [MOEQ_POLICY_BLOCK] = " top set probe ",
        [MOEQ_POLICY_FREQUENCY] = " top set counts per_layer ",
        [MOEQ_POLICY_KURTOSIS_RANK] = " threshold k max_kurtosis cap ",
        [MOEQ_POLICY_FREQUENCY_RANK] = " counts rank cap ",
        [MOEQ_POLICY_BUDGET] = " bits tolerance by candidates sample_rows ",
    };
    char pat[64];
    snprintf(pat, sizeof pat, " %s ", key);
    return strstr(keys[k], pat) != NULL;
}

moeq_status moeq_recipe_parse_policy_(const ydoc *d, yaml_node_t *n, moeq_policy *p) {
    memset(p, 0, sizeof *p);
    p->line = yline(n);
    p->match.layer_lo = p->match.layer_hi = -1;
    p->match.line = p->line;
    p->per_layer = 1;
    p->threshold = 1, p->k = 2, p->max_kurtosis = 9, p->cap = 1024;
    p->probe_bits = 2, p->probe_tokens = 128;
    p->tolerance = 0.02;
    p->target_bits = -1;
    p->top = -1;
    p->rank = -1;
    if (n->type != YAML_MAPPING_NODE) return yerr(d, n, "a policy must be a mapping with \"kind:\"%s%s", "", "");
    // kind first, wherever it is written
    int kind = -1;
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        const char *key = yscalar(yaml_document_get_node(d->doc, q->key));
        yaml_node_t *v = yaml_document_get_node(d->doc, q->value);
        if (key && !strcmp(key, "kind")) {
            const char *kv = yscalar(v);
            for (int i = 0; kv && i < MOEQ_POLICY_KIND_COUNT; i++)
                if (!strcmp(kv, policy_names[i])) kind = i;
            if (kind < 0)
                return yerr(d, v,
                            "unknown policy kind \"%s\"%s\n---> HINT: outlier, block, frequency, kurtosis_rank, "
                            "frequency_rank, budget",
                            kv ? kv : "?", "");
        }
    }
    if (kind < 0) return yerr(d, n, "policy without \"kind\"%s%s", "", "");
    p->kind = (moeq_policy_kind)kind;
    int have_set = 0, have_counts = 0, have_cand = 0;
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        yaml_node_t *k = yaml_document_get_node(d->doc, q->key), *v = yaml_document_get_node(d->doc, q->value);
        const char *key = yscalar(k);
        if (!key) return yerr(d, k, "keys must be plain words%s%s", "", "");
        if (!strcmp(key, "kind")) continue;
        if (!strcmp(key, "match")) {
            MOEQ_TRY(moeq_recipe_parse_match_(d, v, &p->match));
            continue;
        }
        if (!policy_key_ok(p->kind, key))
            return yerr(d, k, "policy %s has no key \"%s\"\n---> HINT: configs/README.md lists each policy's keys",
                        policy_names[p->kind], key);
        if (!strcmp(key, "top")) MOEQ_TRY(parse_top(d, v, p));
        else if (!strcmp(key, "set")) {
            p->set = moeq_qsettings_default();
            MOEQ_TRY(moeq_recipe_parse_settings_(d, v, &p->set, &p->set_mask));
            have_set = 1;
        } else if (!strcmp(key, "by_proj")) MOEQ_TRY(y_bool(d, v, key, &p->by_proj));
        else if (!strcmp(key, "per_layer")) MOEQ_TRY(y_bool(d, v, key, &p->per_layer));
        else if (!strcmp(key, "counts")) {
            const char *c = yscalar(v);
            if (!c || !*c || strlen(c) >= sizeof p->counts) return yerr(d, v, "\"counts\" must be a file path%s%s", "", "");
            snprintf(p->counts, sizeof p->counts, "%s", c);
            have_counts = 1;
        } else if (!strcmp(key, "threshold")) MOEQ_TRY(y_int(d, v, key, -1000, 1000, &p->threshold));
        else if (!strcmp(key, "k")) MOEQ_TRY(y_int(d, v, key, 0, 20, &p->k));
        else if (!strcmp(key, "max_kurtosis")) MOEQ_TRY(y_int(d, v, key, 0, 1000, &p->max_kurtosis));
        else if (!strcmp(key, "cap")) MOEQ_TRY(y_int(d, v, key, 1, 1 << 16, &p->cap));
        else if (!strcmp(key, "rank")) MOEQ_TRY(y_int(d, v, key, 0, 1 << 16, &p->rank));
        else if (!strcmp(key, "bits")) MOEQ_TRY(y_double(d, v, "bits", 1.0, 64.0, &p->target_bits));
        else if (!strcmp(key, "tolerance")) MOEQ_TRY(y_double(d, v, "tolerance", 1e-6, 4.0, &p->tolerance));
        else if (!strcmp(key, "sample_rows")) MOEQ_TRY(y_int(d, v, key, 0, 1 << 24, &p->sample_rows));
        else if (!strcmp(key, "by")) {
            const char *b = yscalar(v);
            if (b && !strcmp(b, "unit")) p->by_unit = 1;
            else if (b && !strcmp(b, "tensor")) p->by_unit = 0;
            else return yerr(d, v, "\"by\" must be tensor or unit (got \"%s\")%s", b ? b : "?", "");
        } else if (!strcmp(key, "probe")) {
            if (!v || v->type != YAML_MAPPING_NODE) return yerr(d, v, "\"probe\" must be a mapping {bits, tokens, seed}%s%s", "", "");
            for (yaml_node_pair_t *r = v->data.mapping.pairs.start; r < v->data.mapping.pairs.top; r++) {
                yaml_node_t *k2 = yaml_document_get_node(d->doc, r->key), *v2 = yaml_document_get_node(d->doc, r->value);
                const char *sub = yscalar(k2);
                int seed = 0;
                if (sub && !strcmp(sub, "bits")) {
                    MOEQ_TRY(y_int(d, v2, "probe.bits", 2, 8, &p->probe_bits));
                    if (p->probe_bits == 5 || p->probe_bits == 6 || p->probe_bits == 7)
                        return yerr(d, v2, "probe.bits must be 2, 3, 4 or 8%s%s", "", "");
                } else if (sub && !strcmp(sub, "tokens")) MOEQ_TRY(y_int(d, v2, "probe.tokens", 1, 1 << 20, &p->probe_tokens));
                else if (sub && !strcmp(sub, "seed")) {
                    MOEQ_TRY(y_int(d, v2, "probe.seed", 0, 2147483647L, &seed));
                    p->probe_seed = (uint64_t)seed;
                } else return yerr(d, k2, "unknown key \"%s\" in \"probe\" (bits, tokens, seed)%s", sub ? sub : "?", "");
            }
        } else if (!strcmp(key, "candidates")) {
            if (!v || v->type != YAML_SEQUENCE_NODE) return yerr(d, v, "\"candidates\" must be a list of settings%s%s", "", "");
            int nc = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (nc < 2 || nc > MOEQ_MAX_CANDIDATES)
                return yerr(d, v, "\"candidates\" needs 2 to 12 settings%s%s", "", "");
            for (int i = 0; i < nc; i++) {
                yaml_node_t *item = yaml_document_get_node(d->doc, v->data.sequence.items.start[i]);
                p->cand[i] = moeq_qsettings_default();
                MOEQ_TRY(moeq_recipe_parse_settings_(d, item, &p->cand[i], &p->cand_mask[i]));
                if (!p->cand_mask[i]) return yerr(d, item, "an empty candidate%s%s", "", "");
            }
            p->n_cand = nc;
            have_cand = 1;
        }
    }
    switch (p->kind) {
    case MOEQ_POLICY_OUTLIER:
    case MOEQ_POLICY_BLOCK:
    case MOEQ_POLICY_FREQUENCY:
        if (p->top < 0) return yerr(d, n, "policy %s needs \"top\" (N or P%%)%s", policy_names[p->kind], "");
        if (!have_set) return yerr(d, n, "policy %s needs \"set\" (what the picked tensors get)%s", policy_names[p->kind], "");
        if (p->kind == MOEQ_POLICY_FREQUENCY && !have_counts)
            return yerr(d, n, "policy frequency needs \"counts\" (a routing-count file)%s%s", "", "");
        break;
    case MOEQ_POLICY_FREQUENCY_RANK:
        if (!have_counts) return yerr(d, n, "policy frequency_rank needs \"counts\" (a routing-count file)%s%s", "", "");
        if (p->rank < 0) return yerr(d, n, "policy frequency_rank needs \"rank\" (the mean rank)%s%s", "", "");
        break;
    case MOEQ_POLICY_BUDGET:
        if (p->target_bits < 0) return yerr(d, n, "policy budget needs \"bits\" (target bits per weight)%s%s", "", "");
        if (!have_cand) return yerr(d, n, "policy budget needs \"candidates\"%s%s", "", "");
        break;
    default: break;
    }
    if (!p->match.has_class && !p->match.has_proj && p->match.layer_lo == -1 && !p->match.name_glob[0]) {
        p->match.has_class = 1;
        p->match.cls = MOEQ_TC_ROUTED_EXPERT;
    }
    return MOEQ_OK;
}

void moeq_recipe_counts_path(const moeq_recipe *r, const moeq_policy *p, char *buf, size_t cap) {
    const char *slash = strrchr(r->path, '/');
    if (p->counts[0] == '/' || !slash) snprintf(buf, cap, "%s", p->counts);
    else snprintf(buf, cap, "%.*s/%s", (int)(slash - r->path), r->path, p->counts);
}

// ---- routing counts ----

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
    if (L <= 0) st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: expected {\"counts\": [[per-expert counts of layer 0], ...]}\n---> "
                               "HINT: configs/README.md describes routing-count files", path);
    for (int l = 0; st == MOEQ_OK && l < L; l++) {
        json_t *row = json_array_get(a, (size_t)l);
        if (json_is_array(row) && (int)json_array_size(row) > E) E = (int)json_array_size(row);
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
            else c->c[(size_t)l * (size_t)E + (size_t)e] = json_number_value(x);
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
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: expected \"layer,expert,count\" (count >= 0), got \"%s\"", path,
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
