// recipe_policy.c: the policies: section of a recipe (see recipe.h and configs/README.md): each policy's
// keys, defaults and required keys, checked with line numbers, and where a policy's routing-count file is
// (next to the recipe; the file format is io/counts.h). Not here: the recipe's rules (recipe.c), applying
// policies (policy.c).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe_impl.h" // defines: y_int, y_bool, the parsers lent by recipe.c

// ---- policies ----

static const char *const policy_names[MOEQ_POLICY_KIND_COUNT] = {
    "outlier", "block", "frequency", "kurtosis_rank", "frequency_rank", "budget"};

const char *moeq_policy_kind_name(moeq_policy_kind k) {
    return ((int)k >= 0 && k < MOEQ_POLICY_KIND_COUNT) ? policy_names[k] : "invalid";
}

// "25%" (a percentage in (0, 100]) or "N" (a count >= 1).
static moeq_status parse_top(const moeq_ydoc *d, const moeq_ynode *v, moeq_policy *p) {
    const char *s = moeq_yscalar(v);
    char *end = NULL;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    int pct = end && *end == '%';
    if (!s || end == s || errno || (pct ? end[1] != '\0' : *end != '\0') || !isfinite(x) || x <= 0 ||
        (pct && x > 100) || (!pct && x != floor(x)))
        return MOEQ_YFAIL(d, v,
                          "\"top\" must be a count N >= 1 or a percentage \"P%%\" in (0, 100] (got \"%s\")",
                          s ? s : "?");
    p->top = x;
    p->top_percent = pct;
    return MOEQ_OK;
}

