// test_recipe.c: recipe parsing (every error case names the line), rule precedence, built-in class rules.
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_sched.h"
#include "ydoc.h" // defines: moeq_ydoc_parse_n (the YAML syntax tree under every recipe)

static moeq_tensor_info tensor(const char *name, int64_t r, int64_t c) {
    moeq_tensor_info t;
    memset(&t, 0, sizeof t);
    t.name = (char *)name;
    t.c = moeq_tensor_classify(name);
    t.dtype = MOEQ_DTYPE_BF16;
    t.ndim = c ? 2 : 1;
    t.shape[0] = r;
    t.shape[1] = c;
    t.numel = r * (c ? c : 1);
    t.scale = -1;
    return t;
}

static void test_defaults_and_precedence(void **state) {
    (void)state;
    const char *y = "version: 1\n"
                    "defaults: {method: hqq, bits: 3, group: 64}\n"
                    "rules:\n"
                    "  - match: {class: attention}\n"
                    "    set: {bits: 4, method: milo, rank: 64}\n"
                    "  - match: {class: routed_expert, proj: down}\n"
                    "    set: {method: milo, rank: 8, compensator: int3}\n"
                    "  - match: {class: routed_expert, layers: \"2-3\"}\n"
                    "    set: {bits: 4}\n"
                    "  - match: {name: \"*.experts.7.*\"}\n"
                    "    set: {bits: 8, hqq: {iters: 5}}\n"
                    "  - match: {class: lm_head}\n"
                    "    set: {method: rtn, bits: 8, group: 128}\n";
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("r.yaml", y, &r), MOEQ_OK, NULL);
    assert_int_equal(r->n_rules, 5);
    assert_int_equal(r->rules[0].line, 4);
    int rule;
    moeq_tensor_info t = tensor("model.layers.0.self_attn.q_proj.weight", 128, 128);
    moeq_qsettings q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_MILO);
    assert_int_equal(q.bits, 4);
    assert_int_equal(q.rank, 64);
    assert_int_equal(rule, 0);
    t = tensor("model.layers.1.block_sparse_moe.experts.2.w2.weight", 128, 384);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_MILO);
    assert_int_equal(q.bits, 3);
    assert_int_equal(q.rank, 8);
    assert_int_equal(q.compensator, MOEQ_FACTOR_INT3);
    t = tensor("model.layers.3.block_sparse_moe.experts.7.w1.weight", 384, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_HQQ);
    assert_int_equal(q.bits, 8); // the later name rule wins over the layer rule
    assert_int_equal(q.hqq_iters, 5);
    assert_int_equal(q.rank, 0);  // rank only for milo
    assert_int_equal(rule, 3);
    // default-off classes: router stays as it came; lm_head turned on by naming its class
    t = tensor("model.layers.0.block_sparse_moe.gate.weight", 8, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_NONE);
    t = tensor("lm_head.weight", 65, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_RTN);
    assert_int_equal(q.group, 128);
    // 1-D tensors are never quantized
    t = tensor("model.norm.weight", 128, 0);
    q = moeq_recipe_resolve(r, &t, NULL);
    assert_int_equal(q.method, MOEQ_METHOD_NONE);
    // a group that does not divide the input dimension falls back to the largest from 8 up that does (any
    // hidden size), and says what it asked for; settings that were not fitted are an error naming the tensor
    t = tensor("model.layers.0.self_attn.o_proj.weight", 128, 96);
    int asked = -1;
    q = moeq_recipe_resolve_ex(r, &t, NULL, &asked);
    assert_int_equal(q.group, 48), assert_int_equal(asked, 64);
    assert_status(moeq_qsettings_check(&q, &t), MOEQ_OK, NULL);
    q.group = 64;
    assert_status(moeq_qsettings_check(&q, &t), MOEQ_ERR_UNSUPPORTED,
                  "o_proj.weight' [128, 96]: group 64 does not divide the input dimension 96\n---> HINT: "
                  "group 48 does");
    t = tensor("model.layers.0.block_sparse_moe.experts.1.w2.weight", 100, 160);
    q = moeq_recipe_resolve_ex(r, &t, NULL, &asked);
    assert_int_equal(q.group, 40), assert_int_equal(asked, 64);
    t = tensor("model.layers.0.block_sparse_moe.experts.1.w1.weight", 160, 128); // divides: unchanged
    q = moeq_recipe_resolve_ex(r, &t, NULL, &asked);
    assert_int_equal(q.group, 64), assert_int_equal(asked, 0);
    // nothing from 8 to the group divides: unchanged, and check names the tensor
    t = tensor("model.layers.0.block_sparse_moe.experts.1.w1.weight", 160, 100);
    q.group = 8;
    assert_int_equal(moeq_qsettings_fit_group(&q, &t), -1), assert_int_equal(q.group, 8);
    assert_status(moeq_qsettings_check(&q, &t), MOEQ_ERR_UNSUPPORTED,
                  "w1.weight' [160, 100]: group 8 does not divide the input dimension 100, nor does any "
                  "group from 8 to 8");
    // stored as it came: no group to fit
    t = tensor("model.layers.0.block_sparse_moe.gate.weight", 8, 100);
    q = moeq_recipe_resolve_ex(r, &t, NULL, &asked);
    assert_int_equal(q.method, MOEQ_METHOD_NONE), assert_int_equal(asked, 0);
    moeq_recipe_free(&r);
    // a rule naming a default-off class (router) that sets only bits quantizes it with the defaults' method;
    // one that sets the method keeps it; a rule that does not name the class leaves it, and does not decide
    // it
    assert_status(
        moeq_recipe_parse(
            "rt.yaml",
            "version: 1\ndefaults: {method: rtn}\nrules:\n  - match: {layers: \"0\"}\n    set: {bits: 3}\n"
            "  - match: {class: router, layers: \"1\"}\n    set: {bits: 8}\n"
            "  - match: {class: router, layers: \"2\"}\n    set: {method: none}\n"
            "  - match: {class: router, layers: \"2\"}\n    set: {bits: 8}\n",
            &r),
        MOEQ_OK, NULL);
    t = tensor("model.layers.0.block_sparse_moe.gate.weight", 8, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_NONE), assert_int_equal(rule, -1);
    t = tensor("model.layers.1.block_sparse_moe.gate.weight", 8, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_RTN), assert_int_equal(q.bits, 8), assert_int_equal(rule, 1);
    t = tensor("model.layers.2.block_sparse_moe.gate.weight", 8, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.method, MOEQ_METHOD_NONE), assert_int_equal(rule, 3);
    moeq_recipe_free(&r);
    assert_null(r);
    // format: names a storage format and fixes the bits; the digest bytes change only when one is named
    assert_status(moeq_recipe_parse("f.yaml",
                                    "version: 1\ndefaults: {bits: 4}\nrules:\n  - match: {class: attention}\n"
                                    "    set: {format: q3}\n",
                                    &r),
                  MOEQ_OK, NULL);
    t = tensor("model.layers.0.self_attn.q_proj.weight", 128, 128);
    q = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(q.format, MOEQ_QTYPE_Q3), assert_int_equal(q.bits, 3), assert_int_equal(rule, 0);
    assert_int_equal(moeq_qsettings_qtype(&q), MOEQ_QTYPE_Q3);
    t = tensor("model.layers.0.block_sparse_moe.experts.0.w1.weight", 384, 128);
    moeq_qsettings e = moeq_recipe_resolve(r, &t, &rule);
    assert_int_equal(e.format, MOEQ_QTYPE_INVALID), assert_int_equal(moeq_qsettings_qtype(&e), MOEQ_QTYPE_Q4);
    moeq_recipe_free(&r);
}

