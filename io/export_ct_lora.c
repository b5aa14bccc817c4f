// export_ct_lora.c: the MiLo compensators of an artifact as a PEFT LoRA adapter beside a compressed-tensors
// export (OUT_DIR/adapter/: adapter_config.json, adapter_model.safetensors; docs/EXPORT.md
// "compressed-tensors: the adapter"), so that base + adapter computes moeq eval's W_eff = deq(Q) + U·V:
// lora_A = V, lora_B = U, lora_alpha = r per module (PEFT's scale alpha / r = 1).
//
// Two kinds of modules. A compensated Linear that is its own module (attention, shared experts, dense MLPs):
// `base_model.model.<module>.lora_A.weight` (r, C) and `.lora_B.weight` (R, r), listed in target_modules.
// Routed experts: Transformers 5 fuses a layer's experts into 3-D parameters `<experts>.gate_up_proj`
// (E, 2I, H; gate rows first) and `<experts>.down_proj` (E, H, I), and PEFT adapts them through
// target_parameters (ParamWrapper, PEFT >= 0.17): per parameter lora_A (r·E, in) with row e·r + t = row t
// of expert e's A, lora_B (out, r·E) with column t·E + e = column t of expert e's B, one rank r for all
// experts of the parameter; the two wrappers of one module are nested, gate_up_proj inside, so its tensors
// are `<experts>.base_layer.lora_*` and down_proj's `<experts>.lora_*`. An expert's gate and up share the
// fused A: A_e = [V_gate; V_up], B_e = [[U_gate, 0], [0, U_up]] (rank r_gate + r_up), exact; ranks below
// the parameter's r are padded with zero rows and columns, and a MoE layer with any compensated expert gets
// both parameters (zeros where none), so that every layer reads the same nesting. The checkpoint's Mixtral
// name `block_sparse_moe` is Transformers' `mlp`.
//
// Values: F32, the exact dequantized factors (fp16 and int3 alike). Letters: R rows, C cols, r rank, E
// experts.
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"             // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "export_gguf_lora.h"  // defines: moeq_lora_reader, moeq_lora_read_factor
#include "export_impl.h"       // defines: moeq_export_dump_json
#include "safetensors_write.h" // defines: moeq_st_writer_*
#include "sysio.h"             // defines: moeq_path_join, moeq_fsync_dir

#define HINT "\n---> HINT: "

// One adapter module: a dense Linear (ti >= 0), or a fused expert parameter (layer, down or gate_up).
typedef struct amod {
    char module[512]; // Transformers' module (dense) or parameter (experts) name
    int ti;           // dense: the artifact tensor; -1: experts
    int layer, down;  // experts: layer, 1 = down_proj, 0 = gate_up_proj
    int r;            // rank written
    int64_t in, out, E;
} amod;

typedef struct alist {
    amod *m;
    int n, cap;
} alist;

static amod *alist_add(alist *l) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 32;
        amod *m = MOEQ_CALLOC((size_t)cap, sizeof *m, "adapter modules");
        if (!m) return NULL;
        if (l->n) memcpy(m, l->m, sizeof *m * (size_t)l->n);
        moeq_free(&l->m);
        l->m = m, l->cap = cap;
    }
    return memset(&l->m[l->n++], 0, sizeof *l->m);
}

// Transformers' fused experts module of routed expert weight `name` ("....experts.<e>.<proj>.weight").
static int experts_module(const char *name, char *out, size_t cap) {
    const char *p = strstr(name, ".experts.");
    if (!p) return -1;
    const char *moe = strstr(name, ".block_sparse_moe.");
    if (moe && moe < p)
        snprintf(out, cap, "%.*s.mlp%.*s", (int)(moe - name), name, (int)(p + 8 - (moe + 17)), moe + 17);
    else
        snprintf(out, cap, "%.*s", (int)(p + 8 - name), name);
    return 0;
}

// The tensor of layer L, expert e, projection p, or -1.
static int find_expert(const moeq_artifact_toc *toc, int L, int e, moeq_proj p) {
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_tensor_class *c = &toc->t[i].c;
        if (c->cls == MOEQ_TC_ROUTED_EXPERT && c->layer == L && c->expert == e && c->proj == p) return i;
    }
    return -1;
}

