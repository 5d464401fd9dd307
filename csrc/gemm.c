/*
 * gemm.c -- graphc's cache-blocked, packed matrix multiply (interface: graphc_gemm.h).
 *
 * Blocking scheme (GotoBLAS / BLIS). C (+)= A @ B is cut into blocks so that each loop level
 * reuses one block from one level of the cache hierarchy:
 *
 *   for jc in 0..N step NC                      B column block
 *     for pc in 0..K step KC                    rank-KC update
 *       pack B[pc:+KC, jc:+NC] -> Bp            KC x NC, as NR-wide column panels     (L2/L3)
 *       for ic in 0..M step MC                  independent iterations
 *         pack A[ic:+MC, pc:+KC] -> Ap          MC x KC, as MR-tall row panels        (L2)
 *         for jr in 0..NC step NR               one Bp panel, KC x NR                 (L1)
 *           for ir in 0..MC step MR
 *             micro-kernel: C[ic+ir:+MR, jc+jr:+NR] (+)= Ap panel @ Bp panel
 *
 * KC = 256 and MC = 144 rows (128 generic): Ap is 144 KiB (f32) or 288 KiB (f64), a Bp panel
 * 32 KiB with the AVX-512 tile. Bp takes the rest of the 1 MiB scratch area, which gives
 * NC = 864 (f32) or 368 (f64) columns; wider blocks measured no faster (Zen 4, 1 MiB L2).
 * The AVX2 path (Zen 3: 32 KiB L1, 512 KiB L2) takes KC = 384 for f32: each rank-KC update
 * reads and writes C once, and with K = 1024-2048 (W3) fewer passes over C measured 5-8%
 * faster (bench/measure_threads.py gemm); the B panel (24 KiB) still fits L1.
 *
 * Few rows (at most 2 MC, padded; W3's M = 256 products with K = 1024-2048) take another
 * order (gemm_few_rows): the whole A block of a rank-KC update is packed once and stays in L2,
 * and B is packed a few NR panels at a time right before the tiles that use them. The general
 * order would pack A once per NC block and write the whole B block before reading it back
 * from L3. Both orders block K the same way, so an element of C gets the same bits in either.
 *
 * Packing copies the operands into contiguous, zero-padded panels in exactly the order the
 * micro-kernel reads them. It absorbs any strides (a transposed operand costs nothing extra)
 * and pads the M/N edges. Edge tiles run a cut-down kernel (exactly the rows there are when
 * m < MR, one vector per row when n fits in one) into a small buffer that is cropped into C.
 *
 * The micro-kernel holds an MR x NR tile of C in NV vectors per row. Per k it loads NV vectors
 * from the B panel, broadcasts MR scalars from the A panel and does MR * NV fused
 * multiply-adds. It is written once with GCC vector extensions and compiled, together with
 * the packing and loops around it, for three instruction sets:
 *
 *   ISA      vector   MR x NV   tile (f32 / f64)   accumulators
 *   avx512   zmm      12 x 2    12x32 / 12x16      24 of 32 registers
 *   avx2     ymm       6 x 2     6x16 /  6x8       12 of 16 registers (with FMA)
 *   generic  16 bytes  4 x 3     4x12 /  4x6       12 of 16 (SSE2; also NEON etc.)
 *
 * The best one the CPU supports is chosen at run time, so the file is compiled without -march
 * flags and the library can move between machines.
 *
 * Packing buffers live in a fixed per-thread scratch area: no call mallocs, and concurrent
 * calls from several threads never share a buffer. NC shrinks when a block would not fit.
 *
 * Threads (graphc_threads.h): a large product is cut into independent slabs of C, each
 * computed by the loops above in the scratch of the thread that takes it (PAR_MIN_FLOPS).
 *
 * graphc_gemm_update (C = D + alpha * A @ B: SGD's W - lr * dW) runs the same loops; after
 * the last rank-KC update each tile is finished while in L1 (FI(update)); in place (D is C,
 * one rank-KC update) each tile's product goes to a buffer and is then added to C.
 *
 * The file is a template that includes itself: part 1 (shared code) instantiates part 2 for
 * float and double; part 2 (the entry point of one element type) instantiates part 3 (the
 * blocked gemm) once per instruction set.
 */
#if !defined(GEMM_T) /* ===================== part 1: shared code ======================= */

#include "graphc_gemm.h"
#include "graphc_threads.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define GEMM_X86 1
#else
#define GEMM_X86 0
#endif

#define GEMM_CAT_(a, b) a##_##b
#define GEMM_CAT(a, b) GEMM_CAT_(a, b)
#define GEMM_CAT3(a, b, c) GEMM_CAT(GEMM_CAT(a, b), c)

/* Per-thread packing space; blocks are sized to fit, so it bounds memory per thread. */
enum { SCRATCH_BYTES = 1 << 20, ALIGN = 64 };
static _Thread_local unsigned char scratch_area[SCRATCH_BYTES + ALIGN];

