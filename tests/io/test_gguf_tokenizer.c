// test_gguf_tokenizer.c: the tokenizer.* keys of a GGUF (io/gguf_tokenizer.c). moeq's char vocabulary
// (the test models' tokenizer.json, and one with multi-byte characters) becomes GPT-2 byte-level tokens
// with merges only inside characters; a small byte-level BPE written here gets its tokens by id, padding to
// vocab_size, token types, merges in both HF forms, special ids and flags; the fixtures made by the
// `tokenizers` package (tests/fixtures/tokenizers) get the right tokenizer.ggml.pre / "llama" model;
// unknown pre-tokenizers and models, bad JSON and vocabulary sizes that disagree are refused naming the
// file (and both sizes); --tokenizer-from copies exactly the tokenizer.* keys of another GGUF.
//
// It also writes one vocabulary-only GGUF per case into build/tests/io/gguf-tokenizer/ (fixture of
// tests/pipeline/test_gguf_tokenizer.sh, which checks with llama.cpp itself that they tokenize text into
// the ids of moeq / of the `tokenizers` library).
#include "test_util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_tokenizer.h"

#define OUT_DIR MOEQ_BINARY_DIR "/tests/io/gguf-tokenizer"
#define FIX_DIR MOEQ_SOURCE_DIR "/tests/fixtures/tokenizers"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = moeq_test_mkdtemp("gguf-tok");
    mkdir(MOEQ_BINARY_DIR "/tests", 0755);
    mkdir(MOEQ_BINARY_DIR "/tests/io", 0755);
    if (mkdir(OUT_DIR, 0755) != 0 && errno != EEXIST) return -1;
    return g_dir ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    moeq_test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static const moeq_gguf_value *get(const moeq_gguf_kvs *s, const char *key) {
    const moeq_gguf_kv *kv = moeq_gguf_kvs_find(s, key);
    if (!kv) fail_msg("key %s absent", key);
    return &kv->val;
}
static const char *get_str(const moeq_gguf_kvs *s, const char *key) {
    const moeq_gguf_value *v = get(s, key);
    assert_int_equal(v->type, MOEQ_GGUF_STRING);
    return v->v.s;
}
static const char *tok(const moeq_gguf_kvs *s, uint64_t i) {
    const moeq_gguf_value *v = get(s, "tokenizer.ggml.tokens");
    assert_int_equal(v->elem, MOEQ_GGUF_STRING);
    assert_true(i < v->n);
    return ((char **)v->arr)[i];
}
static int32_t toktype(const moeq_gguf_kvs *s, uint64_t i) {
    const moeq_gguf_value *v = get(s, "tokenizer.ggml.token_type");
    assert_int_equal(v->elem, MOEQ_GGUF_INT32);
    return ((int32_t *)v->arr)[i];
}
static uint64_t count(const moeq_gguf_kvs *s, const char *key) {
    const moeq_gguf_value *v = get(s, key);
    assert_int_equal(v->type, MOEQ_GGUF_ARRAY);
    return v->n;
}

// Writes kvs (plus general.architecture) as a GGUF without tensors at OUT_DIR/name.
static void write_vocab_only(const moeq_gguf_kvs *tk, const char *name) {
    moeq_gguf_kvs kvs = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&kvs, "general.architecture", "llama"), MOEQ_OK);
    for (int i = 0; i < tk->n; i++)
        assert_int_equal(moeq_gguf_kvs_set_value(&kvs, tk->kv[i].key, &tk->kv[i].val), MOEQ_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", OUT_DIR, name);
    unlink(path);
    moeq_gguf_writer *w = NULL;
    assert_int_equal(moeq_gguf_writer_open(path, &kvs, 0, NULL, &w), MOEQ_OK);
    assert_int_equal(moeq_gguf_writer_close(&w), MOEQ_OK);
    moeq_gguf_kvs_free(&kvs);
}

static char *write_in(const char *sub, const char *name, const char *text) {
    char d[4096];
    snprintf(d, sizeof d, "%s/%s", g_dir, sub);
    mkdir(d, 0755);
    return moeq_test_write(d, name, text, strlen(text));
}

// ---- moeq's char vocabulary ----

