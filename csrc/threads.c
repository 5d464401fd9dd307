/* threads.c -- the thread count of graphc's C runtime (interface: graphc_threads.h). */
#include "graphc_threads.h"

int graphc_threads = 1;

int graphc_num_threads(void)
{
    return __atomic_load_n(&graphc_threads, __ATOMIC_RELAXED);
}

int graphc_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
    __atomic_store_n(&graphc_threads, n, __ATOMIC_RELAXED);
    return n;
}
