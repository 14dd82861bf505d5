/* A barrier for the worker threads of the compiled core.
 *
 * The core's threaded loops run inside one OpenMP parallel region (opened by
 * Cython's `cython.parallel.parallel`) for the whole sequence; at every time
 * step the threads must wait for one another.  Cython has no syntax for
 * `omp barrier`, so it lives here: an orphaned barrier binds to the innermost
 * enclosing parallel region, which is the one the caller is in.  Built without
 * OpenMP this is a no-op, and the core then runs on one thread anyway.
 */
#ifndef GRU_FAST_PARALLEL_H
#define GRU_FAST_PARALLEL_H

static inline void gf_barrier(void)
{
#pragma omp barrier
}

#endif