static moeq_status y_double(const moeq_ydoc *d, const moeq_ynode *n, const char *key, double lo, double hi,
                            double *out) {
    const char *s = moeq_yscalar(n);
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return MOEQ_YFAIL(d, n, "\"%s\" must be a number in [%g, %g]", key, lo, hi);
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

// The defaults of every policy key (configs/README.md's table); -1 marks the required ones not given.
static void policy_init(moeq_policy *p, int line) {
    memset(p, 0, sizeof *p);
    p->line = line;
    p->match.layer_lo = p->match.layer_hi = -1;
    p->match.line = p->line;
    p->per_layer = 1;
    p->threshold = 1, p->k = 2, p->max_kurtosis = 9, p->cap = 1024;
    p->probe_bits = 2, p->probe_tokens = 128;
    p->tolerance = 0.02;
    p->target_bits = -1;
    p->top = -1;
    p->rank = -1;
}

// The policy's kind, wherever it is written in the mapping.
static moeq_status policy_kind(const moeq_ydoc *d, const moeq_ynode *n, moeq_policy *p) {
    int kind = -1;
    for (int i = 0; i < n->n; i++) {
        const char *key = moeq_yscalar(n->key[i]), *kv = moeq_yscalar(n->item[i]);
        if (!key || strcmp(key, "kind") != 0) continue;
        for (int k = 0; kv && k < MOEQ_POLICY_KIND_COUNT; k++)
            if (!strcmp(kv, policy_names[k])) kind = k;
        if (kind < 0)
            return MOEQ_YFAIL(
                d, n->item[i],
                "unknown policy kind \"%s\"\n---> HINT: outlier, block, frequency, kurtosis_rank, "
                "frequency_rank, budget",
                kv ? kv : "?");
    }
    if (kind < 0) return MOEQ_YFAIL(d, n, "policy without \"kind\"");
    p->kind = (moeq_policy_kind)kind;
    return MOEQ_OK;
}

// probe: {bits, tokens, seed}: the block scorer's HQQ bits (a grouped format) and Gaussian inputs.
static moeq_status policy_probe(const moeq_ydoc *d, const moeq_ynode *v, moeq_policy *p) {
    if (!v || v->type != MOEQ_Y_MAP)
        return MOEQ_YFAIL(d, v, "\"probe\" must be a mapping {bits, tokens, seed}");
    for (int j = 0; j < v->n; j++) {
        const moeq_ynode *k2 = v->key[j], *v2 = v->item[j];
        const char *sub = moeq_yscalar(k2);
        int seed = 0;
        if (sub && !strcmp(sub, "bits")) {
            MOEQ_TRY(y_int(d, v2, "probe.bits", 2, 8, &p->probe_bits));
            const moeq_qtype_traits *f = moeq_qtype_get(p->probe_bits);
            if (!f || !(f->family & MOEQ_QFAMILY_GROUPED))
                return MOEQ_YFAIL(d, v2, "probe.bits must be 2, 3, 4 or 8");
        } else if (sub && !strcmp(sub, "tokens")) {
            MOEQ_TRY(y_int(d, v2, "probe.tokens", 1, 1 << 20, &p->probe_tokens));
        } else if (sub && !strcmp(sub, "seed")) {
            MOEQ_TRY(y_int(d, v2, "probe.seed", 0, 2147483647L, &seed));
            p->probe_seed = (uint64_t)seed;
        } else {
            return MOEQ_YFAIL(d, k2, "unknown key \"%s\" in \"probe\" (bits, tokens, seed)", sub ? sub : "?");
        }
    }
    return MOEQ_OK;
}

// candidates: 2 to 12 settings mappings, each overlaying the rule-resolved setting.
static moeq_status policy_candidates(const moeq_ydoc *d, const moeq_ynode *v, moeq_policy *p) {
    if (!v || v->type != MOEQ_Y_SEQ) return MOEQ_YFAIL(d, v, "\"candidates\" must be a list of settings");
    if (v->n < 2 || v->n > MOEQ_MAX_CANDIDATES)
        return MOEQ_YFAIL(d, v, "\"candidates\" needs 2 to 12 settings");
    for (int j = 0; j < v->n; j++) {
        p->cand[j] = moeq_qsettings_default();
        MOEQ_TRY(moeq_recipe_parse_settings_(d, v->item[j], &p->cand[j], &p->cand_mask[j]));
        if (!p->cand_mask[j]) return MOEQ_YFAIL(d, v->item[j], "an empty candidate");
    }
    p->n_cand = v->n;
    return MOEQ_OK;
}

enum { HAVE_SET = 1, HAVE_COUNTS = 2, HAVE_CAND = 4 };

// One key of a policy (kind and match excepted), already known to belong to its kind.
static moeq_status policy_key(const moeq_ydoc *d, const char *key, const moeq_ynode *v, moeq_policy *p,
                              unsigned *have) {
    if (!strcmp(key, "top")) return parse_top(d, v, p);
    if (!strcmp(key, "set")) {
        p->set = moeq_qsettings_default();
        *have |= HAVE_SET;
        return moeq_recipe_parse_settings_(d, v, &p->set, &p->set_mask);
    }
    if (!strcmp(key, "by_proj")) return y_bool(d, v, key, &p->by_proj);
    if (!strcmp(key, "per_layer")) return y_bool(d, v, key, &p->per_layer);
    if (!strcmp(key, "counts")) {
        const char *c = moeq_yscalar(v);
        if (!c || !*c || strlen(c) >= sizeof p->counts)
            return MOEQ_YFAIL(d, v, "\"counts\" must be a file path");
        snprintf(p->counts, sizeof p->counts, "%s", c);
        *have |= HAVE_COUNTS;
        return MOEQ_OK;
    }
    if (!strcmp(key, "threshold")) return y_int(d, v, key, -1000, 1000, &p->threshold);
    if (!strcmp(key, "k")) return y_int(d, v, key, 0, 20, &p->k);
    if (!strcmp(key, "max_kurtosis")) return y_int(d, v, key, 0, 1000, &p->max_kurtosis);
    if (!strcmp(key, "cap")) return y_int(d, v, key, 1, 1 << 16, &p->cap);
    if (!strcmp(key, "rank")) return y_int(d, v, key, 0, 1 << 16, &p->rank);
    if (!strcmp(key, "bits")) return y_double(d, v, "bits", 1.0, 64.0, &p->target_bits);
    if (!strcmp(key, "tolerance")) return y_double(d, v, "tolerance", 1e-6, 4.0, &p->tolerance);
    if (!strcmp(key, "sample_rows")) return y_int(d, v, key, 0, 1 << 24, &p->sample_rows);
    if (!strcmp(key, "by")) {
        const char *b = moeq_yscalar(v);
        if (b && (!strcmp(b, "unit") || !strcmp(b, "tensor"))) {
            p->by_unit = !strcmp(b, "unit");
            return MOEQ_OK;
        }
        return MOEQ_YFAIL(d, v, "\"by\" must be tensor or unit (got \"%s\")", b ? b : "?");
    }
    if (!strcmp(key, "probe")) return policy_probe(d, v, p);
    if (!strcmp(key, "candidates")) {
        *have |= HAVE_CAND;
        return policy_candidates(d, v, p);
    }
    return MOEQ_YFAIL(d, v, "policy %s: key \"%s\" has no parser", policy_names[p->kind], key); // NEVER
}

// What each kind cannot do without.
static moeq_status policy_required(const moeq_ydoc *d, const moeq_ynode *n, const moeq_policy *p,
                                   unsigned have) {
    const char *kind = policy_names[p->kind];
    switch (p->kind) {
    case MOEQ_POLICY_OUTLIER:
    case MOEQ_POLICY_BLOCK:
    case MOEQ_POLICY_FREQUENCY:
        if (p->top < 0) return MOEQ_YFAIL(d, n, "policy %s needs \"top\" (N or P%%)", kind);
        if (!(have & HAVE_SET))
            return MOEQ_YFAIL(d, n, "policy %s needs \"set\" (what the picked tensors get)", kind);
        if (p->kind == MOEQ_POLICY_FREQUENCY && !(have & HAVE_COUNTS))
            return MOEQ_YFAIL(d, n, "policy frequency needs \"counts\" (a routing-count file)");
        return MOEQ_OK;
    case MOEQ_POLICY_FREQUENCY_RANK:
        if (!(have & HAVE_COUNTS))
            return MOEQ_YFAIL(d, n, "policy frequency_rank needs \"counts\" (a routing-count file)");
        if (p->rank < 0) return MOEQ_YFAIL(d, n, "policy frequency_rank needs \"rank\" (the mean rank)");
        return MOEQ_OK;
    case MOEQ_POLICY_BUDGET:
        if (p->target_bits < 0)
            return MOEQ_YFAIL(d, n, "policy budget needs \"bits\" (target bits per weight)");
        if (!(have & HAVE_CAND)) return MOEQ_YFAIL(d, n, "policy budget needs \"candidates\"");
        return MOEQ_OK;
    default:
        return MOEQ_OK;
    }
}

moeq_status moeq_recipe_parse_policy_(const moeq_ydoc *d, const moeq_ynode *n, moeq_policy *p) {
    policy_init(p, moeq_yline(n));
    if (n->type != MOEQ_Y_MAP) return MOEQ_YFAIL(d, n, "a policy must be a mapping with \"kind:\"");
    MOEQ_TRY(policy_kind(d, n, p));
    unsigned have = 0;
    for (int i = 0; i < n->n; i++) {
        const moeq_ynode *k = n->key[i], *v = n->item[i];
        const char *key = moeq_yscalar(k);
        if (!key) return MOEQ_YFAIL(d, k, "keys must be plain words");
        if (!strcmp(key, "kind")) continue;
        if (!strcmp(key, "match")) {
            MOEQ_TRY(moeq_recipe_parse_match_(d, v, &p->match));
            continue;
        }
        if (!policy_key_ok(p->kind, key))
            return MOEQ_YFAIL(
                d, k, "policy %s has no key \"%s\"\n---> HINT: configs/README.md lists each policy's keys",
                policy_names[p->kind], key);
        MOEQ_TRY(policy_key(d, key, v, p, &have));
    }
    MOEQ_TRY(policy_required(d, n, p, have));
    if (!p->match.has_class && !p->match.has_proj && p->match.layer_lo == -1 && !p->match.name_glob[0]) {
        p->match.has_class = 1; // default: the routed experts
        p->match.cls = MOEQ_TC_ROUTED_EXPERT;
    }
    return MOEQ_OK;
}

void moeq_recipe_counts_path(const moeq_recipe *r, const moeq_policy *p, char *buf, size_t cap) {
    const char *slash = strrchr(r->path, '/');
    if (p->counts[0] == '/' || !slash)
        snprintf(buf, cap, "%s", p->counts);
    else
        snprintf(buf, cap, "%.*s/%s", (int)(slash - r->path), r->path, p->counts);
}
