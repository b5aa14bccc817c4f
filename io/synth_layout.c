// synth_layout.c: what `moeq synth` will write, decided before the first byte (see moeq_synth_layout in
// synth.h): config.json text (from the options through synth_config.c, or a preset's file verbatim), the
// tensors the parsed config implies (arch.c order), the shard of every tensor and the exact size of every
// shard file (headers built by the safetensors writer, nothing created).
// Three ways to cut shards, all in tensor order so that a layer's tensors stay together:
//   options      a new shard when the next tensor would pass --shard-size (save_pretrained's rule);
//   deepseek-r1  follow the published shard sizes: tensor i goes to the first shard whose cumulative
//                target (the published cumulative size) reaches the middle of the tensor's span, so every
//                boundary lies within half a tensor of its target and the last shard takes the rest;
//   kimi-k2      the same rule with 61 equal targets (balanced shards).
// Not here: the config.json keys (synth_config.c), the preset table (synth_preset.c), writing (synth.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"             // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "safetensors_write.h" // defines: moeq_st_entry, moeq_st_writer_size
#include "synth_impl.h"        // defines: moeq_synth_preset_def, moeq_synth_shard_file_name, HINT

static int is_scale(const moeq_expected_tensor *t) {
    const size_t n = strlen(t->name), m = strlen("_scale_inv");
    return n >= m && !strcmp(t->name + n - m, "_scale_inv");
}

static uint64_t numel_of(const moeq_expected_tensor *t) {
    return (uint64_t)t->shape[0] * (uint64_t)(t->ndim >= 2 ? t->shape[1] : 1);
}

static uint64_t bytes_of(const moeq_expected_tensor *t) {
    return numel_of(t) * moeq_dtype_size(t->dtype);
}

typedef struct {
    moeq_synth_layout *l;
    int cap;
    moeq_status st;
} collect_ctx;

static int collect(const moeq_expected_tensor *t, void *user) {
    collect_ctx *x = user;
    moeq_synth_layout *l = x->l;
    if (l->n_tensors == x->cap) {
        const int cap = x->cap ? 2 * x->cap : 1024;
        moeq_expected_tensor *nt = realloc(l->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            x->st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "synth: out of memory for the tensor list (%d tensors)",
                              l->n_tensors);
            return 1;
        }
        l->t = nt;
        x->cap = cap;
    }
    l->t[l->n_tensors++] = *t;
    return 0;
}

// ---- config ----

static moeq_status layout_config(const moeq_synth_opts *o, moeq_synth_layout *l) {
    if (o->preset == MOEQ_SYNTH_PRESET_NONE) {
        MOEQ_TRY(moeq_synth_config(o, &l->cfg));
        return moeq_synth_config_json(&l->cfg, &l->config_json);
    }
    const moeq_synth_preset_def *d = moeq_synth_preset_get(o->preset);
    if (!d)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: preset %d is not known" HINT "--preset takes %s",
                         (int)o->preset, moeq_synth_preset_list());
    const struct {
        const char *opt;
        int v;
    } geo[] = {{"--layers", o->n_layers},
               {"--hidden", o->hidden},
               {"--intermediate", o->intermediate},
               {"--experts", o->n_experts},
               {"--shared-experts", o->n_shared_experts},
               {"--dense-layers", o->n_dense_layers},
               {"--dense-intermediate", o->dense_intermediate},
               {"--top-k", o->top_k},
               {"--heads", o->n_heads},
               {"--kv-heads", o->n_kv_heads},
               {"--head-dim", o->head_dim},
               {"--vocab", o->vocab},
               {"--mtp-layers", o->n_mtp_layers}};
    for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++)
        if (geo[i].v != MOEQ_SYNTH_DEFAULT)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --preset %s fixes the whole geometry, and %s %d conflicts with it" HINT
                             "drop %s, or drop --preset and give the geometry yourself",
                             d->name, geo[i].opt, geo[i].v, geo[i].opt);
    l->config_json = MOEQ_STRDUP((const char *)d->config_json);
    if (!l->config_json) return MOEQ_ERR_NOMEM;
    char what[96];
    snprintf(what, sizeof what, "config.json (preset %s)", d->name);
    return moeq_config_parse(what, l->config_json, &l->cfg);
}