static void test_errors_have_lines(void **state) {
    (void)state;
    struct {
        const char *yaml, *needle;
    } cases[] = {
        {"version: 1\nrules:\n  - match: {class: experts}\n    set: {bits: 3}\n", "e.yaml:3: unknown tensor class \"experts\""},
        {"version: 1\nrules:\n  - match: {class: attention}\n    set: {bits: 4}\nrules: []\n", "e.yaml:5: duplicate key \"rules\""},
        {"version: 1\ndefaults:\n  bitz: 3\n", "e.yaml:3: unknown setting \"bitz\""},
        {"version: 1\ndefaults: {bits: 5}\n", "e.yaml:2: bits must be 2, 3, 4 or 8"},
        {"version: 1\ndefaults: {bits: three}\n", "e.yaml:2: \"bits\" must be an integer"},
        {"version: 1\ndefaults: {method: awq}\n", "e.yaml:2: method \"awq\" is not one of"},
        {"version: 1\nrules:\n  - match: {class: attention}\n", "e.yaml:3: rule without \"set\""},
        {"version: 1\nrules:\n  - match: {layer: 3}\n    set: {bits: 4}\n", "e.yaml:3: unknown match key \"layer\""},
        {"version: 1\nrules:\n  - match: {layers: \"5-2\"}\n    set: {bits: 4}\n", "e.yaml:3: \"layers\" must be N or"},
        {"version: 1\nrules:\n  - match: {proj: gate_up}\n    set: {bits: 4}\n", "e.yaml:3: unknown projection"},
        {"version: 1\ndefaults: {compensator: int4}\n", "compensator \"int4\""},
        {"version: 1\ndefaults: {hqq: {beta: -1}}\n", "\"hqq.beta\" must be a positive number"},
        {"version: 1\ndefaults: {hqq: {gamma: 1}}\n", "unknown key \"gamma\" in \"hqq\""},
        {"version: 2\n", "e.yaml:1: \"version\" must be an integer in [1, 1]"},
        {"defaults: {bits: 4}\n", "missing \"version: 1\""},
        {"version: 1\nfoo: 1\n", "e.yaml:2: unknown top-level key \"foo\""},
        {"version: 1\nrules: {a: 1}\n", "\"rules\" must be a list"},
        {"version: 1\n  bad: [indent\n", "e.yaml:"},
        {"- 1\n- 2\n", "a recipe is a mapping"},
        {"", "empty recipe"},
        // keys of the registry's fields (kernels/method.h): format names, dotted keys only inside their section
        {"version: 1\ndefaults: {format: q5}\n", "e.yaml:2: format \"q5\" is not one of q2, q3, q4, q8"},
        {"version: 1\ndefaults: {hqq.iters: 5}\n", "e.yaml:2: unknown setting \"hqq.iters\""},
        {"version: 1\ndefaults: {hqq: 5}\n", "e.yaml:2: \"hqq\" must be a mapping"},
        {"version: 1\ndefaults: {hqq: {early_stop: maybe}}\n", "\"hqq.early_stop\" must be true or false"},
        {"version: 1\ndefaults: {seed: -1}\n", "\"seed\" must be an integer in [0, 2147483647]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moeq_recipe *r = NULL;
        moeq_status st = moeq_recipe_parse("e.yaml", cases[i].yaml, &r);
        if (st != MOEQ_ERR_FORMAT || !strstr(moeq_error_detail(), cases[i].needle)) {
            fprintf(stderr, "case %zu: status %s, detail '%s', wanted '%s'\n", i, moeq_status_str(st), moeq_error_detail(),
                    cases[i].needle);
            fail();
        }
        assert_null(r);
    }
    // the syntax tree is built recursively: nesting beyond 64 levels is refused, naming the line
    char deep[512] = "version: 1\ndefaults: ";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    for (int i = 0; i < 100; i++) strcat(deep, "]");
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("deep.yaml", deep, &r), MOEQ_ERR_FORMAT, "deep.yaml:2: nesting deeper than 64");
    assert_null(r);
}

