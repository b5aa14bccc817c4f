// gguf_tokenizer.c: tokenizer.json (or another GGUF) -> the tokenizer.* keys llama.cpp reads
// (gguf_tokenizer.h).
//
// Three conversions, each the one llama.cpp's convert_hf_to_gguf.py makes, so that llama.cpp tokenizes text
// into the ids the model was trained on:
//   char vocabulary  -> "gpt2": each character spelled in GPT-2's byte-level alphabet (every byte is one
//                       printable code point), merges only inside multi-byte characters, pre "default".
//                       With no merges across characters, llama.cpp's BPE yields one token per character.
//   byte-level BPE   -> "gpt2": vocab + added tokens by id, padding "[PADi]" (unused) to vocab_size,
//                       merges as "a b" (spaces inside a part spelled U+0120, as gguf-py does), and
//                       tokenizer.ggml.pre from the table k_pre below, matched on the pre_tokenizer's Split
//                       regexes and its ByteLevel use_regex.
//   SentencePiece BPE (byte_fallback) -> "llama": <0xXX> tokens typed BYTE, special tokens CONTROL. Scores:
//                       convert_hf_to_gguf.py's _set_vocab_llama_hf writes -1000 for every token, which
//                       leaves llama.cpp's SPM merging (highest score first) without an order; here a token
//                       made by merge r scores -r (the order sentencepiece itself used to derive the merges),
//                       others -1000, so llama.cpp merges in the tokenizer's merge order.
// Special ids follow gguf-py's SpecialVocab: tokenizer_config.json's bos/eos/unk/sep/pad/mask token
// (string or {"content"}) resolved through tokenizer.json's added_tokens, then config.json's *_token_id;
// add_bos/add_eos from tokenizer_config.json, else from the post_processor.
#include "gguf_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "sysio.h" // defines: moeq_read_file, moeq_path_join

#define HINT_FROM "\n---> HINT: copy the tokenizer of a GGUF of the same model: --tokenizer-from FILE.gguf"

// gguf-py's TokenType
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

// The pre-tokenizers llama.cpp implements (src/llama-vocab.cpp), recognised by the Split regexes of
// tokenizer.json's pre_tokenizer (in order; CR/LF written as \r \n) and ByteLevel's use_regex.
typedef struct pre_entry {
    const char *name;     // tokenizer.ggml.pre
    int bytelevel_regex;  // ByteLevel's use_regex
    const char *split[4]; // Split patterns, NULL-terminated
    const char *models;   // for the documentation and messages
} pre_entry;