static int rank_of(const moeq_artifact_toc *toc, int ti) {
    return ti >= 0 && toc->t[ti].method != MOEQ_METHOD_NONE ? toc->t[ti].rank : 0;
}

static moeq_status list_modules(const moeq_artifact_toc *toc, alist *l) {
    int max_layer = -1;
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        if (t->c.cls == MOEQ_TC_ROUTED_EXPERT && t->c.layer > max_layer) max_layer = t->c.layer;
        if (t->method == MOEQ_METHOD_NONE || t->rank <= 0 || t->c.cls == MOEQ_TC_ROUTED_EXPERT) continue;
        if (t->c.cls == MOEQ_TC_EMBEDDING || t->ndim != 2)
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: tensor '%s' carries a compensator, but PEFT's LoRA of an embedding takes its "
                "factors in another layout, which moeq does not write" HINT
                "quantize it without a compensator (rank: 0)",
                toc->path, t->name);
        amod *m = alist_add(l);
        if (!m) return MOEQ_ERR_NOMEM;
        size_t n = strlen(t->name);
        if (n >= 7 && !strcmp(t->name + n - 7, ".weight")) n -= 7;
        snprintf(m->module, sizeof m->module, "%.*s", (int)n, t->name);
        m->ti = i, m->r = t->rank, m->in = t->shape[1], m->out = t->shape[0], m->E = 1;
    }
    for (int L = 0; L <= max_layer; L++) {
        int E = 0, rmax[2] = {0, 0}, any = 0, g0 = -1, d0 = -1;
        for (int e = 0;; e++, E++) {
            const int g = find_expert(toc, L, e, MOEQ_PROJ_GATE), u = find_expert(toc, L, e, MOEQ_PROJ_UP),
                      d = find_expert(toc, L, e, MOEQ_PROJ_DOWN);
            if (g < 0 && u < 0 && d < 0) break;
            if (g < 0 || u < 0 || d < 0)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: layer %d expert %d lacks a projection", toc->path, L,
                                 e);
            if (e == 0) g0 = g, d0 = d;
            const int rg = rank_of(toc, g) + rank_of(toc, u), rd = rank_of(toc, d);
            if (rg > rmax[0]) rmax[0] = rg;
            if (rd > rmax[1]) rmax[1] = rd;
            any |= rg + rd > 0;
        }
        if (!any) continue;
        for (int down = 0; down < 2; down++) {
            amod *m = alist_add(l);
            if (!m) return MOEQ_ERR_NOMEM;
            const moeq_artifact_tensor *t = &toc->t[down ? d0 : g0];
            char ex[480];
            if (experts_module(t->name, ex, sizeof ex))
                return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: tensor '%s': no '.experts.' in its name",
                                 toc->path, t->name);
            snprintf(m->module, sizeof m->module, "%s.%s", ex, down ? "down_proj" : "gate_up_proj");
            m->ti = -1, m->layer = L, m->down = down, m->E = E;
            m->r = rmax[down] ? rmax[down] : 1; // a parameter without compensators: rank 1, zeros
            m->in = t->shape[1], m->out = down ? t->shape[0] : 2 * t->shape[0];
        }
    }
    return MOEQ_OK;
}

// ---- values ----

// Expert e's factors of one projection into the fused A (r·E, in) and B (out, r·E) at rank offset t0 and
// row offset o0 of B; returns its rank.
static moeq_status put_expert(moeq_lora_reader *rd, int ti, const amod *m, int e, int t0, int64_t o0,
                              float *A, float *B, float *tmp, int *rank) {
    const int r = rank_of(rd->toc, ti);
    *rank = r;
    if (r <= 0) return MOEQ_OK;
    const moeq_artifact_tensor *t = &rd->toc->t[ti];
    const int64_t Rt = t->shape[0], Ct = t->shape[1];
    MOEQ_TRY(moeq_lora_read_factor(rd, ti, 1, tmp, (int64_t)r * Ct)); // V (r, C)
    for (int k = 0; k < r; k++)
        memcpy(A + ((int64_t)e * m->r + t0 + k) * m->in, tmp + (int64_t)k * Ct, sizeof *A * (size_t)Ct);
    MOEQ_TRY(moeq_lora_read_factor(rd, ti, 0, tmp, Rt * r)); // U (R, r)
    const int64_t rE = (int64_t)m->r * m->E;
    for (int64_t i = 0; i < Rt; i++)
        for (int k = 0; k < r; k++) B[(o0 + i) * rE + (int64_t)(t0 + k) * m->E + e] = tmp[i * r + k];
    return MOEQ_OK;
}

