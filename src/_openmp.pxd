# The OpenMP thread queries the core uses, from omp.h or the one-thread
# fallbacks of _openmp.h when the build has no OpenMP (see setup.py).
# Cimport this instead of Cython's `openmp`, which includes omp.h unconditionally.

cdef extern from "_openmp.h" nogil:
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
