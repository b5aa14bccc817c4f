// method.c: the registry of quantization methods (one line each; the entries are in method_<name>.c) and the
// table of the settings fields they read, with what is derived from it: defaults, parsing a value with its
// range, applying a rule's fields, the digest bytes, the storage format and layout of a setting (method.h).
// Not here: the YAML around the values (schedulers/recipe.c binds a recipe's syntax tree with this table).
#include "method.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"    // defines: moeq_mix64, moeq_rng_seed_str
#include "tensor.h" // defines: moeq_tq_out

// ---- the registry: one line per method, at its stable enum value ----

static const moeq_method_traits *const methods[MOEQ_METHOD_COUNT] = {
    [MOEQ_METHOD_NONE] = &moeq_method_none,     [MOEQ_METHOD_RTN] = &moeq_method_rtn,
    [MOEQ_METHOD_HQQ] = &moeq_method_hqq,       [MOEQ_METHOD_MILO] = &moeq_method_milo,
    [MOEQ_METHOD_SEARCH] = &moeq_method_search, [MOEQ_METHOD_GPTQ] = &moeq_method_gptq,
};

// none: stored as it came; nothing to run, no cost beyond reading.
static double none_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    (void)s, (void)n, (void)tp;
    return t;
}

const moeq_method_traits moeq_method_none = {
    .name = "none",
    .summary = "stored as it came (the tensor's source dtype and shape)",
    .quantizes = 0,
    .fields = MOEQ_SET_METHOD,
    .formats = 0,
    .cost_s = none_cost_s,
};

const moeq_method_traits *moeq_method_get(moeq_method m) {
    return ((int)m >= 0 && m < MOEQ_METHOD_COUNT) ? methods[m] : NULL;
}

const char *moeq_method_name(moeq_method m) {
    const moeq_method_traits *t = moeq_method_get(m);
    return t ? t->name : "invalid";
}

moeq_method moeq_method_from_name(const char *s) {
    for (int m = 0; s && m < MOEQ_METHOD_COUNT; m++)
        if (methods[m] && !strcmp(s, methods[m]->name)) return (moeq_method)m;
    return MOEQ_METHOD_COUNT;
}

// "a, b, c" of the names of a table, built once (the tables are constant).
static const char *join_names(char *buf, size_t cap, const char *(*name_of)(int), int n) {
    size_t len = 0;
    for (int i = 0; i < n && len < cap; i++) {
        const char *nm = name_of(i);
        if (!nm) continue;
        const int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", nm);
        len += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

static const char *method_name_at(int m) {
    return methods[m] ? methods[m]->name : NULL;
}

const char *moeq_method_names(void) {
    static char buf[256];
    if (!buf[0]) join_names(buf, sizeof buf, method_name_at, MOEQ_METHOD_COUNT);
    return buf;
}

int moeq_method_uses_importance(const moeq_qsettings *s) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qsettings_qtype(s));
    return m && m->quantizes && f && (m->importance & f->family) != 0;
}

moeq_method moeq_method_fallback(const moeq_qsettings *s) {
    const moeq_method order[3] = {MOEQ_METHOD_SEARCH, MOEQ_METHOD_HQQ, MOEQ_METHOD_RTN};
    for (int k = 0; k < 3; k++) {
        moeq_qsettings t = *s;
        t.method = order[k];
        const moeq_status st = moeq_method_check_format(&t, "fallback");
        moeq_error_clear();
        if (st == MOEQ_OK) return order[k];
    }
    return MOEQ_METHOD_RTN;
}

