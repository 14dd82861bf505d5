/* The core's worker threads: work split into pieces that are claimed, never
 * waited for unless started.
 *
 * Why not an OpenMP team: its threads meet at barriers (one per time step
 * before this file was rewritten, and always at the end of a parallel
 * region), so when another library's threads hold a core (OpenBLAS's
 * workers spin for a while after every call, ONNX Runtime's and PyTorch's
 * pools too), every meeting waits a scheduler time slice for the thread that
 * lost its core: 100x slower calls right after a NumPy matmul.
 *
 * Here the calling thread runs the sequence and splits each phase of a time
 * step (see _core.pyx) into pieces whose boundaries depend on the shape only,
 * never on the thread count, so any thread may run any piece and the results
 * are bitwise the same for 1, 2 or more threads.  A phase is published to
 * the pool's workers; each participant (the caller is participant 0) owns a
 * contiguous home range of pieces and claims them front first; a participant
 * whose home range is empty steals from the back of the others.  The caller
 * claims pieces like everyone else, so a worker that has not shown up yet
 * (descheduled, asleep, stalled) simply gets nothing: the caller runs its
 * pieces.  The caller waits only for pieces a worker has started.  Home
 * ranges keep each worker on the same weights from step to step (their
 * panels stay in its cache) when the threads keep pace.
 *
 * Claims are compare-and-swap on one 64-bit word per home range: the phase's
 * sequence number, the next piece from the front and the end of the range.
 * A worker that slept through several phases fails its claim (the sequence
 * moved on) and looks again; it can never run a piece of a finished phase.
 *
 * Workers wait for the next phase spinning for GF_SPIN_NS, then sleep on a
 * condition variable, so they hold no core while the caller runs serially or
 * between calls.  One call at a time uses the pool (a Python thread that
 * finds it busy runs serially), and a forked child makes new workers.
 *
 * A phase can also be published without the caller waiting for it
 * (gf_ahead_*): forward's input projection, computed by the workers ahead of
 * steps the caller runs serially; the caller runs whatever piece is still
 * unclaimed when a step needs it.
 *
 * gf_pace_* decides, while the call runs, whether publishing phases to the
 * workers pays: it times blocks of steps with and without them and keeps the
 * faster mode, trying the other now and then (see there).  Nothing is tuned
 * to a CPU.
 */
#ifndef GRU_FAST_PARALLEL_H
#define GRU_FAST_PARALLEL_H

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
/* Linux (glibc or musl with _GNU_SOURCE, which Python.h defines): workers can
 * be kept off the caller's CPU (gf_keep_workers_off). */
#if defined(__linux__) && defined(CPU_SET)
#define GF_KEEP_OFF_CALLER 1
#endif

#define GF_MAX_WORKERS 63          /* participants are at most 64 */
#define GF_MAX_PIECES 4095         /* 12 bits of a claim word */
#define GF_SPIN_NS 50000           /* a worker spins this long for the next phase, then sleeps */
#define GF_YIELD_AFTER_NS 3000     /* ... yielding its core after this long */
#define GF_CALLER_SPIN_NS 10000    /* the caller spins at least this long for a started piece
                                      (and as long as its own pieces took), then sleeps */
#define GF_CALL_SPIN_NS GF_SPIN_NS /* ... while a call holds the pool: the same (see gf_worker_main) */
#define GF_LATE_NS 50000           /* a worker this late (and later than the caller's own work) is late */
#define GF_MAX_AHEAD 64            /* pieces of a phase the caller does not wait for (gf_ahead_start) */

typedef void (*gf_piece_fn)(void* ctx, int piece);

/* A run of `count` consecutive pieces from `first`, passed to a gf_piece_fn
 * as one negative number (below -1): the fn then does the work
 * of all of them in one call.  A piece's work is fixed by its units alone,
 * so a run gives the same bits as its pieces one by one; one call per piece
 * costs, though: the gate loops restart for every row of every piece and
 * the products run on narrower operands (forward, B = 32 .. 64, H = 128,
 * 16 units per piece, one thread: 1.4-1.6x the time of one call over all
 * units; bench/README.md "Runs of pieces"). */
#define GF_RUN(first, count) (-2 - ((first) | ((count) << 12)))
#define GF_RUN_FIRST(piece) ((-2 - (piece)) & 0xfff)
#define GF_RUN_COUNT(piece) ((-2 - (piece)) >> 12)

/* How many pieces of its own home range a participant claims at once
 * (gf_claim_and_run): 0 one, 1 half of what is left (at least one), 2 all
 * that is left.  Half, the default: with all, a worker that came a little
 * late took its whole range in one claim and the caller, done with its own,
 * had nothing left to take and waited for it; the pace counted those waits
 * as late workers and ran far more steps serially (Zen 3, B = 32, H = 256,
 * forward: 14 late phases of 27 calls against 2, 1.03-1.12x the time of one
 * piece per claim; half: 0.96-1.01x, and 0.95x at B = 32, H = 128 forward
 * and backward).  A test and benchmark hook (_core._set_piece_runs). */
static int gf_run_policy = 1;
/* Backward's phases take all that is left (2): there the waits did not turn
 * into serial steps, and forward+backward measured 0.93x (B = 32, H = 256)
 * and 0.85x (B = 32, H = 128, T = 20) the time of one piece per claim,
 * against 0.96x and 0.97x with half. */
static int gf_backward_run_policy = 2;

/* One home range of a phase: (sequence << 24) | (front << 12) | end. */
typedef struct {
    uint64_t word;
} __attribute__((aligned(64))) gf_range;

typedef struct {
    /* written by the caller, read by workers after a successful claim */
    gf_piece_fn fn;
    void* ctx;
    /* written by the caller before it publishes a phase, read (atomically:
     * a worker late for the phase before may read them as they change, and
     * then fails its claim) before a claim */
    int mergeable;                         /* pieces [0, mergeable) may be claimed as runs */
    int run_policy;                        /* gf_run_policy or gf_backward_run_policy */
    int participants;                      /* of the current call: caller + workers */
    int n_workers;                         /* threads started */
    int busy;                              /* one call at a time */
    uint64_t next_sequence;                /* the caller's counter */
    __attribute__((aligned(64))) uint64_t sequence;  /* the phase being run */
    __attribute__((aligned(64))) int done;            /* pieces finished by workers */
    __attribute__((aligned(64))) int sleeping;        /* workers waiting on `wake` */
    int wake_sent;                         /* a broadcast is on its way to them */
    __attribute__((aligned(64))) int caller_waiting;  /* the caller sleeps on `finished` */
    pthread_mutex_t lock;
    pthread_cond_t wake;                   /* workers wait here for a phase */
    pthread_cond_t finished;               /* the caller waits here for started pieces */
    gf_range ranges[GF_MAX_WORKERS + 1];
    /* A phase published by gf_ahead_start (the caller does not wait for it):
     * `ahead` set while it runs; its claim word (sequence, next piece, count)
     * and, per piece, the sequence of the phase that finished it. */
    int ahead;
    __attribute__((aligned(64))) uint64_t ahead_word;
    __attribute__((aligned(64))) uint64_t ahead_done[GF_MAX_AHEAD];
#ifdef GF_KEEP_OFF_CALLER
    /* the CPU the workers are kept off (gf_keep_workers_off), -1 none */
    int kept_off_cpu;
    pthread_t threads[GF_MAX_WORKERS + 1];   /* worker i's thread (1..n_workers) */
    cpu_set_t allowed[GF_MAX_WORKERS + 1];   /* its affinity when it started */
#endif
    /* test hook: worker `stall_worker` sleeps stall_ns before each claim, or
     * (stall_mid_piece) after claiming its first piece of a phase, before running it */
    int stall_worker;
    int64_t stall_ns;
    int stall_mid_piece;
} gf_pool;

/* What the pool and the paces did, for tests and benchmarks (_core._thread_stats):
 * phases run by the caller alone, phases handed to the workers, pieces the
 * workers ran, phases where a worker was late and the ns the caller waited in
 * those; then the pace's decisions: late workers that sent the caller serial
 * and late workers it let pass (threads still paid), trials of threads while
 * serial measured faster and those that won, and blocks run serially because
 * the estimates said so (outside a late worker's spell); last, workers whose
 * affinity was set off the caller's CPU (gf_keep_workers_off). */
enum {
    GF_STAT_SERIAL_PHASES, GF_STAT_THREADED_PHASES, GF_STAT_WORKER_PIECES,
    GF_STAT_LATE_WORKERS, GF_STAT_LATE_WAIT_NS, GF_STAT_LATE_SPELLS, GF_STAT_LATE_PASSED,
    GF_STAT_THREAD_TRIALS, GF_STAT_THREAD_TRIALS_WON, GF_STAT_SERIAL_BLOCKS_CHOSEN,
    GF_STAT_WORKER_MOVES, GF_STAT_FRESH_PACES, GF_STAT_SERIAL_REMEASURED,
    GF_STAT_LEADS_CONFIRMED, GF_STATS
};
static int64_t gf_stats[GF_STATS];