static const pre_entry k_pre[] = {
    {"gpt-2", 1, {NULL}, "GPT-2, GPT-NeoX, OLMo/OLMoE (ByteLevel with its own regex)"},
    {"qwen2",
     0,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+",
      NULL},
     "Qwen2, Qwen2-MoE, Qwen3, Qwen3-MoE"},
    {"qwen35",
     0,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "
      "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     "Qwen3.5"},
    {"llama-bpe",
     0,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     "Llama 3"},
    {"deepseek-v3",
     0,
     {"\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     "DeepSeek-V3, DeepSeek-R1"},
};

// ---- small helpers ----

typedef struct vocab {
    int n;         // entries (after padding)
    char **tok;    // [n] owned
    int32_t *type; // [n]
    float *score;  // [n] (SPM only)
} vocab;

static void vocab_free(vocab *v) {
    if (v->tok)
        for (int i = 0; i < v->n; i++) moeq_free(&v->tok[i]);
    moeq_free(&v->tok);
    moeq_free(&v->type);
    moeq_free(&v->score);
    v->n = 0;
}

static moeq_status vocab_alloc(vocab *v, int n) {
    v->n = n;
    v->tok = MOEQ_CALLOC((size_t)n, sizeof *v->tok, "token strings");
    v->type = MOEQ_CALLOC((size_t)n, sizeof *v->type, "token types");
    v->score = MOEQ_CALLOC((size_t)n, sizeof *v->score, "token scores");
    return v->tok && v->type && v->score ? MOEQ_OK : MOEQ_ERR_NOMEM;
}

// Reads and parses path. Missing file: MOEQ_ERR_NOT_FOUND (optional files are checked by the caller).
static moeq_status load_json(const char *path, json_t **out) {
    *out = NULL;
    if (access(path, F_OK) != 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no such file", path);
    char *text = NULL;
    size_t len = 0;
    MOEQ_TRY(moeq_read_file(path, (size_t)512 << 20, &text, &len));
    json_error_t jerr;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    moeq_free(&text);
    if (!*out)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a JSON object", path);
    }
    return MOEQ_OK;
}

// Loads dir/name when it exists (*out NULL otherwise).
static moeq_status load_optional(const char *dir, const char *name, json_t **out) {
    *out = NULL;
    char *p = moeq_path_join(dir, name);
    if (!p) return MOEQ_ERR_NOMEM;
    moeq_status st = access(p, F_OK) == 0 ? load_json(p, out) : MOEQ_OK;
    moeq_free(&p);
    return st;
}

// Appends code point cp as UTF-8 to out (room for 4 bytes); returns bytes written.
static int utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

// Bytes of the UTF-8 sequence led by c (0: not a lead byte).
static int utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256, 257, ... in order.
static unsigned byte_cp(unsigned char b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
    return 256 + n;
}

// Byte-level spelling of bytes s[0..len) (MOEQ_MALLOC'd, NUL-terminated).
static char *bytelevel(const unsigned char *s, size_t len) {
    char *out = MOEQ_MALLOC(len * 2 + 1, "byte-level token");
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) k += (size_t)utf8_put(out + k, byte_cp(s[i]));
    out[k] = '\0';
    return out;
}

// CR and LF written as the regex escapes \r and \n (HF files hold either form).
static char *canon_regex(const char *s) {
    const size_t n = strlen(s);
    char *out = MOEQ_MALLOC(2 * n + 1, "regex");
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            out[k++] = '\\';
            out[k++] = s[i] == '\r' ? 'r' : 'n';
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

// convert_hf_to_gguf.py's does_token_look_special.
static int looks_special(const char *t) {
    const size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]"))
        return 1;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return 1;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) return 1; // <｜ ｜>
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return 1;
    return 0;
}

static int is_byte_token(const char *t) {
    static const char hex[] = "0123456789abcdefABCDEF";
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' && strchr(hex, t[3]) && strchr(hex, t[4]);
}

// Puts the vocabulary into kvs: tokens, token types and (with_scores) scores.
static moeq_status put_vocab(moeq_gguf_kvs *kvs, const vocab *v, int with_scores) {
    MOEQ_TRY(
        moeq_gguf_kvs_set_arr_str(kvs, "tokenizer.ggml.tokens", (const char *const *)v->tok, (uint64_t)v->n));
    if (with_scores)
        MOEQ_TRY(
            moeq_gguf_kvs_set_arr(kvs, "tokenizer.ggml.scores", MOEQ_GGUF_FLOAT32, v->score, (uint64_t)v->n));
    return moeq_gguf_kvs_set_arr(kvs, "tokenizer.ggml.token_type", MOEQ_GGUF_INT32, v->type, (uint64_t)v->n);
}

// ---- moeq's char vocabulary ----