moeq_status moeq_method_check_format(const moeq_qsettings *s, const char *who) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    if (!m) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': method %d is not registered", who, (int)s->method);
    if (!m->quantizes) return MOEQ_OK;
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qsettings_qtype(s));
    if (!f)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s': %d-bit codes are not a storage format", who,
                         s->bits);
    if (!(f->family & m->formats) || (m->supports && !m->supports(moeq_qsettings_qtype(s)))) {
        char names[512];
        size_t n = 0;
        names[0] = '\0';
        for (int t = 1; t < MOEQ_QTYPE_USER_END && n < sizeof names; t++) { // the formats it does write
            const moeq_qtype_traits *ft = moeq_qtype_get(t);
            if (!ft || !(ft->family & m->formats) || (m->supports && !m->supports(t))) continue;
            const int w = snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", ft->name);
            n += w > 0 ? (size_t)w : 0;
        }
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "tensor '%s': method %s cannot store into format %s\n---> HINT: %s writes %s; "
                         "use method rtn for %s",
                         who, m->name, f->name, m->name, names[0] ? names : "no format yet", f->name);
    }
    return MOEQ_OK;
}

// ---- the settings fields (index = moeq_field, the MOEQ_SET_* bit; order = plan digest v2 order) ----

#define OFF(member) offsetof(moeq_qsettings, member)

static const moeq_setting_field fields[MOEQ_F_COUNT] = {
    [MOEQ_F_METHOD] = {"method", MOEQ_FT_METHOD, OFF(method), 0, 0, "quantization method"},
    [MOEQ_F_BITS] = {"bits", MOEQ_FT_BITS, OFF(bits), 2, 8, "code width of the grouped formats q2/q3/q4/q8"},
    [MOEQ_F_GROUP] = {"group", MOEQ_FT_INT, OFF(group), 8, 1 << 20,
                      "weights per scale/zero along the input dimension (where it does not divide a row: the "
                      "largest group below it that does; channel: one group per row, G = C)"},
    [MOEQ_F_RANK] = {"rank", MOEQ_FT_INT, OFF(rank), 0, 1 << 16,
                     "compensator rank r (MiLo, or U·V fitted to the GPTQ residual; 0: none)"},
    [MOEQ_F_ROUNDS] = {"rounds", MOEQ_FT_INT, OFF(rounds), 1, 1000,
                       "MiLo rounds (MiLo's iter; the best of rounds + 1 quantizations is kept)"},
    [MOEQ_F_COMPENSATOR] = {"compensator", MOEQ_FT_FACTOR, OFF(compensator), 0, 0,
                            "storage of U and V: fp16, or int3 with an fp16 absmax scale per 64"},
    [MOEQ_F_HQQ_LP_NORM] = {"hqq.lp_norm", MOEQ_FT_POS, OFF(hqq_lp_norm), 0, 0,
                            "p of HQQ's lp loss, 0 < p <= 1"},
    [MOEQ_F_HQQ_BETA] = {"hqq.beta", MOEQ_FT_POS, OFF(hqq_beta), 0, 0, "initial half-quadratic weight"},
    [MOEQ_F_HQQ_KAPPA] = {"hqq.kappa", MOEQ_FT_POS, OFF(hqq_kappa), 0, 0, "beta multiplier per iteration"},
    [MOEQ_F_HQQ_ITERS] = {"hqq.iters", MOEQ_FT_INT, OFF(hqq_iters), 0, 10000,
                          "HQQ iterations (0: RTN codes)"},
    [MOEQ_F_HQQ_EARLY_STOP] = {"hqq.early_stop", MOEQ_FT_BOOL, OFF(hqq_early_stop), 0, 0,
                               "a group stops at its first non-improving iteration"},
    [MOEQ_F_SVD_OVERSAMPLE] = {"svd.oversample", MOEQ_FT_INT, OFF(svd_oversample), 0, 4096,
                               "extra columns of the randomized SVD's test matrix"},
    [MOEQ_F_SVD_POWER_ITERS] = {"svd.power_iters", MOEQ_FT_INT, OFF(svd_power_iters), 0, 100,
                                "power (subspace) iterations of the randomized SVD"},
    [MOEQ_F_SEED] = {"seed", MOEQ_FT_U64, OFF(seed), 0, 2147483647.0,
                     "mixed with each tensor's name into its random streams"},
    [MOEQ_F_FORMAT] = {"format", MOEQ_FT_FORMAT, OFF(format), 0, 0,
                       "storage format by name (qformat.h); when set, bits is the format's"},
    [MOEQ_F_GPTQ_DAMP] = {"gptq.damp", MOEQ_FT_POS, OFF(gptq_damp), 0, 0,
                          "GPTQ's relative damping: H += damp * mean(diag H) * I"},
    [MOEQ_F_GPTQ_ACT_ORDER] = {"gptq.act_order", MOEQ_FT_BOOL, OFF(gptq_act_order), 0, 0,
                               "columns in descending diag(H) order (implies gptq.static_groups)"},
    [MOEQ_F_GPTQ_BLOCK] = {"gptq.block", MOEQ_FT_INT, OFF(gptq_block), 1, 65536,
                           "columns per lazy update (speed only: the result does not depend on it)"},
    [MOEQ_F_GPTQ_STATIC_GROUPS] = {"gptq.static_groups", MOEQ_FT_BOOL, OFF(gptq_static_groups), 0, 0,
                                   "every group's parameters chosen on W before any rounding (else on the "
                                   "error-updated weights when the group is reached)"},
    [MOEQ_F_GPTQ_MIN_INPUTS] =
        {"gptq.min_inputs", MOEQ_FT_INT, OFF(gptq_min_inputs), 0, 1 << 30,
         "calibration inputs a tensor needs for GPTQ (fewer: a routed expert few tokens "
         "reached), else the weight-space fallback: search (llama.cpp and integer types), hqq "
         "(grouped)"},
    [MOEQ_F_GPTQ_GROUP_ORDER] =
        {"gptq.group_order", MOEQ_FT_BOOL, OFF(gptq_group_order), 0, 0,
         "group-aware order without act_order: groups by descending sum of diag(H), "
         "columns inside a group by diag(H), parameters still on the updated weights"},
    [MOEQ_F_GPTQ_CLIP] =
        {"gptq.clip", MOEQ_FT_BOOL, OFF(gptq_clip), 0, 0,
         "integer formats (i4, i4s, ...): each group's scale and zero by method search's "
         "clipped-range rule weighted by diag(H) (GPTQModel's mse), else rtn's min/max; auto: "
         "both, the lower GPTQ loss tr((W-Q)H(W-Q)^T) kept per tensor"},
    [MOEQ_F_GPTQ_SEQUENTIAL] =
        {"gptq.sequential", MOEQ_FT_BOOL, OFF(gptq_sequential), 0, 0,
         "a routed expert's down projection calibrated on the activations of its gate and up as "
         "quantized (GPTQ's true-sequential order, as GPTQModel), else as in the checkpoint"},
};