static void *scratch(void)
{
    uintptr_t p = (uintptr_t)scratch_area;
    return (void *)((p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
}

static long min_l(long a, long b) { return a < b ? a : b; }
static long round_up(long x, long m) { return (x + m - 1) / m * m; }

/*
 * Threads (graphc_threads.h). A product of at least PAR_MIN_FLOPS (2*M*N*K) is cut into
 * slabs of C, which the team takes one at a time (a thread the OS leaves waiting holds up
 * one slab, not a fixed share): column slabs of whole COL_UNITs, else (N too narrow) row
 * slabs of whole ROW_UNITs, up to SLABS_PER_THREAD per thread. Each slab runs the whole
 * blocked algorithm in the scratch area of the thread that takes it, so threads never wait
 * for one another; but each slab packs again the operand all slabs share (A for column
 * slabs: W3's whole 256 x K activations, or an M x KC block per NC block) and refills its
 * L2 with it, so slabs are few: 2 per thread measured 1.3-1.5x faster than 4 on W3's
 * products on 2 threads (bench/RESULTS.md). An element of C is computed the same way in any
 * slab (the K blocking depends on K alone; every lane of a tile does the same FMAs in the
 * same order), so C is bit-identical for any thread count. The units are multiples of every
 * MR and NR below, so only the last slab has edge tiles. Smaller products (under ~60 µs on
 * one core) stay on the calling thread, where starting and joining a team would cost a good
 * part of the gain: a setting, not yet a measurement (bench/RESULTS.md, "Threads";
 * bench/measure_threads.py).
 */
#define PAR_MIN_FLOPS 4000000.0
/* At most this many multiply-adds (M*N*K): the small path, without packing A (gemm_small). */
#define SMALL_MACS 2097152.0 /* 2M: below PAR_MIN_FLOPS, so one thread either way */
/* B read in place when its K rows span at most this many bytes: half of a 32 KiB 8-way L1,
   so no set holds more than half its ways of them. W2's x @ W0 (64 rows 512 bytes apart, on 8
   of the 64 sets) ran 6% faster packed. */
#define SMALL_B_SPAN 16384
#define COL_UNIT 96
#define ROW_UNIT 48
#define SLABS_PER_THREAD 2

/* How a product is cut for threads: the thread count (1: not at all), and the slabs. */
struct slabs {
    int threads, by_cols;
    long count, unit, units; /* count slabs of whole units (units of them in all) */
};

static struct slabs slabs_of(long M, long N, long K)
{
    struct slabs s = {1, 1, 1, 0, 0};
#ifdef _OPENMP
    int n = graphc_num_threads();
    long cols = (N + COL_UNIT - 1) / COL_UNIT, rows = (M + ROW_UNIT - 1) / ROW_UNIT;
    if (n < 2 || 2.0 * M * N * K < PAR_MIN_FLOPS || omp_in_parallel())
        return s;
    s.by_cols = cols >= n || cols >= rows;
    s.unit = s.by_cols ? COL_UNIT : ROW_UNIT;
    s.units = s.by_cols ? cols : rows;
    s.count = min_l(s.units, (long)n * SLABS_PER_THREAD);
    s.threads = (int)min_l(n, s.count);
#else
    (void)M, (void)N, (void)K;
#endif
    return s;
}

/* [*lo, *hi): slab k of s, out of n rows or columns. */
static void slab(const struct slabs *s, long k, long n, long *lo, long *hi)
{
    *lo = min_l(n, s->units * k / s->count * s->unit);
    *hi = min_l(n, s->units * (k + 1) / s->count * s->unit);
}

/* ---- instruction-set dispatch ---- */

static int best_isa(void)
{
#if GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("fma"))
        return GRAPHC_GEMM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return GRAPHC_GEMM_AVX2;
#endif
    return GRAPHC_GEMM_GENERIC;
}

static int active_isa = -1; /* -1: not chosen yet */

static int current_isa(void)
{
    int isa = __atomic_load_n(&active_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = best_isa();
        __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

int graphc_gemm_set_isa(int isa)
{
    int best = best_isa();
    if (isa < 0 || isa > best)
        isa = best;
    __atomic_store_n(&active_isa, isa, __ATOMIC_RELAXED);
    return isa;
}

#define GEMM_T float
#define GEMM_T_BYTES 4 /* sizeof, for #if */
#define GEMM_T_INT int32_t
#define GEMM_SFX f32
#include "gemm.c"
#undef GEMM_T
#undef GEMM_T_BYTES
#undef GEMM_T_INT
#undef GEMM_SFX

#define GEMM_T double
#define GEMM_T_BYTES 8
#define GEMM_T_INT int64_t
#define GEMM_SFX f64
#include "gemm.c"
#undef GEMM_T
#undef GEMM_T_BYTES
#undef GEMM_T_INT
#undef GEMM_SFX

#elif !defined(GEMM_ISA) /* ======= part 2: one element type (GEMM_T, GEMM_SFX) ======= */

#define T GEMM_T
#define F(name) GEMM_CAT(name, GEMM_SFX) /* F(problem) -> problem_f32 */

/* One call's operands (see graphc_gemm.h). */
struct F(problem) {
    long M, N, K;
    const T *A;
    long rsa, csa;
    const T *B;
    long rsb, csb;
    T *C;
    long ldc;
    int accumulate;
    const T *D; /* graphc_gemm_update: C = D + alpha * A @ B (ldd: D's row stride); else NULL */
    long ldd;
    T alpha;
};

/* Part 3 per instruction set: vector width, micro-tile, KC and MC (in elements). */
#if GEMM_X86
#define GEMM_ISA avx512
#define GEMM_TARGET __attribute__((target("avx512f,avx512vl,fma")))
#define GEMM_VEC_BYTES 64
#define GEMM_MR 12
#define GEMM_NV 2
#define GEMM_KC 256
#define GEMM_MC 144
#include "gemm.c"

#define GEMM_ISA avx2
#define GEMM_TARGET __attribute__((target("avx2,fma")))
#define GEMM_VEC_BYTES 32
#define GEMM_MR 6
#define GEMM_NV 2
#define GEMM_KC (sizeof(T) == 4 ? 384 : 256) /* f32: a 24 KiB B panel */
#define GEMM_MC 144
#include "gemm.c"
#endif

#define GEMM_ISA generic
#define GEMM_TARGET
#define GEMM_VEC_BYTES 16
#define GEMM_MR 4
#define GEMM_NV 3
#define GEMM_KC 256
#define GEMM_MC 128
#include "gemm.c"

/* The blocked gemm on the calling thread, by the instruction set in force. */
static void F(dispatch)(const struct F(problem) *p)
{
    switch (current_isa()) {
#if GEMM_X86
    case GRAPHC_GEMM_AVX512:
        GEMM_CAT3(gemm, GEMM_SFX, avx512)(p);
        return;
    case GRAPHC_GEMM_AVX2:
        GEMM_CAT3(gemm, GEMM_SFX, avx2)(p);
        return;
#endif
    default:
        GEMM_CAT3(gemm, GEMM_SFX, generic)(p);
    }
}

/* A whole call: on the calling thread, or cut into slabs of C for the team. */
static void F(run)(const struct F(problem) *p)
{
    struct slabs s = slabs_of(p->M, p->N, p->K);
    if (s.threads < 2) {
        F(dispatch)(p);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.threads)
    for (long k = 0; k < s.count; k++) {
        struct F(problem) q = *p;
        long lo, hi;
        if (s.by_cols) {
            slab(&s, k, p->N, &lo, &hi);
            q.N = hi - lo, q.B += lo * p->csb, q.C += lo;
            if (q.D)
                q.D += lo;
        } else {
            slab(&s, k, p->M, &lo, &hi);
            q.M = hi - lo, q.A += lo * p->rsa, q.C += lo * p->ldc;
            if (q.D)
                q.D += lo * p->ldd;
        }
        if (q.M > 0 && q.N > 0)
            F(dispatch)(&q);
    }
#endif
}

void GEMM_CAT(graphc_gemm, GEMM_SFX)(long M, long N, long K, const T *A, long rsa, long csa,
                                     const T *B, long rsb, long csb, T *C, long ldc,
                                     int accumulate)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* C = 0, or unchanged */
        if (!accumulate) {
            for (long i = 0; i < M; i++)
                memset(C + i * ldc, 0, (size_t)N * sizeof(T));
        }
        return;
    }
    struct F(problem) p = {M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, NULL, 0, 0};
    F(run)(&p);
}

void GEMM_CAT(graphc_gemm_update, GEMM_SFX)(long M, long N, long K, const T *A, long rsa,
                                            long csa, const T *B, long rsb, long csb, T *C,
                                            long ldc, const T *D, long ldd, T alpha)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* the product is 0 */
        for (long i = 0; i < M; i++)
            for (long j = 0; j < N; j++)
                C[i * ldc + j] = D[i * ldd + j] + alpha * (T)0;
        return;
    }
    if (D == C && K > GRAPHC_GEMM_UPDATE_IN_PLACE_MAX_K) { /* block by block (not generated) */
        enum { BLK = 64 };
        T g[BLK * BLK];
        for (long i0 = 0; i0 < M; i0 += BLK)
            for (long j0 = 0; j0 < N; j0 += BLK) {
                long m = min_l(BLK, M - i0), n = min_l(BLK, N - j0);
                GEMM_CAT(graphc_gemm, GEMM_SFX)(m, n, K, A + i0 * rsa, rsa, csa, B + j0 * csb,
                                                rsb, csb, g, BLK, 0);
                for (long i = 0; i < m; i++)
                    for (long j = 0; j < n; j++)
                        C[(i0 + i) * ldc + j0 + j] += alpha * g[i * BLK + j];
            }
        return;
    }
    struct F(problem) p = {M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, 0, D, ldd, alpha};
    F(run)(&p);
}

