// ydoc.c: YAML text -> moeq_ynode tree (ydoc.h), built from libyaml's event stream (yaml_parser_parse) into
// one arena (nodes, pointer arrays and strings). Events rather than libyaml's document loader, so that the
// limits are enforced while the text is read, before libyaml's work grows with them: libyaml's scanner
// checks every open flow level at every token (quadratic in the nesting: 100k levels took > 30 s through
// the loader), so the depth cap stops the parse at level 65. Also here, because only the builder sees them:
// duplicate mapping keys, a second document, NUL bytes, undefined aliases, and the nodes aliases expand to
// (an alias shares its anchor's node; the tree is a DAG whose expanded size is capped). Not here: what the
// keys mean (schedulers/recipe.c).
#include "ydoc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free

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

// ---- the builder: open containers, their pending children, anchors ----

#define MAX_ANCHORS  1024       // distinct anchors per document
#define ANCHOR_SLOTS 2048       // open addressing, at most half full
#define MAX_EXPANDED (1u << 20) // nodes of the tree with every alias expanded

typedef struct {
    moeq_ynode *n;
    size_t base;        // first of its children in build_ctx.kids
    const char *anchor; // arena copy, NULL when none
} frame;

typedef struct {
    const char *path;
    block *arena;
    frame open[MOEQ_YDOC_MAX_DEPTH + 1]; // open containers: depth 0 .. MOEQ_YDOC_MAX_DEPTH
    int n_open;
    const moeq_ynode **kids; // children of the open containers, innermost last (a map: key, value, ...)
    size_t n_kids, cap_kids;
    struct {
        const char *name;
        const moeq_ynode *node;
    } anchor[ANCHOR_SLOTS];
    int n_anchors;
    const moeq_ynode *root;
} build_ctx;

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The slot of anchor name: where it is, or the empty slot where it goes.
static int anchor_slot(const build_ctx *x, const char *name) {
    int i = (int)(hash_name(name) & (ANCHOR_SLOTS - 1));
    while (x->anchor[i].name && strcmp(x->anchor[i].name, name)) i = (i + 1) & (ANCHOR_SLOTS - 1);
    return i;
}

// Records anchor name for node n (a later anchor of the same name replaces it, as in YAML).
static moeq_status anchor_set(build_ctx *x, const char *name, const moeq_ynode *n) {
    const int i = anchor_slot(x, name);
    if (!x->anchor[i].name) {
        if (x->n_anchors == MAX_ANCHORS)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: more than %d anchors", x->path, n->line, MAX_ANCHORS);
        x->anchor[i].name = name;
        x->n_anchors++;
    }
    x->anchor[i].node = n;
    return MOEQ_OK;
}

static char *arena_str(build_ctx *x, const unsigned char *s, size_t len) {
    char *d = arena_alloc(&x->arena, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static moeq_status push_kid(build_ctx *x, const moeq_ynode *n) {
    if (x->n_kids == x->cap_kids) {
        const size_t cap = x->cap_kids ? 2 * x->cap_kids : 256;
        const moeq_ynode **k = MOEQ_MALLOC(sizeof *k * cap, "YAML tree");
        if (!k) return MOEQ_ERR_NOMEM;
        if (x->n_kids) memcpy(k, x->kids, sizeof *k * x->n_kids);
        moeq_free(&x->kids);
        x->kids = k, x->cap_kids = cap;
    }
    x->kids[x->n_kids++] = n;
    return MOEQ_OK;
}

// A complete node n (a scalar, an alias's node, or a container just closed) becomes a child of the
// innermost open container, or the root. Its depth there plus its own height is checked against the cap
// (an alias can carry a deep node to a deep place), and the expanded size of its parent grows by its own.
static moeq_status attach(build_ctx *x, const moeq_ynode *n, int line) {
    if (x->n_open + n->height > MOEQ_YDOC_MAX_DEPTH)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s:%d: nesting deeper than %d levels\n---> HINT: a recipe nests four levels; is "
                         "this the recipe file?",
                         x->path, line, MOEQ_YDOC_MAX_DEPTH);
    if (!x->n_open) {
        x->root = n;
        return MOEQ_OK;
    }
    moeq_ynode *p = x->open[x->n_open - 1].n;
    if (p->height < n->height + 1) p->height = n->height + 1;
    p->expanded += n->expanded;
    if (p->expanded > MAX_EXPANDED)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s:%d: aliases expand to more than %u nodes\n---> HINT: a recipe needs a few "
                         "hundred; is this the recipe file?",
                         x->path, line, MAX_EXPANDED);
    return push_kid(x, n);
}

