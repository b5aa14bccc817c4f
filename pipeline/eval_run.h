// eval_run.h: the distributed evaluation pass behind `moeq eval` (collective over MPI_COMM_WORLD).
//
// Phases: open (every rank: artifact root attributes, model catalog, the plan rebuilt from the artifact's
// stored recipe, whose digest must be the artifact's) -> records (rank 0: dataset offsets and recorded
// checksums, broadcast) -> weights (work queue over the quantization units: each rank rereads only its
// units' bytes, verifies every dataset's xxh3, measures deq(Q) + U·V against the source) -> models (every
// rank: the original and the dequantized model, Mixtral/Qwen2-MoE only) -> block probes (MoE layers
// split across ranks) -> perplexity (windows split across ranks, per-window sums added in window order on
// rank 0) -> report (rank 0: table, JSON, PNG; thresholds). Every number is independent of the rank count.
#ifndef MOEQ_EVAL_RUN_H
#define MOEQ_EVAL_RUN_H

#include <stdint.h>

typedef struct moeq_eval_opts {
    const char *model_dir;
    const char *artifact;
    const char *text_path;    // NULL: the model's val.txt (the text reference.json's protocol names), if present
    const char *json_path;    // NULL: no JSON
    const char *plot_path;    // NULL: no PNG
    const char *dump_logits_path; // NULL: none; else the quantized model's logits, float32 (tokens, vocab)
    int act_quant_ggml;       // --act-quant ggml: the quantized model's linear layers round their input as
                              // llama.cpp's CPU backend does for the GGUF export's tensor types
    double max_rel_error;     // < 0: no threshold; else exit 6 when a quantized tensor's rel. Frobenius error exceeds it
    double max_ppl_increase;  // < 0: no threshold; else exit 6 when ppl(quantized)/ppl(original) - 1 exceeds it
    int64_t probe_tokens;     // Gaussian probe tokens per MoE layer
    uint64_t seed;            // probe seed
    double progress_s;        // 0 = no progress lines
    int quiet;
    int stream;               // --stream: perplexity layer by layer over the ranks (eval_stream.h), no probes
} moeq_eval_opts;

// Returns the process exit code (the same on every rank).
int moeq_eval_run(const moeq_eval_opts *o);

#endif
