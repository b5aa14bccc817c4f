// cuda_module.c: in builds with CUDA, the CUDA backend lives in a module, libmoeq_cuda.so (every *_cuda.cu,
// linked to cuBLAS and cuSOLVER), that this file loads on the first CUDA call. Each CUDA entry point
// (cuda_entries.h) is defined here as a forwarder to the module's function of the same name, so callers and
// tests are the same in every build. Why: loading cuBLAS maps cuBLASLt, which dirties ~90 MiB of private
// memory per process at load (measured: 91 MiB Private_Dirty); a CPU rank, and a run with --device cpu, never
// pay for it now. Counting devices needs no module: moeq_cuda_device_count() asks the driver
// (libcuda.so.1, cuInit + cuDeviceGetCount, which honour CUDA_VISIBLE_DEVICES as the runtime does).
//
// Where the module is looked for, first match wins:
//   $MOEQ_CUDA_MODULE (a path; when set, the only place tried), <dir of the executable>/libmoeq_cuda.so,
//   <dir of the executable>/../lib/libmoeq_cuda.so (an installed tree: `cmake --install`, the library
//   directory relative to bin/ as configured, MOEQ_CUDA_MODULE_LIBDIR), the module of this build tree
//   (MOEQ_CUDA_MODULE_BUILD_PATH, for tests and benchmarks in subdirectories), then the dynamic loader's own
//   search (LD_LIBRARY_PATH).
// The module's functions use the executable's CPU kernels and error state: executables are linked with
// exported symbols (CMake ENABLE_EXPORTS), so the module's references bind to them and a failure inside the
// module reads the same through moeq_error_detail(). A module from another build is refused when its
// struct layouts differ (moeq_cuda_abi_signature).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_entries.h" // defines: MOEQ_CUDA_ENTRIES, moeq_cuda_abi_signature (includes every declaring header)

#define MODULE_NAME "libmoeq_cuda.so"
#ifndef MOEQ_CUDA_MODULE_LIBDIR // the installed library directory, relative to bin/ (CMake sets it)
#define MOEQ_CUDA_MODULE_LIBDIR "../lib"
#endif

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static void *g_module;         // dlopen handle, kept until exit (CUDA tears down its own state at exit)
static int g_tried;            // the search ran (success or not): it runs once per process
static char g_path[PATH_MAX];  // where the module was loaded from
static char g_error[3 * 1024]; // why not: one line per place tried

static void note(const char *fmt, const char *a, const char *b) {
    const size_t n = strlen(g_error);
    if (n + 1 < sizeof g_error) snprintf(g_error + n, sizeof g_error - n, fmt, a, b);
}

// 1 when the module at `path` was loaded and accepted.
static int try_path(const char *path) {
    if (access(path, F_OK) != 0 && strchr(path, '/')) {
        note("%s: %s; ", path, "not found");
        return 0;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        note("%s: %s; ", path, e ? e : "dlopen failed");
        return 0;
    }
    uint64_t (*abi)(void) = NULL;
    void *p = dlsym(h, "moeq_cuda_module_abi");
    memcpy(&abi, &p, sizeof abi);
    if (!abi || abi() != moeq_cuda_abi_signature()) {
        note("%s: %s; ", path,
             abi ? "built from other sources (its struct layouts differ from this executable's)"
                 : "not a moeq CUDA module (no moeq_cuda_module_abi)");
        dlclose(h);
        return 0;
    }
    g_module = h;
    snprintf(g_path, sizeof g_path, "%s", path);
    return 1;
}

static void *module_locked(void) {
    if (g_tried) return g_module;
    g_tried = 1;
    const char *env = getenv("MOEQ_CUDA_MODULE");
    if (env && *env) {
        try_path(env);
        return g_module;
    }
    char exe[PATH_MAX], cand[PATH_MAX + 32];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(cand, sizeof cand, "%s/" MODULE_NAME, exe);
        if (try_path(cand)) return g_module;
        snprintf(cand, sizeof cand, "%s/" MOEQ_CUDA_MODULE_LIBDIR "/" MODULE_NAME, exe);
        if (try_path(cand)) return g_module;
    }
