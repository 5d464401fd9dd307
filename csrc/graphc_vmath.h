/*
 * graphc_vmath.h -- branch-free math kernels that gcc auto-vectorizes inside elementwise loops.
 *
 * Every kernel is `static inline` (always inlined), uses only + - * / fma, comparisons, bit
 * blends (gc__sel: gcc's if-conversion is unreliable, see there) and bit casts, and never calls
 * libm. Inlined into a loop, gcc -O3 vectorizes the loop (AVX2: 8 floats / 4 doubles per
 * instruction) without any pragma. (With GC_VMATH_LIBMVEC, see below, some public names call
 * glibc's vector library instead.)
 * There are no table lookups (AVX2 gathers are slow) and no 64-bit arithmetic right shifts or
 * double<->int64 conversions (AVX2 has neither): integers are moved in and out of doubles with
 * the 0x1.8p52 "magic number" trick.
 *
 * Semantics are numpy's, not -ffast-math's: NaN in -> NaN out, +-inf and overflow/underflow
 * give the IEEE results, -0.0 keeps its sign where the function is odd, subnormal inputs and
 * outputs are handled (no flush to zero). Nothing here depends on errno.
 *
 *   gc_exp   gc_expf    e^x                       x = k ln2 + r, |r| <= ln2/2, Taylor in r
 *   gc_expm1 gc_expm1f  e^x - 1                   same; (2^k - 1) + 2^k expm1(r) summed exactly
 *   gc_log   gc_logf    ln x                      x = 2^e (1+f), 2 atanh(f/(2+f)) series
 *   gc_log1p gc_log1pf  ln(1+x)                   log of u = 1+x plus the rounding (x-(u-1))/u
 *   gc_tanh             tanh x                    from em = expm1(-2|x|) (see gc_tanh)
 *   gc_tanhf            tanh x                    x P(x^2) / Q(x^2), degree 4 / 4, fitted here
 *   gc_sigmoid(f)       1/(1+e^-x)                from e^-|x|, never overflows
 *   gc_softplus(f)      ln(1+e^x)                 max(x,0) + log1p(e^-|x|)
 *   gc_sin_rr gc_cos_rr (and ...f)  sin, cos for |x| <= 2^20 only (Cody-Waite reduction);
 *                       graphc uses libm/libmvec sin and cos instead (full range), these are
 *                       kept for bench/vmath only.
 *
 * For loop emitters (codegen/c.py, a fusion pass): an elementwise loop needs nothing to become
 * SIMD -- a plain `for (long i = 0; i < n; i++)` innermost loop over scalar temporaries; gcc -O3
 * inlines these kernels and vectorizes (check with -fopt-info-vec). A loop that also sums
 * floats needs `#pragma omp simd reduction(+ : part)` on it (graphc builds with -fopenmp-simd),
 * else gcc may not reorder the sum and the whole loop stays scalar. gcc will not vectorize a
 * select whose arm may trap (`c ? a / b : d`, also when a / b is a named temporary: it sinks it
 * into the arm); emit such selects as bit blends (like gc__sel below) instead.
 *
 * Error bounds (max ulps against a float64 / long-double reference, tests/test_vmath.py):
 * see the table in tests/test_vmath.py (ULP_BOUND) and bench/RESULTS.md "Vector math".
 * Polynomials are truncated Taylor series (coefficients 1/n!, 2/(2n+1)), written here.
 */
#ifndef GRAPHC_VMATH_H
#define GRAPHC_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GC_VM static inline __attribute__((always_inline))

/* glibc's <math.h> declares its vector variants only under __FAST_MATH__, so we declare the
 * ones graphc takes from libmvec (same prototypes as glibc's, plus the attribute). gcc then
 * vectorizes a loop calling them into calls of _ZGVdN4v_sin etc. (it needs -fno-math-errno,
 * which graphc/build.py passes, and -lmvec). GC_LIBMVEC: set by graphc/build.py when libmvec
 * links here; sin and cos always come from it then. GC_VMATH_LIBMVEC (GRAPHC_VMATH=libmvec):
 * exp log log1p expm1 and float tanh too, instead of the kernels below (faster, less accurate:
 * see bench/RESULTS.md "Vector math"). GC_VMATH_LIBM: the same libm functions, called one
 * value at a time (the reverse tape's interpreter, whose rows are mostly scalars: glibc's
 * scalar exp and log1p are ~1.5x faster there than the kernels below, and as accurate). */