#undef T
#undef F

#else /* ====== part 3: the blocked gemm for one element type and instruction set ====== */

/* Every function here is compiled for the instruction set (so packing is vectorized too). */
#define ISA_FN static GEMM_TARGET
#define FI(name) GEMM_CAT3(name, GEMM_SFX, GEMM_ISA) /* FI(pack_a) -> pack_a_f32_avx2 */
#define MR GEMM_MR
#define NV GEMM_NV
#define VW ((int)(GEMM_VEC_BYTES / sizeof(T))) /* elements per vector */
#define NR (NV * VW)
#define FEW_ROWS (2 * GEMM_MC) /* at most this many rows (padded): gemm_few_rows */
#define FEW_ROWS_PANELS 4      /* B panels packed at a time there (96 KiB on AVX2, f32) */

/* may_alias: panels of T are read through V pointers (like the __m512 of immintrin.h). */
typedef T FI(vec) __attribute__((vector_size(GEMM_VEC_BYTES), may_alias));
#define V FI(vec)
typedef GEMM_T_INT FI(ivec) __attribute__((vector_size(GEMM_VEC_BYTES))); /* shuffle masks */

/*
 * A VW x VW transpose in registers (r[i][c] <- r[c][i]), for packing a column-major B: one
 * level per power of two h < VW swaps the off-diagonal h x h blocks of every 2h x 2h block.
 * The masks are constants (one list per vector width), so each shuffle is one or two
 * instructions (vperm2f128, vshufps, vpermilps + vblendps on AVX2).
 */
