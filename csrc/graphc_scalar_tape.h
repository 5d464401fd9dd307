/* The reverse-mode tape interpreter for large graphs of small values (graphc/codegen/
 * scalar_tape.py). Every node's elements live in one flat double array v (bools as 0/1),
 * its cotangent at the same place in g. A row is GC_ST_WIDTH int32:
 *
 *     [case, n, out, in0, stride0, in1, stride1, in2, stride2, reverse?]
 *
 * The interpreter's own cases (GC_ST_GATHER...GC_ST_ADD6) are rows the encoder fuses
 * or specialises: a gather of n elements from the places listed at ix[in0] (a concatenate);
 * softmax of n elements (the ~10 primitives ops/composite.py's softmax traces into), and of 4
 * elements side by side (its exps one 4-lane call); the n scalars listed at ix[in0],
 * or for n <= GC_ST_ADD_INLINE in the row's cells 3..., added from left to right (a chain of
 * `+`); softplus of one value, which also writes its derivative (the sigmoid, from the same
 * exp) to the stash slot in cell 5 for the reverse sweep. The other cases come from the
 * ops' declarations: elementwise rows write v[out + i] from v[in_j + i * stride_j],
 * reductions fold n elements of in0 into v[out]. The generated source defines
 * GC_ST_FORWARD_CASES and GC_ST_REVERSE_CASES (the switch cases, using the names below) and
 * then includes this file.
 */
#ifndef GRAPHC_SCALAR_TAPE_H
#define GRAPHC_SCALAR_TAPE_H

#include <stdint.h>
#include <string.h>

#define GC_ST_WIDTH 10
#define GC_ST_ADD_INLINE 6      /* cells 3..8 */
/* GC_ST_ADD3...GC_ST_ADD6: a chain of 3...GC_ST_ADD_INLINE terms, one case per count (the
 * additions unrolled, no loop) */
enum { GC_ST_GATHER, GC_ST_SOFTMAX, GC_ST_ADDN, GC_ST_SOFTMAX4, GC_ST_SOFTPLUS1, GC_ST_ADD3,
       GC_ST_ADD4, GC_ST_ADD5, GC_ST_ADD6 };

/* gc__exp_k (graphc_vmath.h) with its polynomial by Estrin's scheme instead of Horner's: the
 * same terms, a dependency chain of 4 fmas instead of 10. The tape's rows are chains of
 * dependent ops, where an exp's latency, not its throughput, is the cost. */
static inline __attribute__((always_inline)) double gc_st_exp(double x) {
    double xc = gc__sel(x > 710.0, 710.0, x);           /* NaN passes through both */
    xc = gc__sel(xc < -746.0, -746.0, xc);
    double k = fma(xc, GC_LOG2E, 0x1.8p52) - 0x1.8p52;
    double hi = xc - k * GC_LN2_HI;                     /* exact */
    double lo = k * GC_LN2_LO;
    double r = hi - lo, r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    /* expm1(r) - r - r^2/2 = r^3 (1/3! + r/4! + ... + r^10/13!), the sum in pairs of terms */
    double p0 = fma(1.0 / 24.0, r, 1.0 / 6.0), p1 = fma(1.0 / 720.0, r, 1.0 / 120.0);
    double p2 = fma(1.0 / 40320.0, r, 1.0 / 5040.0), p3 = fma(1.0 / 3628800.0, r, 1.0 / 362880.0);
    double p4 = fma(1.0 / 479001600.0, r, 1.0 / 39916800.0);
    double q = fma(fma(1.0 / 6227020800.0, r2, p4), r8,
                   fma(fma(p3, r2, p2), r4, fma(p1, r2, p0)));
    double t = fma(r2, fma(r, q, 0.5), -lo);
    double s = 1.0 + hi;
    double e1 = (1.0 - s) + hi;                         /* s + e1 == 1 + hi exactly */
    double y = s + (e1 + t);
    double k1 = gc__rint(0.5 * k), k2 = k - k1;         /* 2^k as two factors: no overflow */
    return y * gc__pow2i(k1) * gc__pow2i(k2);
}

