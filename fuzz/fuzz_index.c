// fuzz_index.c: libFuzzer harness for model.safetensors.index.json through the real catalog (io/catalog.c):
// the input is written as the index of a checkpoint directory holding the tiny Mixtral's config.json and
// no shards (metadata-only), then moeq_catalog_open must accept it with consistent tensors or refuse it.
// Path safety is part of it: shard names with '/' or ".." must be refused.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moeq_io.h"

static char g_dir[64];

static const char k_config[] =
    "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", \"hidden_size\": 128,"
    " \"intermediate_size\": 384, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"num_local_experts\": 4, \"num_experts_per_tok\": 2, \"vocab_size\": 65, \"rms_norm_eps\": 1e-5,"
    " \"rope_theta\": 10000.0, \"torch_dtype\": \"bfloat16\", \"tie_word_embeddings\": false}";

static int setup(void) {
    if (g_dir[0]) return 0;
    snprintf(g_dir, sizeof g_dir, "/tmp/moeq-fuzz-index-%d", (int)getpid());
    char p[128];
    snprintf(p, sizeof p, "mkdir -p %s", g_dir);
    if (system(p) != 0) return -1;
    snprintf(p, sizeof p, "%s/config.json", g_dir);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(k_config, f);
    fclose(f);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (setup() != 0) return 0;
    char p[128];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", g_dir);
    FILE *f = fopen(p, "w");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    moeq_catalog *c = NULL;
    if (moeq_catalog_open(g_dir, &c) == MOEQ_OK) {
        for (int i = 0; i < c->n_tensors; i++)
            if (!c->t[i].name || c->t[i].numel < 0) __builtin_trap();
        moeq_catalog_close(&c);
    }
    return 0;
}