#define VW_PP (GEMM_VEC_BYTES / GEMM_T_BYTES) /* VW for the preprocessor */
#define TR_LO(h, c) (((c) & (h)) ? VW_PP + (c) - (h) : (c))
#define TR_HI(h, c) (((c) & (h)) ? VW_PP + (c) : (c) + (h))
#if VW_PP == 2
#define TR_MASK(f, h) {f(h, 0), f(h, 1)}
#elif VW_PP == 4
#define TR_MASK(f, h) {f(h, 0), f(h, 1), f(h, 2), f(h, 3)}
#elif VW_PP == 8
#define TR_MASK(f, h) {f(h, 0), f(h, 1), f(h, 2), f(h, 3), f(h, 4), f(h, 5), f(h, 6), f(h, 7)}
#elif VW_PP == 16
#define TR_MASK(f, h)                                                                          \
    {f(h, 0), f(h, 1), f(h, 2), f(h, 3), f(h, 4), f(h, 5), f(h, 6), f(h, 7),                   \
     f(h, 8), f(h, 9), f(h, 10), f(h, 11), f(h, 12), f(h, 13), f(h, 14), f(h, 15)}
#endif
#define TR_LEVEL(r, h)                                                                         \
    _Pragma("GCC unroll 16") for (int i = 0; i < VW; i++) if (!(i & (h)))                      \
    {                                                                                          \
        V lo_ = r[i], hi_ = r[i + (h)];                                                        \
        r[i] = __builtin_shuffle(lo_, hi_, (FI(ivec))TR_MASK(TR_LO, h));                        \
        r[i + (h)] = __builtin_shuffle(lo_, hi_, (FI(ivec))TR_MASK(TR_HI, h));                  \
    }

static inline __attribute__((always_inline)) GEMM_TARGET void FI(transpose)(V r[VW])
{
#if VW_PP > 8
    TR_LEVEL(r, 8)
#endif
#if VW_PP > 4
    TR_LEVEL(r, 4)
#endif
#if VW_PP > 2
    TR_LEVEL(r, 2)
#endif
    TR_LEVEL(r, 1)
}
_Static_assert(VW_PP == VW, "GEMM_T_BYTES is sizeof(T)");

_Static_assert((FEW_ROWS + FEW_ROWS_PANELS * NR) * GEMM_KC * sizeof(T) + 2 * ALIGN
                   <= SCRATCH_BYTES,
               "an A block of FEW_ROWS and FEW_ROWS_PANELS B panels must fit in the scratch area");
_Static_assert(GEMM_MC % MR == 0, "pack_a fills whole MR-row panels");
_Static_assert(GEMM_KC >= GRAPHC_GEMM_UPDATE_IN_PLACE_MAX_K, "an in-place update is one pass");

/* A tile's accumulators into C (added to it unless `overwrite`); shared by the packed and
 * the direct micro-kernels, inlined into both so acc stays in registers. Each row's last
 * vector stores its first `last` lanes (VW: all; fewer: C's last columns, N % VW). */
static inline __attribute__((always_inline)) GEMM_TARGET void
FI(store_tile)(int rows, int nv, int last, V acc[MR][NV], T *restrict c, long ldc,
               int overwrite)
{
#pragma GCC unroll 16
    for (int i = 0; i < rows; i++) {
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            T *p = c + i * ldc + v * VW; /* C rows need not be aligned: memcpy */
            if (v == nv - 1 && last < VW) {
                T t[VW];
                memcpy(t, &acc[i][v], sizeof t);
                for (int j = 0; j < last; j++)
                    p[j] = overwrite ? t[j] : p[j] + t[j];
                continue;
            }
            if (!overwrite) {
                V old;
                memcpy(&old, p, sizeof old);
                acc[i][v] += old;
            }
            memcpy(p, &acc[i][v], sizeof acc[i][v]);
        }
    }
}

/*
 * The micro-kernel: c[i*ldc + j] (+)= sum_k a[k*MR + i] * b[k*NR + j] for i < rows, j < nv*VW,
 * that is rows x nv*VW of a tile (all of it: rows = MR, nv = NV); overwrite discards the old
 * values, which are then never read. a and b point into packed panels, b aligned to the vector
 * size. rows and nv are compile-time constants at each use, so the loops over them unroll
 * completely and acc lives in registers.
 */