static inline void gf_count(int stat, int64_t n)
{
    __atomic_add_fetch(&gf_stats[stat], n, __ATOMIC_RELAXED);
}

static gf_pool gf_the_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
    .finished = PTHREAD_COND_INITIALIZER, .stall_worker = -1,
#ifdef GF_KEEP_OFF_CALLER
    .kept_off_cpu = -1,
#endif
};

static inline int64_t gf_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* A flag another thread sets (e.g. a request to stop), read without a lock. */
static inline int gf_load_flag(const int* flag)
{
    return __atomic_load_n(flag, __ATOMIC_RELAXED);
}

static inline void gf_sleep_ns(int64_t ns)
{
    struct timespec pause = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&pause, NULL);
}

#define GF_SEQ_MASK ((UINT64_C(1) << 40) - 1)
#define GF_WORD(seq, front, end) ((((seq) & GF_SEQ_MASK) << 24) | ((uint64_t)(front) << 12) | (uint64_t)(end))
#define GF_WORD_SEQ(w) ((w) >> 24)
#define GF_WORD_FRONT(w) ((int)(((w) >> 12) & 0xfff))
#define GF_WORD_END(w) ((int)((w) & 0xfff))

/* Tell a caller sleeping in gf_wait_for_workers that a piece is done. */
static inline void gf_signal_caller(gf_pool* pool)
{
    if (__atomic_load_n(&pool->caller_waiting, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_signal(&pool->finished);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Claim and run pieces of phase `seq` as participant `me`: its own range from
 * the front, then the others' from the back.  Returns the pieces it ran. */
static int gf_claim_and_run(gf_pool* pool, int me, int participants, uint64_t seq)
{
    int ran = 0, visit, range, piece, front, end;
    for (visit = 0; visit < participants; visit++) {
        range = (me + visit) % participants;
        gf_range* r = &pool->ranges[range];
        for (;;) {
            uint64_t w = __atomic_load_n(&r->word, __ATOMIC_ACQUIRE);
            if (GF_WORD_SEQ(w) != (seq & GF_SEQ_MASK))
                return ran;  /* the phase is over (or not yet set up) */
            front = GF_WORD_FRONT(w);
            end = GF_WORD_END(w);
            if (front >= end)
                break;
            /* From the front of its own range a participant takes a run (the
             * policy's share of what is left, within the mergeable pieces);
             * from another's range one piece at a time, from the back. */
            int count = 1;
            int mergeable = __atomic_load_n(&pool->mergeable, __ATOMIC_RELAXED);
            int policy = __atomic_load_n(&pool->run_policy, __ATOMIC_RELAXED);
            if (visit == 0 && front < mergeable) {
                int left = (end < mergeable ? end : mergeable) - front;
                count = policy == 2 ? left : policy == 1 ? (left + 1) / 2 : 1;
            }
            uint64_t claimed = visit == 0 ? GF_WORD(seq, front + count, end) : GF_WORD(seq, front, end - 1);
            piece = visit != 0 ? end - 1 : count > 1 ? GF_RUN(front, count) : front;
            if (!__atomic_compare_exchange_n(&r->word, &w, claimed, 0,
                                             __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                continue;
            /* The phase cannot end before this piece is counted, so fn and
             * ctx are still those of phase `seq`. */
            if (me != 0 && ran == 0 && pool->stall_mid_piece && pool->stall_worker == me
                    && pool->stall_ns > 0)
                gf_sleep_ns(pool->stall_ns);
            pool->fn(pool->ctx, piece);
            ran += count;
            if (me != 0) {
                __atomic_add_fetch(&pool->done, count, __ATOMIC_SEQ_CST);
                gf_signal_caller(pool);
            }
        }
    }
    return ran;
}

/* Claim the next piece of the ahead phase `seq` (gf_ahead_start): returns it,
 * or -1 when none is left or the phase is over. */
static inline int gf_claim_ahead_piece(gf_pool* pool, uint64_t seq)
{
    for (;;) {
        uint64_t w = __atomic_load_n(&pool->ahead_word, __ATOMIC_ACQUIRE);
        if (GF_WORD_SEQ(w) != (seq & GF_SEQ_MASK) || GF_WORD_FRONT(w) >= GF_WORD_END(w))
            return -1;
        if (__atomic_compare_exchange_n(&pool->ahead_word, &w,
                                        GF_WORD(seq, GF_WORD_FRONT(w) + 1, GF_WORD_END(w)), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return GF_WORD_FRONT(w);
    }
}

/* Worker `me`'s part of an ahead phase: pieces in order, while any is left. */
static void gf_claim_ahead(gf_pool* pool, int me, uint64_t seq)
{
    int piece, ran = 0;
    while ((piece = gf_claim_ahead_piece(pool, seq)) >= 0) {
        if (ran++ == 0 && pool->stall_mid_piece && pool->stall_worker == me && pool->stall_ns > 0)
            gf_sleep_ns(pool->stall_ns);
        /* the phase cannot end before this piece is done: fn and ctx are its own */
        pool->fn(pool->ctx, piece);
        __atomic_store_n(&pool->ahead_done[piece], seq, __ATOMIC_RELEASE);
        gf_signal_caller(pool);  /* (the caller counts the workers' pieces at the end) */
    }
}

/* How long a worker idle between the phases of a call spins (yielding) before
 * it sleeps; a benchmark hook (_core._set_call_spin, bench/call_spin_ab.py).
 * Longer spins were tried: with 4 ms, so that a trial of threads after a
 * serial spell would not start by waking a sleeping worker, FrozenGRU forward
 * right after other libraries ran 0.90-1.03x the time of 50 us (Zen 4,
 * call_spin_ab.py, 30 rounds) and the pace / forced threads went from 1.044 to
 * 1.027 on a quiet host; but compare.py's medium forward+backward float32 ran
 * 45% of its phases serially at 56.7 ms in two runs against 2% and 35.7 ms with
 * 50 us (bench/README.md, stop 32).  So the default stays GF_SPIN_NS. */
static int64_t gf_call_spin_ns = GF_CALL_SPIN_NS;

static void* gf_worker_main(void* arg)
{
    gf_pool* pool = &gf_the_pool;
    int me = (int)(intptr_t)arg;
    uint64_t seen = __atomic_load_n(&pool->sequence, __ATOMIC_ACQUIRE);
    int64_t idle_since = gf_now_ns();
    unsigned spins = 0;
    for (;;) {
        uint64_t seq = __atomic_load_n(&pool->sequence, __ATOMIC_ACQUIRE);
        if (seq != seen) {
            seen = seq;
            if (pool->stall_worker == me && pool->stall_ns > 0 && !pool->stall_mid_piece)
                gf_sleep_ns(pool->stall_ns);
            if (me < __atomic_load_n(&pool->participants, __ATOMIC_ACQUIRE)) {
                if (__atomic_load_n(&pool->ahead, __ATOMIC_ACQUIRE))
                    gf_claim_ahead(pool, me, seq);
                else
                    gf_claim_and_run(pool, me,
                                     __atomic_load_n(&pool->participants, __ATOMIC_ACQUIRE), seq);
            }
            idle_since = gf_now_ns();
            spins = 0;
            continue;
        }
        if ((++spins & 255) != 0)
            continue;
        int64_t idle = gf_now_ns() - idle_since;
        /* GF_SPIN_NS, or the call spin while a call holds the pool if it is longer */
        int64_t spin_ns = GF_SPIN_NS;
        if (__atomic_load_n(&pool->busy, __ATOMIC_RELAXED)
                && __atomic_load_n(&gf_call_spin_ns, __ATOMIC_RELAXED) > spin_ns)
            spin_ns = __atomic_load_n(&gf_call_spin_ns, __ATOMIC_RELAXED);
        if (idle < spin_ns) {
            /* After a few microseconds, spin with yields: a worker woken onto
             * the caller's core would otherwise keep the caller off it. */
            if (idle > GF_YIELD_AFTER_NS)
                sched_yield();
            continue;
        }
        /* No phase for GF_SPIN_NS: sleep until the caller publishes one. */
        pthread_mutex_lock(&pool->lock);
        __atomic_add_fetch(&pool->sleeping, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&pool->wake_sent, 0, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&pool->sequence, __ATOMIC_SEQ_CST) == seen)
            pthread_cond_wait(&pool->wake, &pool->lock);
        __atomic_sub_fetch(&pool->sleeping, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&pool->lock);
        idle_since = gf_now_ns();
        spins = 0;
    }
    return NULL;
}

/* After fork() only the forking thread exists: the child starts a new pool. */
static void gf_pool_after_fork_in_child(void)
{
    gf_pool* pool = &gf_the_pool;
    pool->n_workers = 0;
    pool->busy = 0;
    pool->sleeping = 0;
    pool->wake_sent = 0;
#ifdef GF_KEEP_OFF_CALLER
    pool->kept_off_cpu = -1;
#endif
    pool->caller_waiting = 0;
    pool->ahead = 0;  /* a phase ahead of another thread's call, forked mid-call */
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->finished, NULL);
}

/* The processors online: a property of the machine, never of a thread limit.
 * Asked once (sysconf reads /sys at every call: ~8 us, more than a small step). */
static int gf_processors_online = 0;

static inline int gf_processors(void)
{
    int n = __atomic_load_n(&gf_processors_online, __ATOMIC_RELAXED);
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
        __atomic_store_n(&gf_processors_online, n, __ATOMIC_RELAXED);
    }
    return n;
}

/* The thread count OpenMP would use (threadpoolctl and OMP_NUM_THREADS set it). */
static inline int gf_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return gf_processors();
#endif
}

/* Take the pool for one call on up to n_threads threads (the caller
 * included).  Returns the participants the call may use: 1 when the pool is
 * in use by another call or no worker could be started. */
static int gf_pool_acquire(int n_threads)
{
    static int fork_handler_set = 0;
    gf_pool* pool = &gf_the_pool;
    int want = n_threads - 1, expected = 0;
    if (want <= 0)
        return 1;
    if (want > GF_MAX_WORKERS)
        want = GF_MAX_WORKERS;
    if (!__atomic_compare_exchange_n(&pool->busy, &expected, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return 1;
    if (!fork_handler_set) {
        pthread_atfork(NULL, NULL, gf_pool_after_fork_in_child);
        fork_handler_set = 1;
    }
    while (pool->n_workers < want) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, gf_worker_main,
                                    (void*)(intptr_t)(pool->n_workers + 1));
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        pool->n_workers++;
#ifdef GF_KEEP_OFF_CALLER
        pthread_setname_np(thread, "gru_fast");  /* as top -H and /proc show it */
        pool->threads[pool->n_workers] = thread;
        if (pthread_getaffinity_np(thread, sizeof(cpu_set_t), &pool->allowed[pool->n_workers]) != 0)
            CPU_ZERO(&pool->allowed[pool->n_workers]);  /* unknown: never narrowed */
#endif
    }
    int participants = 1 + (pool->n_workers < want ? pool->n_workers : want);
    __atomic_store_n(&pool->participants, participants, __ATOMIC_RELEASE);
    if (participants == 1)
        __atomic_store_n(&pool->busy, 0, __ATOMIC_RELEASE);
    return participants;
}

/* Give the pool back (only after gf_pool_acquire returned more than 1). */
static inline void gf_pool_release(void)
{
    __atomic_store_n(&gf_the_pool.participants, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&gf_the_pool.busy, 0, __ATOMIC_RELEASE);
}

/* Keep the sleeping workers off the CPU the caller runs on, before waking them.
 *
 * Woken by the caller, a worker may be put on the caller's own CPU although
 * another is idle: on a virtual machine the kernel woke it where its waker
 * runs (perf sched, Zen 4 VM), maybe because an idle virtual CPU that the host
 * has descheduled does not count as idle.  There the worker runs only when
 * the caller waits, and a caller that finds its workers' pieces unstarted runs
 * them itself and never waits: calls right after 0.2 s without gru_fast ran
 * with no worker piece at all (Zen 4 VM, FrozenGRU, T = 60, B = 5, H = 200: 0 of
 * 66 pieces in most calls, 1.9 ms against 1.2 with the threads pinned apart;
 * bench/README.md).  So each worker's affinity is its own at start minus the
 * caller's CPU, set again when the caller wakes them from another CPU; a worker
 * that could run nowhere else keeps its affinity.  Only the caller holding the
 * pool calls this.  A hook (_core._set_keep_off_caller, between calls) turns it
 * off for comparisons. */
static int gf_keep_off_caller = 1;

static void gf_keep_workers_off(gf_pool* pool)
{
#ifdef GF_KEEP_OFF_CALLER
    int cpu, w;
    if (!__atomic_load_n(&gf_keep_off_caller, __ATOMIC_RELAXED))
        return;
    cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE || cpu == pool->kept_off_cpu)
        return;
    pool->kept_off_cpu = cpu;
    for (w = 1; w <= pool->n_workers; w++) {
        cpu_set_t others;
        memcpy(&others, &pool->allowed[w], sizeof(others));
        CPU_CLR(cpu, &others);
        if (CPU_COUNT(&others) > 0) {
            gf_count(GF_STAT_WORKER_MOVES, 1);
            pthread_setaffinity_np(pool->threads[w], sizeof(others), &others);
        }
    }
#else
    (void)pool;
#endif
}

/* The hook: on or off; off gives the workers their affinity at start back. */
static void gf_set_keep_off_caller(int on)
{
    gf_keep_off_caller = on;
#ifdef GF_KEEP_OFF_CALLER
    if (!on && __atomic_load_n(&gf_the_pool.busy, __ATOMIC_ACQUIRE) == 0) {
        int w;
        for (w = 1; w <= gf_the_pool.n_workers; w++)
            if (CPU_COUNT(&gf_the_pool.allowed[w]) > 0)
                pthread_setaffinity_np(gf_the_pool.threads[w], sizeof(cpu_set_t),
                                       &gf_the_pool.allowed[w]);
        gf_the_pool.kept_off_cpu = -1;
    }
#endif
}

/* Make phase `seq` (its claim words written) the current one, and wake the
 * workers that sleep. */
static void gf_publish(gf_pool* pool, uint64_t seq)
{
    __atomic_store_n(&pool->sequence, seq, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pool->sleeping, __ATOMIC_SEQ_CST) > 0
            && !__atomic_load_n(&pool->wake_sent, __ATOMIC_SEQ_CST)) {
        gf_keep_workers_off(pool);
        pthread_mutex_lock(&pool->lock);
        __atomic_store_n(&pool->wake_sent, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
}

typedef int (*gf_done_test)(const void* word, int64_t target);

static int gf_count_reached(const void* word, int64_t target)
{
    return __atomic_load_n((const int*)word, __ATOMIC_SEQ_CST) >= target;
}

/* The caller waits for a worker's started piece until done(word, target):
 * spinning for GF_CALLER_SPIN_NS or `own_ns` (as long as its own
 * work took, which a worker's piece may take too), then sleeping on
 * `finished` (gf_signal_caller), at most 1 ms at a time: its core then goes
 * idle, and the kernel moves a runnable thread there, maybe the worker that
 * lost its core (a spinning caller would hold the core until the end of its
 * time slice). */
static void gf_wait_for_workers(gf_pool* pool, gf_done_test done, const void* word,
                                int64_t target, int64_t own_ns)
{
    int64_t since = gf_now_ns();
    int64_t spin_ns = own_ns > GF_CALLER_SPIN_NS ? own_ns : GF_CALLER_SPIN_NS;
    unsigned spins = 0;
    while (!done(word, target)) {
        if ((++spins & 255) != 0 || gf_now_ns() - since < spin_ns)
            continue;
        pthread_mutex_lock(&pool->lock);
        __atomic_store_n(&pool->caller_waiting, 1, __ATOMIC_SEQ_CST);
        while (!done(word, target)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 1000000;  /* at most 1 ms: a lost signal costs little */
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&pool->finished, &pool->lock, &until);
        }
        __atomic_store_n(&pool->caller_waiting, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Run pieces 0..n_pieces-1 of fn(ctx, piece) on `participants` threads (the
 * caller and participants - 1 workers of an acquired pool; 1: the caller
 * alone, in order).  Pieces [0, mergeable) may be handed to fn as runs
 * (GF_RUN), claimed by `policy` (gf_run_policy); the caller alone runs them
 * as one run unless the policy is 0.
 * Returns when every piece has run: how long the caller then waited for a
 * worker's piece, in ns, if that was long (GF_LATE_NS, and longer than its
 * own pieces took: the worker lost its core in the middle of a piece), else 0.
 *
 * The caller waits for started pieces spinning for GF_CALLER_SPIN_NS or as
 * long as its own pieces took, then sleeping: its core then goes idle, and the kernel moves a runnable
 * thread there, maybe the worker that lost its core (a spinning caller
 * would hold the core until the end of its time slice). */
static int64_t gf_run_phase(gf_piece_fn fn, void* ctx, int n_pieces, int mergeable,
                            int policy, int participants)
{
    gf_pool* pool = &gf_the_pool;
    int piece, r, own;
    int64_t start, claimed, waited;
    mergeable = mergeable < n_pieces ? mergeable : n_pieces;
    if (participants <= 1 || n_pieces <= 1) {
        piece = 0;
        if (policy != 0 && mergeable > 1) {
            fn(ctx, GF_RUN(0, mergeable));
            piece = mergeable;
        }
        for (; piece < n_pieces; piece++)
            fn(ctx, piece);
        gf_count(GF_STAT_SERIAL_PHASES, 1);
        return 0;
    }
    gf_count(GF_STAT_THREADED_PHASES, 1);
    if (participants > n_pieces)
        participants = n_pieces;  /* the others find no range to claim from */
    start = gf_now_ns();
    pool->fn = fn;
    pool->ctx = ctx;
    __atomic_store_n(&pool->mergeable, mergeable, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->run_policy, policy, __ATOMIC_RELAXED);
    __atomic_store_n(&pool->done, 0, __ATOMIC_RELAXED);
    uint64_t seq = ++pool->next_sequence;
    for (r = 0; r < participants; r++)
        __atomic_store_n(&pool->ranges[r].word,
                         GF_WORD(seq, r * n_pieces / participants,
                                 (r + 1) * n_pieces / participants), __ATOMIC_RELAXED);
    for (; r < pool->participants && r <= GF_MAX_WORKERS; r++)  /* workers left out */
        __atomic_store_n(&pool->ranges[r].word, GF_WORD(seq, 0, 0), __ATOMIC_RELAXED);
    gf_publish(pool, seq);
    own = gf_claim_and_run(pool, 0, participants, seq);
    gf_count(GF_STAT_WORKER_PIECES, n_pieces - own);
    /* Only pieces a worker has started are left: wait for them. */
    if (own + __atomic_load_n(&pool->done, __ATOMIC_ACQUIRE) >= n_pieces)
        return 0;
    claimed = gf_now_ns();
    n_pieces -= own;
    /* a worker's piece may take as long as the caller's work did */
    gf_wait_for_workers(pool, gf_count_reached, &pool->done, n_pieces, claimed - start);
    waited = gf_now_ns() - claimed;
    if (waited > GF_LATE_NS && waited > claimed - start) {
        gf_count(GF_STAT_LATE_WORKERS, 1);
        gf_count(GF_STAT_LATE_WAIT_NS, waited);
        return waited;
    }
    return 0;
}


/* ---- Phases the caller does not wait for: work ahead of the steps. ----
 *
 * The input preactivations of a chunk of steps are needed one step at a time,
 * so while the caller runs the steps serially (the pace found that threads do
 * not pay for them, e.g. one batch row) a worker can compute the
 * preactivations of the steps to come.  gf_ahead_start publishes such a
 * phase and returns at once; its pieces are claimed in order, by anyone;
 * before a step the caller makes sure the pieces it reads are done
 * (gf_ahead_ready): if a piece is still unclaimed it runs it itself (and a
 * worker that never shows up costs nothing more than the serial
 * projection), if a worker is running it the caller runs the next unclaimed
 * one meanwhile, else waits.  gf_ahead_finish runs or waits for all that is
 * left; it must come before any other phase is published.  With one
 * participant the caller runs the pieces in order as they are needed. */
typedef struct {
    gf_piece_fn fn;
    void* ctx;
    int n_pieces;
    int ready;        /* pieces [0, ready) are known done */
    int own;          /* pieces the caller ran */
    int64_t waited_ns;  /* for pieces a worker had started */
    uint64_t seq;     /* 0: the caller alone */
} gf_ahead;

/* Whether the workers help: a phase ahead that a worker never joined (asleep
 * for longer than the call, its core held by another library's threads) or
 * made the caller wait long for a started piece cost the publishing, the
 * wake-up and the waits for nothing (right after a NumPy matmul, whose
 * OpenBLAS workers spin on the other core: 1.02x the time of projecting first,
 * stream), so the next gf_ahead_gap chances are let go (gf_ahead_wanted),
 * the gap doubling up to GF_MAX_AHEAD_GAP while they keep missing and back
 * to none once a worker runs pieces again.  Read and written by the caller
 * holding the pool. */
#define GF_MAX_AHEAD_GAP 64
static int gf_ahead_gap = 0, gf_ahead_skip = 0;

static int gf_ahead_wanted(void)
{
    if (gf_ahead_skip > 0) {
        gf_ahead_skip--;
        return 0;
    }
    return 1;
}

static void gf_ahead_start(gf_ahead* ahead, gf_piece_fn fn, void* ctx, int n_pieces,
                           int participants)
{
    gf_pool* pool = &gf_the_pool;
    ahead->fn = fn;
    ahead->ctx = ctx;
    ahead->n_pieces = n_pieces;
    ahead->ready = 0;
    ahead->own = 0;
    ahead->waited_ns = 0;
    ahead->seq = 0;
    if (participants <= 1 || n_pieces <= 1 || n_pieces > GF_MAX_AHEAD) {
        gf_count(GF_STAT_SERIAL_PHASES, 1);
        return;  /* the caller alone, piece by piece as needed */
    }
    gf_count(GF_STAT_THREADED_PHASES, 1);
    pool->fn = fn;
    pool->ctx = ctx;
    ahead->seq = ++pool->next_sequence;
    __atomic_store_n(&pool->ahead_word, GF_WORD(ahead->seq, 0, n_pieces), __ATOMIC_RELAXED);
    __atomic_store_n(&pool->ahead, 1, __ATOMIC_RELAXED);
    gf_publish(pool, ahead->seq);
}

static int gf_piece_done(const void* word, int64_t seq)
{
    return __atomic_load_n((const uint64_t*)word, __ATOMIC_SEQ_CST) == (uint64_t)seq;
}

/* Make sure pieces [0, piece] are done. */
static void gf_ahead_ready(gf_ahead* ahead, int piece)
{
    gf_pool* pool = &gf_the_pool;
    int next;
    if (piece >= ahead->n_pieces)
        piece = ahead->n_pieces - 1;
    while (ahead->ready <= piece) {
        if (ahead->seq == 0) {
            ahead->fn(ahead->ctx, ahead->ready++);
            continue;
        }
        if (__atomic_load_n(&pool->ahead_done[ahead->ready], __ATOMIC_ACQUIRE) == ahead->seq) {
            ahead->ready++;
            continue;
        }
        next = gf_claim_ahead_piece(pool, ahead->seq);
        if (next >= 0) {  /* unclaimed, or the next one while a worker runs this one */
            ahead->fn(ahead->ctx, next);
            __atomic_store_n(&pool->ahead_done[next], ahead->seq, __ATOMIC_RELEASE);
            ahead->own++;
            continue;
        }
        /* a worker runs it */
        int64_t since = gf_now_ns();
        gf_wait_for_workers(pool, gf_piece_done, &pool->ahead_done[ahead->ready],
                            (int64_t)ahead->seq, 0);
        ahead->waited_ns += gf_now_ns() - since;  /* (not the pace's late workers) */
    }
}

/* Run or wait for every piece left; the pool is then free for other phases. */
static void gf_ahead_finish(gf_ahead* ahead)
{
    if (ahead->n_pieces <= 0)
        return;
    gf_ahead_ready(ahead, ahead->n_pieces - 1);
    if (ahead->seq != 0) {
        gf_count(GF_STAT_WORKER_PIECES, ahead->n_pieces - ahead->own);
        __atomic_store_n(&gf_the_pool.ahead, 0, __ATOMIC_RELAXED);
        if (ahead->own == ahead->n_pieces || ahead->waited_ns > GF_LATE_NS) {
            gf_ahead_gap = gf_ahead_gap < 1 ? 1 : 2 * gf_ahead_gap;
            gf_ahead_gap = gf_ahead_gap > GF_MAX_AHEAD_GAP ? GF_MAX_AHEAD_GAP : gf_ahead_gap;
            gf_ahead_skip = gf_ahead_gap;
        } else {
            gf_ahead_gap = 0;
        }
    }
    ahead->n_pieces = 0;
}

/* Test hook: worker `worker` (1, 2, ...) sleeps `ns` before each claim, or
 * (mid_piece) in the middle of its first piece of each phase; -1 turns it off. */
static inline void gf_set_worker_stall(int worker, int64_t ns, int mid_piece)
{
    gf_the_pool.stall_ns = ns;
    gf_the_pool.stall_mid_piece = mid_piece;
    gf_the_pool.stall_worker = worker;
}


/* ---- Whether the workers pay, measured while the call runs. ----
 *
 * The caller times blocks of steps, serial (participants 1) or threaded, in
 * nanoseconds per unit of work (the caller's estimate, e.g. active rows + 1),
 * and runs each block in the mode that measured faster, trying the other
 * mode for GF_TRIAL_BLOCKS blocks after `explore_gap` blocks (its fastest
 * block counts: noise only adds time).  While the trials lose, the gap
 * doubles, and it is at least GF_EXPLORE_SHARE times what the trial lost (a
 * trial 2x slower waits 64 blocks), so trials cost at most about
 * GF_TRIAL_BLOCKS/GF_EXPLORE_SHARE of the time; a trial that wins makes its
 * mode the faster one and the gap drops back to 2.  Trials of the serial mode
 * while threads win wait at least GF_SERIAL_TRIAL_SHARE times what they lose,
 * up to GF_MAX_SERIAL_TRIAL_GAP blocks: they only refresh the serial estimate
 * (the caller's own speed), since whatever takes the workers' cores shows in
 * the threaded blocks themselves (slower blocks, late workers); at 2x they
 * cost ~3% of the time with the share of 64, ~0.8% with 256 (large, wide:
 * 3% of the phases serial, 1.02-1.07x the forced-threads time before).  The
 * serial mode's first measure, when threads win, counts as a lost trial.
 * Outside trials a block
 * moves its mode's estimate by at most a quarter, so one slow block (an
 * interrupt) does not flip the mode.  Blocks last about GF_BLOCK_NS.
 *
 * A few slow blocks in a row still flip it: the hypervisor's hiccups last a
 * millisecond or two, three or four steps of a medium forward.  When the
 * threads lose their lead that way, outside a trial, they are measured again
 * first, as a trial is (GF_TRIAL_BLOCKS blocks, the fastest counts), and the
 * faster mode goes on; the gaps and the count of blocks to the next trial are
 * kept.  Without it the caller went serial until the next trial of threads, up
 * to GF_MAX_GAP blocks later (Zen 3, medium forward+backward: 44 serial steps,
 * ~9 ms of a 55 ms call, after one hiccup of 1.4 ms).  Only the threads' lead
 * is confirmed: a serial estimate raised by a hiccup while serial leads lets
 * threads run, which is how they get tried sooner, and confirming it kept
 * more phases serial (bench/README.md, stop 41).
 * The first step after the workers were idle is not timed: they sleep after
 * GF_SPIN_NS without a phase, and waking them (on a virtual machine, waking
 * its idle virtual CPU) is not what threads cost once running.
 *
 * A worker late in the middle of a piece (gf_run_phase returned how long the
 * caller waited for it: another library's threads hold the cores, or the
 * hypervisor took the worker's virtual CPU) costs that wait.  The pace keeps
 * what such waits cost the threaded blocks (stall_ema: waits per threaded
 * block, against block_ema, the threaded block's length; both averaged over
 * about GF_STALL_MEMORY blocks) and asks, at every late worker, whether
 * threads still pay with their waits counted: ns_per_unit[1] * (1 +
 * stall_ema / block_ema) below what GF_THREADS_MUST_SAVE asks of the serial
 * estimate.  If they do (the hypervisor's hiccups of tens of microseconds,
 * dozens a second even on a quiet virtual machine), the block goes on
 * threaded, the wait left out of its time.  If not (another library's
 * threads hold the cores: waits of a scheduler time slice, milliseconds),
 * the caller goes serial for `late_gap` blocks, without touching the
 * estimates, and for no longer than late_gap times the wait (a spell that
 * insures against the next stall in proportion to what this one cost) nor
 * GF_MAX_SERIAL_NS; late_gap doubles with every such spell (up to
 * GF_MAX_GAP) and halves after as many threaded blocks without a late
 * worker.  So a pipeline that keeps the cores busy soon tries threads
 * rarely, and hiccups that threads outrun do not send the caller serial.
 * (With every late worker sending the caller serial for late_gap blocks,
 * a neighbour spinning 200 us every 3 ms ran 18-42% of a medium forward's
 * steps serially, 1.12-1.25x the time of forced threads, and 29-61% of
 * medium forward+backward's, 1.15-1.50x: bench/pace_cost.py.)
 *
 * The estimates and gaps of the last call with the same key (the shape and
 * variant, chosen by the caller) start the next, so short calls start in the
 * right mode.
 *
 * A threaded estimate also goes stale with time: what made threads lose
 * (another library's threads spinning after its call: PyTorch's for a few
 * ms, OpenBLAS's for ~0.1 s) is gone a while later, but counted in blocks the
 * next trial may be far off, the more so when a block is one long step and a
 * call a few dozen of them.  So while serial is the faster mode, threads are
 * tried again once their estimate is older than GF_STALE_NS, or
 * GF_STALE_SHARE trials' worth of the last block's length if longer (a
 * losing trial then costs at most about 1/GF_STALE_SHARE of the time), at
 * a block's end and at a call's start.  (Zen 3, wide (25, 16, 1024, 1024)
 * FrozenGRU timed right after a PyTorch op: without it 11 to all 26 of the
 * call's phases ran serially on the estimate an earlier call had left,
 * 82-104 ms against 48-52 threaded, while ONNX Runtime took 53-69;
 * bench/README.md, stop 37.)
 *
 * The serial estimate goes stale the same way, and a trial of threads
 * judged against it is unfair when it runs where the stale rule puts it, at
 * a call's start: the first call after a pause runs slower in either mode
 * (Zen 3 VM, T = 60, B = 5, H = 200, serial: 2.16 ms right after 0.2 s of
 * other Python work, 1.6 and 1.5 the next calls, 1.5 thereafter), and the
 * serial estimate was made in the warm calls before.  So a trial of threads
 * that loses against a serial estimate older than the same bound does not
 * decide: the serial mode is measured again now, as a trial is (the fastest
 * of GF_TRIAL_BLOCKS blocks replaces its estimate), and the faster of the
 * two fresh measures goes on, the gaps as the lost trial left them.
 * (Zen 3, pipeline.py's wide after large: in some runs every call tried
 * threads at its start, all trials lost, 77-94% of the phases ran serially
 * in every scenario, idle included, 45-52 ms a call against 33-40
 * threaded; bench/README.md, stop 40.)
 *
 * Gaps stop at GF_MAX_GAP blocks, which bounds how long the caller stays
 * serial after the disturbance has gone: after a PyTorch epoch its OpenMP
 * threads spin for ~7 ms, trials lose meanwhile, and with a bound of 256
 * forward+backward at T = 20, B = 32, H = 128 ran serially until 26-30 ms
 * after it (forward and backward keep paces of their own, ~20 blocks per
 * call, so a gap spans many calls); with 64, 15-23 ms.  Trials then cost at
 * most about GF_TRIAL_BLOCKS/64 of what threads lose while they lose.
 */
#define GF_BLOCK_NS 40000
#define GF_MAX_GAP 64
/* A serial spell after a late worker lasts at most this long, however long the
 * blocks: what GF_MAX_GAP blocks of GF_BLOCK_NS last.  Counted in blocks alone,
 * a spell at a shape whose blocks are one long step (float64, B = 64, H = 512:
 * 3-6 ms a step) outlasted the call: with the hypervisor making a worker late 1-3
 * times per forward+backward even on a quiet VM, 32-71 of its 116 phases ran
 * serially (607-619 ms against 437 with 2). */
#define GF_MAX_SERIAL_NS (GF_MAX_GAP * (int64_t)GF_BLOCK_NS)
#define GF_EXPLORE_SHARE 64
#define GF_SERIAL_TRIAL_SHARE 256
#define GF_MAX_SERIAL_TRIAL_GAP 256
#define GF_STALL_MEMORY 16
/* Blocks per trial; the fastest counts.  Two lost too often: a trial of
 * threads starts by waking workers that slept through the serial blocks, and
 * on a busy host their first steps run slow (Zen 4, medium forward, pace
 * against forced threads sampled every ~4 s for 8 minutes, alternating builds:
 * with 2, 25% of the trials of threads won, 10,816 blocks ran serially by the
 * estimates and the pace took 1.23x the forced-threads time on average; with
 * 4, 33%, 7,944 and 1.18x; bench/README.md, stop 30). */
#define GF_TRIAL_BLOCKS 4
#define GF_MAX_BLOCK_STEPS 64
#define GF_STALE_NS 20000000
#define GF_STALE_SHARE 16
/* GF_STALE_NS, unless a test changed it (gf_pace_stale_ns = 0: the rule off) */
static int64_t gf_pace_stale_ns = GF_STALE_NS;

typedef struct {
    uint64_t key;
    int64_t ns_per_unit_x16[2];  /* serial, threaded; 0 = unknown */
    int64_t explore_gap, since_trial, late_gap, serial_left, serial_ns, block_steps, trial_left;
    int64_t trial_min_x16, stall_ema_ns, block_ema_ns;
    int64_t threaded_at, serial_at, last_block_ns;
    int64_t used_at;  /* when a call last stored it (gf_now_ns): the oldest way is replaced */
} gf_pace_memory;

/* The estimates of the keys seen, GF_PACE_WAYS ways in each of GF_PACE_SETS
 * sets (a key lives in any way of its set).  A table of one slot per set
 * lost two keys' estimates whenever both mapped to the slot and their calls
 * took turns (the layers of a network, forward and backward of a training
 * step): each call started afresh and ran blocks serially to measure the
 * serial mode again.  With four ways that takes five keys of one set in
 * turn.  (The 90 keys of compare.py's shapes shared 18 of 256 single slots
 * pairwise, 9 of them between medium's and large's keys; of 5,504 two-layer
 * networks of round sizes, 68 had two keys in one slot: bench/README.md.) */
#define GF_PACE_SETS 256
#define GF_PACE_WAYS 4
static gf_pace_memory gf_pace_table[GF_PACE_SETS][GF_PACE_WAYS];
/* Sets in use: GF_PACE_SETS, unless a test narrowed the table to make keys share a set. */
static unsigned gf_pace_sets_used = GF_PACE_SETS;

/* Whether threads that lose their lead by smoothing are measured again first
 * (above); tests and benchmarks turn it off. */
static int gf_confirm_lead_lost = 1;

/* -1: measure; 0: always serial; 1: always threaded (tests). */
static int gf_pace_forced = -1;

typedef struct {
    uint64_t key;
    int participants;       /* when threaded */
    int threaded;           /* the mode of the current block */
    int trying_other;       /* the current block tries the slower mode */
    int remeasuring;        /* ... or measures a mode again (a stale serial estimate, or
                             * threads that lost their lead by smoothing): at its end the
                             * faster goes on, the gaps and the count to the next trial kept */
    int trial_left;         /* blocks of the trial still to run */
    double trial_min;       /* the trial's fastest block so far, ns per unit */
    int since_trial;        /* blocks since the last trial */
    int explore_gap;        /* blocks between trials */
    int serial_left;        /* blocks still to run serial after a late worker */
    int64_t serial_since;   /* when they started (gf_now_ns) */
    int64_t serial_ns;      /* and how long they may last */
    int late_gap;           /* serial blocks after the next late worker */
    int clean_blocks;       /* threaded blocks since late_gap last changed */
    int block_steps;        /* steps per block */
    int steps_done;         /* in the current block */
    int warming_up;         /* the block's first step wakes the workers: not timed */
    int64_t units;          /* work in the current block */
    int64_t block_start;
    int64_t timed_ns;       /* of the current block, by gf_pace_timed_step_done */
    double ns_per_unit[2];
    double stall_ema;       /* ns a threaded block waits for late workers, on average */
    double block_ema;       /* ns a threaded block lasts (its waits left out), on average */
    int64_t threaded_at;    /* when a threaded block last ended (gf_now_ns), 0: never */
    int64_t serial_at;      /* when a serial block last ended, 0: never */
    int64_t last_block_ns;  /* how long the last block lasted, either mode */
} gf_pace;

static inline uint64_t gf_pace_key(int64_t a, int64_t b, int64_t c, int64_t d)
{
    uint64_t h = 1469598103934665603ULL;
    h = (h ^ (uint64_t)a) * 1099511628211ULL;
    h = (h ^ (uint64_t)b) * 1099511628211ULL;
    h = (h ^ (uint64_t)c) * 1099511628211ULL;
    h = (h ^ (uint64_t)d) * 1099511628211ULL;
    return h | 1;  /* never 0, the empty slot */
}

/* The set of a key in gf_pace_table: the top bits of a multiplicative hash
 * of the whole key.  The key's own low bits are no good: every key is odd (0
 * marks an empty way), and the low 8 bits of gf_pace_key depend on the low 8
 * bits of its inputs alone, so `key % 256` put shapes whose sizes differ by
 * multiples of 256 (B = 64, H = 256, I = 256 and I = 512) in one slot of 128,
 * where they took turns evicting each other's estimates: every call of each
 * started afresh and measured its serial mode again (stop 39). */
#if GF_PACE_SETS != 256
#error "gf_pace_set keeps the top 8 bits"
#endif
static inline gf_pace_memory* gf_pace_set(uint64_t key)
{
    unsigned set = (unsigned)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 56);
    return gf_pace_table[set % gf_pace_sets_used];
}

/* The way that holds `key`'s estimates, or NULL. */
static inline gf_pace_memory* gf_pace_find(uint64_t key)
{
    gf_pace_memory* set = gf_pace_set(key);
    int way;
    for (way = 0; way < GF_PACE_WAYS; way++)
        if (__atomic_load_n(&set[way].key, __ATOMIC_RELAXED) == key)
            return &set[way];
    return NULL;
}

/* Where to store `key`'s estimates: its own way, else an empty one, else the
 * one stored longest ago.  (Two threads storing new keys of one set at once
 * may pick the same way; one key's estimates are then lost, as with any
 * eviction: estimates only, the next call measures afresh.) */
static inline gf_pace_memory* gf_pace_way_to_store(uint64_t key)
{
    gf_pace_memory* set = gf_pace_set(key);
    gf_pace_memory* oldest = &set[0];
    int way;
    for (way = 0; way < GF_PACE_WAYS; way++) {
        uint64_t held = __atomic_load_n(&set[way].key, __ATOMIC_RELAXED);
        if (held == key || held == 0)
            return &set[way];
        if (__atomic_load_n(&set[way].used_at, __ATOMIC_RELAXED)
                < __atomic_load_n(&oldest->used_at, __ATOMIC_RELAXED))
            oldest = &set[way];
    }
    return oldest;
}

/* Test hook: keys use the first `sets` sets of the table (1 to GF_PACE_SETS),
 * which is emptied.  Returns the previous count. */
static unsigned gf_set_pace_sets(unsigned sets)
{
    unsigned previous = gf_pace_sets_used;
    gf_pace_sets_used = sets < 1 ? 1 : sets > GF_PACE_SETS ? GF_PACE_SETS : sets;
    memset(gf_pace_table, 0, sizeof(gf_pace_table));
    return previous;
}

/* The faster mode by the estimates, or the unknown one (threaded first).
 * Threads must save GF_THREADS_MUST_SAVE of the serial time: a second core
 * kept busy for less is not worth taking from whatever else runs, and
 * within that margin the two modes are equal to the clock's noise. */
#define GF_THREADS_MUST_SAVE 0.08
static inline int gf_pace_best(const gf_pace* pace)
{
    if (pace->ns_per_unit[1] == 0 || pace->ns_per_unit[0] == 0)
        return pace->ns_per_unit[1] == 0;
    return pace->ns_per_unit[1] < (1 - GF_THREADS_MUST_SAVE) * pace->ns_per_unit[0];
}

static inline int gf_clamp_gap_to(int64_t gap, int most)
{
    return gap < 2 ? 2 : gap > most ? most : (int)gap;
}

static inline int gf_clamp_gap(int64_t gap)
{
    return gf_clamp_gap_to(gap, GF_MAX_GAP);
}

/* Blocks between trials when the faster mode is `best`: trials of serial
 * while threads win may wait longer (GF_MAX_SERIAL_TRIAL_GAP). */
static inline int gf_explore_gap(const gf_pace* pace, int best)
{
    return gf_clamp_gap_to(pace->explore_gap, best ? GF_MAX_SERIAL_TRIAL_GAP : GF_MAX_GAP);
}

/* Whether an estimate last measured at `measured_at` is too old to trust
 * (see GF_STALE_NS above). */
static inline int gf_estimate_stale(const gf_pace* pace, int64_t measured_at, int64_t now)
{
    int64_t bound = GF_STALE_SHARE * GF_TRIAL_BLOCKS * pace->last_block_ns;
    if (gf_pace_stale_ns <= 0)  /* the rule off (a test) */
        return 0;
    if (bound < gf_pace_stale_ns)
        bound = gf_pace_stale_ns;
    return measured_at > 0 && now - measured_at > bound;
}

/* Whether the threaded estimate is too old to trust while serial is the
 * faster mode. */
static inline int gf_threads_stale(const gf_pace* pace, int64_t now)
{
    return gf_estimate_stale(pace, pace->threaded_at, now);
}

/* The mode that is not `best` has lost (a trial, or its first measure): the
 * next trial of it waits at least twice as long as the last gap, and at least
 * the share of what it lost (GF_EXPLORE_SHARE, GF_SERIAL_TRIAL_SHARE). */
static inline void gf_widen_gap(gf_pace* pace, int best)
{
    double lost = pace->ns_per_unit[!best] / pace->ns_per_unit[best] - 1;
    double share = best ? GF_SERIAL_TRIAL_SHARE : GF_EXPLORE_SHARE;
    int64_t gap = 2 * (int64_t)gf_clamp_gap(pace->explore_gap);
    if (gap < share * lost)
        gap = (int64_t)(share * lost);
    pace->explore_gap = gf_clamp_gap_to(gap, best ? GF_MAX_SERIAL_TRIAL_GAP : GF_MAX_GAP);
}

/* The next GF_TRIAL_BLOCKS blocks try mode `threaded`, the slower by the
 * estimates; the fastest of them counts. */
static inline void gf_start_trial(gf_pace* pace, int threaded)
{
    if (threaded && gf_pace_forced < 0)
        gf_count(GF_STAT_THREAD_TRIALS, 1);
    pace->threaded = threaded;
    pace->trying_other = 1;
    pace->trial_left = GF_TRIAL_BLOCKS;
    pace->trial_min = 0;
}

/* A pace that knows nothing yet. */
static void gf_pace_init(gf_pace* pace, uint64_t key, int participants)
{
    memset(pace, 0, sizeof(*pace));
    pace->key = key;
    pace->participants = participants;
    pace->explore_gap = 2;
    pace->late_gap = 2;
    pace->block_steps = 1;
}

static void gf_pace_start(gf_pace* pace, uint64_t key, int participants)
{
    gf_pace_memory* slot = gf_pace_find(key);
    int mode;
    gf_pace_init(pace, key, participants);
    if (slot == NULL && participants > 1 && gf_pace_forced < 0)
        gf_count(GF_STAT_FRESH_PACES, 1);  /* nothing kept: both modes measured afresh */
    if (slot != NULL) {
        for (mode = 0; mode < 2; mode++)
            pace->ns_per_unit[mode] =
                __atomic_load_n(&slot->ns_per_unit_x16[mode], __ATOMIC_RELAXED) / 16.0;
        pace->explore_gap = gf_clamp_gap_to(__atomic_load_n(&slot->explore_gap, __ATOMIC_RELAXED),
                                            GF_MAX_SERIAL_TRIAL_GAP);
        pace->since_trial = (int)__atomic_load_n(&slot->since_trial, __ATOMIC_RELAXED);
        pace->late_gap = gf_clamp_gap(__atomic_load_n(&slot->late_gap, __ATOMIC_RELAXED));
        pace->serial_left = gf_clamp_gap(__atomic_load_n(&slot->serial_left, __ATOMIC_RELAXED));
        if (__atomic_load_n(&slot->serial_left, __ATOMIC_RELAXED) <= 0)
            pace->serial_left = 0;
        pace->serial_ns = __atomic_load_n(&slot->serial_ns, __ATOMIC_RELAXED);
        pace->stall_ema = (double)__atomic_load_n(&slot->stall_ema_ns, __ATOMIC_RELAXED);
        pace->block_ema = (double)__atomic_load_n(&slot->block_ema_ns, __ATOMIC_RELAXED);
        if (pace->serial_ns <= 0)  /* the spell ran out between the calls */
            pace->serial_left = 0;
        pace->block_steps = (int)__atomic_load_n(&slot->block_steps, __ATOMIC_RELAXED);
        if (pace->block_steps < 1 || pace->block_steps > GF_MAX_BLOCK_STEPS)
            pace->block_steps = 1;
        /* a trial the last call left unfinished goes on (a phase that runs
         * once or twice a call would otherwise never finish one) */
        pace->trial_left = (int)__atomic_load_n(&slot->trial_left, __ATOMIC_RELAXED);
        pace->trial_min = __atomic_load_n(&slot->trial_min_x16, __ATOMIC_RELAXED) / 16.0;
        if (pace->serial_left || pace->trial_left <= 0 || pace->trial_left > GF_TRIAL_BLOCKS)
            pace->trial_left = 0;
        pace->trying_other = pace->trial_left > 0;
        pace->threaded_at = __atomic_load_n(&slot->threaded_at, __ATOMIC_RELAXED);
        pace->serial_at = __atomic_load_n(&slot->serial_at, __ATOMIC_RELAXED);
        pace->last_block_ns = __atomic_load_n(&slot->last_block_ns, __ATOMIC_RELAXED);
    }
    pace->serial_since = gf_now_ns();  /* a serial spell carried over counts from here */
    pace->threaded = participants > 1 && !pace->serial_left
                     && (pace->trying_other ? !gf_pace_best(pace) : gf_pace_best(pace));
    /* serial by both estimates (not to measure an unknown serial mode) */
    if (participants > 1 && !pace->serial_left && !pace->trying_other && !pace->threaded
            && pace->ns_per_unit[0] > 0 && gf_threads_stale(pace, gf_now_ns()))
        gf_start_trial(pace, 1);  /* serial by an estimate of threads gone stale */
    pace->warming_up = pace->threaded;
    pace->block_start = gf_now_ns();
}

/* Participants for the next phase. */
static inline int gf_pace_participants(const gf_pace* pace)
{
    if (gf_pace_forced >= 0)
        return gf_pace_forced ? pace->participants : 1;
    return pace->threaded ? pace->participants : 1;
}

/* A worker was late in the middle of a piece: the caller waited `waited` ns
 * for it (what gf_run_phase returned). */
static inline void gf_pace_note_late(gf_pace* pace, int64_t waited)
{
    if (gf_pace_forced >= 0 || !pace->threaded)
        return;
    pace->stall_ema += (double)waited / GF_STALL_MEMORY;
    if (!pace->trying_other && pace->block_ema > 0 && pace->ns_per_unit[0] > 0
            && pace->ns_per_unit[1] * (1 + pace->stall_ema / pace->block_ema)
               < (1 - GF_THREADS_MUST_SAVE) * pace->ns_per_unit[0]) {
        /* threads pay, their waits counted: go on, the wait left out of the block */
        gf_count(GF_STAT_LATE_PASSED, 1);
        pace->block_start += waited;
        pace->timed_ns -= waited;
        return;
    }
    gf_count(GF_STAT_LATE_SPELLS, 1);
    if (pace->trying_other)  /* a lost trial */
        pace->explore_gap = gf_clamp_gap(2 * pace->explore_gap);
    pace->trying_other = 0;
    pace->remeasuring = 0;
    pace->since_trial = 0;
    pace->threaded = 0;
    pace->serial_left = pace->late_gap;
    pace->serial_since = gf_now_ns();
    pace->serial_ns = pace->late_gap * waited;
    if (pace->serial_ns > GF_MAX_SERIAL_NS)
        pace->serial_ns = GF_MAX_SERIAL_NS;
    pace->late_gap = gf_clamp_gap(2 * pace->late_gap);
    pace->clean_blocks = 0;
    /* the block under way was threaded: restart it serial, untimed so far */
    pace->warming_up = 0;
    pace->steps_done = 0;
    pace->units = 0;
    pace->timed_ns = 0;
    pace->block_start = gf_now_ns();
}

/* Leave `ns` (work the caller timed apart, e.g. a phase paced by another
 * gf_pace) out of the current block. */
static inline void gf_pace_exclude(gf_pace* pace, int64_t ns)
{
    pace->block_start += ns;
}

/* The next block's mode, after a block in mode pace->threaded. */
static void gf_pace_choose(gf_pace* pace, int64_t now)
{
    int best = gf_pace_best(pace);
    if (pace->serial_left > 0) {  /* after a late worker */
        pace->serial_left--;
        if (gf_now_ns() - pace->serial_since > pace->serial_ns)
            pace->serial_left = 0;
        pace->threaded = pace->serial_left == 0 && best;
        return;
    }
    if (pace->trying_other && pace->trial_left > 0)
        return;  /* the trial goes on */
    if (pace->threaded && !pace->trying_other && ++pace->clean_blocks >= pace->late_gap) {
        pace->late_gap = gf_clamp_gap(pace->late_gap / 2);
        pace->clean_blocks = 0;
    }
    if (pace->ns_per_unit[0] == 0 || pace->ns_per_unit[1] == 0) {
        pace->threaded = best;  /* measure the unknown mode */
    } else if (pace->trying_other) {  /* this block tried the mode that was slower */
        pace->trying_other = 0;
        if (pace->remeasuring) {  /* a mode measured again: the faster goes on, counts kept */
            pace->remeasuring = 0;
            pace->threaded = best;
            return;
        }
        if (best == pace->threaded) {
            if (best && gf_pace_forced < 0)
                gf_count(GF_STAT_THREAD_TRIALS_WON, 1);
            pace->explore_gap = 2;  /* and it won */
        } else {
            gf_widen_gap(pace, best);
            if (pace->threaded && gf_estimate_stale(pace, pace->serial_at, now)) {
                /* threads lost to an old serial estimate: measure serial now */
                gf_count(GF_STAT_SERIAL_REMEASURED, 1);
                gf_start_trial(pace, 0);
                pace->remeasuring = 1;
                pace->since_trial = 0;
                return;
            }
        }
        pace->threaded = best;
        pace->since_trial = 0;
    } else if (++pace->since_trial >= gf_explore_gap(pace, best)
               || (!best && gf_threads_stale(pace, now))) {
        gf_start_trial(pace, !best);
    } else if (pace->threaded && !best && gf_confirm_lead_lost) {
        /* threads lost their lead by smoothing: measure them again first */
        gf_count(GF_STAT_LEADS_CONFIRMED, 1);
        gf_start_trial(pace, 1);
        pace->remeasuring = 1;
    } else {
        pace->threaded = best;
    }
}

/* A block of `elapsed` ns ended at `now`: update the estimate, choose the next
 * block's mode and length.  Returns `now`. */
static int64_t gf_pace_block_end(gf_pace* pace, int64_t now, int64_t elapsed)
{
    double measured, *estimate;
    int was_threaded = pace->threaded;
    if (pace->threaded && pace->units > 0) {
        /* what late workers cost threaded blocks, averaged over GF_STALL_MEMORY of them */
        pace->stall_ema -= pace->stall_ema / GF_STALL_MEMORY;
        pace->block_ema = pace->block_ema == 0 ? (double)elapsed
                          : pace->block_ema + ((double)elapsed - pace->block_ema) / GF_STALL_MEMORY;
    }
    if (pace->units > 0) {
        pace->last_block_ns = elapsed;
        if (pace->threaded)
            pace->threaded_at = now;
        else
            pace->serial_at = now;
        measured = (double)elapsed / (double)pace->units;
        estimate = &pace->ns_per_unit[pace->threaded];
        if (pace->trying_other) {
            /* A trial's fastest block replaces the estimate (which may be
             * stale): noise (an interrupt, the hypervisor) only adds time. */
            if (pace->trial_min == 0 || measured < pace->trial_min)
                pace->trial_min = measured;
            if (--pace->trial_left <= 0)
                *estimate = pace->trial_min;
        } else if (*estimate == 0) {
            *estimate = measured;
            /* The serial mode's first measure, and threads win: it lost as a
             * trial would, so its first trial waits as long as after a lost
             * one.  With the fresh gap of 2, a phase timed once a call (wide's
             * projection: 13.5 ms threaded, 27 serial) ran serially in the 4
             * calls right after the one that measured it (Zen 3, stop 38). */
            if (!pace->threaded && pace->ns_per_unit[1] > 0 && gf_pace_best(pace)) {
                gf_widen_gap(pace, 1);
                pace->since_trial = 0;
            }
        } else {
            /* Smooth, one block moving the estimate by at most a quarter:
             * a single slow block must not flip the mode. */
            if (measured > 1.5 * *estimate)
                measured = 1.5 * *estimate;
            else if (measured < *estimate / 1.5)
                measured = *estimate / 1.5;
            *estimate = 0.5 * (*estimate + measured);
        }
    }
    /* next block: about GF_BLOCK_NS long */
    if (elapsed < GF_BLOCK_NS / 2 && pace->block_steps < GF_MAX_BLOCK_STEPS)
        pace->block_steps *= 2;
    else if (elapsed > 2 * GF_BLOCK_NS && pace->block_steps > 1)
        pace->block_steps /= 2;
    if (pace->participants > 1) {
        gf_pace_choose(pace, now);
        if (!pace->threaded && !pace->serial_left && gf_pace_forced < 0)
            gf_count(GF_STAT_SERIAL_BLOCKS_CHOSEN, 1);
    }
    pace->warming_up = pace->threaded && !was_threaded;
    pace->steps_done = 0;
    pace->units = 0;
    pace->timed_ns = 0;
    pace->block_start = gf_now_ns();
    return now;
}

/* After a step of `units` work, timed by the clock since the block started.
 * Returns the time when a block ended (the caller looks for signals then),
 * else 0. */
static inline int64_t gf_pace_step_done(gf_pace* pace, int64_t units)
{
    int64_t now;
    if (pace->warming_up) {
        /* The first step after the workers were idle: they were asleep and
         * had to be woken, which is not what the mode costs. */
        pace->warming_up = 0;
        pace->block_start = gf_now_ns();
        return 0;
    }
    pace->units += units;
    if (++pace->steps_done < pace->block_steps)
        return 0;
    now = gf_now_ns();
    return gf_pace_block_end(pace, now, now - pace->block_start);
}

/* After a step of `units` work that the caller timed itself (`ns`): for a
 * phase that runs now and then among others, whose time between its runs
 * must not count. */
static inline int64_t gf_pace_timed_step_done(gf_pace* pace, int64_t units, int64_t ns)
{
    pace->warming_up = 0;  /* its phases are long beside a wake-up */
    pace->units += units;
    pace->timed_ns += ns;
    if (++pace->steps_done < pace->block_steps)
        return 0;
    return gf_pace_block_end(pace, gf_now_ns(), pace->timed_ns);
}

/* Keep the estimates for the next call with the same key. */
static void gf_pace_finish(const gf_pace* pace)
{
    gf_pace_memory* slot;
    int mode;
    if (pace->participants <= 1 || gf_pace_forced >= 0)
        return;  /* nothing learnt about threads */
    slot = gf_pace_way_to_store(pace->key);
    __atomic_store_n(&slot->key, 0, __ATOMIC_RELAXED);
    for (mode = 0; mode < 2; mode++)
        __atomic_store_n(&slot->ns_per_unit_x16[mode], (int64_t)(pace->ns_per_unit[mode] * 16),
                         __ATOMIC_RELAXED);
    __atomic_store_n(&slot->explore_gap, pace->explore_gap, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->since_trial, pace->since_trial, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->late_gap, pace->late_gap, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->serial_left, pace->serial_left, __ATOMIC_RELAXED);
    /* what is left of the spell, counted from the next call's start */
    __atomic_store_n(&slot->serial_ns, pace->serial_ns - (gf_now_ns() - pace->serial_since),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&slot->block_steps, pace->block_steps, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->trial_left,
                     pace->trying_other && !pace->remeasuring ? pace->trial_left : 0,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&slot->trial_min_x16, (int64_t)(pace->trial_min * 16), __ATOMIC_RELAXED);
    __atomic_store_n(&slot->stall_ema_ns, (int64_t)pace->stall_ema, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->block_ema_ns, (int64_t)pace->block_ema, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->threaded_at, pace->threaded_at, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->serial_at, pace->serial_at, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->last_block_ns, pace->last_block_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->used_at, gf_now_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&slot->key, pace->key, __ATOMIC_RELAXED);
}

/* Test support (_core._pace_decisions): a fresh pace of two participants fed
 * `n_blocks` blocks of one unit each, block i lasting times_ns[2 * i + mode]
 * in the mode the pace chose for it, on a clock of its own; modes[i] receives
 * that choice: 'T' threaded, 'S' serial by the estimates, 't' and 's' blocks
 * of a trial (or a re-measure).  The decisions are those of a real call's,
 * late workers aside, so tests can check them on any machine.  The paces'
 * counts (gf_stats) count these blocks too. */
static void gf_pace_simulate(const long long* times_ns, int n_blocks, char* modes)
{
    gf_pace pace;
    int64_t now = 1, elapsed;
    int i;
    gf_pace_init(&pace, 0, 2);
    pace.threaded = gf_pace_best(&pace);
    for (i = 0; i < n_blocks; i++) {
        modes[i] = pace.trying_other ? (pace.threaded ? 't' : 's') : (pace.threaded ? 'T' : 'S');
        elapsed = times_ns[2 * i + pace.threaded];
        now += elapsed;
        pace.units = 1;
        gf_pace_block_end(&pace, now, elapsed);
    }
}

/* Run a phase (gf_run_phase) on the participants `pace` chooses, and tell it
 * when a worker was late. */
static inline void gf_run_paced_phase(gf_pace* pace, gf_piece_fn fn, void* ctx, int n_pieces,
                                      int mergeable, int policy)
{
    int64_t waited = gf_run_phase(fn, ctx, n_pieces, mergeable, policy,
                                  gf_pace_participants(pace));
    if (waited)
        gf_pace_note_late(pace, waited);
}

#endif
