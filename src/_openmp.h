/* OpenMP's thread queries, or their one-thread answers where the compiler has no OpenMP.
 *
 * setup.py builds with -fopenmp only when the compiler can compile and link
 * it (Apple's clang and Debian's clang without libomp-dev cannot).  Without
 * it, Cython's `parallel` blocks run once, on the calling thread, and these
 * fallbacks tell the core it is thread 0 of 1.
 */
#ifndef GRU_FAST_OPENMP_H
#define GRU_FAST_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

#endif