static inline __attribute__((always_inline)) GEMM_TARGET void
FI(kernel)(int rows, int nv, long kc, const T *restrict a, const T *restrict b, T *restrict c,
           long ldc, int overwrite)
{
    V acc[MR][NV];

#pragma GCC unroll 16
    for (int i = 0; i < rows; i++) {
        __builtin_prefetch(c + i * ldc, 1); /* the tile's rows, while the loop runs */
        __builtin_prefetch(c + i * ldc + nv * VW - 1, 1);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = (V){0};
    }

#pragma GCC unroll 4
    for (long k = 0; k < kc; k++, a += MR, b += NR) {
        V bk[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            bk[v] = ((const V *)b)[v];
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] += a[i] * bk[v]; /* contracted to one FMA where available */
    }

    FI(store_tile)(rows, nv, VW, acc, c, ldc, overwrite);
}

/* The whole tile, and the parts that edge tiles use: fewer rows, and/or one vector. */
ISA_FN void FI(kernel_full)(long kc, const T *a, const T *b, T *c, long ldc, int overwrite)
{
    FI(kernel)(MR, NV, kc, a, b, c, ldc, overwrite);
}

ISA_FN void FI(kernel_narrow)(long kc, const T *a, const T *b, T *c, long ldc, int overwrite)
{
    FI(kernel)(MR, 1, kc, a, b, c, ldc, overwrite);
}

/*
 * The first m < MR rows of a tile into buf (NR wide), one vector per row if narrow. The
 * kernel needs its row count as a constant, hence a case per m: M = 256 leaves 4 rows on
 * the 6-row AVX2 tile, one 4-row kernel instead of two of 3 rows (or parts of 6 rows).
 */
ISA_FN void FI(kernel_rows)(long m, int narrow, long kc, const T *a, const T *b, T *buf)
{
#define EDGE_CASE(r)                                                                            \
    case r:                                                                                     \
        if (narrow)                                                                             \
            FI(kernel)(r, 1, kc, a, b, buf, NR, 1);                                             \
        else                                                                                    \
            FI(kernel)(r, NV, kc, a, b, buf, NR, 1);                                            \
        return;
    switch (m) {
        EDGE_CASE(1)
        EDGE_CASE(2)
        EDGE_CASE(3)
#if MR > 4
        EDGE_CASE(4)
        EDGE_CASE(5)
#endif
#if MR > 6
        EDGE_CASE(6)
        EDGE_CASE(7)
        EDGE_CASE(8)
        EDGE_CASE(9)
        EDGE_CASE(10)
        EDGE_CASE(11)
#endif
    }
#undef EDGE_CASE
}

/* ap <- A[0:mc, 0:kc] as MR-tall row panels: panel p holds ap[k*MR + i] = A[p*MR + i, k]. */
ISA_FN void FI(pack_a)(long mc, long kc, const T *restrict A, long rsa, long csa,
                       T *restrict ap)
{
    for (long i0 = 0; i0 < mc; i0 += MR, A += MR * rsa) {
        long m = min_l(MR, mc - i0);
        if (m == MR && rsa == 1) { /* A is column-major: copy columns */
            for (long k = 0; k < kc; k++, ap += MR)
                for (int i = 0; i < MR; i++)
                    ap[i] = A[i + k * csa];
        } else if (m == MR && csa == 1) { /* A is row-major: MR x 8 blocks, in L1 both ways */
            long k0 = 0;
            for (; k0 + 8 <= kc; k0 += 8, ap += 8 * MR)
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
                    for (int k = 0; k < 8; k++)
                        ap[k * MR + i] = A[i * rsa + k0 + k];
            for (; k0 < kc; k0++, ap += MR)
                for (int i = 0; i < MR; i++)
                    ap[i] = A[i * rsa + k0];
        } else if (m == MR) {
            for (long k = 0; k < kc; k++, ap += MR)
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++)
                    ap[i] = A[i * rsa + k * csa];
        } else {
            for (long k = 0; k < kc; k++, ap += MR)
                for (int i = 0; i < MR; i++)
                    ap[i] = i < m ? A[i * rsa + k * csa] : 0;
        }
    }
}

/* bp <- B[0:kc, 0:nc] as NR-wide column panels: panel p holds bp[k*NR + j] = B[k, p*NR + j]. */
ISA_FN void FI(pack_b)(long kc, long nc, const T *restrict B, long rsb, long csb,
                       T *restrict bp)
{
    long full = csb == 1 ? nc / NR : 0;
    if (full) { /* B is row-major: stream each row (from memory) into all the full panels */
        for (long k = 0; k < kc; k++)
            for (long p = 0; p < full; p++)
                for (int j = 0; j < NR; j++)
                    bp[(p * kc + k) * NR + j] = B[k * rsb + p * NR + j];
        B += full * NR, bp += full * NR * kc;
    }
    for (long j0 = full * NR; j0 < nc; j0 += NR, B += NR * csb) {
        long n = min_l(NR, nc - j0);
        if (n == NR && rsb == 1) { /* B is column-major (a transpose): read columns */
            long k0 = 0;
            for (; k0 + VW <= kc; k0 += VW, bp += VW * NR) /* VW x VW blocks in registers */
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    V r[VW];
#pragma GCC unroll 16
                    for (int j = 0; j < VW; j++)
                        memcpy(&r[j], B + k0 + (v * VW + j) * csb, sizeof r[j]);
                    FI(transpose)(r);
#pragma GCC unroll 16
                    for (int k = 0; k < VW; k++)
                        ((V *)bp)[k * NV + v] = r[k];
                }
            for (; k0 < kc; k0++, bp += NR)
                for (int j = 0; j < NR; j++)
                    bp[j] = B[k0 + j * csb];
        } else {
            for (long k = 0; k < kc; k++, bp += NR)
                for (int j = 0; j < NR; j++)
                    bp[j] = j < n ? B[k * rsb + j * csb] : 0;
        }
    }
}

