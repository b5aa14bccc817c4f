// fuzz_safetensors.c: libFuzzer harness for the safetensors header parser (io/safetensors.c). The input is
// a whole file: 8-byte little-endian header length, JSON header, data. Everything the reader would accept
// must be self-consistent; everything else must be refused without a crash, leak or UB.
#include <stdint.h>
#include <string.h>

#include "moeq_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t n = 0;
    memcpy(&n, data, 8);
    if (n > size - 8) n = size - 8; // the real reader checks n against the file size first
    moeq_st_file *f = NULL;
    if (moeq_st_parse_header("fuzz.safetensors", (const char *)data + 8, n, (uint64_t)size, &f) == MOEQ_OK) {
        for (int i = 0; i < f->n_tensors; i++) { // accepted: every tensor inside the file, no overlap
            const moeq_st_tensor *t = &f->tensors[i];
            if (t->file_offset + (t->end - t->begin) > (uint64_t)size) __builtin_trap();
            if (moeq_st_find(f, t->name) != t) __builtin_trap();
        }
        moeq_st_close(&f);
    }
    return 0;
}