#if defined(GC_LIBMVEC) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GC__SIMD_DECL(fn) \
    __attribute__((simd("notinbranch"))) double fn(double); \
    __attribute__((simd("notinbranch"))) float fn##f(float);
GC__SIMD_DECL(sin)
GC__SIMD_DECL(cos)
#if defined(GC_VMATH_LIBMVEC)
#define GC__USE_LIBMVEC 1
GC__SIMD_DECL(exp)
GC__SIMD_DECL(log)
GC__SIMD_DECL(log1p)
GC__SIMD_DECL(expm1)
GC__SIMD_DECL(tanh)
#endif
#endif

GC_VM uint64_t gc__u64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
GC_VM double gc__f64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }
GC_VM uint32_t gc__u32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
GC_VM float gc__f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* c ? a : b computed as a bit blend, so both sides are evaluated and no branch is left for
 * gcc's if-conversion to refuse (under the default -ftrapping-math it will not speculate a
 * floating-point operation that it has sunk into one arm of a conditional) */
GC_VM double gc__sel(int c, double a, double b) {
    uint64_t m = -(uint64_t)(c != 0);
    return gc__f64((gc__u64(a) & m) | (gc__u64(b) & ~m));
}
GC_VM float gc__self(int c, float a, float b) {
    uint32_t m = -(uint32_t)(c != 0);
    return gc__f32((gc__u32(a) & m) | (gc__u32(b) & ~m));
}

/* round to nearest integer for |x| < 2^51 (2^22): floor/rint do not vectorize under gcc's
 * default -ftrapping-math */
GC_VM double gc__rint(double x) { return (x + 0x1.8p52) - 0x1.8p52; }
GC_VM float gc__rintf(float x) { return (x + 0x1.8p23f) - 0x1.8p23f; }

/* 2^k for an integer-valued double k in [-1022, 1023]: (k + 1023) << 52, k read from the low
 * mantissa bits of k + 1.5*2^52 (the shift drops the magic's own bits). */
GC_VM double gc__pow2i(double k) {
    return gc__f64((gc__u64(k + 0x1.8p52) + 1023) << 52);
}
GC_VM float gc__pow2if(float k) {
    return gc__f32((gc__u32(k + 0x1.8p23f) + 127) << 23);
}

/* ------------------------------------------------------------------ exp, expm1 (double) */

#define GC_LN2_HI 0x1.62e42feep-1           /* 32 significant bits: k * LN2_HI is exact */
#define GC_LN2_LO 0x1.a39ef35793c76p-33
#define GC_LOG2E 0x1.71547652b82fep0

/* expm1(r) - r - r^2/2 = r^3 (1/3! + r/4! + ... + r^10/13!): |r| <= 0.347 -> < 2^-60 rel. */
GC_VM double gc__exp_tail(double r) {
    double q = 1.0 / 6227020800.0;                     /* 1/13! */
    q = fma(q, r, 1.0 / 479001600.0);                  /* 1/12! */
    q = fma(q, r, 1.0 / 39916800.0);
    q = fma(q, r, 1.0 / 3628800.0);
    q = fma(q, r, 1.0 / 362880.0);
    q = fma(q, r, 1.0 / 40320.0);
    q = fma(q, r, 1.0 / 5040.0);
    q = fma(q, r, 1.0 / 720.0);
    q = fma(q, r, 1.0 / 120.0);
    q = fma(q, r, 1.0 / 24.0);
    q = fma(q, r, 1.0 / 6.0);                          /* 1/3!  */
    return q;
}

/* k = round(x / ln2) and r = x - k ln2 (r exact up to one rounding), for |x| <= 1100. */
GC_VM double gc__exp_reduce(double x, double *r) {
    double k = fma(x, GC_LOG2E, 0x1.8p52) - 0x1.8p52;
    double hi = x - k * GC_LN2_HI;                     /* exact */
    *r = hi - k * GC_LN2_LO;
    return k;
}

/* e^x = 2^k (1 + hi + t) with hi = x - k LN2_HI exact and t = e^r - 1 - hi (r = hi - lo):
 * 1 + hi is summed exactly (s + e1, Fast2Sum), so only the last addition rounds at full
 * size and the result is within ~0.52 ulp (0.5 + the polynomial's and t's tiny errors). */
