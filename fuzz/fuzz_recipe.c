// fuzz_recipe.c: libFuzzer harness for recipes (io/ydoc.c: YAML via libyaml; schedulers/recipe.c: the
// binding): any text is parsed or refused with a line-numbered error, never a crash.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    moeq_recipe *r = NULL;
    if (moeq_recipe_parse("fuzz.yaml", text, &r) == MOEQ_OK) moeq_recipe_free(&r);
    free(text);
    return 0;
}
