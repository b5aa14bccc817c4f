// eval_stream.h: `moeq eval --stream`, the perplexity pass layer by layer over the ranks (eval_stream.c).
// Pipeline-internal.
#ifndef MOEQ_EVAL_STREAM_H
#define MOEQ_EVAL_STREAM_H

#include "eval_state.h" // defines: ev_state
#include "moeq_worker.h"

// Collective. The windows' sums of −log p of the original (wo) and quantized (wq) model, (n_windows) each,
// the entries of this rank's windows filled (the others untouched: the caller zeroes and reduces them).
moeq_status moeq_eval_stream_perplexity(ev_state *s, moeq_artifact_source *art, const int32_t *ids,
                                        double *wo, double *wq);

#endif