GC_VM double gc__exp_y(double xc, double *kp) {   /* e^x = y 2^k */
    double k = fma(xc, GC_LOG2E, 0x1.8p52) - 0x1.8p52;
    double hi = xc - k * GC_LN2_HI;                     /* exact */
    double lo = k * GC_LN2_LO;
    double r = hi - lo;
    double t = fma(r * r, fma(r, gc__exp_tail(r), 0.5), -lo);
    double s = 1.0 + hi;
    double e1 = (1.0 - s) + hi;                         /* s + e1 == 1 + hi exactly */
    *kp = k;
    return s + (e1 + t);
}
GC_VM double gc__exp_core(double xc) {             /* xc in [-746, 710] or NaN */
    double k, y = gc__exp_y(xc, &k);
    double k1 = gc__rint(0.5 * k), k2 = k - k1;         /* 2^k as two factors: no overflow */
    return y * gc__pow2i(k1) * gc__pow2i(k2);
}
/* |x| <= 700: the result is normal, so one factor 2^k scales exactly as the two do */
GC_VM double gc__exp_normal(double x) {
    double k, y = gc__exp_y(x, &k);
    return y * gc__pow2i(k);
}

GC_VM double gc__exp_k(double x) {
    double xc = gc__sel(x > 710.0, 710.0, x);           /* NaN passes through both */
    return gc__exp_core(gc__sel(xc < -746.0, -746.0, xc));
}

GC_VM double gc__expm1_k(double x) {
    double xc = gc__sel(x > 710.0, 710.0, x);
    xc = gc__sel(xc < -60.0, -60.0, xc);
    double k = fma(xc, GC_LOG2E, 0x1.8p52) - 0x1.8p52;
    double hi = xc - k * GC_LN2_HI;                     /* exact */
    double lo = k * GC_LN2_LO;
    double r = hi - lo;
    double tt = fma(r * r, fma(r, gc__exp_tail(r), 0.5), -lo);    /* e^r - 1 = hi + tt */
    double k1 = gc__rint(0.5 * k), k2 = k - k1;
    double s1 = gc__pow2i(k1), s2 = gc__pow2i(k2);
    double one_hi = 1.0 + hi, e1 = (1.0 - one_hi) + hi;
    double big = (one_hi + (e1 + tt)) * s1 * s2;           /* x > 40.0: e^x - 1 rounds to e^x */
    double t = s1 * s2;                                    /* 2^k, small here */
    double a = t - 1.0, b = t * hi;                      /* both exact */
    double sm = a + b, bb = sm - a;
    double err = (a - (sm - bb)) + (b - bb);               /* TwoSum: sm + err == a + b */
    double small = sm + (err + t * tt);
    double y = gc__sel(xc > 40.0, big, small);
    return gc__sel(x == 0, x, y);                         /* keep -0 */
}

/* ------------------------------------------------------------------ exp, expm1 (float) */

#define GC_LN2_HIF 0x1.62e4p-1f                 /* 16 significant bits */
#define GC_LN2_LOF 0x1.7f7d1cp-20f
#define GC_LOG2EF 0x1.715476p0f

/* (expm1(r) - r - r^2/2) / r^3 to r^5/8!: |r| <= 0.347 -> < 2^-28 relative */
GC_VM float gc__exp_tailf(float r) {
    float q = 1.0f / 40320.0f;                          /* 1/8! */
    q = fmaf(q, r, 1.0f / 5040.0f);
    q = fmaf(q, r, 1.0f / 720.0f);
    q = fmaf(q, r, 1.0f / 120.0f);
    q = fmaf(q, r, 1.0f / 24.0f);
    q = fmaf(q, r, 1.0f / 6.0f);                        /* 1/3! */
    return q;
}

/* clamps that let NaN through (a bit blend: a plain `?:` here can become a branch) */
GC_VM float gc__minf(float x, float hi) { return gc__self(x > hi, hi, x); }
GC_VM float gc__maxf(float x, float lo) { return gc__self(x < lo, lo, x); }

/* e^x = 2^k e^r, e^r = 1 + r (1 + r q(r)) with q a degree-4 polynomial fitted here (numpy,
 * Lawson-weighted least squares) for (e^r - 1 - r) / r^2 on |r| <= ln2/2: 3e-9 relative in e^r
 * (Estrin's scheme: a shorter dependency chain than Horner's). Two roundings at the end keep
 * it within 1 ulp (tests/test_vmath.py). 2^k as two factors 2^k1 2^k2, k1 = k >> 1 (multiplied,
 * not added to y's exponent bits: that would turn a NaN with some payloads into a number), so
 * subnormal results and k = 128 need no branch. Callers clamp x to [-104, 89] (NaN passes).
 * A third of the instructions of the exactly-summed version it replaced (issue 11, W4).
 * Both factors come straight from kk's bits b = bits(1.5 * 2^23) + k, whose constant part
 * shifts out of a 32-bit word: (b >> 1) << 23 = k1 << 23 and b << 23 = k << 23. 2^k1 (>= 2^-75,
 * so no rounding) scales the last FMA's operands instead of its result: the same bits as
 * (1 + r (1 + r q)) 2^k1, one multiplication fewer on the chain (W4 6% faster on Zen 3). */