/*
 * graphc_gemm_update's epilogue on an m x n block: c = d + alpha * g, g the finished product
 * (in C itself, or in a tile buffer when D is C), contracted to one FMA where available: the
 * rounding of the generated loop `d + alpha * g` it replaces. Each element's d and g are read
 * before its c is written.
 */
ISA_FN void FI(update)(long m, long n, T *C, long ldc, const T *D, long ldd, const T *G,
                       long ldg, T alpha)
{
    for (long i = 0; i < m; i++) {
        T *c = C + i * ldc;
        const T *d = D + i * ldd, *g = G + i * ldg;
        long j = 0;
        for (; j + VW <= n; j += VW) {
            V x, y;
            memcpy(&x, g + j, sizeof x);
            memcpy(&y, d + j, sizeof y);
            x = y + alpha * x;
            memcpy(c + j, &x, sizeof x);
        }
        for (; j < n; j++)
            c[j] = d[j] + alpha * g[j];
    }
}

/* The epilogue of a tile or block: its D (NULL: none) and alpha. */
struct FI(epi) {
    const T *d;
    long ldd;
    T alpha;
};

/* The epilogue of the block at row i, column j, where the last rank-KC update ends. */
ISA_FN struct FI(epi) FI(epi_at)(const struct F(problem) *p, int last, long i, long j)
{
    struct FI(epi) e = {NULL, 0, 0};
    if (last && p->D)
        e.d = p->D + i * p->ldd + j, e.ldd = p->ldd, e.alpha = p->alpha;
    return e;
}

/* An m x n tile's product into buf (NR wide): m rows of kernel, one vector per row if
   n <= VW. */
ISA_FN void FI(tile_to_buf)(long m, long n, long kc, const T *ap, const T *bp, T *buf)
{
    int narrow = n <= VW;
    if (m == MR) {
        if (narrow)
            FI(kernel_narrow)(kc, ap, bp, buf, NR, 1);
        else
            FI(kernel_full)(kc, ap, bp, buf, NR, 1);
    } else {
        FI(kernel_rows)(m, narrow, kc, ap, bp, buf);
    }
}

/*
 * One m x n tile (m <= MR, n <= NR) of C. Full tiles go straight to C. Edge tiles are computed
 * into a buffer, with m rows of kernel if m < MR and one vector per row if n <= VW, then
 * cropped into C. With an epilogue (e.d), it follows while the tile is in L1; in place (D is
 * C: one rank-KC update, see graphc_gemm_update), the tile is computed into the buffer first.
 */
ISA_FN void FI(tile)(long m, long n, long kc, const T *ap, const T *bp, T *C, long ldc,
                     int overwrite, struct FI(epi) e)
{
    for (long i = 0; e.d && i < m; i++) { /* D from memory while the kernel runs */
        __builtin_prefetch(e.d + i * e.ldd, 0);
        __builtin_prefetch(e.d + i * e.ldd + n - 1, 0);
    }
    T buf[MR * NR];
    if (e.d == C) {
        FI(tile_to_buf)(m, n, kc, ap, bp, buf);
        FI(update)(m, n, C, ldc, C, ldc, buf, NR, e.alpha);
        return;
    }
    if (m == MR && n == NR) {
        FI(kernel_full)(kc, ap, bp, C, ldc, overwrite);
        if (e.d)
            FI(update)(MR, NR, C, ldc, e.d, e.ldd, C, ldc, e.alpha);
        return;
    }
    FI(tile_to_buf)(m, n, kc, ap, bp, buf);

    for (long i = 0; i < m; i++) {
        T *restrict c = C + i * ldc;
        const T *restrict t = buf + i * NR;
        long j = 0;
        for (; j + VW <= n; j += VW) { /* whole vectors, then the rest */
            V x, old;
            memcpy(&x, t + j, sizeof x);
            if (!overwrite) {
                memcpy(&old, c + j, sizeof old);
                x += old;
            }
            memcpy(c + j, &x, sizeof x);
        }
        for (; j < n; j++)
            c[j] = overwrite ? t[j] : c[j] + t[j];
    }
    if (e.d)
        FI(update)(m, n, C, ldc, e.d, e.ldd, C, ldc, e.alpha);
}

/* C[0:mc, 0:nc] (+)= ap @ bp: all micro-tiles of one packed A block against one B block. */
ISA_FN void FI(macro_kernel)(long mc, long nc, long kc, const T *ap, const T *bp, T *C,
                             long ldc, int overwrite, struct FI(epi) e)
{
    for (long jr = 0; jr < nc; jr += NR) {
        for (long ir = 0; ir < mc; ir += MR) {
            struct FI(epi) et = e;
            if (e.d)
                et.d += ir * e.ldd + jr;
            FI(tile)(min_l(MR, mc - ir), min_l(NR, nc - jr), kc, ap + ir * kc, bp + jr * kc,
                     C + ir * ldc + jr, ldc, overwrite, et);
        }
    }
}