static moeq_ynode *new_node(build_ctx *x, moeq_ynode_type type, const yaml_mark_t *m) {
    moeq_ynode *n = arena_alloc(&x->arena, sizeof *n);
    if (n) {
        memset(n, 0, sizeof *n);
        n->type = type;
        n->line = (int)m->line + 1;
        n->expanded = 1;
    }
    return n;
}

static moeq_status open_container(build_ctx *x, moeq_ynode_type type, const yaml_mark_t *m,
                                  const unsigned char *anchor) {
    // the node's own depth is n_open: capped here, before libyaml reads the levels inside it
    if (x->n_open >= MOEQ_YDOC_MAX_DEPTH + 1)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s:%d: nesting deeper than %d levels\n---> HINT: a recipe nests four levels; is "
                         "this the recipe file?",
                         x->path, (int)m->line + 1, MOEQ_YDOC_MAX_DEPTH);
    moeq_ynode *n = new_node(x, type, m);
    if (!n) return MOEQ_ERR_NOMEM;
    frame *f = &x->open[x->n_open++];
    f->n = n, f->base = x->n_kids, f->anchor = NULL;
    if (anchor && !(f->anchor = arena_str(x, anchor, strlen((const char *)anchor)))) return MOEQ_ERR_NOMEM;
    return MOEQ_OK;
}

typedef struct {
    const char *s;
    size_t i; // position in the mapping
} key_at;

static int cmp_key_at(const void *a, const void *b) {
    const key_at *x = a, *y = b;
    const int c = strcmp(x->s, y->s);
    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

// Mapping keys are unique (YAML 1.2; libyaml's loader kept both and the binder took the last). Scalar keys
// are compared as text; other keys are left to the binder, which refuses them. Sorting keeps a large
// mapping O(n log n); the duplicate reported is the one that comes first in the text.
static moeq_status check_unique_keys(build_ctx *x, const moeq_ynode **kv, size_t n) {
    if (n < 2) return MOEQ_OK;
    key_at *k = MOEQ_MALLOC(sizeof *k * n, "YAML keys");
    if (!k) return MOEQ_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (kv[2 * i]->type == MOEQ_Y_SCALAR) k[m++] = (key_at){kv[2 * i]->s, i};
    qsort(k, m, sizeof *k, cmp_key_at);
    size_t first = 0, second = SIZE_MAX;
    for (size_t i = 1; i < m; i++)
        if (!strcmp(k[i].s, k[i - 1].s) && k[i].i < second) first = k[i - 1].i, second = k[i].i;
    moeq_free(&k);
    if (second == SIZE_MAX) return MOEQ_OK;
    return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                     "%s:%d: duplicate key \"%s\" (first at line %d)\n---> HINT: each key once in a mapping; "
                     "merge the two or delete one",
                     x->path, kv[2 * second]->line, kv[2 * second]->s, kv[2 * first]->line);
}

// Closes the innermost container: its children move from the pending list into the arena.
static moeq_status close_container(build_ctx *x, int line) {
    frame *f = &x->open[x->n_open - 1];
    moeq_ynode *n = f->n;
    const size_t nk = x->n_kids - f->base;
    const moeq_ynode **kids = nk ? x->kids + f->base : NULL; // x->kids is NULL before the first child
    if (n->type == MOEQ_Y_MAP) {
        n->n = (int)(nk / 2);
        MOEQ_TRY(check_unique_keys(x, kids, nk / 2));
        n->key = arena_alloc(&x->arena, sizeof *n->key * (size_t)(n->n ? n->n : 1));
        n->item = arena_alloc(&x->arena, sizeof *n->item * (size_t)(n->n ? n->n : 1));
        if (!n->key || !n->item) return MOEQ_ERR_NOMEM;
        for (int i = 0; i < n->n; i++) n->key[i] = kids[2 * i], n->item[i] = kids[2 * i + 1];
    } else {
        n->n = (int)nk;
        n->item = arena_alloc(&x->arena, sizeof *n->item * (nk ? nk : 1));
        if (!n->item) return MOEQ_ERR_NOMEM;
        if (nk) memcpy(n->item, kids, sizeof *kids * nk);
    }
    x->n_kids = f->base;
    x->n_open--;
    if (f->anchor) MOEQ_TRY(anchor_set(x, f->anchor, n));
    return attach(x, n, line);
}

