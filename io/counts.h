// counts.h: per-expert routing counts from a user file, for the recipe policies that pick or rank experts by
// how often the router sends tokens to them (schedulers/policy.c).
//   JSON: {"counts": [[c_0, c_1, ...], ...]} with one list per decoder layer (empty or null for dense
//   layers);
//         `moeq eval --json` writes them as .routing_counts;
//   CSV:  lines "layer,expert,count" (a header line allowed, "#" comments; repeated pairs add up).
#ifndef MOEQ_COUNTS_H
#define MOEQ_COUNTS_H

#include "moeq_kernels.h" // defines: moeq_status

typedef struct moeq_routing_counts {
    int n_layers, n_experts;
    double *c;    // (n_layers, n_experts), 0 where absent
    int *present; // (n_layers) 1 when the file gives the layer
} moeq_routing_counts;

// Reads `path` (JSON when its first non-blank byte is '{', else CSV). MOEQ_ERR_FORMAT naming file and line
// for anything that is not counts >= 0. Returns new counts (moeq_routing_counts_free).
moeq_status moeq_routing_counts_load(const char *path, moeq_routing_counts **out);
void moeq_routing_counts_free(moeq_routing_counts **c);

#endif