/* log1p(e) for e in [0, 1] or NaN (softplus's log1p(exp(-|a|))): log(u) + (e - (u - 1)) / u,
 * u = 1 + e rounded, the quotient the first-order correction for u's rounding (u - 1 and the
 * difference are exact). glibc's log is its table-driven one, a third of log1p's
 * instructions, and the division runs beside it: W7's softplus rows ~10% faster. Within 2 ulp
 * of softplus with the exp (glibc's log1p: 1.6; 2e7 random a, against long double). */
static inline double gc_st_log1p01(double e) {
    const double u = 1.0 + e;
    return log(u) + (e - (u - 1.0)) / u;
}

/* softmax of a[0], a[s], ... a[(n-1)s] into d, as composite.softmax: the max shift, 0 where it
 * is infinite. Inlined with constant n and s, the exps are one vector of gc_st_exp. */
static inline void gc_st_softmax(long n, const double *restrict a, long s, double *restrict d) {
    double m = -INFINITY, sum = 0.0;
    for (long i = 0; i < n; i++) m = gc_max(m, a[i * s]);
    if (m == INFINITY || m == -INFINITY) m = 0.0;
    for (long i = 0; i < n; i++) d[i] = gc_st_exp(a[i * s] - m);
    for (long i = 0; i < n; i++) sum += d[i];
    for (long i = 0; i < n; i++) d[i] = d[i] / sum;
}

/* e[i] = exp(x[i]) for 4 lanes: glibc's libmvec where graphc links it (~1.5 scalar calls for
 * the 4, <= 3 ulp), else gc_st_exp per lane (which gcc evaluates as one vector) */
#if defined(GC_LIBMVEC) && defined(__x86_64__) && defined(__AVX2__)
typedef double gc_st_v4 __attribute__((vector_size(32)));
gc_st_v4 _ZGVdN4v_exp(gc_st_v4);
static inline void gc_st_exp4(const double *x, double *e) {
    gc_st_v4 v = _ZGVdN4v_exp((gc_st_v4){x[0], x[1], x[2], x[3]});
    memcpy(e, &v, sizeof v);
}
#else
static inline void gc_st_exp4(const double *x, double *e) {
    for (int i = 0; i < 4; i++) e[i] = gc_st_exp(x[i]);
}
#endif

/* gc_st_softmax of 4 elements side by side, the same values: its sum starts at e[0] (0 + e[0]
 * is e[0]: an exp is never -0), one addition less on the chain of softmax rows */
static inline void gc_st_softmax4(const double *restrict a, double *restrict d) {
    double m = -INFINITY, x[4], e[4];
    for (int i = 0; i < 4; i++) m = gc_max(m, a[i]);
    if (m == INFINITY || m == -INFINITY) m = 0.0;
    for (int i = 0; i < 4; i++) x[i] = a[i] - m;
    gc_st_exp4(x, e);
    const double sum = ((e[0] + e[1]) + e[2]) + e[3];
    for (int i = 0; i < 4; i++) d[i] = e[i] / sum;
}

/* the n terms at v[k[0]], v[k[1]], ... added from left to right (n a constant where it is
 * inlined: unrolled), and the reverse: c added to each term's cotangent */
static inline __attribute__((always_inline)) double gc_st_add(long n, const int32_t *k,
                                                              const double *v) {
    double acc = v[k[0]];
#pragma GCC unroll 4
    for (long i = 1; i < n; i++) acc += v[k[i]];
    return acc;
}

static inline __attribute__((always_inline)) void gc_st_add_vjp(long n, const int32_t *k,
                                                                double c, double *g) {
#pragma GCC unroll 4
    for (long i = 0; i < n; i++) g[k[i]] += c;
}