// ---- shards ----

// The header bytes tensor t adds to its shard, estimated: "NAME":{"dtype":"DT","shape":[R,C],
// "data_offsets":[B,E]}, with offsets of ~10 digits. Exact sizes come from the writer afterwards.
static uint64_t header_estimate(const moeq_expected_tensor *t) {
    char shape[48];
    if (t->ndim >= 2)
        snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->shape[0], (long long)t->shape[1]);
    else
        snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
    return strlen(t->name) + strlen(moeq_dtype_name(t->dtype)) + strlen(shape) + 21 + 45;
}

// Save_pretrained's rule: a new shard when the next tensor would pass max_bytes.
static int cut_by_max(moeq_synth_layout *l, uint64_t max_bytes) {
    uint64_t in_shard = 0;
    int n = l->n_tensors > 0 ? 1 : 0;
    for (int i = 0; i < l->n_tensors; i++) {
        const uint64_t b = bytes_of(&l->t[i]);
        if (in_shard > 0 && in_shard + b > max_bytes) {
            n++;
            in_shard = 0;
        }
        in_shard += b;
        l->shard_of[i] = n - 1;
    }
    return n;
}

// Tensor i goes to the first shard s whose cumulative target end[s] reaches the middle of its span (file
// bytes: data plus estimated header), each shard getting at least one tensor.
static void cut_by_targets(moeq_synth_layout *l, const double *end, int n_shards) {
    const uint64_t fixed = 8 + 48; // length prefix, "__metadata__" and padding
    double pos = (double)fixed;
    int s = 0, in_s = 0;
    for (int i = 0; i < l->n_tensors; i++) {
        const double c = (double)(bytes_of(&l->t[i]) + header_estimate(&l->t[i]));
        while (s < n_shards - 1 && in_s > 0 &&
               (l->n_tensors - i <= n_shards - 1 - s || pos + c / 2 > end[s])) {
            s++;
            in_s = 0;
            pos += (double)fixed;
        }
        l->shard_of[i] = s;
        in_s++;
        pos += c;
    }
}

static moeq_status layout_shards(const moeq_synth_opts *o, moeq_synth_layout *l) {
    l->shard_of =
        MOEQ_MALLOC((size_t)(l->n_tensors > 0 ? l->n_tensors : 1) * sizeof *l->shard_of, "shard map");
    if (!l->shard_of) return MOEQ_ERR_NOMEM;
    const moeq_synth_preset_def *d = moeq_synth_preset_get(l->preset);
    if (!d) {
        if (o->shard_size < 1) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --shard-size must be at least 1 byte");
        l->n_shards = cut_by_max(l, o->shard_size);
        if (l->n_shards > 99999)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: %d shards (more than 99999)" HINT "raise --shard-size",
                             l->n_shards);
        return MOEQ_OK;
    }
    if (l->n_tensors < d->n_shards)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: preset %s: %d tensors cannot fill %d shards", d->name,
                         l->n_tensors, d->n_shards);
    l->n_shards = d->n_shards;
    double *end = MOEQ_MALLOC((size_t)d->n_shards * sizeof *end, "shard targets");
    if (!end) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    if (d->shard_sizes) { // the published cumulative sizes, as they are: where our tensors match the real
                          // ones the shards come out equal, and a difference shows where it lies
        st = moeq_synth_preset_real_sizes(d, &l->real_bytes);
        double cum = 0;
        for (int s = 0; st == MOEQ_OK && s < d->n_shards; s++) end[s] = cum += (double)l->real_bytes[s];
    } else {
        double ours = (double)d->n_shards * 56.0;
        for (int i = 0; i < l->n_tensors; i++)
            ours += (double)(bytes_of(&l->t[i]) + header_estimate(&l->t[i]));
        for (int s = 0; s < d->n_shards; s++) end[s] = ours * (s + 1) / d->n_shards;
    }
    if (st == MOEQ_OK) cut_by_targets(l, end, d->n_shards);
    moeq_free(&end);
    return st;
}