static moeq_status from_char(const char *path, const json_t *root, int vocab_size, moeq_gguf_kvs *kvs) {
    const json_t *list = json_object_get(root, "vocab");
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > (1u << 24))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"vocab\" must be a non-empty list of characters", path);
    const int n = (int)json_array_size(list);
    if (vocab_size > 0 && n != vocab_size)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                         "%s: the char vocabulary has %d characters but the model has vocab_size %d", path, n,
                         vocab_size);
    vocab v = {0};
    moeq_status st = vocab_alloc(&v, n);
    char **merges = st == MOEQ_OK ? MOEQ_CALLOC((size_t)n * 3 + 1, sizeof *merges, "merges") : NULL;
    int n_merges = 0;
    if (st == MOEQ_OK && !merges) st = MOEQ_ERR_NOMEM;
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const json_t *e = json_array_get(list, (size_t)i);
        const unsigned char *s = (const unsigned char *)json_string_value(e);
        const size_t len = s ? json_string_length(e) : 0;
        if (!s || len == 0 || utf8_len(s[0]) != (int)len || strlen((const char *)s) != len) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: vocab[%d] is not one character", path, i);
            break;
        }
        v.tok[i] = bytelevel(s, len);
        v.type[i] = TOK_NORMAL;
        if (!v.tok[i]) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        // a multi-byte character: merge its bytes left to right ("b0 b1", "b0b1 b2", ...); the byte-level
        // spelling of each byte is 1-2 UTF-8 bytes, so the prefixes are found by re-spelling
        for (size_t k = 1; k < len && st == MOEQ_OK; k++) {
            char *left = bytelevel(s, k), *right = bytelevel(s + k, 1);
            char *m = left && right ? MOEQ_MALLOC(strlen(left) + strlen(right) + 2, "merge") : NULL;
            if (m) {
                sprintf(m, "%s %s", left, right);
                merges[n_merges++] = m;
            } else {
                st = MOEQ_ERR_NOMEM;
            }
            moeq_free(&left);
            moeq_free(&right);
        }
    }
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.model", "gpt2");
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.pre", "default");
    if (st == MOEQ_OK) st = put_vocab(kvs, &v, 0);
    // llama.cpp requires the key for "gpt2" even when it is empty
    if (st == MOEQ_OK)
        st = moeq_gguf_kvs_set_arr_str(kvs, "tokenizer.ggml.merges", (const char *const *)merges,
                                       (uint64_t)n_merges);
    // moeq's forward pass adds no BOS/EOS
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_bool(kvs, "tokenizer.ggml.add_bos_token", 0);
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_bool(kvs, "tokenizer.ggml.add_eos_token", 0);
    if (merges)
        for (int i = 0; i < n_merges; i++) moeq_free(&merges[i]);
    moeq_free(&merges);
    vocab_free(&v);
    return st;
}

// ---- Hugging Face BPE ----

typedef struct hf {
    const char *path;
    const json_t *root, *model, *vocab, *added; // added: added_tokens (array or NULL)
    json_t *tcfg, *smap, *cfg;                  // tokenizer_config.json, special_tokens_map.json, config.json
} hf;

// Fills v from model.vocab and added_tokens; ids beyond both up to vocab_size are padding.
static moeq_status hf_tokens(const hf *h, int vocab_size, int spm, vocab *v) {
    long max_id = -1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)h->vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 30))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not a token id", h->path, key);
        if (json_integer_value(val) > max_id) max_id = (long)json_integer_value(val);
    }
    size_t i;
    json_array_foreach(h->added, i, val) {
        const json_t *id = json_object_get(val, "id"), *c = json_object_get(val, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 30) ||
            !json_is_string(c))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: added_tokens[%zu] needs an \"id\" and a \"content\"",
                             h->path, i);
        if (json_integer_value(id) > max_id) max_id = (long)json_integer_value(id);
    }
    if (max_id < 0) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: the tokenizer has no tokens", h->path);
    if (vocab_size > 0 && max_id >= vocab_size)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                         "%s: the tokenizer has %ld tokens (ids up to %ld) but the model has vocab_size %d",
                         h->path, max_id + 1, max_id, vocab_size);
    MOEQ_TRY(vocab_alloc(v, vocab_size > 0 ? vocab_size : (int)max_id + 1));
    json_object_foreach((json_t *)h->vocab, key, val) {
        const int id = (int)json_integer_value(val);
        if (v->tok[id])
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: model.vocab: \"%s\" and \"%s\" have the same id %d",
                             h->path, v->tok[id], key, id);
        v->tok[id] = MOEQ_STRDUP(key);
        if (!v->tok[id]) return MOEQ_ERR_NOMEM;
        v->type[id] = spm && is_byte_token(key) ? TOK_BYTE : TOK_NORMAL;
        v->score[id] = -1000.0f;
    }
    json_array_foreach(h->added, i, val) {
        const int id = (int)json_integer_value(json_object_get(val, "id"));
        const json_t *c = json_object_get(val, "content");
        const char *content = json_string_value(c);
        if (strlen(content) != json_string_length(c) || !content[0])
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: added_tokens[%zu]: empty content or a NUL byte", h->path,
                             i);
        const int special = json_is_true(json_object_get(val, "special"));
        moeq_free(&v->tok[id]); // an added token names its id, as the tokenizer's get_vocab does
        int type;
        if (spm) {
            type = special ? TOK_CONTROL : (v->type[id] ? v->type[id] : TOK_USER_DEFINED);
        } else if (special || looks_special(content)) {
            type = TOK_CONTROL;
        } else {
            type = TOK_USER_DEFINED;
        }
        char *t = MOEQ_STRDUP(content);
        if (!t) return MOEQ_ERR_NOMEM;
        if (!spm && type == TOK_USER_DEFINED) { // pre-normalise user-defined spaces: U+2581 -> ' '
            char *w = t;
            for (const char *r = t; *r;) {
                if (!strncmp(r, "\xe2\x96\x81", 3)) {
                    *w++ = ' ';
                    r += 3;
                } else {
                    *w++ = *r++;
                }
            }
            *w = '\0';
        }
        v->tok[id] = t;
        v->type[id] = type;
        v->score[id] = spm ? 0.0f : -1000.0f;
    }
    for (int k = 0; k < v->n; k++) {
        if (v->tok[k]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", k);
        v->tok[k] = MOEQ_STRDUP(pad);
        if (!v->tok[k]) return MOEQ_ERR_NOMEM;
        v->type[k] = TOK_UNUSED;
        v->score[k] = -1000.0f;
    }
    return MOEQ_OK;
}