static void test_char_vocab(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", moeq_test_tiny_model_dir());
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_tokenizer_from_json(path, 65, &s), MOEQ_OK);
    assert_string_equal(get_str(&s, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(get_str(&s, "tokenizer.ggml.pre"), "default");
    assert_int_equal(count(&s, "tokenizer.ggml.tokens"), 65);
    assert_int_equal(count(&s, "tokenizer.ggml.token_type"), 65);
    assert_int_equal(count(&s, "tokenizer.ggml.merges"), 0); // present (llama.cpp requires it), empty
    assert_string_equal(tok(&s, 0), "\xc4\x8a");             // "\n" is byte 10 -> U+010A
    assert_string_equal(tok(&s, 1), "\xc4\xa0");             // " " -> U+0120
    assert_string_equal(tok(&s, 2), "!");
    assert_string_equal(tok(&s, 13), "A");
    assert_int_equal(toktype(&s, 13), 1);
    assert_int_equal(get(&s, "tokenizer.ggml.add_bos_token")->v.u, 0);
    assert_int_equal(get(&s, "tokenizer.ggml.add_eos_token")->v.u, 0);
    assert_null(moeq_gguf_kvs_find(&s, "tokenizer.ggml.bos_token_id"));
    write_vocab_only(&s, "char.gguf");
    moeq_gguf_kvs_free(&s);

    // the vocabulary and the model disagree: both sizes named
    assert_status(moeq_gguf_tokenizer_from_json(path, 64, &s), MOEQ_ERR_MISMATCH, "65 characters");
    assert_status(moeq_gguf_tokenizer_from_json(path, 64, &s), MOEQ_ERR_MISMATCH, "vocab_size 64");
    moeq_gguf_kvs_free(&s);
}

static void test_char_multibyte(void **state) {
    (void)state;
    // é (C3 A9), 日 (E6 97 A5), a
    char *p = write_in("mb", "tokenizer.json",
                       "{\"type\": \"char\", \"vocab\": [\"\xc3\xa9\", \"\xe6\x97\xa5\", \"a\"]}");
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_OK);
    assert_string_equal(tok(&s, 0), "\xc3\x83\xc2\xa9"); // C3 -> U+00C3, A9 -> U+00A9
    assert_string_equal(tok(&s, 2), "a");
    const moeq_gguf_value *m = get(&s, "tokenizer.ggml.merges");
    assert_int_equal(m->n, 3); // é: 1 merge, 日: 2 merges
    assert_string_equal(((char **)m->arr)[0], "\xc3\x83 \xc2\xa9");
    assert_string_equal(((char **)m->arr)[1], "\xc3\xa6 \xc4\xb9"); // E6 97 (97 is not printable: U+0139)
    assert_string_equal(((char **)m->arr)[2], "\xc3\xa6\xc4\xb9 \xc2\xa5"); // (E6 97) A5
    write_vocab_only(&s, "char-multibyte.gguf");
    moeq_gguf_kvs_free(&s);

    free(p);
    p = write_in("mb2", "tokenizer.json", "{\"type\": \"char\", \"vocab\": [\"ab\"]}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_FORMAT, "vocab[0] is not one character");
    moeq_gguf_kvs_free(&s);
    free(p);
}

// ---- a small byte-level BPE written here ----

// %s: the pre_tokenizer
static const char k_small_bpe_fmt[] =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "  {\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true, \"normalized\": false},"
    "  {\"id\": 6, \"content\": \"<think>\", \"special\": false, \"normalized\": false},"
    "  {\"id\": 7, \"content\": \"<|im_end|>\", \"special\": false, \"normalized\": false}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": %s,"
    " \"post_processor\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\xc4\xa0\": 3},"
    "   \"merges\": [\"a b\", [\"\xc4\xa0\", \"ab\"]]}}";

static char *small_bpe(const char *sub, const char *pre) {
    static char text[4096];
    snprintf(text, sizeof text, k_small_bpe_fmt,
             pre ? pre : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true}");
    return write_in(sub, "tokenizer.json", text);
}

static void test_small_bpe(void **state) {
    (void)state;
    char *p = small_bpe("bpe", NULL);
    char *c = write_in("bpe", "tokenizer_config.json",
                       "{\"eos_token\": \"<|endoftext|>\", \"bos_token\": null, \"add_bos_token\": false,"
                       " \"chat_template\": \"{{ messages }}\"}");
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&s, "general.name", "kept"), MOEQ_OK);
    assert_int_equal(moeq_gguf_tokenizer_from_json(p, 10, &s), MOEQ_OK);
    assert_string_equal(get_str(&s, "general.name"), "kept");
    assert_string_equal(get_str(&s, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(get_str(&s, "tokenizer.ggml.pre"), "gpt-2");
    assert_int_equal(count(&s, "tokenizer.ggml.tokens"), 10); // padded to vocab_size
    assert_string_equal(tok(&s, 2), "ab");
    assert_string_equal(tok(&s, 4), "[PAD4]"); // a hole in the ids
    assert_int_equal(toktype(&s, 4), 5);       // unused
    assert_string_equal(tok(&s, 5), "<|endoftext|>");
    assert_int_equal(toktype(&s, 5), 3); // control (special)
    assert_int_equal(toktype(&s, 6), 4); // user defined
    assert_int_equal(toktype(&s, 7), 3); // control: looks special
    assert_string_equal(tok(&s, 9), "[PAD9]");
    assert_int_equal(toktype(&s, 0), 1);
    const moeq_gguf_value *m = get(&s, "tokenizer.ggml.merges");
    assert_int_equal(m->n, 2);
    assert_string_equal(((char **)m->arr)[0], "a b");
    assert_string_equal(((char **)m->arr)[1], "\xc4\xa0 ab");
    assert_int_equal(get(&s, "tokenizer.ggml.eos_token_id")->v.u, 5);
    assert_null(moeq_gguf_kvs_find(&s, "tokenizer.ggml.bos_token_id"));
    assert_int_equal(get(&s, "tokenizer.ggml.add_bos_token")->v.u, 0);
    assert_string_equal(get_str(&s, "tokenizer.chat_template"), "{{ messages }}");
    assert_null(moeq_gguf_kvs_find(&s, "tokenizer.ggml.scores"));
    moeq_gguf_kvs_free(&s);

    // ids beyond the model's vocabulary: both sizes named
    assert_status(moeq_gguf_tokenizer_from_json(p, 7, &s), MOEQ_ERR_MISMATCH, "8 tokens");
    assert_status(moeq_gguf_tokenizer_from_json(p, 7, &s), MOEQ_ERR_MISMATCH, "vocab_size 7");
    moeq_gguf_kvs_free(&s);
    free(p);
    free(c);
}

static void test_refused(void **state) {
    (void)state;
    moeq_gguf_kvs s = {0};
    char *p = write_in("bad", "tokenizer.json", "{\"type\": \"char\", \"vocab\": [\"a\",}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_FORMAT,
                  "bad/tokenizer.json: not valid JSON");
    free(p);
    assert_status(moeq_gguf_tokenizer_from_json("/nonexistent/tokenizer.json", 0, &s), MOEQ_ERR_NOT_FOUND,
                  "/nonexistent/tokenizer.json");

    // a pre-tokenizer llama.cpp has no name for
    p = small_bpe("pre", "{\"type\": \"Whitespace\"}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED, "Whitespace");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED,
                  "--tokenizer-from FILE.gguf");
    free(p);
    // a Split regex that is not in the table
    p = small_bpe("pre2",
                  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                  "{\"Regex\": \"\\\\p{N}{1,5}\"}}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED, "p{N}{1,5}");
    free(p);
    // Qwen2's regex (JSON escapes \\r \\n here, CR LF in the fixtures): qwen2 when its matches are the
    // pieces, refused when they are merged into the previous piece (not what llama.cpp does)
    static const char qwen_fmt[] =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
        "?[^\\\\s\\\\p{L}\\\\p{N}]+"
        "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"%s\", \"invert\": %s},"
        " {\"type\": \"ByteLevel\", \"use_regex\": false}]}";
    char pre[1024];
    snprintf(pre, sizeof pre, qwen_fmt, "Removed", "true");
    p = small_bpe("pre3", pre);
    assert_int_equal(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_OK);
    assert_string_equal(get_str(&s, "tokenizer.ggml.pre"), "qwen2");
    free(p);
    snprintf(pre, sizeof pre, qwen_fmt, "MergedWithPrevious", "false");
    p = small_bpe("pre4", pre);
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED, "MergedWithPrevious");
    free(p);

    // another tokenizer model
    p = write_in("uni", "tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED, "\"Unigram\"");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_UNSUPPORTED, "--tokenizer-from");
    free(p);
    // a malformed merge
    p = write_in(
        "merge", "tokenizer.json",
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
        " \"merges\": [\"ab\"]}}");
    assert_status(moeq_gguf_tokenizer_from_json(p, 0, &s), MOEQ_ERR_FORMAT, "model.merges[0]");
    free(p);
    moeq_gguf_kvs_free(&s);
}

