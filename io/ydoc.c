// ydoc.c: YAML text -> moeq_ynode tree (ydoc.h) through libyaml's document loader. The tree is copied out of
// libyaml's document into one arena (nodes, pointer arrays and strings), so the loader's document is freed at
// once and callers hold plain C structs. Not here: what the keys mean (schedulers/recipe.c).
#include "ydoc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "alloc.h" // defines: MOEQ_CALLOC, MOEQ_STRDUP, moeq_free

// A bump arena of fixed-size blocks; big requests get a block of their own.
typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} block;

static void *arena_alloc(block **head, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!*head || (*head)->cap - (*head)->used < n) {
        const size_t cap = n > 65536 ? n : 65536;
        block *b = MOEQ_MALLOC(sizeof *b + cap, "YAML tree");
        if (!b) return NULL;
        b->next = *head, b->used = 0, b->cap = cap;
        *head = b;
    }
    void *p = (*head)->data + (*head)->used;
    (*head)->used += n;
    return p;
}

static void arena_free(block *b) {
    while (b) {
        block *next = b->next;
        moeq_free(&b);
        b = next;
    }
}

typedef struct {
    const char *path;
    yaml_document_t *doc;
    block *arena;
} build_ctx;

static moeq_status copy_node(build_ctx *x, yaml_node_t *src, int depth, const moeq_ynode **out) {
    const int line = (int)src->start_mark.line + 1;
    if (depth > MOEQ_YDOC_MAX_DEPTH)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: nesting deeper than %d levels", x->path, line,
                         MOEQ_YDOC_MAX_DEPTH);
    moeq_ynode *n = arena_alloc(&x->arena, sizeof *n);
    if (!n) return MOEQ_ERR_NOMEM;
    memset(n, 0, sizeof *n);
    n->line = line;
    *out = n;
    switch (src->type) {
    case YAML_SCALAR_NODE: {
        n->type = MOEQ_Y_SCALAR;
        char *s = arena_alloc(&x->arena, src->data.scalar.length + 1);
        if (!s) return MOEQ_ERR_NOMEM;
        memcpy(s, src->data.scalar.value, src->data.scalar.length);
        s[src->data.scalar.length] = '\0';
        n->s = s;
        return MOEQ_OK;
    }
    case YAML_MAPPING_NODE: {
        n->type = MOEQ_Y_MAP;
        n->n = (int)(src->data.mapping.pairs.top - src->data.mapping.pairs.start);
        n->key = arena_alloc(&x->arena, sizeof *n->key * (size_t)(n->n ? n->n : 1));
        n->item = arena_alloc(&x->arena, sizeof *n->item * (size_t)(n->n ? n->n : 1));
        if (!n->key || !n->item) return MOEQ_ERR_NOMEM;
        for (int i = 0; i < n->n; i++) {
            yaml_node_pair_t *p = src->data.mapping.pairs.start + i;
            MOEQ_TRY(copy_node(x, yaml_document_get_node(x->doc, p->key), depth + 1, &n->key[i]));
            MOEQ_TRY(copy_node(x, yaml_document_get_node(x->doc, p->value), depth + 1, &n->item[i]));
        }
        return MOEQ_OK;
    }
    case YAML_SEQUENCE_NODE: {
        n->type = MOEQ_Y_SEQ;
        n->n = (int)(src->data.sequence.items.top - src->data.sequence.items.start);
        n->item = arena_alloc(&x->arena, sizeof *n->item * (size_t)(n->n ? n->n : 1));
        if (!n->item) return MOEQ_ERR_NOMEM;
        for (int i = 0; i < n->n; i++)
            MOEQ_TRY(copy_node(x, yaml_document_get_node(x->doc, src->data.sequence.items.start[i]),
                               depth + 1, &n->item[i]));
        return MOEQ_OK;
    }
    default:
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: empty YAML node", x->path, line);
    }
}

moeq_status moeq_ydoc_parse(const char *path, const char *text, moeq_ydoc **out) {
    *out = NULL;
    moeq_ydoc *d = MOEQ_CALLOC(1, sizeof *d, "YAML document");
    if (!d) return MOEQ_ERR_NOMEM;
    d->path = MOEQ_STRDUP(path ? path : "<yaml>");
    if (!d->path) {
        moeq_ydoc_free(&d);
        return MOEQ_ERR_NOMEM;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    moeq_status st = MOEQ_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        st =
            MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: YAML error: %s %s", d->path, (int)parser.problem_mark.line + 1,
                      parser.problem ? parser.problem : "?", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        moeq_ydoc_free(&d);
        return st;
    }
    build_ctx x = {d->path, &doc, NULL};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) st = copy_node(&x, root, 0, &d->root);
    d->arena = x.arena;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st != MOEQ_OK) {
        moeq_ydoc_free(&d);
        return st;
    }
    *out = d;
    return MOEQ_OK;
}

void moeq_ydoc_free(moeq_ydoc **pd) {
    if (!pd || !*pd) return;
    arena_free((*pd)->arena);
    moeq_free(&(*pd)->path);
    moeq_free(pd);
}

moeq_status moeq_yfail_(const moeq_ydoc *d, const moeq_ynode *n, const char *file, int line, const char *fmt,
                        ...) {
    char msg[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return moeq_error_set_(MOEQ_ERR_FORMAT, file, line, "%s:%d: %s", d ? d->path : "<yaml>", moeq_yline(n),
                           msg);
}