// model.merges as "a b" strings (both HF forms: "a b" and ["a", "b"]; spaces inside a part are spelled
// U+0120 as gguf-py does). SPM: also scores[token(a+b)] = -rank for the first merge making it.
static moeq_status hf_merges(const hf *h, vocab *v, int spm, char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    const json_t *m = json_object_get(h->model, "merges");
    if (!m) return MOEQ_OK;
    if (!json_is_array(m) || json_array_size(m) > (1u << 30))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: model.merges is not a list", h->path);
    const size_t n = json_array_size(m);
    char **list = MOEQ_CALLOC(n + 1, sizeof *list, "merges");
    if (!list) return MOEQ_ERR_NOMEM;
    *out = list;
    size_t i;
    const json_t *e;
    json_array_foreach(m, i, e) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        const int pair = json_is_array(e);
        if (json_is_string(e)) { // "a b": split at the first space after the first byte
            const char *str = json_string_value(e);
            const char *sp = str[0] ? strchr(str + 1, ' ') : NULL;
            if (sp) a = str, la = (size_t)(sp - str), b = sp + 1, lb = strlen(sp + 1);
        } else if (pair && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0)), la = strlen(a);
            b = json_string_value(json_array_get(e, 1)), lb = strlen(b);
        }
        if (!a || !la || !lb)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of tokens", h->path, i);
        // "a b"; in the pair form a space inside a part is spelled U+0120 (2 bytes)
        char *s = MOEQ_MALLOC(2 * (la + lb) + 2, "merge");
        if (!s) return MOEQ_ERR_NOMEM;
        size_t k = 0;
        for (size_t j = 0; j < la + 1 + lb; j++) {
            const char c = j < la ? a[j] : j == la ? 0 : b[j - la - 1];
            if (j == la)
                s[k++] = ' ';
            else if (c == ' ' && pair)
                k += (size_t)utf8_put(s + k, 0x120);
            else
                s[k++] = c;
        }
        s[k] = '\0';
        list[(*n_out)++] = s;
        if (spm) { // score of the token this merge makes (raw parts, as in model.vocab)
            char *cat = MOEQ_MALLOC(la + lb + 1, "merged token");
            if (!cat) return MOEQ_ERR_NOMEM;
            memcpy(cat, a, la);
            memcpy(cat + la, b, lb);
            cat[la + lb] = '\0';
            const json_t *id = json_object_get(h->vocab, cat);
            moeq_free(&cat);
            if (json_is_integer(id)) {
                const json_int_t t = json_integer_value(id);
                if (t >= 0 && t < v->n && v->type[t] == TOK_NORMAL && v->score[t] == -1000.0f)
                    v->score[t] = -(float)i;
            }
        }
    }
    return MOEQ_OK;
}

