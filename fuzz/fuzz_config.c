// fuzz_config.c: libFuzzer harness for config.json (io/model_config.c): any text is parsed or refused with a
// status, never a crash; an accepted config has a sane geometry.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    moeq_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (moeq_config_parse("fuzz/config.json", text, &cfg) == MOEQ_OK) {
        if (cfg.n_layers <= 0 || cfg.hidden <= 0) __builtin_trap();
    }
    free(text);
    return 0;
}
