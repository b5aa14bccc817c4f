// moeq_worker.h: umbrella header of the workers layer (what one rank does with one unit, and the CPU
// evaluation forward pass). Include this, not the individual headers.
#ifndef MOEQ_WORKER_H
#define MOEQ_WORKER_H

#include "moeq_sched.h"    // defines: moeq_plan, moeq_queue (and, through it, the io and kernels layers)
#include "unit_job.h" // defines: moeq_unit_ctx, moeq_unit_job_run, moeq_quantize_matrix, moeq_quantize_tensor
#include "stage.h"         // defines: moeq_stage (read-ahead of the next tensors' bytes on a reader thread)
#include "forward_model.h" // defines: moeq_model, perplexity, MoE-block probes, char tokenizer
#include "importance.h"    // defines: moeq_importance (an importance matrix bound to a plan)
#include "calibrate.h"     // defines: moeq_calib (importance statistics from the forward pass)
#include "eval_unit.h"     // defines: moeq_eval_unit_run, moeq_eval_decode, moeq_artifact_tensor_fn (artifact-backed weights)

#endif