// tokenizer_config.json's <typ>_token (or special_tokens_map.json's) as text; NULL when absent.
static const char *special_text(const json_t *cfg, const char *typ) {
    char key[32];
    snprintf(key, sizeof key, "%s_token", typ);
    const json_t *e = json_object_get(cfg, key);
    if (json_is_object(e)) e = json_object_get(e, "content");
    return json_string_value(e);
}

// Special ids and add_* flags, as gguf-py's SpecialVocab.
static moeq_status hf_specials(const hf *h, int n_vocab, moeq_gguf_kvs *kvs) {
    static const struct {
        const char *typ, *key;
    } k_types[] = {
        {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", "tokenizer.ggml.cls_token_id"},
        {"mask", "tokenizer.ggml.mask_token_id"},
    };
    for (size_t t = 0; t < sizeof k_types / sizeof k_types[0]; t++) {
        const char *text = special_text(h->tcfg, k_types[t].typ);
        if (!text && !h->tcfg) text = special_text(h->smap, k_types[t].typ);
        long id = -1;
        if (text) {
            size_t i;
            const json_t *a;
            json_array_foreach(h->added, i, a) {
                if (json_is_string(json_object_get(a, "content")) &&
                    !strcmp(json_string_value(json_object_get(a, "content")), text)) {
                    id = (long)json_integer_value(json_object_get(a, "id"));
                    break;
                }
            }
        }
        if (id < 0 && h->cfg) {
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", k_types[t].typ);
            const json_t *e = json_object_get(h->cfg, key);
            if (json_is_integer(e)) id = (long)json_integer_value(e);
        }
        if (id >= 0 && id < n_vocab) MOEQ_TRY(moeq_gguf_kvs_set_u32(kvs, k_types[t].key, (uint32_t)id));
    }
    // add_bos / add_eos: tokenizer_config.json, else the post_processor (ByteLevel: neither; a template
    // starting with the BOS / ending with the EOS: that one)
    static const char *const k_add[] = {"bos", "eos"};
    for (int t = 0; t < 2; t++) {
        char key[32], gkey[48];
        snprintf(key, sizeof key, "add_%s_token", k_add[t]);
        snprintf(gkey, sizeof gkey, "tokenizer.ggml.add_%s_token", k_add[t]);
        const json_t *e = json_object_get(h->tcfg, key);
        int val = -1;
        const json_t *pp = json_object_get(h->root, "post_processor");
        const json_t *procs = json_object_get(pp, "processors");
        const size_t np = json_is_array(procs) ? json_array_size(procs) : (pp ? 1 : 0);
        for (size_t p = 0; p < np; p++) {
            const json_t *proc = json_is_array(procs) ? json_array_get(procs, p) : pp;
            const char *type = json_string_value(json_object_get(proc, "type"));
            if (!type) continue;
            if (!strcmp(type, "ByteLevel") && val < 0) val = 0;
            if (!strcmp(type, "TemplateProcessing")) {
                const json_t *single = json_object_get(proc, "single");
                const size_t ns = json_is_array(single) ? json_array_size(single) : 0;
                if (ns > 1) {
                    const json_t *edge = json_array_get(single, t == 0 ? 0 : ns - 1);
                    const char *sid =
                        json_string_value(json_object_get(json_object_get(edge, "SpecialToken"), "id"));
                    const char *want = special_text(h->tcfg, k_add[t]);
                    val = sid && (!want || !strcmp(sid, want)); // no <typ>_token: the template's is it
                }
            }
        }
        if (json_is_boolean(e) && val < 0) val = json_is_true(e);
        if (val >= 0) MOEQ_TRY(moeq_gguf_kvs_set_bool(kvs, gkey, val));
    }
    const json_t *ct = json_object_get(h->tcfg, "chat_template");
    if (json_is_string(ct))
        MOEQ_TRY(moeq_gguf_kvs_set_str(kvs, "tokenizer.chat_template", json_string_value(ct)));
    return MOEQ_OK;
}

// The llama.cpp pre-tokenizer for tokenizer.json's pre_tokenizer; NULL (with *what describing it) if none.
static const char *hf_pre(const hf *h, char *what, size_t what_len) {
    const json_t *pt = json_object_get(h->root, "pre_tokenizer");
    const json_t *seq = json_object_get(pt, "pretokenizers");
    const size_t n = json_is_array(seq) ? json_array_size(seq) : (pt && !json_is_null(pt) ? 1 : 0);
    const char *split[8] = {0};
    int n_split = 0, bl = -1, other = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_is_array(seq) ? json_array_get(seq, i) : pt;
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && !strcmp(type, "Split") && n_split < 8) {
            const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
            // the pieces are the matches: Isolated, or Removed inverted (what is not matched is dropped)
            const char *beh = json_string_value(json_object_get(p, "behavior"));
            const int inv = json_is_true(json_object_get(p, "invert"));
            if (!re || !beh || !(!strcmp(beh, "Isolated") ? !inv : !strcmp(beh, "Removed") && inv)) other = 1;
            split[n_split++] = re;
        } else if (type && !strcmp(type, "ByteLevel")) {
            const json_t *ur = json_object_get(p, "use_regex");
            bl = ur ? json_is_true(ur) : 1;
        } else {
            other = 1;
        }
    }
    char *dump = pt ? json_dumps(pt, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    snprintf(what, what_len, "%s", dump ? dump : "none");
    if (strlen(what) > 600) strcpy(what + 597, "...");
    free(dump);
    if (other || bl < 0) return NULL;
    for (size_t e = 0; e < sizeof k_pre / sizeof k_pre[0]; e++) {
        if (k_pre[e].bytelevel_regex != bl) continue;
        int k = 0, ok = 1;
        for (; k_pre[e].split[k] && ok; k++) {
            char *c = k < n_split ? canon_regex(split[k]) : NULL;
            ok = c && !strcmp(c, k_pre[e].split[k]);
            moeq_free(&c);
        }
        if (ok && k == n_split) return k_pre[e].name;
    }
    return NULL;
}

