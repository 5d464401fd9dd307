/*
 * graphc_rt.h -- helpers for the C that graphc generates (included by every kernel module).
 *
 * Everything here is `static inline` or a macro, so an unused helper costs nothing.
 * Semantics follow numpy, not -ffast-math: NaN propagates through max/min, and sigmoid and
 * softplus are written so that no intermediate overflows for |x| up to the float range.
 *
 *   gc_max(a, b), gc_min(a, b)   numpy.maximum / numpy.minimum for floats (NaN wins)
 *   GC_IMIN(T), GC_IMAX(T)       identity of max / min over an integer type T
 *   graphc_vmath.h               gc_exp gc_log gc_tanh gc_sigmoid gc_softplus gc_log1p gc_expm1
 *                                (and ...f): kernels gcc vectorizes inside plain loops; sin/cos
 *                                declared `simd` for glibc's libmvec (see that header)
 *   sqrt, sqrtf                  the IEEE instruction, vectorized (-fno-math-errno)
 *   gc_sign(x), gc_signf         numpy.sign for floats (NaN stays NaN, sign(-0.0) = 0)
 *   gc_ipow(a, b)                integer power by squaring (b >= 0; numpy refuses b < 0)
 *   GC_BUF(T, base, off)         typed pointer into the workspace arena at byte offset off
 *   gc_check_index(v, n, lo, ..) v if lo <= v < n (negative v wrapped by n); else records
 *                                the first failure and gives 0
 *   gc_clamp_index(v, n)         v if 0 <= v < n, else 0 (gathers and scatters load indices)
 */
#ifndef GRAPHC_RT_H
#define GRAPHC_RT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "graphc_vmath.h"

#define gc_max(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define gc_min(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))

#define GC_IMIN(T) ((T)(sizeof(T) == 8 ? INT64_MIN : sizeof(T) == 4 ? INT32_MIN : 0))
#define GC_IMAX(T) ((T)(sizeof(T) == 8 ? INT64_MAX : sizeof(T) == 4 ? INT32_MAX : 1))

#ifdef GC_SANITIZE
/* GRAPHC_SANITIZE=1 (graphc/sanitize.py): each buffer is its own malloc, the "arena" a table of
 * their pointers, `off` the byte offset of the buffer's entry in it */
#include <stdlib.h>
#define GC_BUF(T, base, off) ((T *)*(void **)((char *)(base) + (off)))
#else
#define GC_BUF(T, base, off) ((T *)((char *)(base) + (off)))
#endif

static inline double gc_sign(double x) {
    return x > 0 ? 1.0 : x < 0 ? -1.0 : x;
}

static inline float gc_signf(float x) {
    return x > 0 ? 1.0f : x < 0 ? -1.0f : x;
}

static inline int64_t gc_ipow(int64_t a, int64_t b) {
    uint64_t r = 1, base = (uint64_t)a;       /* unsigned: wraps like numpy, no UB */
    if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
    for (; b; b >>= 1, base *= base)
        if (b & 1) r *= base;
    return (int64_t)r;
}

/* The error record (int64_t[4]: code, site, position, value) lives after the arena; the
 * entry clears it, returns its code, and the runtime turns a nonzero code into an error. */
#define GC_ERR_INDEX 1

/* A data-dependent index into an axis of length n (n > 0) as a safe offset: indices pass
 * check_index first, this clamp keeps memory safe whatever reaches the load. */
static inline long gc_clamp_index(int64_t v, int64_t n) {
    return (uint64_t)v < (uint64_t)n ? (long)v : 0;
}

static inline int64_t gc_check_index(int64_t v, int64_t n, int64_t lo, int64_t pos,
                                     int64_t site, int64_t *err) {
    if (v >= lo && v < n) return v < 0 ? v + n : v;
    if (!err[0]) { err[0] = GC_ERR_INDEX; err[1] = site; err[2] = pos; err[3] = v; }
    return 0;
}

#endif /* GRAPHC_RT_H */
