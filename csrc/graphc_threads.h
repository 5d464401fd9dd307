/*
 * graphc_threads.h -- how many threads graphc's C code may use (csrc/threads.c, in graphc._rt).
 *
 * The gemm and the large loops of generated kernels run as OpenMP parallel regions of up to
 * graphc_num_threads() threads. The count is a run-time setting (graphc/rt.py sets it from
 * GRAPHC_NUM_THREADS when it loads the runtime), so no built code depends on it and one
 * kernel cache serves every count. Generated kernels are separate modules: they get the
 * address of the count at load time (graphc/rt.py, runtime_addresses()) and read it through
 * a pointer at each parallel region.
 *
 * Results never depend on the count: work is cut into pieces fixed by the problem alone, each
 * piece is computed by the same code whichever thread runs it, and partial results are
 * combined in a fixed order.
 *
 * Plain C99 (the parallel regions need -fopenmp; without it they run on the calling thread).
 */
#ifndef GRAPHC_THREADS_H
#define GRAPHC_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* cdef:begin (graphc/_build_rt.py: graphc._rt's cffi cdef; plain declarations only) */
/* The count, at least 1. Read it with graphc_num_threads() or an atomic load. */
extern int graphc_threads;

int graphc_num_threads(void);

/* Use n threads (values below 1 mean 1) in later parallel regions; returns the new count. */
int graphc_set_num_threads(int n);
/* cdef:end */

#ifdef __cplusplus
}
#endif

#endif /* GRAPHC_THREADS_H */