static moeq_status from_hf(const char *path, json_t *root, int vocab_size, moeq_gguf_kvs *kvs) {
    hf h = {.path = path, .root = root};
    h.model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(h.model, "type"));
    if (!json_is_object(h.model))
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: neither a Hugging Face tokenizer (no \"model\") nor moeq's {\"type\": \"char\"}" HINT_FROM,
            path);
    if (!mtype || strcmp(mtype, "BPE") != 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: tokenizer model \"%s\": moeq converts BPE tokenizers (byte-level or with "
                         "byte_fallback) and its char vocabulary only" HINT_FROM,
                         path, mtype ? mtype : "(none)");
    h.vocab = json_object_get(h.model, "vocab");
    if (!json_is_object(h.vocab)) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: model.vocab is not an object", path);
    h.added = json_object_get(root, "added_tokens");
    if (h.added && !json_is_array(h.added))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: added_tokens is not a list", path);
    const int spm = json_is_true(json_object_get(h.model, "byte_fallback"));

    char *dir = MOEQ_STRDUP(path);
    if (!dir) return MOEQ_ERR_NOMEM;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    moeq_status st = load_optional(dir, "tokenizer_config.json", &h.tcfg);
    if (st == MOEQ_OK) st = load_optional(dir, "special_tokens_map.json", &h.smap);
    if (st == MOEQ_OK) st = load_optional(dir, "config.json", &h.cfg);
    moeq_free(&dir);

    vocab v = {0};
    char **merges = NULL;
    int n_merges = 0;
    char what[1024];
    const char *pre = NULL;
    if (st == MOEQ_OK && !spm) {
        pre = hf_pre(&h, what, sizeof what);
        if (!pre)
            st = MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: byte-level BPE with a pre-tokenizer moeq does not know: %s (known: gpt-2, qwen2, "
                "qwen35, llama-bpe, deepseek-v3)" HINT_FROM,
                path, what);
    }
    if (st == MOEQ_OK && spm) {
        // SentencePiece-style: the "▁" space marker (normalizer Replace or Metaspace pre-tokenizer)
        char *norm = json_dumps(json_object_get(root, "normalizer"), JSON_COMPACT);
        char *pt = json_dumps(json_object_get(root, "pre_tokenizer"), JSON_COMPACT);
        const int meta = (norm && strstr(norm, "\xe2\x96\x81")) || (pt && strstr(pt, "Metaspace"));
        const int prefix = (norm && strstr(norm, "\"Prepend\"")) ||
                           (pt && strstr(pt, "Metaspace") && !strstr(pt, "\"prepend_scheme\":\"never\"") &&
                            !strstr(pt, "\"add_prefix_space\":false"));
        free(norm);
        free(pt);
        if (!meta)
            st = MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: BPE with byte_fallback but without SentencePiece's \"\xe2\x96\x81\" space marker "
                "(normalizer or Metaspace)" HINT_FROM,
                path);
        if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.model", "llama");
        if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.pre", "default");
        if (st == MOEQ_OK) st = moeq_gguf_kvs_set_bool(kvs, "tokenizer.ggml.add_space_prefix", prefix);
    } else if (st == MOEQ_OK) {
        st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.model", "gpt2");
        if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(kvs, "tokenizer.ggml.pre", pre);
    }
    if (st == MOEQ_OK) st = hf_tokens(&h, vocab_size, spm, &v);
    if (st == MOEQ_OK) st = hf_merges(&h, &v, spm, &merges, &n_merges);
    if (st == MOEQ_OK) st = put_vocab(kvs, &v, spm);
    if (st == MOEQ_OK && !spm)
        st = moeq_gguf_kvs_set_arr_str(kvs, "tokenizer.ggml.merges", (const char *const *)merges,
                                       (uint64_t)n_merges);
    if (st == MOEQ_OK) st = hf_specials(&h, v.n, kvs);
    if (merges)
        for (int i = 0; i < n_merges; i++) moeq_free(&merges[i]);
    moeq_free(&merges);
    vocab_free(&v);
    json_decref(h.tcfg);
    json_decref(h.smap);
    json_decref(h.cfg);
    return st;
}