#ifdef MOEQ_CUDA_MODULE_BUILD_PATH
    if (try_path(MOEQ_CUDA_MODULE_BUILD_PATH)) return g_module;
#endif
    try_path(MODULE_NAME);
    return g_module;
}

moeq_status moeq_cuda_module_load(void) {
    pthread_mutex_lock(&g_mu);
    void *h = module_locked();
    pthread_mutex_unlock(&g_mu);
    if (h) return MOEQ_OK;
    return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                     "the CUDA backend module " MODULE_NAME " could not be loaded: %s"
                     "\n---> HINT: it is built next to the moeq executable (cmake target moeq_cuda); set "
                     "MOEQ_CUDA_MODULE=/path/to/" MODULE_NAME " if it was moved, or use --device cpu",
                     g_error);
}

const char *moeq_cuda_module_path(void) {
    pthread_mutex_lock(&g_mu);
    const char *p = g_module ? g_path : NULL;
    pthread_mutex_unlock(&g_mu);
    return p;
}

// The module's `name`, or NULL with the reason in the error detail.
static void *module_sym(const char *name) {
    if (moeq_cuda_module_load() != MOEQ_OK) return NULL;
    void *p = dlsym(g_module, name);
    if (!p)
        MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: not in the CUDA backend module %s\n---> HINT: rebuild moeq",
                  name, g_path);
    return p;
}

// ---- device count, from the driver (no module, no runtime) ----
static int g_count;

static void count_devices(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL); // kept open: the module's runtime uses it
    if (!h) return;                                          // no driver: no GPU
    int (*init)(unsigned) = NULL,
        (*get)(int *) = NULL; // CUresult (0 = CUDA_SUCCESS) cuInit, cuDeviceGetCount
    void *a = dlsym(h, "cuInit"), *b = dlsym(h, "cuDeviceGetCount");
    memcpy(&init, &a, sizeof init);
    memcpy(&get, &b, sizeof get);
    int n = 0;
    if (init && get && init(0) == 0 && get(&n) == 0 && n > 0) g_count = n;
}

int moeq_cuda_device_count(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, count_devices);
    return g_count;
}

// ---- the forwarders: one per entry; each resolves its target once ----
#define FWD_TARGET(name, fail)                                                                               \
    static _Atomic(void *) target;                                                                           \
    void *p_ = atomic_load_explicit(&target, memory_order_acquire);                                          \
    if (!p_) {                                                                                               \
        if (!(p_ = module_sym(#name))) fail;                                                                 \
        atomic_store_explicit(&target, p_, memory_order_release);                                            \
    }

// An entry returning `type`; `fail` is what it returns when the module cannot give its target.
#define FWD_RET(type, fail, name, params, args)                                                              \
    type name params {                                                                                       \
        FWD_TARGET(name, return fail)                                                                        \
        type(*f_) params;                                                                                    \
        memcpy(&f_, &p_, sizeof f_);                                                                         \
        return f_ args;                                                                                      \
    }
#define FWD_S(name, params, args) FWD_RET(moeq_status, MOEQ_ERR_UNSUPPORTED, name, params, args)
#define FWD_P(name, params, args) FWD_RET(void *, NULL, name, params, args)
#define FWD_Z(name, params, args) FWD_RET(size_t, 0, name, params, args)
// Releasing and freeing (the V entries) never load the module: what they would release came from it.
#define FWD_V(name, params, args)                                                                            \
    void name params {                                                                                       \
        if (!moeq_cuda_module_path()) return;                                                                \
        FWD_TARGET(name, return )                                                                            \
        void(*f_) params;                                                                                    \
        memcpy(&f_, &p_, sizeof f_);                                                                         \
        f_ args;                                                                                             \
    }

MOEQ_CUDA_ENTRIES(FWD_S, FWD_V, FWD_Z, FWD_S, FWD_P)