// One event of the document's body.
static moeq_status on_event(build_ctx *x, const yaml_event_t *e) {
    const int line = (int)e->start_mark.line + 1;
    switch (e->type) {
    case YAML_SCALAR_EVENT: {
        moeq_ynode *n = new_node(x, MOEQ_Y_SCALAR, &e->start_mark);
        if (!n || !(n->s = arena_str(x, e->data.scalar.value, e->data.scalar.length))) return MOEQ_ERR_NOMEM;
        if (e->data.scalar.anchor) {
            const char *a = arena_str(x, e->data.scalar.anchor, strlen((const char *)e->data.scalar.anchor));
            if (!a) return MOEQ_ERR_NOMEM;
            MOEQ_TRY(anchor_set(x, a, n));
        }
        return attach(x, n, line);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)e->data.alias.anchor;
        const int i = anchor_slot(x, name);
        if (!x->anchor[i].name)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: alias *%s before any anchor &%s", x->path, line, name,
                             name);
        return attach(x, x->anchor[i].node, line);
    }
    case YAML_SEQUENCE_START_EVENT:
        return open_container(x, MOEQ_Y_SEQ, &e->start_mark, e->data.sequence_start.anchor);
    case YAML_MAPPING_START_EVENT:
        return open_container(x, MOEQ_Y_MAP, &e->start_mark, e->data.mapping_start.anchor);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return close_container(x, line);
    default:
        return MOEQ_OK; // stream and document events are handled by the caller
    }
}

static moeq_status yaml_error(const build_ctx *x, const yaml_parser_t *p) {
    return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: YAML error: %s %s", x->path, (int)p->problem_mark.line + 1,
                     p->problem ? p->problem : "?", p->context ? p->context : "");
}

// The events of the whole stream: one document (or none), then the end of the stream.
static moeq_status build(build_ctx *x, yaml_parser_t *p) {
    int docs = 0;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(p, &e)) return yaml_error(x, p);
        moeq_status st = MOEQ_OK;
        if (e.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&e);
            return MOEQ_OK;
        }
        if (e.type == YAML_DOCUMENT_START_EVENT && docs++)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s:%d: a second YAML document (after \"---\" or \"...\"): it would be ignored\n"
                           "---> HINT: a recipe is one document; delete the separator or split the file",
                           x->path, (int)e.start_mark.line + 1);
        else
            st = on_event(x, &e);
        yaml_event_delete(&e);
        if (st != MOEQ_OK) return st;
    }
}

moeq_status moeq_ydoc_parse_n(const char *path, const char *text, size_t len, moeq_ydoc **out) {
    *out = NULL;
    moeq_ydoc *d = MOEQ_CALLOC(1, sizeof *d, "YAML document");
    if (!d) return MOEQ_ERR_NOMEM;
    d->path = MOEQ_STRDUP(path ? path : "<yaml>");
    if (!d->path) {
        moeq_ydoc_free(&d);
        return MOEQ_ERR_NOMEM;
    }
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *c = text; c < nul; c++) line += *c == '\n';
        moeq_status st =
            MOEQ_FAIL(MOEQ_ERR_FORMAT,
                      "%s:%d: a NUL byte at offset %zu: the text after it would be ignored\n---> "
                      "HINT: a recipe is UTF-8 text; is this the recipe file?",
                      d->path, line, (size_t)(nul - text));
        moeq_ydoc_free(&d);
        return st;
    }
    build_ctx *x = MOEQ_CALLOC(1, sizeof *x, "YAML builder");
    if (!x) {
        moeq_ydoc_free(&d);
        return MOEQ_ERR_NOMEM;
    }
    x->path = d->path;
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    moeq_status st = build(x, &parser);
    yaml_parser_delete(&parser);
    d->root = x->root;
    d->arena = x->arena;
    moeq_free(&x->kids);
    moeq_free(&x);
    if (st != MOEQ_OK) {
        moeq_ydoc_free(&d);
        return st;
    }
    *out = d;
    return MOEQ_OK;
}

moeq_status moeq_ydoc_parse(const char *path, const char *text, moeq_ydoc **out) {
    return moeq_ydoc_parse_n(path, text, strlen(text), out);
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
