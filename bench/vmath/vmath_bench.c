/* Vector-math candidates at W4 size (bench/vmath/run.py builds this once per option).
 *
 *   -DOPT_SCALAR  libm, graphc's old flags (no -fno-math-errno): every call is scalar
 *   -DOPT_VEC     libm names declared `simd` (as csrc/graphc_rt.h does for sin/cos) +
 *                 -fno-math-errno; link -lmvec (glibc libmvec) or -lsleefgnuabi (SLEEF's
 *                 implementation of the same vector ABI)
 *   -DOPT_OWN     csrc/graphc_vmath.h kernels (inlined; gcc vectorizes them)
 *
 * Prints "<dtype> <name> <ns per element>" (median of REPS runs over N elements). Times are
 * this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: the 2-core machine is
 * shared, and CPU time leaves out the slices in which other processes ran on our core.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(OPT_OWN)
#include "graphc_vmath.h"
#define F_EXP(T) gc_exp##T
#define EXP_F gc_expf
#define EXP_D gc_exp
#define LOG_F gc_logf
#define LOG_D gc_log
#define TANH_F gc_tanhf
#define TANH_D gc_tanh
#define SIG_F gc_sigmoidf
#define SIG_D gc_sigmoid
#define SOFT_F gc_softplusf
#define SOFT_D gc_softplus
#define SIN_F gc_sin_rrf
#define SIN_D gc_sin_rr
#define COS_F gc_cos_rrf
#define COS_D gc_cos_rr
#define LOG1P_F gc_log1pf
#define LOG1P_D gc_log1p
#define EXPM1_F gc_expm1f
#define EXPM1_D gc_expm1
#else
#if defined(OPT_VEC)
#define SIMD __attribute__((simd("notinbranch")))
SIMD float expf(float); SIMD double exp(double);
SIMD float logf(float); SIMD double log(double);
SIMD float tanhf(float); SIMD double tanh(double);
SIMD float sinf(float); SIMD double sin(double);
SIMD float cosf(float); SIMD double cos(double);
SIMD float log1pf(float); SIMD double log1p(double);
SIMD float expm1f(float); SIMD double expm1(double);
#endif
#if defined(OPT_VEC)     /* one division behind a select: gcc does not if-convert divisions */
static inline double sig_d(double x) { double e = exp(-fabs(x)); return (x >= 0 ? 1.0 : e) / (1.0 + e); }
static inline float sig_f(float x) { float e = expf(-fabsf(x)); return (x >= 0 ? 1.0f : e) / (1.0f + e); }
#else                    /* graphc's pre-vmath definitions (csrc/graphc_rt.h before this branch) */
static inline double sig_d(double x) { double e = exp(-fabs(x)); return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e); }
static inline float sig_f(float x) { float e = expf(-fabsf(x)); return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e); }
#endif
static inline double soft_d(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }
static inline float soft_f(float x) { return (x > 0 ? x : 0.0f) + log1pf(expf(-fabsf(x))); }
#define EXP_F expf
#define EXP_D exp
#define LOG_F logf
#define LOG_D log
#define TANH_F tanhf
#define TANH_D tanh
#define SIG_F sig_f
#define SIG_D sig_d
#define SOFT_F soft_f
#define SOFT_D soft_d
#define SIN_F sinf
#define SIN_D sin
#define COS_F cosf
#define COS_D cos
#define LOG1P_F log1pf
#define LOG1P_D log1p
#define EXPM1_F expm1f
#define EXPM1_D expm1
#endif
#define SQRT_F sqrtf
#define SQRT_D sqrt

#define N 1000000
#define REPS 15

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t) { qsort(t, REPS, sizeof *t, cmp); return t[REPS / 2]; }

static volatile double sink;

#define BENCH(NAME, T, F, LO, HI)                                                      \
    __attribute__((noinline)) static void loop_##NAME##_##T(const T *restrict x,        \
                                                              T *restrict y, long n) {   \
        for (long i = 0; i < n; i++) y[i] = F(x[i]);                                    \
    }                                                                                   \
    static void bench_##NAME##_##T(T *x, T *y) {                                        \
        double t[REPS];                                                                 \
        srand(1);                                                                       \
        for (long i = 0; i < N; i++) x[i] = (T)(LO + (HI - LO) * (rand() / (double)RAND_MAX)); \
        for (int r = 0; r < REPS; r++) {                                                \
            double t0 = now();                                                          \
            loop_##NAME##_##T(x, y, N);                                                 \
            t[r] = now() - t0;                                                          \
            sink += y[r];                                                               \
        }                                                                               \
        printf("%s %s %.3f\n", sizeof(T) == 4 ? "float32" : "float64", #NAME,          \
               1e9 * median(t) / N);                                                    \
    }

