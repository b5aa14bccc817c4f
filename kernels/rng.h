// rng.h: counter-based random numbers (SplitMix64 finalizer over (seed, stream, index)).
// Stateless: element i of stream s under seed k is the same whatever the thread count, the order of
// evaluation or the backend, which keeps randomized SVD test matrices and synthetic weights
// reproducible. Compiles as C11 and under nvcc. Seeds for tensors come from moeq_rng_seed_str(name).
#ifndef MOEQ_RNG_H
#define MOEQ_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MOEQ_RNG_HD __host__ __device__
#else
#define MOEQ_RNG_HD
#endif

static inline MOEQ_RNG_HD uint64_t moeq_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// 64 random bits for (seed, stream, i).
static inline MOEQ_RNG_HD uint64_t moeq_rng_u64(uint64_t seed, uint64_t stream, uint64_t i) {
    return moeq_mix64(moeq_mix64(seed ^ moeq_mix64(stream)) + i);
}

// Uniform in (0, 1): 53 bits, never 0 (safe for log()).
static inline MOEQ_RNG_HD double moeq_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    return ((double)(moeq_rng_u64(seed, stream, i) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Standard normal (Box-Muller on two counter draws; deterministic, double precision).
static inline MOEQ_RNG_HD double moeq_rng_normal(uint64_t seed, uint64_t stream, uint64_t i) {
    double u1 = moeq_rng_uniform(seed, stream, 2 * i), u2 = moeq_rng_uniform(seed, stream, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Expert-like test weights w (R, C) row-major: per input column a log-normal scale exp(0.35·N(0, 1)), an
// N(0, σ²) bulk and 1% of the entries ×6 (outliers), from streams 1-3 of `seed`. The data on which the CUDA
// parity test (tests/kernels/test_cuda_parity.c) and the kernel lab (kernels/dev/) compare the backends.
static inline void moeq_rng_expert_weights(float *w, int64_t R, int64_t C, uint64_t seed, float sigma) {
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const uint64_t k = (uint64_t)(i * C + j);
            double z = moeq_rng_normal(seed, 1, k);
            if (moeq_rng_uniform(seed, 2, k) < 0.01) z *= 6;
            const double cs = exp(0.35 * moeq_rng_normal(seed, 3, (uint64_t)j));
            w[k] = (float)(sigma * cs * z);
        }
}

// FNV-1a of a string: a stable seed from a tensor name.
static inline uint64_t moeq_rng_seed_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return moeq_mix64(h);
}

#endif