// ---- the fixtures of the `tokenizers` package ----

static int config_vocab(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/config.json", FIX_DIR, name);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    const int n = (int)json_integer_value(json_object_get(j, "vocab_size"));
    json_decref(j);
    return n;
}

static void fixture(const char *name, const char *model, const char *pre, int with_merges) {
    char path[4096], out[256];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", FIX_DIR, name);
    const int n = config_vocab(name);
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_tokenizer_from_json(path, n, &s), MOEQ_OK);
    assert_string_equal(get_str(&s, "tokenizer.ggml.model"), model);
    assert_string_equal(get_str(&s, "tokenizer.ggml.pre"), pre);
    assert_int_equal(count(&s, "tokenizer.ggml.tokens"), n);
    assert_int_equal(count(&s, "tokenizer.ggml.token_type"), n);
    assert_int_equal(toktype(&s, (uint64_t)n - 1), 5); // the padding
    if (with_merges)
        assert_true(count(&s, "tokenizer.ggml.merges") > 100);
    else
        assert_null(moeq_gguf_kvs_find(&s, "tokenizer.ggml.merges"));
    snprintf(out, sizeof out, "%s.gguf", name);
    write_vocab_only(&s, out);
    moeq_gguf_kvs_free(&s);
}

static void test_fixtures(void **state) {
    (void)state;
    fixture("qwen2-bpe", "gpt2", "qwen2", 1);
    fixture("dsv3-bpe", "gpt2", "deepseek-v3", 1);
    fixture("gpt2-bpe", "gpt2", "gpt-2", 1);
    fixture("spm-bpe", "llama", "default", 0);

    // specials and scores of the SentencePiece-style one
    char path[4096];
    snprintf(path, sizeof path, "%s/spm-bpe/tokenizer.json", FIX_DIR);
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_tokenizer_from_json(path, 0, &s), MOEQ_OK);
    assert_string_equal(tok(&s, 3), "<0x00>");
    assert_int_equal(toktype(&s, 3), 6); // byte
    assert_int_equal(toktype(&s, 1), 3); // <s>: control
    assert_int_equal(get(&s, "tokenizer.ggml.bos_token_id")->v.u, 1);
    assert_int_equal(get(&s, "tokenizer.ggml.eos_token_id")->v.u, 2);
    assert_int_equal(get(&s, "tokenizer.ggml.unknown_token_id")->v.u, 0);
    assert_int_equal(get(&s, "tokenizer.ggml.add_bos_token")->v.u, 1);
    assert_int_equal(get(&s, "tokenizer.ggml.add_space_prefix")->v.u, 1);
    const moeq_gguf_value *sc = get(&s, "tokenizer.ggml.scores");
    assert_int_equal(sc->elem, MOEQ_GGUF_FLOAT32);
    // a piece made by merge r scores -r (the first merges: "e" "\u2581", then "t" "h"); single characters
    // -1000
    const float *f = sc->arr;
    int e_ = -1, th = -1, t = -1;
    for (uint64_t i = 0; i < sc->n; i++) {
        if (!strcmp(tok(&s, i), "e\xe2\x96\x81")) e_ = (int)i;
        if (!strcmp(tok(&s, i), "th")) th = (int)i;
        if (!strcmp(tok(&s, i), "t")) t = (int)i;
    }
    assert_true(e_ > 258 && th > 258 && t > 258);
    assert_true(f[e_] == 0.0f);
    assert_true(f[th] == -1.0f);
    assert_true(f[t] == -1000.0f);
    moeq_gguf_kvs_free(&s);

    snprintf(path, sizeof path, "%s/dsv3-bpe/tokenizer.json", FIX_DIR);
    assert_int_equal(moeq_gguf_tokenizer_from_json(path, 0, &s), MOEQ_OK);
    assert_int_equal(get(&s, "tokenizer.ggml.bos_token_id")->v.u, 0);
    assert_int_equal(get(&s, "tokenizer.ggml.add_bos_token")->v.u, 1);
    moeq_gguf_kvs_free(&s);
}