moeq_status moeq_gguf_tokenizer_from_json(const char *tokenizer_json, int vocab_size, moeq_gguf_kvs *kvs) {
    if (!tokenizer_json || !kvs) return MOEQ_FAIL(MOEQ_ERR_ARG, "tokenizer conversion: NULL argument");
    json_t *root = NULL;
    MOEQ_TRY(load_json(tokenizer_json, &root));
    const char *type = json_string_value(json_object_get(root, "type"));
    moeq_status st = type && !strcmp(type, "char") ? from_char(tokenizer_json, root, vocab_size, kvs)
                                                   : from_hf(tokenizer_json, root, vocab_size, kvs);
    json_decref(root);
    return st;
}

moeq_status moeq_gguf_tokenizer_from_gguf(const char *gguf_path, int vocab_size, moeq_gguf_kvs *kvs) {
    if (!gguf_path || !kvs) return MOEQ_FAIL(MOEQ_ERR_ARG, "tokenizer copy: NULL argument");
    moeq_gguf_file *f = NULL;
    MOEQ_TRY(moeq_gguf_open(gguf_path, &f));
    moeq_status st = MOEQ_OK;
    const moeq_gguf_kv *tok = moeq_gguf_kvs_find(&f->kvs, "tokenizer.ggml.tokens");
    if (!tok || tok->val.type != MOEQ_GGUF_ARRAY || tok->val.elem != MOEQ_GGUF_STRING) {
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no tokenizer (tokenizer.ggml.tokens)%s", gguf_path,
                       tok ? " is not a list of strings" : " is absent");
    } else if (vocab_size > 0 && tok->val.n != (uint64_t)vocab_size) {
        st = MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                       "%s: its tokenizer has %llu tokens but the model has vocab_size %d\n---> HINT: "
                       "--tokenizer-from needs a GGUF of the same model",
                       gguf_path, (unsigned long long)tok->val.n, vocab_size);
    }
    for (int i = 0; st == MOEQ_OK && i < f->kvs.n; i++)
        if (!strncmp(f->kvs.kv[i].key, "tokenizer.", 10))
            st = moeq_gguf_kvs_set_value(kvs, f->kvs.kv[i].key, &f->kvs.kv[i].val);
    moeq_gguf_close(&f);
    return st;
}