// Exact file size of every shard, from the header the writer will build.
static moeq_status layout_sizes(moeq_synth_layout *l) {
    l->shard_bytes =
        MOEQ_CALLOC((size_t)(l->n_shards > 0 ? l->n_shards : 1), sizeof *l->shard_bytes, "shard sizes");
    moeq_st_entry *ents =
        MOEQ_CALLOC((size_t)(l->n_tensors > 0 ? l->n_tensors : 1), sizeof *ents, "shard entries");
    moeq_status st = l->shard_bytes && ents ? MOEQ_OK : MOEQ_ERR_NOMEM;
    char name[64];
    for (int s = 0, i0 = 0; st == MOEQ_OK && s < l->n_shards; s++) {
        int i1 = i0;
        while (i1 < l->n_tensors && l->shard_of[i1] == s) i1++;
        for (int i = i0; i < i1; i++)
            ents[i - i0] = (moeq_st_entry){.name = l->t[i].name,
                                           .dtype = l->t[i].dtype,
                                           .ndim = l->t[i].ndim,
                                           .shape = {l->t[i].shape[0], l->t[i].shape[1]}};
        moeq_synth_layout_shard_name(l, s, name, sizeof name);
        st = moeq_st_writer_size(name, ents, i1 - i0, l->metadata, NULL, &l->shard_bytes[s]);
        l->file_bytes += l->shard_bytes[s];
        i0 = i1;
    }
    moeq_free(&ents);
    return st;
}

// ---- public ----

void moeq_synth_layout_shard_name(const moeq_synth_layout *l, int s, char *buf, size_t cap) {
    const moeq_synth_preset_def *d = moeq_synth_preset_get(l->preset);
    moeq_synth_shard_file_name(d ? d->naming : MOEQ_SYNTH_NAMES_HF, s, l->n_shards, buf, cap);
}

void moeq_synth_layout_free(moeq_synth_layout **pl) {
    if (!pl || !*pl) return;
    moeq_synth_layout *l = *pl;
    moeq_free(&l->config_json);
    free(l->t);
    moeq_free(&l->shard_of);
    moeq_free(&l->shard_bytes);
    moeq_free(&l->real_bytes);
    moeq_free(pl);
}

moeq_status moeq_synth_layout_build(const moeq_synth_opts *o, moeq_synth_layout **out) {
    *out = NULL;
    if (!o) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: layout: NULL options");
    moeq_synth_layout *l = MOEQ_CALLOC(1, sizeof *l, "synth layout");
    if (!l) return MOEQ_ERR_NOMEM;
    l->preset = o->preset;
    // Presets keep the published header metadata ({"format":"pt"}); option-built checkpoints record the seed.
    snprintf(l->seed_str, sizeof l->seed_str, "%llu", (unsigned long long)o->seed);
    int k = 0;
    l->metadata[k++] = "format";
    l->metadata[k++] = "pt";
    if (o->preset == MOEQ_SYNTH_PRESET_NONE) {
        l->metadata[k++] = "moeq_synth_seed";
        l->metadata[k++] = l->seed_str;
    }
    l->metadata[k] = NULL;
    moeq_status st = layout_config(o, l);
    collect_ctx x = {.l = l, .st = MOEQ_OK};
    if (st == MOEQ_OK) st = moeq_arch_expected_tensors(&l->cfg, collect, &x);
    if (st == MOEQ_OK) st = x.st;
    for (int i = 0; st == MOEQ_OK && i < l->n_tensors; i++) {
        l->total_size += bytes_of(&l->t[i]);
        if (!is_scale(&l->t[i])) l->n_params += (int64_t)numel_of(&l->t[i]);
    }
    if (st == MOEQ_OK) st = layout_shards(o, l);
    if (st == MOEQ_OK) st = layout_sizes(l);
    if (st != MOEQ_OK) {
        moeq_synth_layout_free(&l);
        return st;
    }
    *out = l;
    return MOEQ_OK;
}