// ---- --tokenizer-from ----

static void test_from_gguf(void **state) {
    (void)state;
    char *p = small_bpe("src", NULL);
    moeq_gguf_kvs src = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&src, "general.architecture", "qwen2moe"), MOEQ_OK);
    assert_int_equal(moeq_gguf_tokenizer_from_json(p, 10, &src), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_u32(&src, "qwen2moe.block_count", 2), MOEQ_OK);
    char gpath[4096];
    snprintf(gpath, sizeof gpath, "%s/src.gguf", g_dir);
    moeq_gguf_writer *w = NULL;
    assert_int_equal(moeq_gguf_writer_open(gpath, &src, 0, NULL, &w), MOEQ_OK);
    assert_int_equal(moeq_gguf_writer_close(&w), MOEQ_OK);

    moeq_gguf_kvs dst = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&dst, "general.architecture", "qwen2moe"), MOEQ_OK);
    assert_int_equal(moeq_gguf_tokenizer_from_gguf(gpath, 10, &dst), MOEQ_OK);
    // every tokenizer.* key, nothing else, equal values
    int n_tok = 0;
    for (int i = 0; i < src.n; i++) {
        if (strncmp(src.kv[i].key, "tokenizer.", 10) != 0) continue;
        n_tok++;
        const moeq_gguf_kv *d = moeq_gguf_kvs_find(&dst, src.kv[i].key);
        assert_non_null(d);
        assert_int_equal(d->val.type, src.kv[i].val.type);
        if (d->val.type == MOEQ_GGUF_ARRAY) assert_int_equal(d->val.n, src.kv[i].val.n);
    }
    assert_int_equal(dst.n, 1 + n_tok);
    assert_null(moeq_gguf_kvs_find(&dst, "qwen2moe.block_count"));
    assert_string_equal(tok(&dst, 5), "<|endoftext|>");
    assert_int_equal(toktype(&dst, 9), 5);
    moeq_gguf_kvs_free(&dst);

    assert_status(moeq_gguf_tokenizer_from_gguf(gpath, 12, &dst), MOEQ_ERR_MISMATCH, "has 10 tokens");
    assert_status(moeq_gguf_tokenizer_from_gguf(gpath, 12, &dst), MOEQ_ERR_MISMATCH, "vocab_size 12");
    moeq_gguf_kvs_free(&dst);

    // a GGUF without a tokenizer
    moeq_gguf_kvs none = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&none, "general.architecture", "llama"), MOEQ_OK);
    snprintf(gpath, sizeof gpath, "%s/none.gguf", g_dir);
    assert_int_equal(moeq_gguf_writer_open(gpath, &none, 0, NULL, &w), MOEQ_OK);
    assert_int_equal(moeq_gguf_writer_close(&w), MOEQ_OK);
    assert_status(moeq_gguf_tokenizer_from_gguf(gpath, 0, &dst), MOEQ_ERR_NOT_FOUND,
                  "none.gguf: no tokenizer");
    moeq_gguf_kvs_free(&dst);
    moeq_gguf_kvs_free(&none);
    moeq_gguf_kvs_free(&src);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_char_vocab), cmocka_unit_test(test_char_multibyte),
        cmocka_unit_test(test_small_bpe),  cmocka_unit_test(test_refused),
        cmocka_unit_test(test_fixtures),   cmocka_unit_test(test_from_gguf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