// Fills A (r·E, in) and B (out, r·E) of module m.
static moeq_status fill(moeq_lora_reader *rd, const amod *m, float *A, float *B, float *tmp) {
    memset(A, 0, sizeof *A * (size_t)(m->r * m->E * m->in));
    memset(B, 0, sizeof *B * (size_t)(m->out * m->r * m->E));
    if (m->ti >= 0) { // dense: A = V, B = U (E = 1)
        MOEQ_TRY(moeq_lora_read_factor(rd, m->ti, 1, A, (int64_t)m->r * m->in));
        return moeq_lora_read_factor(rd, m->ti, 0, B, m->out * m->r);
    }
    for (int e = 0; e < m->E; e++) {
        int rg = 0, ru = 0;
        if (m->down) {
            MOEQ_TRY(put_expert(rd, find_expert(rd->toc, m->layer, e, MOEQ_PROJ_DOWN), m, e, 0, 0, A, B, tmp,
                                &rg));
            continue;
        }
        MOEQ_TRY(
            put_expert(rd, find_expert(rd->toc, m->layer, e, MOEQ_PROJ_GATE), m, e, 0, 0, A, B, tmp, &rg));
        MOEQ_TRY(put_expert(rd, find_expert(rd->toc, m->layer, e, MOEQ_PROJ_UP), m, e, rg, m->out / 2, A, B,
                            tmp, &ru));
    }
    return MOEQ_OK;
}

// ---- files ----

static void tensor_name(const amod *m, int b, char *out, size_t cap) {
    if (m->ti >= 0) {
        snprintf(out, cap, "base_model.model.%s.lora_%c.weight", m->module, b ? 'B' : 'A');
        return;
    }
    const size_t n = strlen(m->module) - strlen(m->down ? ".down_proj" : ".gate_up_proj");
    snprintf(out, cap, "base_model.model.%.*s.%slora_%c.weight", (int)n, m->module,
             m->down ? "" : "base_layer.", b ? 'B' : 'A');
}

static moeq_status write_config(const alist *l, const char *dir, const char *base, uint64_t *bytes,
                                int *rmax) {
    json_t *tm = json_array(), *tp = json_array(), *rp = json_object(), *ap = json_object();
    int bad = !tm || !tp || !rp || !ap;
    *rmax = 1;
    for (int k = 0; k < l->n && !bad; k++) {
        const amod *m = &l->m[k];
        if (m->r > *rmax) *rmax = m->r;
        bad |= json_array_append_new(m->ti >= 0 ? tm : tp, json_string(m->module)) != 0;
        bad |= json_object_set_new(rp, m->module, json_integer(m->r)) != 0;
        bad |= json_object_set_new(ap, m->module, json_integer(m->r)) != 0;
    }
    json_t *cfg =
        bad ? NULL
            : json_pack("{s:s,s:s,s:i,s:i,s:o,s:o,s:o,s:o,s:f,s:s,s:b,s:b,s:b,s:b,s:s,s:n}", "peft_type",
                        "LORA", "base_model_name_or_path", base, "r", *rmax, "lora_alpha", *rmax,
                        "target_modules", tm, "target_parameters", tp, "rank_pattern", rp, "alpha_pattern",
                        ap, "lora_dropout", 0.0, "bias", "none", "fan_in_fan_out", 0, "use_rslora", 0,
                        "use_dora", 0, "inference_mode", 1, "task_type", "CAUSAL_LM", "modules_to_save");
    if (!cfg && bad) json_decref(tm), json_decref(tp), json_decref(rp), json_decref(ap);
    return moeq_export_dump_json(cfg, JSON_INDENT(2) | JSON_SORT_KEYS, dir, "adapter_config.json", bytes);
}