GC_VM float gc__expf_p(float x, float *rp, uint32_t *bp) {   /* 1 + r q(r), r and b */
    float kk = fmaf(x, GC_LOG2EF, 0x1.8p23f);
    float k = kk - 0x1.8p23f;
    float r = fmaf(-k, GC_LN2_HIF, x);
    r = fmaf(-k, GC_LN2_LOF, r);
    float r2 = r * r;
    float q = fmaf(fmaf(0.0013814613004687459f, r2, fmaf(0.008368709866854746f, r,
                                                          0.041668387368428275f)),
                   r2, fmaf(0.16666520689434905f, r, 0.49999993451668817f));
    *rp = r;
    *bp = gc__u32(kk);
    return fmaf(r, q, 1.0f);
}
GC_VM float gc__expf_core(float x) {
    float r;
    uint32_t b;
    float p = gc__expf_p(x, &r, &b);
    float s1 = gc__f32(((b >> 1) << 23) + (127u << 23));              /* 2^k1 */
    float s2 = gc__f32((b << 23) + (254u << 23) - gc__u32(s1));       /* 2^(k - k1) */
    return fmaf(r * s1, p, s1) * s2;                          /* (1 + r (1 + r q)) 2^k */
}
/* |x| <= 86: the result is normal (k in [-124, 124]), so the same bits from one factor 2^k =
 * b << 23 (plus the bias) after the last FMA: one multiplication and three integer ops fewer
 * (all 2^31 floats of the range compared with gc__expf_core, also through sigmoid: 0 differ) */
GC_VM float gc__expf_normal(float x) {
    float r;
    uint32_t b;
    float p = gc__expf_p(x, &r, &b);
    return fmaf(r, p, 1.0f) * gc__f32((b << 23) + (127u << 23));
}

GC_VM float gc__expf_k(float x) {
    return gc__expf_core(gc__maxf(gc__minf(x, 89.0f), -104.0f));   /* NaN passes through */
}

GC_VM float gc__expm1f_k(float x) {
    float xc = gc__self(x > 90.0f, 90.0f, x);
    xc = gc__self(xc < -30.0f, -30.0f, xc);
    float k = fmaf(xc, GC_LOG2EF, 0x1.8p23f) - 0x1.8p23f;
    float hi = xc - k * GC_LN2_HIF;                     /* exact */
    float lo = k * GC_LN2_LOF;
    float r = hi - lo;
    float tt = fmaf(r * r, fmaf(r, gc__exp_tailf(r), 0.5f), -lo);    /* e^r - 1 = hi + tt */
    float k1 = gc__rintf(0.5f * k), k2 = k - k1;
    float s1 = gc__pow2if(k1), s2 = gc__pow2if(k2);
    float one_hi = 1.0f + hi, e1 = (1.0f - one_hi) + hi;
    float big = (one_hi + (e1 + tt)) * s1 * s2;           /* x > 20.0f: e^x - 1 rounds to e^x */
    float t = s1 * s2;                                    /* 2^k, small here */
    float a = t - 1.0f, b = t * hi;                      /* both exact */
    float sm = a + b, bb = sm - a;
    float err = (a - (sm - bb)) + (b - bb);               /* TwoSum: sm + err == a + b */
    float small = sm + (err + t * tt);
    float y = gc__self(xc > 20.0f, big, small);
    return gc__self(x == 0, x, y);                         /* keep -0 */
}

/* ------------------------------------------------------------------ log, log1p (double) */

/* 2 atanh(s) = 2s + s R(z), z = s^2, R = sum_{n>=1} 2 z^n / (2n+1); |s| <= 0.1716, z <= 0.0295:
 * terms through z^11 leave < 2^-62 relative. */
GC_VM double gc__log_R(double z) {
    double q = 2.0 / 23;
    q = fma(q, z, 2.0 / 21); q = fma(q, z, 2.0 / 19); q = fma(q, z, 2.0 / 17);
    q = fma(q, z, 2.0 / 15); q = fma(q, z, 2.0 / 13); q = fma(q, z, 2.0 / 11);
    q = fma(q, z, 2.0 / 9);  q = fma(q, z, 2.0 / 7);  q = fma(q, z, 2.0 / 5);
    q = fma(q, z, 2.0 / 3);
    return q * z;
}

