// calib_set.h: the calibration inputs of `moeq quantize --calib FILE` (GPTQ's Hessians come from the
// model's forward pass over them, workers/calib_pass.h): n sequences of T token ids each, read from
//   - a flat little-endian uint32 token-id file (what a user makes with the model's tokenizer in two lines
//     of Python: `np.array(tok(text).input_ids, dtype="<u4").tofile("calib.ids")`), or
//   - a UTF-8 text encoded with the model directory's character tokenizer (the test models),
// cut into consecutive non-overlapping windows of T tokens from the start (sequence i = tokens
// [i·T, (i+1)·T)); each window is an independent sequence, positions 0..T-1, as in the perplexity protocol.
// The set's identity (xxh3 of the ids used, n and T) joins the plan digest: --resume with another set is
// refused and the artifact records it.
#ifndef MOEQ_CALIB_SET_H
#define MOEQ_CALIB_SET_H

#include <stdint.h>

#include "moeq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moeq_calib_format {
    MOEQ_CALIB_AUTO = 0, // ".txt" (or ".text") suffix: text; anything else: ids
    MOEQ_CALIB_IDS = 1,
    MOEQ_CALIB_TEXT = 2,
} moeq_calib_format;

typedef struct moeq_calib_set {
    char *path;               // as given
    moeq_calib_format format; // IDS or TEXT (resolved)
    int n_seqs;               // n
    int64_t seq_len;          // T
    int32_t *ids;             // (n, T)
    int64_t n_file_tokens;    // tokens in the file (>= n·T; the rest is not used)
    uint64_t xxh3;            // of (n, T, the n·T ids as little-endian uint32): never 0
} moeq_calib_set;

// "auto" | "ids" | "text" -> format; -1 for anything else.
int moeq_calib_format_from_name(const char *s);

// Reads n_seqs windows of seq_len tokens from path. vocab: ids must be < vocab (MOEQ_ERR_FORMAT naming the
// file, the offset and the id). model_dir: where the text format's tokenizer.json is. A file with fewer
// than n_seqs·seq_len tokens is MOEQ_ERR_ARG saying how many sequences it holds (--calib-seqs); a file
// of ids whose size is not a multiple of 4 is MOEQ_ERR_FORMAT. Returns a new set; free with
// moeq_calib_set_free.
moeq_status moeq_calib_set_load(const char *path, moeq_calib_format format, int n_seqs, int64_t seq_len,
                                int vocab, const char *model_dir, moeq_calib_set **out);
void moeq_calib_set_free(moeq_calib_set **s);

// The plan digest of a run calibrated on a set of hash calib_xxh3 (0: not calibrated: digest unchanged).
uint64_t moeq_plan_digest_calib(uint64_t digest, uint64_t calib_xxh3);

#ifdef __cplusplus
}
#endif
#endif