// The YAML syntax tree refuses, while it reads, what would otherwise be silently dropped or take libyaml
// quadratic time: duplicate keys at any level, a second document, a NUL byte, nesting beyond 64 levels
// (block and flow, and through an alias), undefined aliases, aliases that expand without bound.
static void test_yaml_refusals(void **state) {
    (void)state;
    struct {
        const char *yaml, *needle;
    } cases[] = {
        {"version: 1\ndefaults: {bits: 3, bits: 4}\n", "e.yaml:2: duplicate key \"bits\" (first at line 2)"},
        {"version: 1\ndefaults:\n  bits: 3\n  group: 32\n  bits: 4\n",
         "e.yaml:5: duplicate key \"bits\" (first at line 3)"},
        {"version: 1\nrules:\n  - match: {class: attention, class: router}\n    set: {bits: 4}\n",
         "e.yaml:3: duplicate key \"class\""},
        {"version: 1\nrules:\n  - match: {class: attention}\n    set: {bits: 4}\n    set: {bits: 8}\n",
         "e.yaml:5: duplicate key \"set\" (first at line 4)"},
        {"version: 1\ndefaults: {hqq: {iters: 5, beta: 2, iters: 6}}\n", "e.yaml:2: duplicate key \"iters\""},
        {"version: 1\nrules:\n  - match: {class: attention}\n    set: {bits: 4}\nrules: []\n",
         "e.yaml:5: duplicate key \"rules\" (first at line 2)"},
        {"version: 1\n---\ndefaults: {bits: 2}\n", "e.yaml:2: a second YAML document"},
        {"version: 1\n...\n---\nversion: 1\n", "e.yaml:3: a second YAML document"},
        {"---\nversion: 1\n---\n", "e.yaml:3: a second YAML document"},
        {"version: 1\ndefaults: *q\n", "e.yaml:2: alias *q before any anchor &q"},
        {"version: 1\nx: &a [*a]\n", "e.yaml:2: alias *a before any anchor &a"},
        {"version: 1\nx:\n  - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - "
         "- - - - - - - - - - - - - - - - - - - - - - - - 1\n",
         "e.yaml:3: nesting deeper than 64 levels"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moeq_recipe *r = NULL;
        moeq_status st = moeq_recipe_parse("e.yaml", cases[i].yaml, &r);
        if (st != MOEQ_ERR_FORMAT || !strstr(moeq_error_detail(), cases[i].needle)) {
            fprintf(stderr, "case %zu: status %s, detail '%s', wanted '%s'\n", i, moeq_status_str(st),
                    moeq_error_detail(), cases[i].needle);
            fail();
        }
        assert_null(r);
    }
    // the same key in two mappings, and an explicit document start and end, are fine
    moeq_recipe *r = NULL;
    assert_status(
        moeq_recipe_parse("ok.yaml",
                          "---\nversion: 1\ndefaults: {bits: 3}\nrules:\n  - match: {class: attention}\n"
                          "    set: {bits: 4}\n  - match: {class: router}\n    set: {bits: 8}\n...\n",
                          &r),
        MOEQ_OK, NULL);
    assert_int_equal(r->n_rules, 2);
    moeq_recipe_free(&r);
    // aliases share their anchor's node: allowed, and resolved
    assert_status(
        moeq_recipe_parse(
            "a.yaml",
            "version: 1\ndefaults: &d {bits: 3}\nrules:\n  - match: {class: attention}\n    set: *d\n", &r),
        MOEQ_OK, NULL);
    assert_int_equal(r->rules[0].set.bits, 3);
    moeq_recipe_free(&r);

    // a NUL byte: the text after it would be ignored (a file is read with its length)
    static const char nul[] = "version: 1\ndefaults: {bits: 3}\n\0rules: [oops]\n";
    moeq_ydoc *d = NULL;
    assert_status(moeq_ydoc_parse_n("n.yaml", nul, sizeof nul - 1, &d), MOEQ_ERR_FORMAT,
                  "n.yaml:3: a NUL byte at offset 31");
    assert_null(d);
    assert_status(moeq_ydoc_parse_n("n.yaml", nul, 31, &d), MOEQ_OK, NULL);
    moeq_ydoc_free(&d);

    // depth: 64 levels below the root are the cap, in flow and in block style; one more is refused
    char *deep = malloc(400000);
    assert_non_null(deep);
    for (int levels = 64; levels <= 65; levels++) {
        strcpy(deep, "x: ");
        for (int i = 1; i < levels; i++) strcat(deep, "[");
        strcat(deep, "1");
        for (int i = 1; i < levels; i++) strcat(deep, "]");
        assert_status(moeq_ydoc_parse("f.yaml", deep, &d), levels == 64 ? MOEQ_OK : MOEQ_ERR_FORMAT,
                      levels == 64 ? NULL : "f.yaml:1: nesting deeper than 64 levels");
        moeq_ydoc_free(&d);
        deep[0] = '\0';
        for (int i = 0; i < levels; i++) sprintf(deep + strlen(deep), "%*sk:\n", i, "");
        sprintf(deep + strlen(deep), "%*s1\n", levels, "");
        assert_status(moeq_ydoc_parse("b.yaml", deep, &d), levels == 64 ? MOEQ_OK : MOEQ_ERR_FORMAT,
                      levels == 64 ? NULL : "b.yaml:65: nesting deeper than 64 levels");
        moeq_ydoc_free(&d);
    }
    // an alias carries its anchor's depth: 40 + 40 levels
    strcpy(deep, "a: &d ");
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    for (int i = 0; i < 40; i++) strcat(deep, "]");
    strcat(deep, "\nb: ");
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    strcat(deep, "*d");
    for (int i = 0; i < 40; i++) strcat(deep, "]");
    strcat(deep, "\n");
    assert_status(moeq_ydoc_parse("al.yaml", deep, &d), MOEQ_ERR_FORMAT,
                  "al.yaml:2: nesting deeper than 64 levels");
    // 100k levels: refused at level 65, before libyaml's quadratic work (seconds to minutes before)
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = '\0';
    assert_status(moeq_ydoc_parse("h.yaml", deep, &d), MOEQ_ERR_FORMAT,
                  "h.yaml:1: nesting deeper than 64 levels");
    // a billion laughs: each level 10 aliases of the one before; the expanded tree is capped
    strcpy(deep, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 9; i++)
        sprintf(deep + strlen(deep),
                "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i - 1,
                i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    assert_status(moeq_ydoc_parse("lol.yaml", deep, &d), MOEQ_ERR_FORMAT,
                  "aliases expand to more than 1048576 nodes");
    free(deep);
}

// The policy section and relative layer ranges: every error names the file and line.
static void test_policy_syntax_errors(void **state) {
    (void)state;
    const char *P = "version: 1\npolicies:\n";
    struct {
        const char *body, *needle;
    } cases[] = {
        {"  - top: 2\n", "e.yaml:3: policy without \"kind\""},
        {"  - kind: gptq\n", "e.yaml:3: unknown policy kind \"gptq\""},
        {"  - kind: outlier\n    set: {bits: 4}\n", "e.yaml:3: policy outlier needs \"top\""},
        {"  - kind: outlier\n    top: 2\n", "e.yaml:3: policy outlier needs \"set\""},
        {"  - kind: outlier\n    top: 0\n    set: {bits: 4}\n", "e.yaml:4: \"top\" must be a count N >= 1"},
        {"  - kind: outlier\n    top: 150%\n    set: {bits: 4}\n", "e.yaml:4: \"top\" must be"},
        {"  - kind: outlier\n    top: 2.5\n    set: {bits: 4}\n", "e.yaml:4: \"top\" must be"},
        {"  - kind: outlier\n    top: 5%x\n    set: {bits: 4}\n", "e.yaml:4: \"top\" must be"},
        {"  - kind: outlier\n    top: 2\n    set: {bits: 5}\n", "e.yaml:5: bits must be 2, 3, 4 or 8"},
        {"  - kind: outlier\n    top: 2\n    set: {bits: 4}\n    counts: x.json\n", "e.yaml:6: policy outlier has no key \"counts\""},
        {"  - kind: outlier\n    top: 2\n    set: {bits: 4}\n    match: {layers: \"first:0\"}\n", "e.yaml:6: \"layers\": \"first:0\" needs K >= 1"},
        {"  - kind: frequency\n    top: 1\n    set: {bits: 4}\n", "e.yaml:3: policy frequency needs \"counts\""},
        {"  - kind: frequency\n    top: 1\n    set: {bits: 4}\n    counts: c.json\n    per_layer: maybe\n", "e.yaml:7: \"per_layer\" must be true or false"},
        {"  - kind: frequency_rank\n    counts: c.json\n", "e.yaml:3: policy frequency_rank needs \"rank\""},
        {"  - kind: kurtosis_rank\n    k: 40\n", "e.yaml:4: \"k\" must be an integer in [0, 20]"},
        {"  - kind: block\n    top: 1\n    set: {bits: 4}\n    probe: {bits: 5}\n", "e.yaml:6: probe.bits must be 2, 3, 4 or 8"},
        {"  - kind: block\n    top: 1\n    set: {bits: 4}\n    probe: {width: 5}\n", "e.yaml:6: unknown key \"width\" in \"probe\""},
        {"  - kind: budget\n    candidates: [{bits: 2}, {bits: 4}]\n", "e.yaml:3: policy budget needs \"bits\""},
        {"  - kind: budget\n    bits: 3\n", "e.yaml:3: policy budget needs \"candidates\""},
        {"  - kind: budget\n    bits: 3\n    candidates: [{bits: 2}]\n", "e.yaml:5: \"candidates\" needs 2 to 12 settings"},
        {"  - kind: budget\n    bits: 3\n    candidates: [{bits: 2}, {}]\n", "e.yaml:5: an empty candidate"},
        {"  - kind: budget\n    bits: 3\n    candidates: [{bits: 2}, {bitz: 4}]\n", "e.yaml:5: unknown setting \"bitz\""},
        {"  - kind: budget\n    bits: 0.5\n    candidates: [{bits: 2}, {bits: 4}]\n", "e.yaml:4: \"bits\" must be a number in [1, 64]"},
        {"  - kind: budget\n    bits: 3\n    by: layer\n    candidates: [{bits: 2}, {bits: 4}]\n", "e.yaml:5: \"by\" must be tensor or unit"},
        {"  - kind: budget\n    bits: 3\n    candidates: [{bits: 2}, {bits: 4}]\n  - kind: outlier\n    top: 1\n    set: {bits: 4}\n",
         "e.yaml:3: the budget policy must be the last policy"},
        {"  kind: outlier\n", "e.yaml:3: \"policies\" must be a list"},
        {"  - 3\n", "e.yaml:3: a policy must be a mapping"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, "%s%s", P, cases[i].body);
        moeq_recipe *r = NULL;
        moeq_status st = moeq_recipe_parse("e.yaml", yaml, &r);
        if (st != MOEQ_ERR_FORMAT || !strstr(moeq_error_detail(), cases[i].needle)) {
            fprintf(stderr, "case %zu: status %s, detail '%s', wanted '%s'\n", i, moeq_status_str(st), moeq_error_detail(),
                    cases[i].needle);
            fail();
        }
        assert_null(r);
    }
    // "layers": bad relative forms
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("e.yaml", "version: 1\nrules:\n  - match: {layers: \"last:x\"}\n    set: {bits: 4}\n", &r),
                  MOEQ_ERR_FORMAT, "e.yaml:3: \"layers\": \"last:x\" needs K >= 1");
}

// first:K / last:K bind to the MoE blocks of a model (dense first layers and MTP layers excluded); unbound
// relative ranges match nothing; K beyond the model is an error with the line.
static void test_relative_layers(void **state) {
    (void)state;
    moeq_model_config cfg;
    const char *ds = "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\", \"hidden_size\": 256,"
                     " \"num_hidden_layers\": 6, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"vocab_size\": 100,"
                     " \"intermediate_size\": 512, \"moe_intermediate_size\": 128, \"n_routed_experts\": 8,"
                     " \"n_shared_experts\": 1, \"num_experts_per_tok\": 2, \"first_k_dense_replace\": 2,"
                     " \"num_nextn_predict_layers\": 1, \"q_lora_rank\": 64, \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16,"
                     " \"qk_rope_head_dim\": 8, \"v_head_dim\": 16, \"moe_layer_freq\": 1}";
    assert_status(moeq_config_parse("config.json", ds, &cfg), MOEQ_OK, NULL);
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("b.yaml", "version: 1\nrules:\n"
                                              "  - match: {layers: \"first:2\"}\n    set: {bits: 4}\n"
                                              "  - match: {layers: \"last:1\"}\n    set: {bits: 8}\n"
                                              "policies:\n  - kind: outlier\n    top: 1\n    set: {bits: 3}\n"
                                              "    match: {class: routed_expert, layers: \"last:2\"}\n", &r),
                  MOEQ_OK, NULL);
    moeq_tensor_info t = tensor("model.layers.2.mlp.experts.0.down_proj.weight", 256, 128);
    assert_false(moeq_rule_matches(&r->rules[0], &t)); // unbound: nothing
    assert_status(moeq_recipe_bind(r, &cfg), MOEQ_OK, NULL);
    // MoE blocks: layers 2..5 (0, 1 dense; 6 is MTP)
    assert_int_equal(r->rules[0].layer_lo, 2), assert_int_equal(r->rules[0].layer_hi, 3);
    assert_int_equal(r->rules[1].layer_lo, 5), assert_int_equal(r->rules[1].layer_hi, 5);
    assert_int_equal(r->policies[0].match.layer_lo, 4), assert_int_equal(r->policies[0].match.layer_hi, 5);
    assert_true(moeq_rule_matches(&r->rules[0], &t));
    moeq_tensor_info t6 = tensor("model.layers.6.mlp.experts.0.down_proj.weight", 256, 128);
    assert_false(moeq_rule_matches(&r->rules[1], &t6));
    moeq_recipe_free(&r);
    assert_status(moeq_recipe_parse("b.yaml", "version: 1\nrules:\n  - match: {layers: \"last:5\"}\n    set: {bits: 4}\n", &r),
                  MOEQ_OK, NULL);
    assert_status(moeq_recipe_bind(r, &cfg), MOEQ_ERR_FORMAT,
                  "b.yaml:3: layers \"last:5\" but the model has 4 MoE blocks");
    moeq_recipe_free(&r);
}

static void test_shipped_recipes_parse(void **state) {
    (void)state;
    const char *files[] = {"mixtral-tiny-rtn3.yaml", "mixtral-tiny-hqq3.yaml", "mixtral-tiny-milo3.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/configs/%s", MOEQ_SOURCE_DIR, files[i]);
        moeq_recipe *r = NULL;
        assert_status(moeq_recipe_load(path, &r), MOEQ_OK, NULL);
        moeq_recipe_free(&r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_precedence), cmocka_unit_test(test_errors_have_lines),
        cmocka_unit_test(test_yaml_refusals),           cmocka_unit_test(test_policy_syntax_errors),
        cmocka_unit_test(test_relative_layers),         cmocka_unit_test(test_shipped_recipes_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