#define BOTH(NAME, FF, FD, LO, HI) BENCH(NAME, float, FF, LO, HI) BENCH(NAME, double, FD, LO, HI)
BOTH(exp, EXP_F, EXP_D, -10.0, 10.0)
BOTH(log, LOG_F, LOG_D, 1e-3, 1e3)
BOTH(tanh, TANH_F, TANH_D, -5.0, 5.0)
BOTH(sigmoid, SIG_F, SIG_D, -10.0, 10.0)
BOTH(softplus, SOFT_F, SOFT_D, -10.0, 10.0)
BOTH(sin, SIN_F, SIN_D, -10.0, 10.0)
BOTH(cos, COS_F, COS_D, -10.0, 10.0)
BOTH(log1p, LOG1P_F, LOG1P_D, -0.5, 10.0)
BOTH(expm1, EXPM1_F, EXPM1_D, -5.0, 5.0)
BOTH(sqrt, SQRT_F, SQRT_D, 0.0, 100.0)

/* W4: value sum(tanh(a x + b) sigmoid(x) + exp(-x^2)) and gradient in one pass over x, the
 * float sum in double in blocks of 128 (graphc's blocked partial sums). SIMD variant: the
 * pragma the fused loop needs; plain variant: the same loop without it (gcc then cannot
 * reorder the double sum and the loop stays scalar). */
#define W4_BODY                                                                        \
    float xi = x[i], t = TANH_F(a * xi + b), s = SIG_F(xi), e = EXP_F(-xi * xi);        \
    part += (double)(t * s + e);                                                        \
    g[i] = (1.0f - t * t) * a * s + t * s * (1.0f - s) - 2.0f * xi * e;

__attribute__((noinline)) static double w4_simd(const float *restrict x, float *restrict g,
                                                long n, float a, float b) {
    double acc = 0.0;
    for (long jb = 0; jb < n; jb += 128) {
        long je = jb + 128 < n ? jb + 128 : n;
        double part = 0.0;
#pragma omp simd reduction(+ : part)
        for (long i = jb; i < je; i++) { W4_BODY }
        acc += part;
    }
    return acc;
}

__attribute__((noinline)) static double w4_plain(const float *restrict x, float *restrict g,
                                                 long n, float a, float b) {
    double acc = 0.0;
    for (long jb = 0; jb < n; jb += 128) {
        long je = jb + 128 < n ? jb + 128 : n;
        double part = 0.0;
        for (long i = jb; i < je; i++) { W4_BODY }
        acc += part;
    }
    return acc;
}

/* the fused loop split in two: values into a 128-element block buffer (vectorizes with no
 * pragma), then the block summed in order -- the same sum as graphc's blocked reduction */
__attribute__((noinline)) static double w4_split(const float *restrict x, float *restrict g,
                                                 long n, float a, float b) {
    double acc = 0.0;
    float v[128];
    for (long jb = 0; jb < n; jb += 128) {
        long je = jb + 128 < n ? jb + 128 : n;
        for (long i = jb; i < je; i++) {
            float xi = x[i], t = TANH_F(a * xi + b), s = SIG_F(xi), e = EXP_F(-xi * xi);
            v[i - jb] = t * s + e;
            g[i] = (1.0f - t * t) * a * s + t * s * (1.0f - s) - 2.0f * xi * e;
        }
        double part = 0.0;
        for (long i = 0; i < je - jb; i++) part += v[i];
        acc += part;
    }
    return acc;
}

#define W4_BENCH(FN)                                                                    \
    {                                                                                   \
        double t[REPS], v = 0;                                                          \
        for (int r = 0; r < REPS; r++) {                                                \
            double t0 = now();                                                          \
            v = FN(xf, gf, N, 0.7f, 0.1f);                                               \
            t[r] = now() - t0;                                                          \
        }                                                                               \
        printf("float32 " #FN " %.3f ms  value %.9g\n", 1e3 * median(t), v);            \
    }

int main(void) {
    float *xf = malloc(N * sizeof(float)), *yf = malloc(N * sizeof(float));
    double *xd = malloc(N * sizeof(double)), *yd = malloc(N * sizeof(double));
#define RUN(NAME) bench_##NAME##_float(xf, yf); bench_##NAME##_double(xd, yd);
    RUN(exp) RUN(log) RUN(tanh) RUN(sigmoid) RUN(softplus) RUN(sin) RUN(cos) RUN(log1p)
    RUN(expm1) RUN(sqrt)
    float *gf = yf;
    srand(2);
    for (long i = 0; i < N; i++) {               /* W4's input: normal(0, 1) via Box-Muller */
        double u = (rand() + 1.0) / (RAND_MAX + 2.0), w = rand() / (double)RAND_MAX;
        xf[i] = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * w));
    }
    W4_BENCH(w4_simd) W4_BENCH(w4_plain) W4_BENCH(w4_split)
    return (int)(sink * 0);
}