/* ln(u) + c for finite u >= 2^-1022 (normal) and a small correction c. */
GC_VM double gc__log_core(double u, double c, double eadj) {
    uint64_t b = gc__u64(u);
    /* exponent of u relative to the interval [sqrt(1/2), sqrt(2)): shift so it stays >= 0 */
    uint64_t eb = (b + (0x3ff0000000000000ULL - 0x3fe6a09e667f3bcdULL)) >> 52;
    double m = gc__f64(b - (eb << 52) + (1023ULL << 52));      /* in [sqrt(1/2), sqrt(2)) */
    double e = (gc__f64(eb | 0x4330000000000000ULL) - 0x1p52) - (1023.0 - eadj);
    double f = m - 1.0;                                         /* exact */
    double s = f / (2.0 + f);
    double hfsq = 0.5 * f * f;
    double R = gc__log_R(s * s);
    return e * GC_LN2_HI + (f - (hfsq - (s * (hfsq + R) + (e * GC_LN2_LO + c))));
}

/* log's value at u = 0, u < 0, +inf or NaN; x + x keeps inf and NaN */
#define GC__LOG_SPECIAL(sel, u, x, T) sel((u) == 0, -(T)INFINITY, sel((u) < 0, (T)NAN, (x) + (x)))

GC_VM double gc__log_k(double x) {
    int sub = x < 0x1p-1022;                            /* subnormal: scale into range */
    int ok = (x > 0) & (x <= 0x1.fffffffffffffp1023);
    double u = gc__sel(sub, x * 0x1p54, x);
    double y = gc__log_core(gc__sel(ok, u, 1.0), 0.0, sub ? -54.0 : 0.0);
    return gc__sel(ok, y, GC__LOG_SPECIAL(gc__sel, x, x, double));
}

GC_VM double gc__log1p_k(double x) {
    double u = 1.0 + x;
    double c = (x - (u - 1.0)) / u;                     /* ln(1+x) = ln(u) + c to 2nd order */
    int ok = (u > 0) & (u <= 0x1.fffffffffffffp1023);   /* u >= 2^-53: never subnormal */
    double y = gc__log_core(gc__sel(ok, u, 1.0), gc__sel(ok, c, 0.0), 0.0);
    y = gc__sel(x == 0, x, y);                          /* keep -0 */
    return gc__sel(ok, y, GC__LOG_SPECIAL(gc__sel, u, x, double));
}

/* ------------------------------------------------------------------ log, log1p (float) */

/* z <= 0.0295: terms through z^5 leave < 2^-29 relative */
GC_VM float gc__log_Rf(float z) {
    float q = 2.0f / 11;
    q = fmaf(q, z, 2.0f / 9); q = fmaf(q, z, 2.0f / 7); q = fmaf(q, z, 2.0f / 5);
    q = fmaf(q, z, 2.0f / 3);
    return q * z;
}

GC_VM float gc__log_coref(float u, float c, float eadj) {
    uint32_t b = gc__u32(u);
    uint32_t eb = (b + (0x3f800000u - 0x3f3504f3u)) >> 23;
    float m = gc__f32(b - (eb << 23) + (127u << 23));
    float e = (float)((int32_t)eb - 127) + eadj;
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float hfsq = 0.5f * f * f;
    float R = gc__log_Rf(s * s);
    return e * GC_LN2_HIF + (f - (hfsq - (s * (hfsq + R) + (e * GC_LN2_LOF + c))));
}

GC_VM float gc__logf_k(float x) {
    int sub = x < 0x1p-126f;
    int ok = (x > 0) & (x <= 0x1.fffffep127f);
    float u = gc__self(sub, x * 0x1p24f, x);
    float y = gc__log_coref(gc__self(ok, u, 1.0f), 0.0f, sub ? -24.0f : 0.0f);
    return gc__self(ok, y, GC__LOG_SPECIAL(gc__self, x, x, float));
}

GC_VM float gc__log1pf_k(float x) {
    float u = 1.0f + x;
    float c = (x - (u - 1.0f)) / u;
    int ok = (u > 0) & (u <= 0x1.fffffep127f);
    float y = gc__log_coref(gc__self(ok, u, 1.0f), gc__self(ok, c, 0.0f), 0.0f);
    y = gc__self(x == 0, x, y);
    return gc__self(ok, y, GC__LOG_SPECIAL(gc__self, u, x, float));
}

