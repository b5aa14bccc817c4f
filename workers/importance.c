// importance.c: an importance matrix bound to a plan (importance.h): per quantized tensor, its llama.cpp
// name and expert slot (io/gguf_names.h), the entry of that name, the sizes checked as llama-quantize
// checks them (entry values = columns x matrices of the GGUF tensor), the vector = the slot's row.
#include "importance.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "gguf_names.h" // defines: moeq_gguf_tensor_name

void moeq_importance_free(moeq_importance **pb) {
    moeq_importance *b = pb ? *pb : NULL;
    if (!b) return;
    moeq_free(&b->vec);
    moeq_free(&b->state);
    moeq_free(pb);
}

uint64_t moeq_plan_digest_imatrix(uint64_t digest, uint64_t imatrix_xxh3) {
    if (!imatrix_xxh3) return digest;
    const uint64_t v[3] = {digest, imatrix_xxh3, 0x494d415452495821ull}; // "IMATRIX!"
    return XXH3_64bits(v, sizeof v);
}

moeq_status moeq_importance_bind(const moeq_imatrix *m, const moeq_catalog *c, const moeq_plan *p,
                                 moeq_importance **out) {
    *out = NULL;
    moeq_importance *b = MOEQ_CALLOC(1, sizeof *b, "importance binding");
    if (!b) return MOEQ_ERR_NOMEM;
    b->m = m;
    b->n_tensors = p->n_tensors;
    b->vec = MOEQ_CALLOC((size_t)(p->n_tensors ? p->n_tensors : 1), sizeof *b->vec, "importance vectors");
    b->state = MOEQ_CALLOC((size_t)(p->n_tensors ? p->n_tensors : 1), 1, "importance states");
    unsigned char *used = MOEQ_CALLOC((size_t)(m->n ? m->n : 1), 1, "importance entries");
    moeq_status st = b->vec && b->state && used ? MOEQ_OK : MOEQ_ERR_NOMEM;
    char gname[256];
    for (int i = 0; i < p->n_tensors && st == MOEQ_OK; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        if (pt->q.method == MOEQ_METHOD_NONE) continue;
        if (!moeq_method_uses_importance(&pt->q)) {
            b->state[i] = MOEQ_IMP_IGNORED, b->n_ignored++;
            continue;
        }
        const char *name = c->t[pt->cat].name;
        int slot = -1;
        const moeq_status ns = moeq_gguf_tensor_name(&c->cfg, name, gname, sizeof gname, &slot);
        const moeq_imatrix_entry *e = ns == MOEQ_OK ? moeq_imatrix_find(m, gname) : NULL;
        if (ns != MOEQ_OK && ns != MOEQ_ERR_UNSUPPORTED && ns != MOEQ_ERR_NOT_FOUND) {
            st = ns;
            break;
        }
        if (!e) {
            b->state[i] = MOEQ_IMP_MISSING, b->n_missing++;
            continue;
        }
        // llama-quantize: the entry's values must be the GGUF tensor's columns x matrices (ne[0] x ne[2])
        const int64_t want_mat = slot >= 0 ? c->cfg.n_experts : 1;
        const int64_t n_vals = e->n_cols * e->n_mat;
        const int ok = m->legacy ? n_vals == pt->C * want_mat : e->n_cols == pt->C && e->n_mat == want_mat;
        if (!ok) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: entry '%s' has %lld x %lld values (matrices x columns%s); tensor '%s' (%s) "
                           "needs %lld x %lld (%s x its %lld input columns)\n---> HINT: the importance "
                           "matrix was computed for another model; compute one for this model (moeq "
                           "calibrate, or llama-imatrix on its GGUF)",
                           m->path, e->name, (long long)(m->legacy ? 1 : e->n_mat),
                           (long long)(m->legacy ? n_vals : e->n_cols), m->legacy ? ", legacy .dat" : "",
                           name, gname, (long long)want_mat, (long long)pt->C,
                           slot >= 0 ? "experts" : "one matrix", (long long)pt->C);
            break;
        }
        used[e - m->e] = 1;
        b->vec[i] = e->importance + (slot >= 0 ? slot : 0) * pt->C;
        b->state[i] = MOEQ_IMP_BOUND, b->n_bound++;
    }
    for (int k = 0; k < m->n && st == MOEQ_OK; k++) b->n_unused += !used[k];
    moeq_free(&used);
    if (st != MOEQ_OK) {
        moeq_importance_free(&b);
        return st;
    }
    *out = b;
    return MOEQ_OK;
}

// Up to max names (0: all) of the plan's tensors in state `want`, comma-separated.
static void print_names(FILE *f, const moeq_importance *b, const moeq_catalog *c, const moeq_plan *p,
                        int want, int n, int max) {
    int k = 0;
    for (int i = 0; i < p->n_tensors && (max <= 0 || k < max); i++)
        if (b->state[i] == want) fprintf(f, "%s%s", k++ ? ", " : "", c->t[p->t[i].cat].name);
    if (max > 0 && n > max) fprintf(f, ", ... (%d more)", n - max);
    fputc('\n', f);
}

void moeq_importance_print(FILE *f, const moeq_importance *b, const moeq_catalog *c, const moeq_plan *p,
                           int max_names) {
    const moeq_imatrix *m = b->m;
    fprintf(f, "imatrix         %s (%s, %d entries, %u chunks of %u tokens%s%s, xxh3 %016llx)\n", m->path,
            m->legacy ? "legacy .dat" : "GGUF", m->n, m->chunk_count, m->chunk_size,
            m->n_datasets ? ", dataset " : "", m->n_datasets ? m->datasets[0] : "",
            (unsigned long long)m->xxh3);
    fprintf(f,
            "                %d quantized tensors get an importance vector, %d have none, %d ignore it; "
            "%d entries unused\n",
            b->n_bound, b->n_missing, b->n_ignored, b->n_unused);
    if (b->n_missing) {
        fprintf(f,
                "WARNING: no importance for %d tensor%s (quantized without; llama-quantize: \"did not find "
                "weights\"): ",
                b->n_missing, b->n_missing == 1 ? "" : "s");
        print_names(f, b, c, p, MOEQ_IMP_MISSING, b->n_missing, max_names);
    }
    if (b->n_ignored) {
        // the methods that ignore it, each with the format of its first such tensor
        char seen[64] = {0};
        fprintf(f,
                "note: %d tensor%s ignore the importance matrix (only rtn and search on llama.cpp's block "
                "types read it; here ",
                b->n_ignored, b->n_ignored == 1 ? "" : "s");
        int k = 0;
        for (int i = 0; i < p->n_tensors; i++) {
            const int meth = (int)p->t[i].q.method;
            if (b->state[i] != MOEQ_IMP_IGNORED || meth < 0 || meth >= 64 || seen[meth]) continue;
            seen[meth] = 1;
            fprintf(f, "%s%s on %s", k++ ? ", " : "", moeq_method_name(p->t[i].q.method),
                    moeq_qtype_name(moeq_qsettings_qtype(&p->t[i].q)));
        }
        fprintf(f, "): ");
        print_names(f, b, c, p, MOEQ_IMP_IGNORED, b->n_ignored, max_names);
    }
}
