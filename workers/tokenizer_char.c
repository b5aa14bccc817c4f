// tokenizer_char.c: the character tokenizer of the test models (tokenizer.json {"type": "char", "vocab":
// [...]}: id = index in vocab; workers/forward_model.h declares it): loading, UTF-8 decoding, encoding with
// errors that name the character, its line, column and byte offset.
#include "forward_model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "sysio.h" // defines: moeq_read_file

// ---- character tokenizer ----

struct moeq_tokenizer {
    int n;              // vocabulary size
    int32_t ascii[128]; // id of each ASCII character, -1 when absent
    uint32_t *cp;       // (n) code points sorted ascending
    int32_t *id;        // (n) their ids
};

// Decodes one UTF-8 character of s[0..len); returns its byte length (1..4) or 0 when invalid.
static int utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    if (len == 0) return 0;
    const unsigned c = s[0];
    int n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)n > len) return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

void moeq_tokenizer_free(moeq_tokenizer **pt) {
    if (!pt || !*pt) return;
    moeq_free(&(*pt)->cp);
    moeq_free(&(*pt)->id);
    moeq_free(pt);
}

int moeq_tokenizer_vocab_size(const moeq_tokenizer *t) {
    return t ? t->n : 0;
}

moeq_status moeq_tokenizer_load_char(const char *path, moeq_tokenizer **out) {
    if (!path || !out) return MOEQ_FAIL(MOEQ_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    MOEQ_TRY(moeq_read_file(path, 64u << 20, &text, &len));
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    moeq_free(&text);
    if (!root)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
    moeq_status st = MOEQ_OK;
    moeq_tokenizer *t = NULL;
    const json_t *type = json_object_get(root, "type"), *vocab = json_object_get(root, "vocab");
    if (!json_is_string(type) || strcmp(json_string_value(type), "char") != 0) {
        st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                       "%s: tokenizer \"type\" is %s; only {\"type\": \"char\"} is supported", path,
                       json_is_string(type) ? json_string_value(type) : "missing");
        goto done;
    }
    if (!json_is_array(vocab) || json_array_size(vocab) == 0 || json_array_size(vocab) > INT32_MAX) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"vocab\" must be a non-empty list of characters", path);
        goto done;
    }
    t = MOEQ_CALLOC(1, sizeof *t, "tokenizer");
    if (!t) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    t->n = (int)json_array_size(vocab);
    t->cp = MOEQ_MALLOC((size_t)t->n * sizeof(uint32_t), "tokenizer code points");
    t->id = MOEQ_MALLOC((size_t)t->n * sizeof(int32_t), "tokenizer ids");
    if (!t->cp || !t->id) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < 128; i++) t->ascii[i] = -1;
    for (int i = 0; i < t->n; i++) {
        const json_t *e = json_array_get(vocab, (size_t)i);
        const char *s = json_string_value(e);
        const size_t sl = json_is_string(e) ? json_string_length(e) : 0;
        uint32_t cp = 0;
        if (!s || sl == 0 || (size_t)utf8_decode((const unsigned char *)s, sl, &cp) != sl) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: vocab[%d] is not exactly one character", path, i);
            goto done;
        }
        // insertion into the sorted table (vocabularies of char tokenizers are small)
        int j = i;
        while (j > 0 && t->cp[j - 1] > cp) {
            t->cp[j] = t->cp[j - 1];
            t->id[j] = t->id[j - 1];
            j--;
        }
        if (j > 0 && t->cp[j - 1] == cp) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: vocab[%d] (U+%04X) duplicates vocab[%d]", path, i,
                           (unsigned)cp, t->id[j - 1]);
            goto done;
        }
        t->cp[j] = cp;
        t->id[j] = i;
        if (cp < 128) t->ascii[cp] = i;
    }
done:
    json_decref(root);
    if (st != MOEQ_OK) {
        moeq_tokenizer_free(&t);
        return st;
    }
    *out = t;
    return MOEQ_OK;
}

static int32_t lookup(const moeq_tokenizer *t, uint32_t cp) {
    if (cp < 128) return t->ascii[cp];
    int lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2;
        if (t->cp[mid] == cp) return t->id[mid];
        if (t->cp[mid] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

moeq_status moeq_tokenizer_encode(const moeq_tokenizer *t, const char *what, const char *text, size_t len,
                                  int32_t **ids, int64_t *n) {
    if (!t || (!text && len) || !ids || !n) return MOEQ_FAIL(MOEQ_ERR_ARG, "tokenizer encode: NULL argument");
    if (!what) what = "text";
    *ids = NULL;
    *n = 0;
    int32_t *out = MOEQ_MALLOC((len ? len : 1) * sizeof(int32_t), "token ids");
    if (!out) return MOEQ_ERR_NOMEM;
    const unsigned char *s = (const unsigned char *)text;
    int64_t k = 0, line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        const int nb = utf8_decode(s + i, len - i, &cp);
        if (!nb) {
            moeq_free(&out);
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: invalid UTF-8 at line %lld, column %lld (byte %zu)", what,
                             (long long)line, (long long)col, i);
        }
        const int32_t id = lookup(t, cp);
        if (id < 0) {
            char shown[16] = "";
            if (cp >= 0x20 && cp != 0x7f) snprintf(shown, sizeof shown, "'%.*s' ", nb, (const char *)s + i);
            moeq_free(&out);
            return MOEQ_FAIL(
                MOEQ_ERR_NOT_FOUND,
                "%s: character %s(U+%04X) at line %lld, column %lld (byte %zu) is not in the tokenizer "
                "vocabulary (%d characters)",
                what, shown, (unsigned)cp, (long long)line, (long long)col, i, t->n);
        }
        out[k++] = id;
        if (cp == '\n')
            line++, col = 1;
        else
            col++;
        i += (size_t)nb;
    }
    *ids = out;
    *n = k;
    return MOEQ_OK;
}

moeq_status moeq_tokenizer_encode_file(const moeq_tokenizer *t, const char *path, int32_t **ids, int64_t *n) {
    if (!t || !path || !ids || !n) return MOEQ_FAIL(MOEQ_ERR_ARG, "tokenizer encode: NULL argument");
    char *text = NULL;
    size_t len = 0;
    MOEQ_TRY(moeq_read_file(path, (size_t)1 << 34, &text, &len));
    moeq_status st = moeq_tokenizer_encode(t, path, text, len, ids, n);
    moeq_free(&text);
    return st;
}