/* a float sum (GC_ST_BLOCK: the generated source) as graphc's kernels add one (codegen/c.py):
 * contiguous elements in blocks of GC_ST_BLOCK, each summed in lanes (`omp simd`) into a
 * partial, the partials in order (W7's sum(stack(nodes)): 1,850 dependent additions before);
 * strided ones from left to right */
static inline double gc_st_sum(long n, const double *a, long s) {
    double acc = 0;
    if (s != 1) {
        for (long i = 0; i < n; i++) acc += a[i * s];
        return acc;
    }
    for (long b = 0; b < n; b += GC_ST_BLOCK) {
        const long e = n - b > GC_ST_BLOCK ? b + GC_ST_BLOCK : n;
        double part = 0;
#pragma omp simd reduction(+ : part)
        for (long i = b; i < e; i++) part += a[i];
        acc += part;
    }
    return acc;
}

static inline void gc_st_softmax_vjp(long n, const double *y, const double *gy, double *ga,
                                     long s) {
    double dot = 0.0;
    for (long i = 0; i < n; i++) dot += gy[i] * y[i];
    for (long i = 0; i < n; i++) ga[i * s] += y[i] * (gy[i] - dot);
}

/* d max(a, b) / da: 1 where a wins, 1/2 on ties, 0 where b wins (ops/elementwise.py) */
static inline double gc_tie_share(double a, double b) {
    return a > b ? 1.0 : (a == b ? 0.5 : 0.0);
}

/* A row's operands by the names the cases use, read from the row t where a case uses them
 * (locals computed before the switch cost every row all of them, spilled to the stack). */
#define n ((long)t[1])
#define d (v + t[2])            /* the output's values, */
#define y (v + t[2])
#define gy (g + t[2])           /* and its cotangents */
#define a0 (v + t[3])           /* operand j's values, cotangents and stride */
#define a1 (v + t[5])
#define a2 (v + t[7])
#define g0 (g + t[3])
#define g1 (g + t[5])
#define g2 (g + t[7])
#define s0 ((long)t[4])
#define s1 ((long)t[6])
#define s2 ((long)t[8])

static void gc_st_forward(const int32_t *t, long rows, const int32_t *ix, double *v) {
    for (long r = 0; r < rows; r++, t += GC_ST_WIDTH) {
        switch (t[0]) {
        case GC_ST_GATHER: {
            const int32_t *k = ix + t[3];
            for (long i = 0; i < n; i++) d[i] = v[k[i]];
            break;
        }
        case GC_ST_ADDN: d[0] = gc_st_add(n, ix + t[3], v); break;
        case GC_ST_ADD3: d[0] = gc_st_add(3, t + 3, v); break;
        case GC_ST_ADD4: d[0] = gc_st_add(4, t + 3, v); break;
        case GC_ST_ADD5: d[0] = gc_st_add(5, t + 3, v); break;
        case GC_ST_ADD6: d[0] = gc_st_add(6, t + 3, v); break;
        case GC_ST_SOFTMAX: gc_st_softmax(n, a0, s0, d); break;
        case GC_ST_SOFTMAX4: gc_st_softmax4(a0, d); break;
        case GC_ST_SOFTPLUS1: {     /* gc_softplus(a), and gc_sigmoid(a) from the same exp */
            const double a = a0[0], e = gc_exp(-fabs(a));
            d[0] = (a > 0 ? a : 0.0) + gc_st_log1p01(e);
            v[t[5]] = (a >= 0 ? 1.0 : e) / (1.0 + e);
            break;
        }
        GC_ST_FORWARD_CASES
        default: break;
        }
    }
}

/* The reverse sweep. With `chain` (the last row, an ADDN: the loss as a chain of `+`, whose
 * reverse never reads its value), that row's forward runs here too, two terms per row beside
 * the rows' own work: its additions are one dependency chain (W7: 1,853 of them, ~2 µs at
 * 1,000 ops alone after the forward sweep), the same additions in the same order. */