/* ------------------------------------------------------------------ tanh, sigmoid, softplus */

/* e^x - 1 for x in [-40, 0] (double tanh's argument range): one scale factor, no overflow path;
 * (2^k - 1) + 2^k hi summed exactly as in gc_expm1. */
GC_VM double gc__expm1_neg(double x) {
    double k = fma(x, GC_LOG2E, 0x1.8p52) - 0x1.8p52;
    double hi = x - k * GC_LN2_HI, lo = k * GC_LN2_LO, r = hi - lo;
    double tt = fma(r * r, fma(r, gc__exp_tail(r), 0.5), -lo);
    double t = gc__pow2i(k), a = t - 1.0, b = t * hi;
    double sm = a + b, bb = sm - a;
    return sm + (((a - (sm - bb)) + (b - bb)) + t * tt);
}

/* a = |x| (clamped where tanh is 1 to the last bit), em = e^-2a - 1 in [-1, 0]:
 * tanh a = -em / (2 + em) for a <= 0.55; above, where the result is >= 1/2, 1 - 2e / (1 + e)
 * with e = 1 + em, so em's error counts against 1 instead of against em (one division). */
GC_VM double gc__tanh_core(double x, double a) {   /* a = |x| <= 20, or NaN */
    double em = gc__expm1_neg(-2.0 * a), e = 1.0 + em;
    int big = a > 0.55;
    double q = gc__sel(big, 2.0 * e, -em) / gc__sel(big, 1.0 + e, 2.0 + em);
    return copysign(gc__sel(big, 1.0 - q, q), x);
}
GC_VM double gc__tanh_k(double x) {
    double a = fabs(x);
    return gc__tanh_core(x, gc__sel(a > 20.0, 20.0, a));  /* NaN stays NaN */
}
/* float: tanh x = x P(x^2) / Q(x^2) on |x| <= 9.1 (beyond, tanh rounds to +-1), P and Q of
 * degree 4, fitted for minimal relative error on [0, 9.1] (Loeb/Lawson least squares in
 * numpy: 2.3e-8, 0.4 ulp below 1). The float roundings of evaluating P and Q add up to ~5
 * ulps where the result is just below 1 (|x| in [4, 9]); in double the same rational is 0.9
 * ulp but W4 was ~13% slower, so float it is (bound stated in tests/test_vmath.py). A third of
 * the instructions of the expm1 route it replaced, one division. Odd, so a small x keeps full
 * relative accuracy (tanh of a subnormal x is x, -0 stays -0). */
GC_VM float gc__tanhf_core(float xc) {              /* |xc| <= 9.1, or NaN */
    float z = xc * xc, z2 = z * z;                          /* Estrin: a shorter chain */
    float p = fmaf(z2, fmaf(z2, 1.3177252742308059e-08f, fmaf(2.048098457294148e-05f, z,
                                                               0.003487798614892063f)),
                   fmaf(0.13374464732957222f, z, 1.0f));
    float q = fmaf(z2, fmaf(z2, 7.703933265015504e-07f, fmaf(0.0003272899919529753f, z,
                                                              0.02584734128442289f)),
                   fmaf(0.46707778518166937f, z, 1.0f));
    return xc * p / q;
}
GC_VM float gc__tanhf_k(float x) {
    return gc__tanhf_core(gc__maxf(gc__minf(x, 9.1f), -9.1f));   /* NaN passes through both */
}

GC_VM double gc__sigmoid_e(double x, double e) {    /* e = e^-|x| */
    return (x >= 0 ? 1.0 : e) / (1.0 + e);              /* NaN: e is NaN */
}
GC_VM double gc__sigmoid_k(double x) { return gc__sigmoid_e(x, gc__exp_k(-fabs(x))); }
GC_VM float gc__sigmoidf_e(float x, float e) { return (x >= 0 ? 1.0f : e) / (1.0f + e); }
GC_VM float gc__sigmoidf_k(float x) {
    return gc__sigmoidf_e(x, gc__expf_core(gc__maxf(-fabsf(x), -104.0f)));
}

GC_VM double gc__softplus_k(double x) {
    return (x > 0 ? x : 0.0) + gc__log1p_k(gc__exp_k(-fabs(x)));   /* NaN: the log1p term */
}
GC_VM float gc__softplusf_k(float x) {
    return (x > 0 ? x : 0.0f) + gc__log1pf_k(gc__expf_k(-fabsf(x)));
}

