// eval_calib.h: the calibration section of `moeq eval`'s report (eval_calib.c). Pipeline-internal.
#ifndef MOEQ_EVAL_CALIB_H
#define MOEQ_EVAL_CALIB_H

#include <jansson.h>
#include <stdio.h>

#include "eval_state.h" // defines: ev_state

// For an artifact made with --calib (nothing otherwise): the lines of the table (when table is non-NULL,
// on stdout) and the report's "calibration" object (when root is non-NULL; docs/EVAL.md). Rank 0.
moeq_status moeq_eval_calib_report(const ev_state *s, FILE *table, json_t *root);

#endif