moeq_status moeq_export_ct_adapter(const moeq_artifact_toc *toc, const char *staging, const char *out_dir,
                                   moeq_export_stats *s) {
    alist l = {0};
    moeq_status st = list_modules(toc, &l);
    if (st != MOEQ_OK || l.n == 0) {
        moeq_free(&l.m);
        return st;
    }
    char *dir = moeq_path_join(staging, MOEQ_EXPORT_ADAPTER_DIR), *path = NULL;
    if (!dir) st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK && mkdir(dir, 0755) != 0 && errno != EEXIST)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    char base[PATH_MAX];
    if (!realpath(out_dir, base)) snprintf(base, sizeof base, "%s", out_dir);
    if (st == MOEQ_OK) st = write_config(&l, dir, base, &s->adapter_bytes, &s->adapter_rank_max);
    moeq_st_entry *e = st == MOEQ_OK ? MOEQ_CALLOC((size_t)(2 * l.n), sizeof *e, "adapter tensors") : NULL;
    char(*names)[640] = st == MOEQ_OK ? MOEQ_CALLOC((size_t)(2 * l.n), sizeof *names, "adapter names") : NULL;
    if (st == MOEQ_OK && (!e || !names)) st = MOEQ_ERR_NOMEM;
    int64_t big = 0, bigA = 0, bigB = 0;
    for (int k = 0; k < l.n && st == MOEQ_OK; k++) {
        const amod *m = &l.m[k];
        for (int b = 0; b < 2; b++) {
            tensor_name(m, b, names[2 * k + b], sizeof names[0]);
            e[2 * k + b] = (moeq_st_entry){.name = names[2 * k + b], .dtype = MOEQ_DTYPE_F32, .ndim = 2};
            e[2 * k + b].shape[0] = b ? m->out : m->r * m->E;
            e[2 * k + b].shape[1] = b ? m->r * m->E : m->in;
        }
        if (m->r * m->E * m->in > bigA) bigA = m->r * m->E * m->in;
        if (m->out * m->r * m->E > bigB) bigB = m->out * m->r * m->E;
        if (m->in * m->r > big) big = m->in * m->r;
        if (m->out * m->r > big) big = m->out * m->r;
    }
    moeq_st_writer *w = NULL;
    if (st == MOEQ_OK && !(path = moeq_path_join(dir, "adapter_model.safetensors"))) st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_st_writer_begin(path, e, 2 * l.n, NULL, &w);
    float *A = NULL, *B = NULL, *tmp = NULL;
    if (st == MOEQ_OK) {
        A = MOEQ_MALLOC(sizeof *A * (size_t)bigA, "adapter A");
        B = MOEQ_MALLOC(sizeof *B * (size_t)bigB, "adapter B");
        tmp = MOEQ_MALLOC(sizeof *tmp * (size_t)big, "adapter factor");
        if (!A || !B || !tmp) st = MOEQ_ERR_NOMEM;
    }
    moeq_lora_reader rd = {.toc = toc, .fd = -1};
    for (int k = 0; k < l.n && st == MOEQ_OK; k++) {
        const amod *m = &l.m[k];
        st = fill(&rd, m, A, B, tmp);
        if (st == MOEQ_OK)
            st = moeq_st_writer_write(w, 2 * k, 0, A, sizeof *A * (uint64_t)(m->r * m->E * m->in));
        if (st == MOEQ_OK)
            st = moeq_st_writer_write(w, 2 * k + 1, 0, B, sizeof *B * (uint64_t)(m->out * m->r * m->E));
    }
    if (st == MOEQ_OK) s->adapter_bytes += moeq_st_writer_file_size(w);
    if (st == MOEQ_OK)
        st = moeq_st_writer_finish(&w);
    else
        moeq_st_writer_abort(&w);
    if (st == MOEQ_OK) st = moeq_fsync_dir(dir);
    if (st == MOEQ_OK) s->n_adapter = l.n;
    moeq_lora_reader_free(&rd);
    moeq_free(&A);
    moeq_free(&B);
    moeq_free(&tmp);
    moeq_free(&e);
    moeq_free(&names);
    moeq_free(&path);
    moeq_free(&dir);
    moeq_free(&l.m);
    return st;
}