/* ------------------------------------------------------------------ the public names */

/* gc_<fn>_in: the same kernel without its argument clamps, bit for bit the same result
 * wherever |x| <= the bound its op declares (OpDef.c_in_range: exp and sigmoid 86 / 700, tanh
 * 9.1 / 20 for float / double; there exp's result is normal, so one factor 2^k does); outside
 * it, anything. Fused sums call them on blocks whose magnitudes are proven in range
 * (graphc/codegen/ranges.py): the clamps' compares and blends were ~15% of W4's loop. */
#if defined(GC__USE_LIBMVEC) || defined(GC_VMATH_LIBM)
GC_VM double gc_exp(double x) { return exp(x); }
GC_VM float gc_expf(float x) { return expf(x); }
GC_VM double gc_log(double x) { return log(x); }
GC_VM float gc_logf(float x) { return logf(x); }
GC_VM double gc_log1p(double x) { return log1p(x); }
GC_VM float gc_log1pf(float x) { return log1pf(x); }
GC_VM double gc_expm1(double x) { return expm1(x); }
GC_VM float gc_expm1f(float x) { return expm1f(x); }
GC_VM double gc_tanh(double x) { return gc__tanh_k(x); }     /* faster than libmvec's here */
GC_VM float gc_tanhf(float x) { return tanhf(x); }
GC_VM double gc_sigmoid(double x) {
    double e = exp(-fabs(x));
    return (x >= 0 ? 1.0 : e) / (1.0 + e);
}
GC_VM float gc_sigmoidf(float x) {
    float e = expf(-fabsf(x));
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}
GC_VM double gc_softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }
GC_VM float gc_softplusf(float x) { return (x > 0 ? x : 0.0f) + log1pf(expf(-fabsf(x))); }
#define GC__IN_RANGE_CLAMPED 1      /* the library's functions: no unclamped variant */
#else
GC_VM double gc_exp_in(double x) { return gc__exp_normal(x); }
GC_VM float gc_expf_in(float x) { return gc__expf_normal(x); }
GC_VM double gc_tanh_in(double x) { return gc__tanh_core(x, fabs(x)); }
GC_VM float gc_tanhf_in(float x) { return gc__tanhf_core(x); }
GC_VM double gc_sigmoid_in(double x) { return gc__sigmoid_e(x, gc__exp_normal(-fabs(x))); }
GC_VM float gc_sigmoidf_in(float x) { return gc__sigmoidf_e(x, gc__expf_normal(-fabsf(x))); }
GC_VM double gc_exp(double x) { return gc__exp_k(x); }
GC_VM double gc_expm1(double x) { return gc__expm1_k(x); }
GC_VM float gc_expf(float x) { return gc__expf_k(x); }
GC_VM float gc_expm1f(float x) { return gc__expm1f_k(x); }
GC_VM double gc_log(double x) { return gc__log_k(x); }
GC_VM double gc_log1p(double x) { return gc__log1p_k(x); }
GC_VM float gc_logf(float x) { return gc__logf_k(x); }
GC_VM float gc_log1pf(float x) { return gc__log1pf_k(x); }
GC_VM double gc_tanh(double x) { return gc__tanh_k(x); }
GC_VM float gc_tanhf(float x) { return gc__tanhf_k(x); }
GC_VM double gc_sigmoid(double x) { return gc__sigmoid_k(x); }
GC_VM float gc_sigmoidf(float x) { return gc__sigmoidf_k(x); }
GC_VM double gc_softplus(double x) { return gc__softplus_k(x); }
GC_VM float gc_softplusf(float x) { return gc__softplusf_k(x); }
#endif
#ifdef GC__IN_RANGE_CLAMPED
#define GC__IN_RANGE_AS_CLAMPED(fn) \
    GC_VM double fn##_in(double x) { return fn(x); } \
    GC_VM float fn##f_in(float x) { return fn##f(x); }
GC__IN_RANGE_AS_CLAMPED(gc_exp)
GC__IN_RANGE_AS_CLAMPED(gc_tanh)
GC__IN_RANGE_AS_CLAMPED(gc_sigmoid)
#endif

/* The bits of the largest |x| so far, for a block's magnitude bound (`omp simd reduction(max)`
 * vectorizes the integer max): a NaN's bits exceed inf's, so NaN or inf makes the bound NaN or
 * inf and no in-range test passes. */