/*
 * Few rows (W3's forward and data-gradient products: M = 256, K = 1024-2048): the whole
 * round_up(M, MR) x KC block of A is packed once per rank-KC update and stays in L2, and B is
 * packed FEW_ROWS_PANELS KC x NR panels at a time (in L2; the last one packed is in L1), just
 * before the M / MR tiles of each of them. B is read from memory once in all and A is packed
 * once, not once per NC block. Packing several panels reads each row of a row-major B in
 * several cache lines at once rather than one: its rows lie a power-of-two stride apart, so
 * a software prefetch of the next panel's rows does not stay in cache (they share a few
 * sets) and packing waits on memory, less with longer runs per row (one panel at a time
 * with that prefetch measured 5-9% slower on W3's forward products; bench/RESULTS.md). The K
 * blocking is the same as the general loops', so every element of C gets the same sums in
 * the same order (bit-identical either way).
 */
ISA_FN void FI(gemm_few_rows)(const struct F(problem) *p, long kc_max)
{
    T *ap = scratch();
    T *bp = ap + round_up(round_up(p->M, MR) * kc_max, ALIGN / sizeof(T));
    long tiles = (p->M + MR - 1) / MR, group = FEW_ROWS_PANELS * NR;
    for (long pc = 0; pc < p->K; pc += kc_max) {
        long kc = min_l(kc_max, p->K - pc);
        int overwrite = pc == 0 && !p->accumulate;
        const T *B = p->B + pc * p->rsb;
        FI(pack_a)(p->M, kc, p->A + pc * p->csa, p->rsa, p->csa, ap);
        for (long jg = 0; jg < p->N; jg += group) {
            FI(pack_b)(kc, min_l(group, p->N - jg), B + jg * p->csb, p->rsb, p->csb, bp);
            for (long jr = jg; jr < min_l(p->N, jg + group); jr += NR)
                for (long t = 0; t < tiles; t++)
                    FI(tile)(min_l(MR, p->M - t * MR), min_l(NR, p->N - jr), kc,
                             ap + t * MR * kc, bp + (jr - jg) * kc, p->C + t * MR * p->ldc + jr,
                             p->ldc, overwrite, FI(epi_at)(p, pc + kc == p->K, t * MR, jr));
        }
    }
}

/*
 * Small products (SMALL_MACS, K <= GEMM_KC): no A packing. The kernel above with A read in
 * place (any strides: broadcasts) and B in place or packed (K x N is small; see gemm_small).
 * Each C element sums its products in k order from 0, as on the packed path, so both give the
 * same bits. Measured 1.1-1.45x faster at W1's and W2's shapes, and no slower at W2's 1M
 * multiply-add products (bench/RESULTS.md, issue 13 W1/W2).
 */