const moeq_setting_field *moeq_setting_field_get(int f) {
    return f >= 0 && f < MOEQ_F_COUNT ? &fields[f] : NULL;
}

int moeq_setting_field_find(const char *key) {
    for (int f = 0; key && f < MOEQ_F_COUNT; f++)
        if (!strcmp(fields[f].key, key)) return f;
    return -1;
}

int moeq_setting_section_exists(const char *section) {
    const size_t n = section ? strlen(section) : 0;
    for (int f = 0; n && f < MOEQ_F_COUNT; f++)
        if (!strncmp(fields[f].key, section, n) && fields[f].key[n] == '.') return 1;
    return 0;
}

const char *moeq_setting_keys(void) {
    static char buf[256];
    if (buf[0]) return buf;
    size_t len = 0;
    for (int f = 0; f < MOEQ_F_COUNT && len < sizeof buf; f++) {
        const char *k = fields[f].key, *dot = strchr(k, '.');
        const size_t kn = dot ? (size_t)(dot - k) : strlen(k);
        int seen = 0; // a section ("hqq") once, where its first key stands
        for (int g = 0; g < f && !seen; g++)
            seen = !strncmp(fields[g].key, k, kn) && fields[g].key[kn] == '.';
        if (dot && seen) continue;
        const int w = snprintf(buf + len, sizeof buf - len, "%s%.*s", len ? ", " : "", (int)kn, k);
        len += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

static void *at(moeq_qsettings *s, int f) {
    return (char *)s + fields[f].offset;
}

static const void *cat(const moeq_qsettings *s, int f) {
    return (const char *)s + fields[f].offset;
}

static size_t field_size(int f) {
    switch (fields[f].type) {
    case MOEQ_FT_POS:
        return sizeof(float);
    case MOEQ_FT_U64:
        return sizeof(uint64_t);
    case MOEQ_FT_METHOD:
        return sizeof(moeq_method);
    case MOEQ_FT_FACTOR:
        return sizeof(moeq_factor_type);
    case MOEQ_FT_FORMAT:
        return sizeof(moeq_qtype);
    default:
        return sizeof(int);
    }
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    const long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

// Edit distance of a and b (insertions, deletions, substitutions), for names of up to 31 characters.
static int edit_distance(const char *a, const char *b) {
    const size_t na = strlen(a), nb = strlen(b);
    if (na > 31 || nb > 31) return 99;
    int d[32][32];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            const int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]), del = d[i - 1][j] + 1,
                      ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[na][nb];
}

// "; did you mean i4?" for a format name that reads as a typo of one (at most 2 edits, or the integer
// formats' other spellings: int4, uint4 -> i4; int4_sym, int4s -> i4s), else "".
static const char *format_suggest(const char *text, char *buf, size_t cap) {
    int bits = 0;
    char rest[32] = "";
    const char *best = NULL;
    if (sscanf(text, "%*[u]int%d%31s", &bits, rest) >= 1 || sscanf(text, "int%d%31s", &bits, rest) >= 1) {
        char nm[8];
        snprintf(nm, sizeof nm, "i%d%s", bits, strstr(rest, "s") ? "s" : "");
        const moeq_qtype t = moeq_qtype_from_name(nm);
        best = t ? moeq_qtype_name(t) : NULL;
    }
    for (int t = 1, bd = best ? 0 : 3; t < MOEQ_QTYPE_USER_END; t++) {
        const moeq_qtype_traits *tr = moeq_qtype_get(t);
        const int d = tr ? edit_distance(text, tr->name) : 99;
        if (d < bd && d < (int)strlen(text)) bd = d, best = tr->name;
    }
    if (!best) return "";
    snprintf(buf, cap, "; did you mean %s?", best);
    return buf;
}

moeq_status moeq_setting_parse(moeq_qsettings *s, int f, const char *text, char *why, size_t cap) {
    const moeq_setting_field *fd = moeq_setting_field_get(f);
    if (!fd) {
        snprintf(why, cap, "field %d does not exist", f);
        return MOEQ_ERR_FORMAT;
    }
    const char *t = text ? text : "?";
    long v = 0;
    switch (fd->type) {
    case MOEQ_FT_INT:
    case MOEQ_FT_U64:
    case MOEQ_FT_BITS:
        if (f == MOEQ_F_GROUP && text && !strcmp(text, "channel")) {
            s->group = MOEQ_GROUP_CHANNEL;
            return MOEQ_OK;
        }
        if (!parse_long(text, (long)fd->lo, (long)fd->hi, &v)) {
            snprintf(why, cap, "\"%s\" must be an integer in [%ld, %ld]%s", fd->key, (long)fd->lo,
                     (long)fd->hi, f == MOEQ_F_GROUP ? " or channel" : "");
            return MOEQ_ERR_FORMAT;
        }
        if (fd->type == MOEQ_FT_BITS) {
            const moeq_qtype_traits *q = moeq_qtype_get((int)v);
            if (!q || !(q->family & MOEQ_QFAMILY_GROUPED) || q->bits != v) {
                char names[128];
                moeq_qtype_grouped_bits(" or ", names, sizeof names);
                snprintf(why, cap, "bits must be %s (got %s)", names, t);
                return MOEQ_ERR_FORMAT;
            }
        }
        if (fd->type == MOEQ_FT_U64)
            *(uint64_t *)at(s, f) = (uint64_t)v;
        else
            *(int *)at(s, f) = (int)v;
        return MOEQ_OK;
    case MOEQ_FT_POS: {
        char *end = NULL;
        errno = 0;
        const double d = text ? strtod(text, &end) : 0;
        if (!text || !*text || *end || errno || !isfinite(d) || d <= 0) {
            snprintf(why, cap, "\"%s\" must be a positive number", fd->key);
            return MOEQ_ERR_FORMAT;
        }
        *(float *)at(s, f) = (float)d;
        return MOEQ_OK;
    }
    case MOEQ_FT_BOOL:
        if (f == MOEQ_F_GPTQ_CLIP && text && !strcmp(text, "auto")) {
            s->gptq_clip = MOEQ_GPTQ_CLIP_AUTO;
            return MOEQ_OK;
        }
        if (text && (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on")))
            *(int *)at(s, f) = 1;
        else if (text && (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off")))
            *(int *)at(s, f) = 0;
        else {
            snprintf(why, cap, "\"%s\" must be true or false%s", fd->key,
                     f == MOEQ_F_GPTQ_CLIP ? " or auto" : "");
            return MOEQ_ERR_FORMAT;
        }
        return MOEQ_OK;
    case MOEQ_FT_METHOD: {
        const moeq_method m = moeq_method_from_name(text);
        if (m == MOEQ_METHOD_COUNT) {
            snprintf(why, cap, "method \"%s\" is not one of %s", t, moeq_method_names());
            return MOEQ_ERR_FORMAT;
        }
        s->method = m;
        return MOEQ_OK;
    }
    case MOEQ_FT_FACTOR: {
        const moeq_factor_type c = moeq_factor_from_name(text);
        if (c == MOEQ_FACTOR_COUNT) {
            snprintf(why, cap, "compensator \"%s\" is not one of fp16, int3", t);
            return MOEQ_ERR_FORMAT;
        }
        s->compensator = c;
        return MOEQ_OK;
    }
    case MOEQ_FT_FORMAT: {
        const moeq_qtype q = moeq_qtype_from_name(text);
        if (q == MOEQ_QTYPE_INVALID) {
            char names[256], near[64];
            snprintf(why, cap, "format \"%s\" is not one of %s%s", t,
                     moeq_qtype_names(MOEQ_QFAMILY_ANY, names, sizeof names),
                     format_suggest(t, near, sizeof near));
            return MOEQ_ERR_FORMAT;
        }
        s->format = q;
        return MOEQ_OK;
    }
    }
    snprintf(why, cap, "field %s has no parser", fd->key);
    return MOEQ_ERR_FORMAT;
}

void moeq_setting_format(const moeq_qsettings *s, int f, char *out, size_t cap) {
    const moeq_setting_field *fd = moeq_setting_field_get(f);
    if (!fd) {
        snprintf(out, cap, "?");
        return;
    }
    const void *p = cat(s, f);
    switch (fd->type) {
    case MOEQ_FT_POS:
        snprintf(out, cap, "%g", (double)*(const float *)p);
        break;
    case MOEQ_FT_U64:
        snprintf(out, cap, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case MOEQ_FT_BOOL:
        snprintf(out, cap, "%s",
                 *(const int *)p == MOEQ_GPTQ_CLIP_AUTO ? "auto"
                 : *(const int *)p                      ? "true"
                                                        : "false");
        break;
    case MOEQ_FT_METHOD:
        snprintf(out, cap, "%s", moeq_method_name(s->method));
        break;
    case MOEQ_FT_FACTOR:
        snprintf(out, cap, "%s", moeq_factor_name(s->compensator));
        break;
    case MOEQ_FT_FORMAT:
        snprintf(out, cap, "%s", s->format ? moeq_qtype_name(s->format) : "(the grouped format of bits)");
        break;
    default:
        if (f == MOEQ_F_GROUP && s->group == MOEQ_GROUP_CHANNEL)
            snprintf(out, cap, "channel");
        else
            snprintf(out, cap, "%d", *(const int *)p);
        break;
    }
}

// ---- settings ----

moeq_qsettings moeq_qsettings_default(void) {
    moeq_qsettings s = {
        .method = MOEQ_METHOD_HQQ,
        .bits = 4,
        .group = 64,
        .rank = 0,
        .rounds = 10,
        .compensator = MOEQ_FACTOR_FP16,
        .hqq_lp_norm = 0.7f,
        .hqq_beta = 10.0f,
        .hqq_kappa = 1.01f,
        .hqq_iters = 20,
        .hqq_early_stop = 1,
        .svd_oversample = 0,
        .svd_power_iters = 2,
        .seed = 0,
        .format = MOEQ_QTYPE_INVALID,
        .gptq_damp = 0.05f,
        .gptq_act_order = 0,
        .gptq_block = 128,
        .gptq_static_groups = 0,
        .gptq_min_inputs = 16,
        .gptq_group_order = 1,
        .gptq_clip = MOEQ_GPTQ_CLIP_AUTO,
        .gptq_sequential = 1,
    };
    return s;
}

void moeq_qsettings_apply(moeq_qsettings *s, const moeq_qsettings *o, unsigned mask) {
    for (int f = 0; f < MOEQ_F_COUNT; f++)
        if (mask & (1u << f)) memcpy(at(s, f), cat(o, f), field_size(f));
}

void moeq_qsettings_normalize(moeq_qsettings *s) {
    s->rank = (int)moeq_qsettings_rank(s);
    const moeq_qtype_traits *f = s->format ? moeq_qtype_get(s->format) : NULL;
    if (f) s->bits = f->bits;
}

int64_t moeq_qsettings_rank(const moeq_qsettings *s) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    return m && m->compensated ? s->rank : 0;
}

moeq_qtype moeq_qsettings_qtype(const moeq_qsettings *s) {
    return s->format ? s->format : (moeq_qtype)s->bits;
}

moeq_status moeq_qsettings_layout(const moeq_qsettings *s, int64_t R, int64_t C, moeq_qlayout *out) {
    return moeq_qlayout_make(moeq_qsettings_qtype(s), R, C, s->group, s->rank, s->compensator, out);
}

void moeq_qsettings_hash(const moeq_qsettings *s, void (*add)(void *, const void *, size_t), void *user) {
    // v2: the integer-valued fields widened to int64 in field order, then the three floats
    int64_t iv[MOEQ_F_DIGEST_V2];
    float fv[MOEQ_F_DIGEST_V2];
    int ni = 0, nf = 0;
    for (int f = 0; f < MOEQ_F_DIGEST_V2; f++) {
        const void *p = cat(s, f);
        switch (fields[f].type) {
        case MOEQ_FT_POS:
            fv[nf++] = *(const float *)p;
            break;
        case MOEQ_FT_U64:
            iv[ni++] = (int64_t) * (const uint64_t *)p;
            break;
        default:
            iv[ni++] = *(const int *)p;
            break; // int, bool and the enums (int-sized)
        }
    }
    add(user, iv, sizeof iv[0] * (size_t)ni);
    add(user, fv, sizeof fv[0] * (size_t)nf);
    // later fields: (index, value) when they differ from the default
    const moeq_qsettings d = moeq_qsettings_default();
    for (int f = MOEQ_F_DIGEST_V2; f < MOEQ_F_COUNT; f++) {
        if (!memcmp(cat(s, f), cat(&d, f), field_size(f))) continue;
        int64_t kv[2] = {f, 0};
        memcpy(&kv[1], cat(s, f), field_size(f));
        add(user, kv, sizeof kv);
    }
}

uint64_t moeq_tensor_seed(const char *name, uint64_t recipe_seed) {
    return moeq_mix64(moeq_rng_seed_str(name) ^ moeq_mix64(recipe_seed));
}