GC_VM uint32_t gc_absmax_bitsf(uint32_t m, float x) {
    uint32_t u = gc__u32(x) & 0x7fffffffu;
    return m > u ? m : u;
}
GC_VM int64_t gc_absmax_bits(int64_t m, double x) {
    int64_t u = (int64_t)(gc__u64(x) & 0x7fffffffffffffffULL);
    return m > u ? m : u;
}
GC_VM double gc_bits_magf(uint32_t m) { return gc__f32(m); }
GC_VM double gc_bits_mag(int64_t m) { return gc__f64((uint64_t)m); }

/* ------------------------------------------------------------------ sin, cos (|x| <= 2^20) */

#define GC_PIO2_1 0x1.921fb54442d18p0
#define GC_PIO2_2 0x1.1a62633145c07p-54
#define GC_PIO2_3 -0x1.f1976b7ed8fbcp-110

GC_VM double gc__sin_poly(double r) {                  /* |r| <= pi/4, through r^17 */
    double z = r * r;
    double q = 1.0 / 355687428096000.0;                 /*  1/17! */
    q = fma(q, z, -1.0 / 1307674368000.0);
    q = fma(q, z, 1.0 / 6227020800.0);
    q = fma(q, z, -1.0 / 39916800.0);
    q = fma(q, z, 1.0 / 362880.0);
    q = fma(q, z, -1.0 / 5040.0);
    q = fma(q, z, 1.0 / 120.0);
    q = fma(q, z, -1.0 / 6.0);                          /* -1/3!  */
    return fma(r * z, q, r);
}

GC_VM double gc__cos_poly(double r) {                  /* |r| <= pi/4, through r^18 */
    double z = r * r;
    double q = 1.0 / 6402373705728000.0;                /*  1/18! */
    q = fma(q, z, -1.0 / 20922789888000.0);
    q = fma(q, z, 1.0 / 87178291200.0);
    q = fma(q, z, -1.0 / 479001600.0);
    q = fma(q, z, 1.0 / 3628800.0);
    q = fma(q, z, -1.0 / 40320.0);
    q = fma(q, z, 1.0 / 720.0);
    q = fma(q, z, -1.0 / 24.0);                         /* -1/4!  */
    return fma(z * z, q, fma(-0.5, z, 1.0));
}

/* quadrant q (low bits of k) and r = x - k pi/2 */
GC_VM double gc__trig_reduce(double x, uint64_t *q) {
    double kk = fma(x, 0x1.45f306dc9c883p-1, 0x1.8p52);
    *q = gc__u64(kk);
    double k = kk - 0x1.8p52;
    double r = fma(-k, GC_PIO2_1, x);
    r = fma(-k, GC_PIO2_2, r);
    return fma(-k, GC_PIO2_3, r);
}

GC_VM double gc__trig(double x, uint64_t shift) {
    uint64_t q;
    double r = gc__trig_reduce(x, &q);
    q += shift;
    double y = gc__sel((int)(q & 1), gc__cos_poly(r), gc__sin_poly(r));
    return gc__f64(gc__u64(y) ^ ((q & 2) << 62));
}
GC_VM double gc_sin_rr(double x) { return gc__sel(x == 0, x, gc__trig(x, 0)); }
GC_VM double gc_cos_rr(double x) { return gc__trig(x, 1); }

/* float: reduce and evaluate in double (then |x| <= 2^20 is accurate to < 1 ulp) */
GC_VM float gc__trigf(float xf, uint64_t shift) {
    double x = xf;
    double kk = fma(x, 0x1.45f306dc9c883p-1, 0x1.8p52);
    uint64_t q = gc__u64(kk) + shift;
    double k = kk - 0x1.8p52;
    double r = fma(-k, GC_PIO2_2, fma(-k, GC_PIO2_1, x));
    double z = r * r;
    double sn = fma(r * z, fma(z, fma(z, fma(z, fma(z, -1.0 / 39916800, 1.0 / 362880),
                                                  -1.0 / 5040), 1.0 / 120), -1.0 / 6), r);
    double cs = fma(z * z, fma(z, fma(z, fma(z, 1.0 / 3628800, -1.0 / 40320), 1.0 / 720),
                               -1.0 / 24), fma(-0.5, z, 1.0));
    double y = gc__sel((int)(q & 1), cs, sn);
    return (float)gc__f64(gc__u64(y) ^ ((q & 2) << 62));
}
GC_VM float gc_sin_rrf(float x) { return gc__self(x == 0, x, gc__trigf(x, 0)); }
GC_VM float gc_cos_rrf(float x) { return gc__trigf(x, 1); }

#endif /* GRAPHC_VMATH_H */
