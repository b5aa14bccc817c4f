// moeq_status.h: status codes shared by every layer, and a per-thread error detail.
//
// Kernels never exit or print: every entry point returns a moeq_status. The first failure records a
// detail ("io/safetensors.c:210: shard model-00001.safetensors: tensor X: ...") in thread-local
// storage with MOEQ_FAIL; callers add context with MOEQ_FAIL again or pass it up unchanged.
// Compiles as C11 and under nvcc (the CUDA port shares these codes).
#ifndef MOEQ_STATUS_H
#define MOEQ_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

// Values are stable: they are stored in artifacts (per-unit failure status) and mapped to exit codes.
typedef enum moeq_status {
    MOEQ_OK = 0,
    MOEQ_ERR_ARG = 1,         // bad argument from the caller or the command line
    MOEQ_ERR_NOMEM = 2,       // allocation failed
    MOEQ_ERR_IO = 3,          // open/read/write/fsync failed (errno in the detail)
    MOEQ_ERR_FORMAT = 4,      // malformed input file (safetensors, JSON, YAML, HDF5 artifact)
    MOEQ_ERR_UNSUPPORTED = 5, // valid input that moeq does not handle (architecture, dtype)
    MOEQ_ERR_NUMERIC = 6,     // non-finite values, SVD did not converge
    MOEQ_ERR_NOT_FOUND = 7,   // a named tensor/file/key does not exist
    MOEQ_ERR_MISMATCH = 8,    // inputs disagree (resume with another plan, checksum mismatch)
    MOEQ_ERR_EXISTS = 9,      // refusing to overwrite
    MOEQ_ERR_CUDA = 10,       // CUDA/cuBLAS/cuSOLVER error
    MOEQ_ERR_MPI = 11,        // MPI error
    MOEQ_ERR_HDF5 = 12,       // HDF5 library error
    MOEQ_ERR_INTERRUPTED = 13, // stopped by a signal; progress is durable
    MOEQ_STATUS_COUNT
} moeq_status;

// "ok", "bad argument", ... (never NULL)
const char *moeq_status_str(moeq_status s);

// Records "file:line: message" as this thread's error detail (replacing an older one) and returns s.
// The message should name the object (file, tensor, layer/expert) and, where it helps, end with
// "\n---> HINT: ...".
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
moeq_status moeq_error_set_(moeq_status s, const char *file, int line, const char *fmt, ...);
#define MOEQ_FAIL(st, ...) moeq_error_set_((st), __FILE__, __LINE__, __VA_ARGS__)

// This thread's last detail ("" when none). Valid until the next moeq_error_set_/clear on this thread.
const char *moeq_error_detail(void);
void moeq_error_clear(void);
// Sets this thread's detail to `detail` verbatim (copied; NULL clears it) and returns s. The detail is
// thread-local: a failure on a helper thread is carried as (status, copy of its detail) and re-raised
// with this in the thread that consumes the result (workers/stage.c), so the message reads the same.
moeq_status moeq_error_restore(moeq_status s, const char *detail);

// Evaluate an expression returning moeq_status; return it from the enclosing function on failure.
#define MOEQ_TRY(expr)                                                                                     \
    do {                                                                                                   \
        moeq_status moeq_try_st_ = (expr);                                                                 \
        if (moeq_try_st_ != MOEQ_OK) return moeq_try_st_;                                                  \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
