// ydoc.h: YAML text -> a syntax tree (scalars, mappings, sequences, each with its line), so that the layers
// that give YAML a meaning (the recipe binder, schedulers/recipe.c) never see libyaml. One document per text;
// an alias shares its anchor's node; tags are ignored. The tree is read-only and lives in one arena freed by
// moeq_ydoc_free.
//
// Refused with MOEQ_ERR_FORMAT "PATH:LINE: ..." (untrusted input), while the text is read: nesting deeper
// than MOEQ_YDOC_MAX_DEPTH levels (recipes nest four; libyaml's time grows with the square of the depth), a
// key twice in one mapping, a second document, a NUL byte, an alias without its anchor, more than 1024
// anchors, aliases that expand to more than 2^20 nodes.
#ifndef MOEQ_YDOC_H
#define MOEQ_YDOC_H

#include <stddef.h>

#include "moeq_kernels.h" // defines: moeq_status, MOEQ_FAIL

#define MOEQ_YDOC_MAX_DEPTH 64

typedef enum moeq_ynode_type { MOEQ_Y_SCALAR = 0, MOEQ_Y_MAP = 1, MOEQ_Y_SEQ = 2 } moeq_ynode_type;

typedef struct moeq_ynode {
    moeq_ynode_type type;
    int line;                       // 1-based line where the node starts
    const char *s;                  // scalar text (NUL-terminated); NULL for mappings and sequences
    int n;                          // mapping: pairs; sequence: items; scalar: 0
    const struct moeq_ynode **key;  // mapping: (n) keys, in document order
    const struct moeq_ynode **item; // mapping: (n) values; sequence: (n) items
    int height;                     // levels below this node (a scalar: 0)
    unsigned expanded;              // nodes of its subtree with every alias expanded (a scalar: 1)
} moeq_ynode;

typedef struct moeq_ydoc {
    char *path;             // for messages
    const moeq_ynode *root; // NULL for an empty document
    void *arena;            // every node and string
} moeq_ydoc;

// Parses the len bytes of text (one document; a NUL byte among them is refused). MOEQ_ERR_FORMAT
// "path:line: YAML error: ..." for malformed YAML, and the refusals above. Returns a new tree; free with
// moeq_ydoc_free.
moeq_status moeq_ydoc_parse_n(const char *path, const char *text, size_t len, moeq_ydoc **out);
// The same for a NUL-terminated text (a stored recipe): moeq_ydoc_parse_n(path, text, strlen(text), out).
moeq_status moeq_ydoc_parse(const char *path, const char *text, moeq_ydoc **out);
void moeq_ydoc_free(moeq_ydoc **d);

// The text of a scalar node, NULL for anything else (or NULL).
static inline const char *moeq_yscalar(const moeq_ynode *n) {
    return n && n->type == MOEQ_Y_SCALAR ? n->s : NULL;
}
static inline int moeq_yline(const moeq_ynode *n) {
    return n ? n->line : 0;
}

// Records MOEQ_ERR_FORMAT "PATH:LINE: message" for node n of document d (with the caller's file:line, as
// MOEQ_FAIL) and returns it: MOEQ_YFAIL(d, n, "unknown key \"%s\"", key).
#define MOEQ_YFAIL(d, n, ...) moeq_yfail_((d), (n), __FILE__, __LINE__, __VA_ARGS__)
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
moeq_status
moeq_yfail_(const moeq_ydoc *d, const moeq_ynode *n, const char *file, int line, const char *fmt, ...);

#endif
