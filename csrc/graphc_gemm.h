/*
 * graphc_gemm.h -- the matrix multiply of graphc's C runtime (csrc/gemm.c, built as graphc._rt).
 *
 *   C[M,N] = (accumulate ? C : 0) + A[M,K] @ B[K,N]
 *
 * A[i,k] is read at A[i*rsa + k*csa] and B[k,j] at B[k*rsb + j*csb] (strides in elements, any
 * sign), so transposed or strided operands need no copy. C is row-major with leading dimension
 * ldc: C[i,j] is at C[i*ldc + j]. C must not overlap A or B. With accumulate == 0 the old
 * contents of C are never read (NaN garbage is fine). M, N or K may be 0; K == 0 gives C = 0
 * (or leaves C unchanged when accumulating). Float32 products are accumulated in float32.
 *
 * The functions are reentrant: several threads may call them at once (on distinct outputs).
 * They never allocate: each calling thread gets a 1 MiB packing area (thread-local storage,
 * set up on its first call).
 *
 * Generated kernels are separate modules: they get the two addresses at load time (see
 * graphc/rt.py, gemm_addresses()) and call through the pointer types below.
 *
 * The declarations between cdef:begin and cdef:end marks are also graphc._rt's cffi cdef
 * (graphc/_build_rt.py reads them): plain declarations only, no preprocessor lines.
 *
 * Plain C99.
 */
#ifndef GRAPHC_GEMM_H
#define GRAPHC_GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*graphc_gemm_f32_fn)(long M, long N, long K,
                                   const float *A, long rsa, long csa,
                                   const float *B, long rsb, long csb,
                                   float *C, long ldc, int accumulate);

typedef void (*graphc_gemm_f64_fn)(long M, long N, long K,
                                   const double *A, long rsa, long csa,
                                   const double *B, long rsb, long csb,
                                   double *C, long ldc, int accumulate);

/* cdef:begin */
void graphc_gemm_f32(long M, long N, long K,
                     const float *A, long rsa, long csa,
                     const float *B, long rsb, long csb,
                     float *C, long ldc, int accumulate);

void graphc_gemm_f64(long M, long N, long K,
                     const double *A, long rsa, long csa,
                     const double *B, long rsb, long csb,
                     double *C, long ldc, int accumulate);
/* cdef:end */

/*
 * C[M,N] = D + alpha * (A @ B): the product as above (accumulated in the element type, the
 * same bits as graphc_gemm), then c = d + alpha * c on each tile of C while it is in cache,
 * with one rounding where the CPU has FMA (as gcc contracts `d + alpha * g` in generated
 * loops). D[i,j] is at D[i*ldd + j]. D may be C itself (ldd == ldc: an in-place update, as
 * of a parameter) when K <= GRAPHC_GEMM_UPDATE_IN_PLACE_MAX_K: the product is then one
 * rank-KC update of every instruction set, and each tile's product is added to C as it is
 * finished (a larger K in place is done block by block through a buffer: slow, and not
 * generated). Otherwise D must not overlap C (C holds partial sums before the epilogue reads
 * D). C must not overlap A or B. Generated code uses it for an update such as SGD's W - lr * dW (the
 * gradient product and the update in one pass over W; graphc/schedule.py, epilogues).
 */
#define GRAPHC_GEMM_UPDATE_IN_PLACE_MAX_K 256 /* the smallest KC of gemm.c's paths */

typedef void (*graphc_gemm_update_f32_fn)(long M, long N, long K,
                                          const float *A, long rsa, long csa,
                                          const float *B, long rsb, long csb,
                                          float *C, long ldc, const float *D, long ldd,
                                          float alpha);

typedef void (*graphc_gemm_update_f64_fn)(long M, long N, long K,
                                          const double *A, long rsa, long csa,
                                          const double *B, long rsb, long csb,
                                          double *C, long ldc, const double *D, long ldd,
                                          double alpha);

/* cdef:begin */
void graphc_gemm_update_f32(long M, long N, long K, const float *A, long rsa, long csa,
                            const float *B, long rsb, long csb, float *C, long ldc,
                            const float *D, long ldd, float alpha);

void graphc_gemm_update_f64(long M, long N, long K, const double *A, long rsa, long csa,
                            const double *B, long rsb, long csb, double *C, long ldc,
                            const double *D, long ldd, double alpha);
/* cdef:end */

/* Instruction-set paths of the micro-kernel, best last. */
enum { GRAPHC_GEMM_GENERIC = 0, GRAPHC_GEMM_AVX2 = 1, GRAPHC_GEMM_AVX512 = 2 };

/*
 * For tests and benchmarks only, not for generated code: use the given path (clamped to what
 * this CPU supports; a negative value selects the best one) for all later calls in the
 * process. Returns the path now in force. Do not call it while another thread is in a gemm.
 */
/* cdef:begin */
int graphc_gemm_set_isa(int isa);
/* cdef:end */

#ifdef __cplusplus
}
#endif

#endif /* GRAPHC_GEMM_H */