static inline __attribute__((always_inline)) GEMM_TARGET void
FI(kernel_direct)(int rows, int nv, int last, long kc, const T *restrict a, long rsa,
                  long csa, const T *restrict b, long ldb, T *restrict c, long ldc,
                  int overwrite)
{
    V acc[MR][NV];

#pragma GCC unroll 16
    for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = (V){0};

#pragma GCC unroll 4
    for (long k = 0; k < kc; k++, a += csa, b += ldb) {
        V bk[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            memcpy(&bk[v], b + v * VW, sizeof bk[v]);
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                acc[i][v] += a[i * rsa] * bk[v];
    }

    FI(store_tile)(rows, nv, last, acc, c, ldc, overwrite);
}

/* The last m < MR rows of one column panel: the kernel takes its row count as a constant. */
static inline __attribute__((always_inline)) GEMM_TARGET void
FI(direct_rest)(long m, int nv, int last, long kc, const T *a, long rsa, long csa, const T *b,
                long ldb, T *c, long ldc, int overwrite)
{
    switch (m) {
#define REST_CASE(r)                                                                           \
    case r:                                                                                    \
        FI(kernel_direct)(r, nv, last, kc, a, rsa, csa, b, ldb, c, ldc, overwrite);            \
        return;
        REST_CASE(1)
        REST_CASE(2)
        REST_CASE(3)
#if MR > 4
        REST_CASE(4)
        REST_CASE(5)
#endif
#if MR > 6
        REST_CASE(6)
        REST_CASE(7)
        REST_CASE(8)
        REST_CASE(9)
        REST_CASE(10)
        REST_CASE(11)
#endif
#undef REST_CASE
    }
}

/* All rows of one column panel (NVC vectors wide, the last one's first `last` lanes) into C:
   MR at a time, then the rest at once. */
static inline __attribute__((always_inline)) GEMM_TARGET void
FI(direct_rows)(const struct F(problem) *p, int nv, int last, const T *b, long ldb, T *c,
                int overwrite)
{
    long i0 = 0;
    for (; i0 + MR <= p->M; i0 += MR)
        FI(kernel_direct)(MR, nv, last, p->K, p->A + i0 * p->rsa, p->rsa, p->csa, b, ldb,
                          c + i0 * p->ldc, p->ldc, overwrite);
    if (i0 < p->M)
        FI(direct_rest)(p->M - i0, nv, last, p->K, p->A + i0 * p->rsa, p->rsa, p->csa, b, ldb,
                        c + i0 * p->ldc, p->ldc, overwrite);
}

/* B is read in place when its rows are contiguous, close (SMALL_B_SPAN: they stay in L1) and
   a whole number of vectors wide; else packed into NR-wide zero-padded panels,
   the last of which (if partial: W2's N = 10) is computed as that many vectors, the last one
   stored in part. */
ISA_FN void FI(gemm_small)(const struct F(problem) *p)
{
    int overwrite = !p->accumulate;
    int packed = p->csb != 1 || p->N % VW != 0
                 || p->K * labs(p->rsb) * (long)sizeof(T) > SMALL_B_SPAN;
    T *bp = scratch();
    long ldb = packed ? NR : p->rsb;
    long j0 = 0;
    for (; j0 + NR <= p->N; j0 += NR) {
        if (packed) /* each panel right before its rows: it stays in L1 */
            FI(pack_b)(p->K, NR, p->B + j0 * p->csb, p->rsb, p->csb, bp);
        FI(direct_rows)(p, NV, VW, packed ? bp : p->B + j0, ldb, p->C + j0, overwrite);
    }
    if (j0 == p->N)
        return;
    if (!packed) { /* whole vectors, one at a time */
        for (; j0 < p->N; j0 += VW)
            FI(direct_rows)(p, 1, VW, p->B + j0, ldb, p->C + j0, overwrite);
        return;
    }
    long n = p->N - j0; /* the partial panel */
    int last = (int)((n - 1) % VW) + 1;
    FI(pack_b)(p->K, n, p->B + j0 * p->csb, p->rsb, p->csb, bp);
    switch ((n + VW - 1) / VW) {
    case 1:
        FI(direct_rows)(p, 1, last, bp, ldb, p->C + j0, overwrite);
        return;
#if NV > 1
    case 2:
        FI(direct_rows)(p, 2, last, bp, ldb, p->C + j0, overwrite);
        return;
#endif
#if NV > 2
    case 3:
        FI(direct_rows)(p, 3, last, bp, ldb, p->C + j0, overwrite);
        return;
#endif
    }
}

/* The five blocking loops (see the top of the file); M, N, K > 0. */
ISA_FN void FI(gemm)(const struct F(problem) *p)
{
    if (p->K <= GEMM_KC && (double)p->M * p->N * p->K <= SMALL_MACS
        && p->K * round_up(p->N, NR) * (long)sizeof(T) <= SCRATCH_BYTES && p->D != p->C) {
        FI(gemm_small)(p);
        if (p->D) /* a small C: still in cache */
            FI(update)(p->M, p->N, p->C, p->ldc, p->D, p->ldd, p->C, p->ldc, p->alpha);
        return;
    }
    /* Block sizes for this problem: the A block first, the B block in the rest of scratch. */
    long kc_max = min_l(p->K, GEMM_KC);
    if (round_up(p->M, MR) <= FEW_ROWS) {
        FI(gemm_few_rows)(p, kc_max);
        return;
    }
    long mc_max = min_l(round_up(p->M, MR), GEMM_MC);
    long a_elems = round_up(mc_max * kc_max, ALIGN / sizeof(T));
    long nc_fit = ((long)(SCRATCH_BYTES / sizeof(T)) - a_elems) / kc_max / NR * NR;
    long nc_max = min_l(round_up(p->N, NR), nc_fit);
    T *ap = scratch();
    T *bp = ap + a_elems;

    for (long jc = 0; jc < p->N; jc += nc_max) {
        long nc = min_l(nc_max, p->N - jc);
        for (long pc = 0; pc < p->K; pc += kc_max) {
            long kc = min_l(kc_max, p->K - pc);
            int overwrite = pc == 0 && !p->accumulate;
            FI(pack_b)(kc, nc, p->B + pc * p->rsb + jc * p->csb, p->rsb, p->csb, bp);
            for (long ic = 0; ic < p->M; ic += mc_max) {
                long mc = min_l(mc_max, p->M - ic);
                FI(pack_a)(mc, kc, p->A + ic * p->rsa + pc * p->csa, p->rsa, p->csa, ap);
                FI(macro_kernel)(mc, nc, kc, ap, bp, p->C + ic * p->ldc + jc, p->ldc,
                                 overwrite, FI(epi_at)(p, pc + kc == p->K, ic, jc));
            }
        }
    }
}

#undef ISA_FN
#undef FI
#undef MR
#undef NV
#undef VW
#undef NR
#undef FEW_ROWS
#undef FEW_ROWS_PANELS
#undef V
#undef VW_PP
#undef TR_LO
#undef TR_HI
#undef TR_MASK
#undef TR_LEVEL
#undef GEMM_ISA
#undef GEMM_TARGET
#undef GEMM_VEC_BYTES
#undef GEMM_MR
#undef GEMM_NV
#undef GEMM_KC
#undef GEMM_MC

#endif