static void gc_st_reverse(const int32_t *tape, long rows, const int32_t *ix, double *v,
                          double *g, const int32_t *chain) {
    const int32_t *terms = chain ? ix + chain[3] : ix;
    const long n_terms = chain ? chain[1] : 0;
    double acc = chain ? v[terms[0]] : 0.0;
    long k = 1;
    for (long r = rows - 1; r >= 0; r--) {
        const int32_t *t = tape + r * GC_ST_WIDTH;
        if (k + 1 < n_terms) {
            acc += v[terms[k]];
            acc += v[terms[k + 1]];
            k += 2;
        }
        if (!t[GC_ST_WIDTH - 1]) continue;      /* no cotangent reaches this row */
        switch (t[0]) {
        case GC_ST_GATHER: {
            const int32_t *k = ix + t[3];
            for (long i = 0; i < n; i++) g[k[i]] += gy[i];
            break;
        }
        /* (a row's output is never its own term: its cotangent read once) */
        case GC_ST_ADDN: gc_st_add_vjp(n, ix + t[3], gy[0], g); break;
        case GC_ST_ADD3: gc_st_add_vjp(3, t + 3, gy[0], g); break;
        case GC_ST_ADD4: gc_st_add_vjp(4, t + 3, gy[0], g); break;
        case GC_ST_ADD5: gc_st_add_vjp(5, t + 3, gy[0], g); break;
        case GC_ST_ADD6: gc_st_add_vjp(6, t + 3, gy[0], g); break;
        case GC_ST_SOFTMAX: gc_st_softmax_vjp(n, y, gy, g0, s0); break;
        case GC_ST_SOFTMAX4: gc_st_softmax_vjp(4, y, gy, g0, 1); break;
        case GC_ST_SOFTPLUS1: g0[0] += gy[0] * v[t[5]]; break;
        GC_ST_REVERSE_CASES
        default: break;
        }
    }
    if (chain) {
        for (; k < n_terms; k++) acc += v[terms[k]];
        v[chain[2]] = acc;
    }
}

#undef n
#undef d
#undef y
#undef gy
#undef a0
#undef a1
#undef a2
#undef g0
#undef g1
#undef g2
#undef s0
#undef s1
#undef s2

/* One evaluation: constants and inputs into v, the forward sweep, the output's cotangent 1,
 * the reverse sweep, the gradients out. layout: n_slots, n_init, out_slot, n_in, n_grad,
 * then (slot, size) per input and per gradient; io: the inputs' then the gradients' data. */
double gc_scalar_tape(const int32_t *tape, long rows, const int64_t *layout,
                      const double *init, void **io, double *v, double *g) {
    const long n_slots = (long)layout[0], n_init = (long)layout[1], out = (long)layout[2];
    const long n_in = (long)layout[3], n_grad = (long)layout[4];
    const int64_t *place = layout + 5;
    memcpy(v, init, (size_t)n_init * sizeof(double));
    for (long k = 0; k < n_in; k++)
        memcpy(v + place[2 * k], io[k], (size_t)place[2 * k + 1] * sizeof(double));
    const int32_t *ix = tape + rows * GC_ST_WIDTH;    /* the index lists after the rows */
    const int32_t *last = tape + (rows - 1) * GC_ST_WIDTH;
    const int32_t *chain = rows > 0 && last[0] == GC_ST_ADDN ? last : NULL;
    gc_st_forward(tape, rows - (chain != NULL), ix, v);
    memset(g, 0, (size_t)n_slots * sizeof(double));
    g[out] = 1.0;
    gc_st_reverse(tape, rows, ix, v, g, chain);
    for (long k = 0; k < n_grad; k++) {
        const int64_t *p = place + 2 * (n_in + k);
        memcpy(io[n_in + k], g + p[0], (size_t)p[1] * sizeof(double));
    }
    return v[out];
}

#endif
