// calib_set.c: reading and hashing the calibration set (calib_set.h).
#include "calib_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "alloc.h"         // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "forward_model.h" // defines: moeq_tokenizer_load_char, moeq_tokenizer_encode_file
#include "sysio.h"         // defines: moeq_read_file

int moeq_calib_format_from_name(const char *s) {
    if (!s || !strcmp(s, "auto")) return MOEQ_CALIB_AUTO;
    if (!strcmp(s, "ids")) return MOEQ_CALIB_IDS;
    if (!strcmp(s, "text")) return MOEQ_CALIB_TEXT;
    return -1;
}

static int ends_with(const char *s, const char *suf) {
    const size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

void moeq_calib_set_free(moeq_calib_set **ps) {
    moeq_calib_set *s = ps ? *ps : NULL;
    if (!s) return;
    moeq_free(&s->path);
    moeq_free(&s->ids);
    moeq_free(ps);
}

uint64_t moeq_plan_digest_calib(uint64_t digest, uint64_t calib_xxh3) {
    if (!calib_xxh3) return digest;
    // "CALIBSET", then the pass's version: 2 since a routed expert's down is calibrated on its quantized gate
    // and up (gptq.sequential), so that a run of the earlier pass does not resume with this one
    const uint64_t v[4] = {digest, calib_xxh3, 0x43414c4942534554ull, 2};
    return XXH3_64bits(v, sizeof v);
}

// The whole file as token ids (new array, *n of them).
static moeq_status read_ids(const char *path, moeq_calib_format f, const char *model_dir, int32_t **ids,
                            int64_t *n) {
    if (f == MOEQ_CALIB_TEXT) {
        char tok_path[4096];
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", model_dir);
        moeq_tokenizer *t = NULL;
        moeq_status st = moeq_tokenizer_load_char(tok_path, &t);
        if (st != MOEQ_OK)
            return MOEQ_FAIL(
                st,
                "--calib %s: text needs the model's character tokenizer: %s\n---> HINT: for "
                "other tokenizers give token ids (a flat little-endian uint32 file, --calib-format "
                "ids)",
                path, moeq_error_detail());
        st = moeq_tokenizer_encode_file(t, path, ids, n);
        moeq_tokenizer_free(&t);
        return st;
    }
    char *buf = NULL;
    size_t len = 0;
    MOEQ_TRY(moeq_read_file(path, (size_t)1 << 36, &buf, &len));
    if (len % 4) {
        free(buf);
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT,
            "--calib %s: %zu bytes is not a whole number of uint32 token ids\n---> HINT: the ids "
            "format is a flat little-endian uint32 file; a text file needs the .txt suffix or "
            "--calib-format text",
            path, len);
    }
    *n = (int64_t)(len / 4);
    *ids = MOEQ_MALLOC((size_t)(*n ? *n : 1) * sizeof(int32_t), "calibration ids");
    if (!*ids) {
        free(buf);
        return MOEQ_ERR_NOMEM;
    }
    const unsigned char *b = (const unsigned char *)buf;
    for (int64_t i = 0; i < *n; i++) {
        const uint32_t v = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                           (uint32_t)b[4 * i + 3] << 24;
        (*ids)[i] = v > INT32_MAX ? -1 : (int32_t)v;
    }
    free(buf);
    return MOEQ_OK;
}

moeq_status moeq_calib_set_load(const char *path, moeq_calib_format format, int n_seqs, int64_t seq_len,
                                int vocab, const char *model_dir, moeq_calib_set **out) {
    *out = NULL;
    if (!path || n_seqs < 1 || seq_len < 2 || vocab < 1)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "--calib: %d sequence(s) of %lld tokens: need at least 1 sequence of at least 2 "
                         "tokens",
                         n_seqs, (long long)seq_len);
    if (format == MOEQ_CALIB_AUTO)
        format = ends_with(path, ".txt") || ends_with(path, ".text") ? MOEQ_CALIB_TEXT : MOEQ_CALIB_IDS;
    int32_t *all = NULL;
    int64_t n = 0;
    MOEQ_TRY(read_ids(path, format, model_dir, &all, &n));
    const int64_t need = (int64_t)n_seqs * seq_len;
    moeq_status st = MOEQ_OK;
    for (int64_t i = 0; i < n && i < need && st == MOEQ_OK; i++)
        if (all[i] < 0 || all[i] >= vocab)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "--calib %s: token %lld (byte offset %lld) is id %lld, outside the model's vocab "
                           "[0, %d)\n---> HINT: tokenize with this model's tokenizer",
                           path, (long long)i, (long long)(4 * i), (long long)(uint32_t)all[i], vocab);
    if (st == MOEQ_OK && n < need)
        st = MOEQ_FAIL(MOEQ_ERR_ARG,
                       "--calib %s: %lld tokens hold %lld sequence(s) of %lld, %d asked\n---> HINT: give a "
                       "longer file, or --calib-seqs %lld (or a shorter --calib-len)",
                       path, (long long)n, (long long)(n / seq_len), (long long)seq_len, n_seqs,
                       (long long)(n / seq_len));
    moeq_calib_set *s = st == MOEQ_OK ? MOEQ_CALLOC(1, sizeof *s, "calibration set") : NULL;
    if (st == MOEQ_OK && !s) st = MOEQ_ERR_NOMEM;
    if (st != MOEQ_OK) {
        moeq_free(&all);
        return st;
    }
    s->path = strdup(path);
    s->format = format;
    s->n_seqs = n_seqs;
    s->seq_len = seq_len;
    s->n_file_tokens = n;
    s->ids = all; // the first n·T are the set (the rest is unused)
    XXH3_state_t *h = XXH3_createState();
    if (!s->path || !h) {
        XXH3_freeState(h);
        moeq_calib_set_free(&s);
        return MOEQ_ERR_NOMEM;
    }
    XXH3_64bits_reset(h);
    const int64_t head[2] = {n_seqs, seq_len};
    XXH3_64bits_update(h, head, sizeof head);
    for (int64_t i = 0; i < need; i++) {
        const uint32_t v = (uint32_t)all[i];
        const unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                                     (unsigned char)(v >> 24)};
        XXH3_64bits_update(h, le, 4);
    }
    s->xxh3 = XXH3_64bits_digest(h);
    if (!s->xxh3) s->xxh3 = 1;
    XXH3_freeState(h);
    *out = s;
    return MOEQ_OK;
}
