/* A barrier for the worker threads of the compiled core.
 *
 * The core's threaded loops run inside one OpenMP parallel region (opened by
 * Cython's `cython.parallel.parallel`) for the whole sequence; at every time
 * step the threads must wait for one another.  GNU OpenMP's `omp barrier`
 * costs about 195 ns for two threads here, because its last arriving thread
 * always makes a futex_wake system call, and a step of a small GRU takes
 * 0.5-5 us with one or two barriers.  This barrier spins on a counter shared
 * by the team instead: about 46 ns (C loop of 200000 barriers, two threads;
 * three threads on the two cores: 1.6 us against OpenMP's 19 us).
 * Forward, T = 100, B = 1, float32, two threads: H = 128, classic, 150 ->
 * 120 us; reset_after 128 -> 109 us.
 *
 * The wait is a plain loop of loads, GF_SPINS of them, then sched_yield on
 * every further try, so that more threads than cores, or a busy machine,
 * still make progress.  No PAUSE instruction: under this machine's
 * hypervisor, PAUSE loops made the spin barrier slower than OpenMP's
 * (classic, B = 8, H = 128: 413 -> 658 us with PAUSE and 2000 tries, 915
 * with 200000), presumably because pause-loop exiting took the core away
 * from the waiting virtual CPU.
 *
 * One gf_team per parallel region, made by the thread that opens it and
 * passed to every thread (concurrent calls from Python threads each have
 * their own).  Built without OpenMP the barrier is a no-op, and the core then
 * runs on one thread anyway.
 */
#ifndef GRU_FAST_PARALLEL_H
#define GRU_FAST_PARALLEL_H

#ifdef _OPENMP
#include <omp.h>
#include <sched.h>
#endif

#define GF_SPINS 2000

typedef struct {
    int arrived;     /* threads at the current barrier so far */
    int generation;  /* barriers completed; waiters spin until it changes */
} __attribute__((aligned(64))) gf_team;  /* a cache line of its own */

static inline void gf_team_init(gf_team* team)
{
    team->arrived = 0;
    team->generation = 0;
}

/* Wait until every thread of the current parallel region has called
 * gf_barrier(team) as many times as this one.  Everything a thread wrote
 * before the barrier is visible to every thread after it. */
static inline void gf_barrier(gf_team* team)
{
#ifdef _OPENMP
    int n_threads = omp_get_num_threads();
    int spins = 0;
    /* The generation is read before arriving: the last arriver resets the
     * count before it moves the generation on (release), so a thread that
     * sees the new generation also sees the count at zero. */
    int generation = __atomic_load_n(&team->generation, __ATOMIC_ACQUIRE);
    if (n_threads <= 1)
        return;
    if (__atomic_add_fetch(&team->arrived, 1, __ATOMIC_ACQ_REL) == n_threads) {
        __atomic_store_n(&team->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&team->generation, generation + 1, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(&team->generation, __ATOMIC_ACQUIRE) == generation) {
        if (++spins >= GF_SPINS)
            sched_yield();
    }
#else
    (void)team;
#endif
}

#endif
