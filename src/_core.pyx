# The compiled core: one GRU layer, one direction, a whole sequence.
#
# The equations (row vectors, per time step t, over the rows still running;
# gate columns ordered r, z, n; σ the sigmoid):
#
#   forward
#     r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)
#     z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)
#     reset_after=True:   hn = h W_hn^T + b_hn,  n = tanh(x W_in^T + b_in + r ∘ hn)
#     reset_after=False:  q  = r ∘ h,            n = tanh(x W_in^T + b_in + q W_hn^T + b_hn)
#     h' = n + z ∘ (h − n)                        (= z ∘ h + (1 − z) ∘ n)
#
#   backward, from d = dL/dh' (the gradient coming back from step t+1 plus dy[t]):
#     dn = d ∘ (1 − z) ∘ (1 − n²)                dL/d(pre-tanh of n)
#     dz = d ∘ (h − n) ∘ z (1 − z)
#     reset_after=True:   dr = dn ∘ hn ∘ r (1 − r)
#                         d_gi = [dr, dz, dn],  d_gh = [dr, dz, dn ∘ r]
#                         dL/dh = d ∘ z + d_gh W_hh
#     reset_after=False:  dq = dn W_hn,  dr = dq ∘ h ∘ r (1 − r)
#                         d_gi = d_gh = [dr, dz, dn]
#                         dL/dh = d ∘ z + dq ∘ r + d_gi[:, :2H] W_hh[:2H]
#     summed step by step, while the step's gradients are in cache:
#     db_ih += Σ_rows d_gi,  db_hh += Σ_rows d_gh  (d_gh = d_gi but for the n block);
#     dW_hh = d_gh^T h (reset_after) or [d_gi[:, :2H]^T h ; dn^T q], summed step by
#     step too while dW_hh is small (weight_hh_over_rows), else over all N rows at once;
#     then over all N rows at once: dx = d_gi W_ih,  dW_ih = d_gi^T x.
#
# d_gi = dL/d(x W_ih^T + b_ih) and d_gh = dL/d(h W_hh^T + b_hh): the gradients
# of the input-gate and recurrent preactivations.
#
# Layout contract (set up by gru_fast.functional, which validates and
# allocates everything; nothing here allocates or checks shapes):
#
# * Rows are "packed" like PyTorch's PackedSequence.  Batch rows are sorted by
#   length, longest first, so the rows still running at step t are a prefix of
#   the batch: batch_sizes[t] of them.  The packed arrays hold, step after
#   step, only those rows: step t occupies packed rows offsets[t] to
#   offsets[t+1].  Without lengths the packing is the identity and the packed
#   input is x itself, reshaped to (T*B, I).
# * out_rows[p] is the row of y (viewed as (T*B, H)) that packed row p writes;
#   an empty out_rows means the identity (packed row p is row p of y).
# * order[b] is the batch row (of x and y) of sorted row b; forward writes the
#   zeros of y's padding through it (y comes uninitialized).  Empty for the
#   identity, which has no padding.
# * state (B, H) holds the running hidden state of every sorted batch row: h0
#   on entry, h_n on exit.  Rows that have not started (reverse direction) or
#   have finished keep their value, which is exactly the packed sequence
#   semantics.
# * The per-step cache `gates` has 4H columns: r, z, n and a fourth block that
#   backward needs: hn (reset_after=True) or q = r ∘ h (reset_after=False).
#
# Scratch: `input_preact` holds x W_ih^T (no bias) of a chunk of steps, computed a
# chunk at a time so that forward without a cache needs O(B·H) memory beyond
# its outputs (on the packed kernel in the step's pieces, or, forced, one
# GEMM on BLAS per chunk: see _projection_on_blas); `recurrent_preact` holds h W_hh^T of the current step.  Without a
# cache (store_history=False) `gates` and `h_prev` are (B, ...) scratch
# rewritten every step.  Optional: `input_tiles` takes a chunk's x in the
# kernel's row tiles (packed once by the caller for every piece and gate),
# `weight_tiles` one block of d_gi^T's row tiles per input piece for dW_ih
# (functional.py decides where they pay; the bits are the same either way).
#
# Products.  Every step multiplies the few active rows by the same weights.
# BLAS would repack the weights at every call, so the per-step products use
# the packed kernel of _kernel.h: each call packs its weights once into
# panels of PANEL columns, per gate, padded to Hp columns:
#   forward:  packed_ih[g] = W_ih[gH:(g+1)H].T (I, Hp), packed_hh[g] likewise (H, Hp)
#   backward: packed_hh = W_hh (3H, H) as panels of its columns (3H, Hp), and
#             the rows of h_prev (and q) as panels for dW_hh: each step's
#             (n_active, Hp), or all N rows (N, Hp) (weight_hh_over_rows)
# Backward's products over all N rows (dx, dW_ih), when large, are GEMMs on
# BLAS after the time loop (the row-major helper of _blas.pxd); when small, the
# packed kernel in the last phase's pieces (over_rows_on_blas).  dW_hh runs on
# the packed kernel in the hidden pieces, each piece owning the rows of dW_hh
# of its gate units (so the work splits over the threads like the rest of the
# step): while dW_hh is small, summed step by step, the gate gradients read
# while still in cache and no (N, 3H) d_gh stored; once dW_hh is too large to
# stay in cache from one step to the next, as one product over all N rows in
# the last phase (weight_hh_over_rows; measured: bench/README.md, "Training").
# Forward's input projection can go to BLAS too (a GEMM per chunk of steps on
# the calling thread, or one per gate in each piece), but by default stays on
# the packed kernel: see _projection_on_blas for why.
#
# Threads (see _parallel.h).  The calling thread walks the time steps.  Each
# step is one phase (two for the classic variant, whose candidate product
# reads q of every unit; backward likewise), split into pieces: a piece is a
# fixed run of whole panels of hidden units, the same units in the r, z and n
# blocks, and does all the work of its units in that phase (their columns of
# the products, their gates).  Or (row_split: every sequence full length,
# W_hh within cache) a run of the step's active batch rows, all units: its
# state rows never leave its core, and one phase does a step of any variant,
# forward or backward (which then sums dW_hh and the biases after the loop).  Between two phases every piece reads only
# what the previous phase completed, and within a phase no piece reads a
# column another writes.  Piece boundaries depend on the shape only, never
# on the thread count, and every piece runs the same code whichever thread
# claims it, so results are bitwise the same for any number of threads.
# The pool's workers claim pieces; the caller claims pieces too and runs
# every piece no worker has started, so a worker that lost its core never
# holds up a step.  Whether to hand pieces to the workers at all is measured
# while the call runs (gf_pace in _parallel.h).
#
# Ctrl-C: the caller looks for pending signals (taking the GIL for a moment)
# every SIGNAL_CHECK_NS of the call, on the main thread; an interrupted call
# stops between phases, leaves its outputs unfinished and raises.

from cython cimport floating
cimport numpy as cnp
from libc.string cimport memcpy, memset
from _activations cimport sigmoid, tanh_
from _blas cimport gemm
from _gate_loops cimport (backward_gates_classic, backward_gates_reset_after,
                          backward_reset_classic, forward_candidate_classic,
                          forward_gates_classic, forward_gates_reset_after)
from _kernel cimport (DOUBLE_TILE_ROWS, FLOAT_TILE_ROWS, PANEL, pack, pack_row_tiles, pack_transposed, packed_gemm,
                     packed_gemm_packing, packed_gemm_strided, packed_gemm_tiled,
                     packing_values)
from _narrow cimport columns_to_rows, narrow_input_gradient, narrow_weight_gradient

cdef extern from "_parallel.h" nogil:
    ctypedef void (*gf_piece_fn)(void* ctx, int piece) noexcept nogil
    ctypedef struct gf_pace:
        pass
    long long now_ns "gf_now_ns"()
    int load_flag "gf_load_flag"(const int* flag)
    int max_threads_c "gf_max_threads"()
    int processors "gf_processors"()
    int pool_acquire "gf_pool_acquire"(int n_threads)
    void pool_release "gf_pool_release"()
    void run_paced_phase "gf_run_paced_phase"(gf_pace* pace, gf_piece_fn fn, void* ctx,
                                              int n_pieces, int mergeable, int policy)
    int run_first "GF_RUN_FIRST"(int piece)
    int run_count "GF_RUN_COUNT"(int piece)
    int run_policy "gf_run_policy"
    int backward_run_policy "gf_backward_run_policy"
    void set_worker_stall "gf_set_worker_stall"(int worker, long long ns, int mid_piece)
    int pace_forced "gf_pace_forced"
    long long call_spin_ns "gf_call_spin_ns"
    long long pace_stale_ns "gf_pace_stale_ns"
    unsigned set_pace_sets "gf_set_pace_sets"(unsigned sets)
    int keep_off_caller "gf_keep_off_caller"
    void set_keep_off_caller "gf_set_keep_off_caller"(int on)
    int confirm_lead_lost "gf_confirm_lead_lost"
    void pace_simulate "gf_pace_simulate"(const long long* times_ns, int n_blocks, char* modes)
    enum: THREAD_STATS "GF_STATS"
    long long thread_stats "gf_stats"[THREAD_STATS]
    unsigned long long pace_key "gf_pace_key"(long long a, long long b, long long c, long long d)
    void pace_start "gf_pace_start"(gf_pace* pace, unsigned long long key, int participants)
    long long pace_step_done "gf_pace_step_done"(gf_pace* pace, long long units)
    void pace_finish "gf_pace_finish"(const gf_pace* pace)
    void pace_exclude "gf_pace_exclude"(gf_pace* pace, long long ns)
    long long pace_timed_step_done "gf_pace_timed_step_done"(gf_pace* pace, long long units,
                                                             long long ns)
    int pace_participants "gf_pace_participants"(const gf_pace* pace)
    enum: MAX_AHEAD "GF_MAX_AHEAD"
    ctypedef struct gf_ahead:
        int n_pieces
    void ahead_start "gf_ahead_start"(gf_ahead* ahead, gf_piece_fn fn, void* ctx, int n_pieces,
                                      int participants)
    void ahead_ready "gf_ahead_ready"(gf_ahead* ahead, int piece)
    void ahead_finish "gf_ahead_finish"(gf_ahead* ahead)
    int ahead_wanted "gf_ahead_wanted"()

cdef extern from "Python.h":
    int PyErr_CheckSignals()
    void PyErr_SetString(object type, const char* message)
    unsigned long PyThread_get_thread_ident()

cdef extern from *:
    """
    static int gf_raise_pending(void) { return PyErr_Occurred() ? -1 : 0; }
    """
    int raise_pending "gf_raise_pending"() except -1

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define gf_prefetch(address) __builtin_prefetch((address), 0, 3)
    #else
    #define gf_prefetch(address) ((void)(address))
    #endif
    """
    void prefetch "gf_prefetch"(const void* address) noexcept nogil

import threading

cnp.import_array()  # the NumPy C API that the entry points read their arrays with

cdef unsigned long _main_thread = threading.main_thread().ident

cdef enum:
    # How often a long call looks for Ctrl-C.  Taking the GIL costs ~0.1 us
    # when it is free, up to a switch interval (5 ms) when another Python
    # thread runs.
    SIGNAL_CHECK_NS = 20000000
    # At most about this many pieces per phase: enough for a few threads to
    # balance, few enough that claiming costs little beside a piece and that
    # the gate loops of a piece stay long (they run over the piece's units).
    TARGET_PIECES = 8

# Backward's dx and dW_ih go to BLAS, in float64, from this many multiply-adds
# on (N * 3H * 2I), where the kernel's double tile has fewer than
# KERNEL_PACE_TILE_ROWS rows: see over_rows_on_blas.
cdef long long OVER_ROWS_BLAS_MIN_MACS = 1LL << 32
cdef int KERNEL_PACE_TILE_ROWS = 6

# Backward sums dW_hh (3H x H) step by step up to this many times the packed
# kernel's L2 budget (half of one core's L2); see weight_hh_over_rows.
cdef long long HH_STEP_SUMS_MAX_BUDGETS = 8

cdef extern from "_kernel.h" nogil:
    void gf_set_level2_bytes(size_t level2_bytes)
    size_t gf_level2_budget()


def set_level2_cache(Py_ssize_t level2_bytes):
    """Tell the packed kernel one core's L2 in bytes (gru_fast._caches, at import).

    The kernel keeps the blocks of A of its large products within half of it.
    """
    if level2_bytes <= 0:
        raise ValueError(f"level2_bytes must be positive, not {level2_bytes}")
    gf_set_level2_bytes(<size_t> level2_bytes)


def level2_budget():
    """Bytes of A the packed kernel keeps in L2 (half of what set_level2_cache said)."""
    return gf_level2_budget()

cdef enum Phase:
    PACK              # forward and backward: pack the weights (forward: W_ih only without BLAS)
    PROJECT           # forward: the input preactivations of a chunk of steps (packed kernel)
    STEP              # forward: the products and gates of a step (r and z only if classic)
    CANDIDATE         # forward, classic: the candidate product on q = r ∘ h, the new state
    GATE_GRADIENTS    # backward: dh of the step before, then this step's gate gradients
    RESET_GRADIENTS   # backward, classic: dq = dn W_hn, the reset-gate gradients
    OVER_ROWS         # backward: the last product into dh, the bias gradients, dx and dW_ih
                      # on the packed kernel (or after it, on BLAS)


def max_threads():
    """Threads a core call may use by default (OpenMP's setting; threadpoolctl sets it)."""
    return max_threads_c()


PANEL_WIDTH = PANEL  # columns per panel of the packed weights


def padded_to_panels(width):
    """`width` rounded up to whole panels: Hp and Ip, the padded widths of packed operands."""
    return -(-width // PANEL) * PANEL


def _set_worker_stall(int worker, double seconds, bint mid_piece=False):
    """Test hook: worker `worker` (1, 2, ...) sleeps `seconds` before each claim, or
    (mid_piece) after claiming its first piece of each phase, before running it,
    as a worker that loses its core in the middle of a piece; worker -1: off."""
    set_worker_stall(worker, <long long> (seconds * 1e9), mid_piece)


def _set_call_spin(double seconds):
    """Benchmark hook: how long a worker spins between phases while a call holds the
    pool before it sleeps (default GF_CALL_SPIN_NS); returns the previous value."""
    global call_spin_ns
    previous = call_spin_ns / 1e9
    call_spin_ns = <long long> (seconds * 1e9)
    return previous


def _set_pace_stale(double seconds):
    """Test hook: after how long (at least) a pace running serially on its estimates
    tries threads again whatever its trial gap (GF_STALE_NS in _parallel.h); 0 turns
    the rule off.  Returns the previous value."""
    global pace_stale_ns
    previous = pace_stale_ns / 1e9
    pace_stale_ns = <long long> (seconds * 1e9)
    return previous


def _set_pace_sets(unsigned sets):
    """Test hook: the paces keep their estimates in the first `sets` sets of their
    table (GF_PACE_SETS in _parallel.h, 256 by default), so that keys share sets;
    the table is emptied.  Returns the previous count."""
    return set_pace_sets(sets)


def _set_confirm_lead(bint on):
    """Test and benchmark hook: whether a pace whose threads lose their lead by
    smoothing measures them again first (the default; see gf_pace_choose in
    _parallel.h); returns the previous setting."""
    global confirm_lead_lost
    previous = bool(confirm_lead_lost)
    confirm_lead_lost = on
    return previous


def _pace_decisions(const long long[:, ::1] block_times_ns):
    """Test hook: the modes a fresh pace chooses for blocks of given lengths.

    block_times_ns: int64 (n, 2), C-contiguous, row i the ns block i lasts
    serially and threaded (one unit of work each), on a clock of the pace's
    own.  Returns a string of n letters, block i's mode: 'T' threaded, 'S'
    serial by the estimates, 't' and 's' blocks of a trial or a re-measure
    (gf_pace_simulate in _parallel.h: a real call's decisions, late workers
    aside).
    """
    if block_times_ns.shape[1] != 2 or block_times_ns.shape[0] < 1:
        raise ValueError("_pace_decisions: block_times_ns must be (n, 2) with n >= 1, "
                         f"got ({block_times_ns.shape[0]}, {block_times_ns.shape[1]})")
    cdef int n = <int> block_times_ns.shape[0]
    cdef bytes modes = bytes(n)
    cdef char* out = modes
    with nogil:
        pace_simulate(&block_times_ns[0, 0], n, out)
    return modes.decode("ascii")


def _set_keep_off_caller(bint on):
    """Benchmark hook: whether workers are kept off the CPU of the caller that wakes
    them (the default; see gf_keep_workers_off in _parallel.h); returns the previous
    setting.  Off gives the workers their affinity at start back."""
    previous = bool(keep_off_caller)
    set_keep_off_caller(on)
    return previous


def _force_threads(mode):
    """Test hook: None lets each call measure whether its workers pay (the default);
    True hands every phase to the workers, False runs every phase on the caller."""
    global pace_forced
    pace_forced = -1 if mode is None else int(bool(mode))


def _set_piece_runs(int forward, int backward):
    """Test and benchmark hook: how many pieces of its own range a thread claims at once.

    For forward's and backward's phases: 0 one; 1 half of what is left (the
    forward default); 2 all that is left (the backward default).
    """
    global run_policy, backward_run_policy
    if forward not in (0, 1, 2) or backward not in (0, 1, 2):
        raise ValueError(f"_set_piece_runs: 0, 1 or 2, not {forward!r}, {backward!r}")
    run_policy = forward
    backward_run_policy = backward


def _thread_stats():
    """What the threads did since the module was loaded: a dict of counts (benchmarks, tests).

    serial_phases: phases the caller ran alone; threaded_phases: phases handed
    to the workers; worker_pieces: pieces the workers ran; late_workers:
    phases whose caller waited long for a worker that lost its core mid-piece;
    late_wait_ns: how long the caller waited in those phases, in all.
    The paces' decisions (gf_pace in _parallel.h): late_spells, late workers
    that sent the caller serial for a while; late_passed, those after which
    threads still paid; thread_trials, blocks of threads tried while serial
    measured faster, and thread_trials_won, those that made threads the faster
    again; serial_blocks_chosen, blocks run serially by the estimates (outside
    a late worker's spell); worker_moves, workers whose affinity was set off the
    CPU of the caller that woke them (gf_keep_workers_off in _parallel.h);
    fresh_paces, paces of calls that could use threads and found no estimates
    kept for their key (a shape's first call, or its estimates evicted);
    serial_remeasured, trials of threads lost to a stale serial estimate, after
    which serial was measured again; leads_confirmed, threads measured again
    after slow blocks took their lead (gf_pace_choose).
    """
    return dict(zip(("serial_phases", "threaded_phases", "worker_pieces", "late_workers",
                     "late_wait_ns", "late_spells", "late_passed", "thread_trials",
                     "thread_trials_won", "serial_blocks_chosen", "worker_moves",
                     "fresh_paces", "serial_remeasured", "leads_confirmed"),
                    [thread_stats[i] for i in range(THREAD_STATS)], strict=True))


cdef struct Pieces:
    # A split of `width` columns into pieces of `units` columns (whole panels).
    int width
    int units
    int count


cdef inline Pieces _pieces(Py_ssize_t width) noexcept nogil:
    """The pieces of `width` columns: about TARGET_PIECES runs of whole panels.

    Depends on the width only, never on the thread count.
    """
    cdef Pieces pieces
    cdef Py_ssize_t n_panels = (width + PANEL - 1) // PANEL
    cdef Py_ssize_t per_piece = max(1, n_panels // TARGET_PIECES)
    pieces.width = <int> width
    pieces.units = <int> (per_piece * PANEL)
    pieces.count = <int> ((n_panels + per_piece - 1) // per_piece)
    return pieces


cdef int row_split_forced = -1   # _set_row_split: -1 the rule, 0 hidden pieces, 1 row pieces
cdef int row_split_rows = 0      # rows per row piece, 0: the rule


def _set_row_split(mode, int rows=0):
    """Test and benchmark hook: how the steps' phases split into pieces.

    mode None: the rule (row_split); True: pieces of batch rows; False:
    pieces of hidden units.  rows: rows per row piece (0: the rule).
    """
    global row_split_forced, row_split_rows
    row_split_forced = -1 if mode is None else int(bool(mode))
    row_split_rows = rows


# Rows at least in each row piece.  A row piece streams all of W_hh for its
# rows, where a hidden piece streams its share: with few rows the product is
# bound by those loads.  Forward: 3 (Zen 4, forced threads, medians of 7
# rounds, row pieces against hidden ones: 3 + 2 rows, T = 60, I = 100, H = 200,
# 0.838 against 0.805 ms, and one thread 1.296 against 1.202; B = 5, H = 128
# 0.613 against 0.528; 2 + 2 rows equal; 3 + 3 and 4 + 4 rows 14-16% faster as
# rows; in one process, the pace choosing, a forward minimum of 3 against 2:
# forward 0.972x, 0.953x (B = 5, H = 128), 0.942x (B = 4), elsewhere 1.00x;
# FrozenGRU.step 0.83-0.86x at B = 4-5; bench/README.md, stop 34).
# Backward: 2 (there 3 made forward+backward 1.20-1.36x slower at B = 4 and
# 5: backward's row pieces also carry dW_hh's product over rows).
# A benchmark hook sets the forward one (_set_forward_row_piece_min).
cdef Py_ssize_t forward_row_piece_min = 3
cdef Py_ssize_t BACKWARD_ROW_PIECE_MIN = 2


def _set_forward_row_piece_min(Py_ssize_t rows):
    """Benchmark hook: rows at least in a forward row piece (default 3); returns the
    previous value.  Backward keeps 2."""
    global forward_row_piece_min
    previous = forward_row_piece_min
    forward_row_piece_min = max(1, rows)
    return previous


cdef inline Py_ssize_t _row_piece_min(bint backward) noexcept nogil:
    """Rows at least in a row piece of forward's or backward's steps."""
    return BACKWARD_ROW_PIECE_MIN if backward else forward_row_piece_min


cdef inline Pieces _row_pieces(Py_ssize_t n_rows, Py_ssize_t min_rows) noexcept nogil:
    """The row pieces of a step's n_rows active rows: as many as the machine
    has processors, at least `min_rows` rows each (_row_piece_min), of equal rows
    (the last may have fewer); one piece (maybe of no rows) when there are too
    few rows.

    A property of the shape and the machine, never of the thread count.
    The active rows of a step are a prefix of the batch (sorted by length),
    so a step of fewer rows splits them anew: none of them is left to one
    thread when the rows of another piece have ended.
    """
    cdef Pieces pieces
    cdef Py_ssize_t count = max(1, min(<Py_ssize_t> processors(), n_rows // min_rows))
    cdef Py_ssize_t rows = row_split_rows if row_split_rows > 0 else (n_rows + count - 1) // count
    rows = max(1, rows)
    pieces.width = <int> n_rows
    pieces.units = <int> rows
    pieces.count = <int> max(1, (n_rows + rows - 1) // rows)
    return pieces


# Row pieces while W_hh (3H x H) is at most this many of the kernel's L2 budgets
# (half of one core's L2): forward, weight_hh_over_rows's bound; backward, whose
# row pieces also move dW_hh to one product over all rows, a quarter of it.
cdef long long ROWS_FORWARD_MAX_BUDGETS = 8
cdef long long ROWS_BACKWARD_MAX_BUDGETS = 2


cdef inline bint _row_split_on(Py_ssize_t batch_size, Py_ssize_t hidden_size, int itemsize,
                               bint full_lengths, bint backward) noexcept nogil:
    """See row_split."""
    if _row_pieces(batch_size, _row_piece_min(backward)).count < 2:
        return False
    if row_split_forced >= 0:
        return row_split_forced == 1
    cdef long long budgets = (ROWS_FORWARD_MAX_BUDGETS if full_lengths and not backward
                              else ROWS_BACKWARD_MAX_BUDGETS)
    return 3 * hidden_size * hidden_size * itemsize <= budgets * <long long> gf_level2_budget()


def row_split(Py_ssize_t batch_size, Py_ssize_t hidden_size, int itemsize, bint full_lengths,
              bint backward=False):
    """Whether forward's and backward's steps split over batch rows (else hidden units).

    A piece of rows runs every hidden unit of its rows, so it reads only the
    state (forward) or state gradient (backward) rows it wrote itself the
    step before: nothing crosses between cores inside the time loop, and
    the classic variant and backward need one phase per step, not two.  A
    piece of hidden units reads the whole state every step, half of it
    written by the other core, but only its share of W_hh.  So rows while
    W_hh stays in cache from step to step, as the machine's L2 sets it:
    forward with every sequence running all steps (full_lengths), W_hh
    within 8 L2 budgets (`weight_hh_over_rows`'s bound); backward
    (`backward`), where row pieces also sum dW_hh over all rows at the end,
    or lengths that differ (late steps have few rows, each piece then
    streaming all of W_hh for them), within 2.  A step with too few active
    rows for two pieces runs hidden pieces.  Measured on Zen 3
    (bench/README.md, "Row pieces").  Both splits give the same bits on any thread count.
    Backward with row pieces sums dW_hh over all rows after the time loop.
    """
    return _row_split_on(batch_size, hidden_size, itemsize, full_lengths, backward)


cdef inline bint _full_lengths(const Py_ssize_t* batch_sizes, Py_ssize_t seq_len,
                               Py_ssize_t batch_size) noexcept nogil:
    """Whether every step of the `seq_len` in `batch_sizes` runs every row of the batch."""
    cdef Py_ssize_t t
    for t in range(seq_len):
        if batch_sizes[t] != batch_size:
            return False
    return True


cdef inline bint _rows_this_step(const Sequence* seq, Pieces rows) noexcept nogil:
    """Whether a step whose active rows split into `rows` runs row pieces (else hidden ones)."""
    return seq.row_split and rows.count >= 2


cdef inline int _step_pieces(const Sequence* seq, Pieces rows) noexcept nogil:
    """Pieces of a step's phase: `rows` (the step's row pieces) or the hidden pieces."""
    return rows.count if _rows_this_step(seq, rows) else seq.hidden_pieces.count


cdef inline int _most_pieces(const Sequence* seq) noexcept nogil:
    """The most pieces a step's phase can have (how many threads can help)."""
    return max(seq.hidden_pieces.count, _row_pieces(seq.batch_size, seq.row_piece_min).count
               if seq.row_split else 1)


cdef inline void _piece_range(Pieces pieces, int piece, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Columns [lo, hi) of `piece`; a run (GF_RUN): all of its pieces'."""
    if piece < 0:
        lo[0] = min(<Py_ssize_t> pieces.width, <Py_ssize_t> run_first(piece) * pieces.units)
        hi[0] = min(<Py_ssize_t> pieces.width,
                    <Py_ssize_t> (run_first(piece) + run_count(piece)) * pieces.units)
        return
    lo[0] = min(<Py_ssize_t> pieces.width, <Py_ssize_t> piece * pieces.units)
    hi[0] = min(<Py_ssize_t> pieces.width, lo[0] + pieces.units)


cdef struct Sequence:
    # What one core call runs over: sizes, flags and the packing's index arrays.
    Py_ssize_t seq_len, batch_size, input_size, hidden_size, n_rows
    const Py_ssize_t* batch_sizes
    const Py_ssize_t* offsets
    const Py_ssize_t* out_rows   # NULL: the identity
    const Py_ssize_t* order      # NULL: the identity (no padding)
    bint reset_after
    bint reverse
    Pieces hidden_pieces
    # The steps' phases split over batch rows instead (see row_split): pieces of rows,
    # at least row_piece_min rows each (_row_piece_min: forward's or backward's).
    bint row_split
    Py_ssize_t row_piece_min


cdef inline Py_ssize_t _time_of(const Sequence* seq, Py_ssize_t step, bint backward) noexcept nogil:
    """The time index of the step-th step walked (backward walks the other way)."""
    if seq.reverse != backward:
        return seq.seq_len - 1 - step
    return step


cdef struct ForwardCall:
    Sequence seq
    bint store_history
    bint pack_weights
    Py_ssize_t preact_rows      # rows of input_preact
    # Arrays of the call's dtype (float or double; pointers of a fused type
    # cannot be struct members).  Shapes in forward_sequence.
    const void* x
    const void* weight_ih
    const void* weight_hh
    void* packed_ih
    void* packed_hh
    const void* bias_gates
    const void* bias_hn
    void* y
    void* gates
    void* h_prev
    void* input_preact
    void* input_tiles               # (preact_rows, I): a chunk's x in row tiles, or NULL
    void* recurrent_preact
    # The phase being run, set by the caller before each.
    int phase
    Py_ssize_t t, n_active
    Py_ssize_t chunk_lo, chunk_hi   # steps whose input preactivations input_preact holds
    bint project                    # this step's STEP phase computes them first (packed kernel)
    bint blas_projection            # the caller computes them on BLAS instead
    bint blas_in_pieces             # each piece computes its columns of them on BLAS
    # Or ahead of the steps (_project_rows): pieces of ahead_rows rows of the chunk's
    # chunk_rows, all of each row's units; claimed in the order the steps need them.
    Py_ssize_t ahead_rows, chunk_rows
    int ahead_pieces
    void* h_read
    void* h_write
    Pieces rows                     # the step's row pieces (row_split)


cdef struct BackwardCall:
    Sequence seq
    Pieces input_pieces              # dx and dW_ih on the packed kernel: pieces of input columns
    void* weight_tiles               # per input piece, d_gi^T's row tiles for dW_ih, or NULL
    size_t weight_tiles_values       # values of weight_tiles per input piece
    bint over_rows_on_blas           # dx and dW_ih on BLAS after the time loop (else the kernel)
    bint hh_over_rows                # dW_hh over all rows in OVER_ROWS (else summed per step)
    bint with_bias
    bint with_dy                     # dy given (else zeros, never read)
    const void* x
    const void* weight_ih
    const void* weight_hh
    const void* gates
    const void* h_prev
    const void* dy
    void* dh
    void* d_gi
    void* d_gh
    void* dq
    void* packed_hh
    void* packed_rows                # rows of h_prev (and q) as panels, see _packed_rows
    void* packed_ih                  # W_ih and x as panels (dx and dW_ih on the packed kernel)
    void* packed_x
    void* dx
    void* d_weight_ih
    void* d_weight_hh
    void* d_bias_ih
    void* d_bias_hh
    int phase
    Py_ssize_t t, n_active
    Py_ssize_t prev_t, prev_active   # the step before, whose product into dh is pending
    Pieces rows                      # the step's row pieces (row_split)


cdef inline void _pack_forward_weights(
        const floating* weight_ih, const floating* weight_hh,
        floating* packed_ih, floating* packed_hh, Py_ssize_t lo, Py_ssize_t hi,
        Py_ssize_t input_size, Py_ssize_t hidden_size, bint with_ih) noexcept nogil:
    """Pack hidden units [lo, hi) of every gate, as forward's products read them.

    Gate g's panels start at packed_*[g * Hp * K], each K x PANEL (K = I or
    H); `lo` is a multiple of PANEL, so the units are whole panels.  W_ih
    only `with_ih` (a call that projects on BLAS reads W_ih itself).
    """
    cdef Py_ssize_t H = hidden_size, I = input_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef int gate
    for gate in range(3):
        # packed_ih[g][:, lo:hi] = W_ih[gH+lo : gH+hi].T  (I, hi-lo) as panels
        if with_ih:
            pack_transposed(weight_ih + (gate * H + lo) * I, I, <int> (hi - lo), <int> I,
                            packed_ih + gate * Hp * I + lo * I)
        # packed_hh[g][:, lo:hi] = W_hh[gH+lo : gH+hi].T  (H, hi-lo) as panels
        pack_transposed(weight_hh + (gate * H + lo) * H, H, <int> (hi - lo), <int> H,
                        packed_hh + gate * Hp * H + lo * H)


def pack_forward_weights(const floating[:, ::1] weight_ih,
                         const floating[:, ::1] weight_hh,
                         floating[::1] packed_ih,
                         floating[::1] packed_hh):
    """Pack the weights once, as forward_sequence(..., pack_weights=True) would.

    weight_ih (3H, I), weight_hh (3H, H); packed_ih (3*Hp*I,) and packed_hh
    (3*Hp*H,) are filled (Hp = padded_to_panels(H)).  The layout does not
    depend on the thread count, so the result serves any later call.
    """
    cdef Py_ssize_t hidden_size = weight_hh.shape[1]
    cdef Py_ssize_t input_size = weight_ih.shape[1]
    with nogil:
        _pack_forward_weights(&weight_ih[0, 0], &weight_hh[0, 0], &packed_ih[0],
                              &packed_hh[0], 0, hidden_size, input_size, hidden_size, True)


cdef inline void _project_on_panels(ForwardCall* call, int gate, Py_ssize_t row_lo,
                                    Py_ssize_t row_hi, Py_ssize_t lo, Py_ssize_t hi,
                                    floating* dtype) noexcept nogil:
    """One gate's input preactivations of hidden units [lo, hi) for the chunk's rows
    [row_lo, row_hi), on the packed kernel (packed_ih)."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, I = seq.input_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    # input_preact[row_lo:row_hi, gH+lo:gH+hi] = x[chunk rows row_lo:row_hi] (rows, I) @ W_ih[gH+lo:gH+hi].T (I, hi-lo)
    packed_gemm(<int> (row_hi - row_lo), <int> (hi - lo), <int> I,
                <const floating*> call.x + (seq.offsets[call.chunk_lo] + row_lo) * I, I,
                <const floating*> call.packed_ih + lo * I + gate * Hp * I, I * PANEL, False,
                <floating*> call.input_preact + row_lo * 3 * H + gate * H + lo, 3 * H)


cdef inline void _project_piece(ForwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                floating* dtype) noexcept nogil:
    """The input preactivations of hidden units [lo, hi), every gate, for the chunk's rows.

    On the packed kernel (packed_ih), or with `blas_in_pieces` on BLAS from
    W_ih itself: one GEMM per gate on this piece's columns, run by whichever
    thread claimed the piece (so BLAS should then be held to one thread).
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, I = seq.input_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef int rows = <int> (seq.offsets[call.chunk_hi] - seq.offsets[call.chunk_lo])
    cdef int n_units = <int> (hi - lo)
    cdef const floating* x_rows = <const floating*> call.x + seq.offsets[call.chunk_lo] * I
    cdef floating* input_preact = <floating*> call.input_preact
    cdef floating one = 1, zero = 0
    cdef int gate
    cdef Py_ssize_t piece_lo, piece_hi
    for gate in range(3):
        if call.blas_in_pieces:
            # One GEMM per piece even when one thread runs them all (lo..hi spans
            # several): BLAS may sum a column in another order when the GEMM is
            # wider (OpenBLAS's Haswell sgemm does), and the pieces must give the
            # same bits on any thread count.
            piece_lo = lo
            while piece_lo < hi:
                piece_hi = min(hi, piece_lo + seq.hidden_pieces.units)
                # input_preact[:rows, gH+plo:gH+phi] = x[chunk rows] (rows, I) @ W_ih[gH+plo:gH+phi].T
                gemm(False, True, rows, <int> (piece_hi - piece_lo), <int> I, one, x_rows,
                     <int> I, <const floating*> call.weight_ih + (gate * H + piece_lo) * I,
                     <int> I, zero, input_preact + gate * H + piece_lo, <int> (3 * H))
                piece_lo = piece_hi
        elif call.input_tiles != NULL and call.phase == PROJECT:
            # input_preact[:rows, gH+lo:gH+hi] = x[chunk rows] (rows, I) @ W_ih[gH+lo:gH+hi].T (I, hi-lo),
            # x's full row tiles read from input_tiles, packed by the caller before this
            # chunk's PROJECT phase (a chunk of one step, projected in its STEP phase, has
            # none packed: it reads x, not the tiles of the chunk before)
            packed_gemm_tiled(rows, n_units, <int> I, x_rows, I, <const floating*> call.input_tiles,
                              <floating*> call.packed_ih + lo * I + gate * Hp * I, I * PANEL,
                              False, input_preact + gate * H + lo, 3 * H)
        else:
            _project_on_panels(call, gate, 0, rows, lo, hi, dtype)


cdef inline void _project_rows(ForwardCall* call, int piece, floating* dtype) noexcept nogil:
    """Piece `piece` of a chunk's projection ahead of the steps: the input
    preactivations of one group of the chunk's rows, every gate and unit.

    The groups are ahead_rows rows (a multiple of the kernel's row tile) from
    the chunk's first row, so every row sits in the row tile it has in the
    product over the whole chunk: the same bits as the PROJECT phase.  The
    steps walk the chunk from its last group in reverse, so the pieces do too.
    """
    cdef Py_ssize_t group = call.ahead_pieces - 1 - piece if call.seq.reverse else piece
    cdef Py_ssize_t row_lo = group * call.ahead_rows
    cdef Py_ssize_t row_hi = min(call.chunk_rows, row_lo + call.ahead_rows)
    cdef int gate
    for gate in range(3):
        _project_on_panels(call, gate, row_lo, row_hi, 0, call.seq.hidden_size, dtype)


cdef void _project_rows_float(void* call, int piece) noexcept nogil:
    _project_rows(<ForwardCall*> call, piece, <float*> NULL)


cdef void _project_rows_double(void* call, int piece) noexcept nogil:
    _project_rows(<ForwardCall*> call, piece, <double*> NULL)


cdef inline bint _ahead_possible(ForwardCall* call, int participants,
                                 floating* dtype) noexcept nogil:
    """Whether the chunk just chosen can be projected ahead of its steps (_project_rows),
    and if so its row groups set; _forward_run does it when the steps run serially.

    Only on the packed kernel with the chunk's x within the kernel's L2 budget,
    whose products are then not blocked: a product over a group of rows sums
    every row as the product over the whole chunk does.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t rows = seq.offsets[call.chunk_hi] - seq.offsets[call.chunk_lo]
    cdef Py_ssize_t tile = FLOAT_TILE_ROWS if floating is float else DOUBLE_TILE_ROWS
    cdef Py_ssize_t groups
    if (participants <= 1 or ahead_projection == 0
            or (pace_forced == 0 and ahead_projection == 1)  # every phase on the caller
            or call.blas_projection or call.blas_in_pieces or call.input_tiles != NULL
            or call.chunk_hi - call.chunk_lo < 2
            or <size_t> (rows * seq.input_size * sizeof(floating)) > gf_level2_budget()):
        return False
    # groups of whole tiles, about AHEAD_GROUP_STEPS steps each, at most MAX_AHEAD
    groups = (rows + tile - 1) // tile
    call.ahead_rows = max(1, min(groups, (AHEAD_GROUP_STEPS * seq.batch_size + tile - 1) // tile))
    call.ahead_rows = max(call.ahead_rows, (groups + MAX_AHEAD - 1) // MAX_AHEAD) * tile
    call.chunk_rows = rows
    call.ahead_pieces = <int> ((rows + call.ahead_rows - 1) // call.ahead_rows)
    return call.ahead_pieces > 1


cdef inline int _ahead_piece_of(const ForwardCall* call, Py_ssize_t t) noexcept nogil:
    """The last piece of the projection ahead (in claim order) that step t reads."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t base = seq.offsets[call.chunk_lo]
    if seq.reverse:  # reads from its first row on; pieces count groups from the last
        return <int> (call.ahead_pieces - 1 - (seq.offsets[t] - base) // call.ahead_rows)
    return <int> ((seq.offsets[t + 1] - base - 1) // call.ahead_rows)


cdef void _forward_piece(ForwardCall* call, int piece, floating* dtype) noexcept nogil:
    """Run `piece` (hidden units [lo, hi)) of the current phase of a forward call.

    Or a run of pieces (GF_RUN: all of them when one thread runs the phase).  A
    unit's arithmetic is the same either way: its column of each product sums in an
    order that does not depend on which run of whole panels holds it (the
    kernel's tiles, _kernel_impl.h), and the gate loops work unit by unit.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, I = seq.input_size, B = seq.batch_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef Py_ssize_t t = call.t, n_active = call.n_active
    cdef Py_ssize_t lo, hi, b, j, gate, row, gate_row
    _piece_range(seq.hidden_pieces, piece, &lo, &hi)
    cdef int n_units = <int> (hi - lo)
    # This piece's panels of gate g start at packed_hh[g * Hp * H + lo * H].
    cdef floating* own_hh = <floating*> call.packed_hh + lo * H
    cdef const floating* x = <const floating*> call.x
    cdef const floating* bias_gates = <const floating*> call.bias_gates
    cdef const floating* bias_hn = <const floating*> call.bias_hn
    cdef floating* y = <floating*> call.y
    cdef floating* input_preact = <floating*> call.input_preact
    cdef floating* recurrent_preact = <floating*> call.recurrent_preact
    cdef floating* h_read = <floating*> call.h_read
    cdef floating* h_write = <floating*> call.h_write
    cdef const floating* g
    cdef const floating* rec
    cdef const floating* hs
    cdef floating* hs_new
    cdef floating* gt
    cdef floating* hprev_row
    cdef floating* y_row

    if call.phase == PACK:
        _pack_forward_weights(<const floating*> call.weight_ih, <const floating*> call.weight_hh,
                              <floating*> call.packed_ih, <floating*> call.packed_hh,
                              lo, hi, I, H, not (call.blas_projection or call.blas_in_pieces))
        return

    if call.phase == PROJECT or (call.phase == STEP and call.project):
        _project_piece(call, lo, hi, dtype)
        if call.phase == PROJECT:
            return

    if call.phase == STEP and _rows_this_step(seq, call.rows):
        # piece is a row piece (or a run of them: one by one, each in its own tiles)
        _piece_range(call.rows, piece, &lo, &hi)
        b = lo
        while b < hi:
            _forward_rows(call, b, min(hi, b + call.rows.units), dtype)
            b += call.rows.units
        if hi >= call.rows.width and seq.order != NULL and y != NULL:
            # the last piece: y[t, row] = 0 for the rows not running at step t
            for b in range(call.n_active, B):
                y_row = y + (t * B + seq.order[b]) * H
                for j in range(H):
                    y_row[j] = 0
        return

    if call.phase == STEP:
        if seq.order != NULL and y != NULL:
            # y[t, row] = 0 for the rows not running at step t (this piece's units):
            # cheaper than np.zeros, whose fresh pages fault in when the core writes.
            for b in range(n_active, B):
                y_row = y + (t * B + seq.order[b]) * H
                for j in range(lo, hi):
                    y_row[j] = 0
        # (a step no row runs never gets here: _forward_run zeroes its y itself)
        for gate in range(3 if seq.reset_after else 2):
            # recurrent_preact[:n, gH+lo:gH+hi] = h[:n] (n, H) @ W_hh[gH+lo:gH+hi].T (H, hi-lo)
            packed_gemm(<int> n_active, n_units, <int> H, h_read, H,
                        own_hh + gate * Hp * H, H * PANEL, False,
                        recurrent_preact + gate * H + lo, 3 * H)
        for b in range(n_active):
            row = seq.offsets[t] + b
            gate_row = row if call.store_history else b
            g = input_preact + (row - seq.offsets[call.chunk_lo]) * 3 * H
            rec = recurrent_preact + b * 3 * H
            hs = h_read + b * H
            hs_new = h_write + b * H
            gt = <floating*> call.gates + gate_row * 4 * H
            hprev_row = <floating*> call.h_prev + gate_row * H
            if seq.reset_after:
                # Without y (final states only) the new state is the only output.
                y_row = NULL if y == NULL else y + (seq.out_rows[row] if seq.out_rows != NULL else row) * H
                forward_gates_reset_after(H, lo, hi, g, rec, bias_gates, bias_hn, hs, gt,
                                          hprev_row, hs_new, y_row)
            else:
                forward_gates_classic(H, lo, hi, g, rec, bias_gates, hs, gt, hprev_row)
        return

    # CANDIDATE (classic variant): q = r ∘ h of every unit is complete.
    gt = <floating*> call.gates + (seq.offsets[t] if call.store_history else 0) * 4 * H
    # recurrent_preact[:n, 2H+lo:2H+hi] = q[:n] (n, H) @ W_hh[2H+lo:2H+hi].T (H, hi-lo)
    packed_gemm(<int> n_active, n_units, <int> H, gt + 3 * H, 4 * H,
                own_hh + 2 * Hp * H, H * PANEL, False, recurrent_preact + 2 * H + lo, 3 * H)
    for b in range(n_active):
        row = seq.offsets[t] + b
        gate_row = row if call.store_history else b
        g = input_preact + (row - seq.offsets[call.chunk_lo]) * 3 * H
        rec = recurrent_preact + b * 3 * H
        hs = h_read + b * H
        hs_new = h_write + b * H
        gt = <floating*> call.gates + gate_row * 4 * H
        y_row = NULL if y == NULL else y + (seq.out_rows[row] if seq.out_rows != NULL else row) * H
        forward_candidate_classic(H, lo, hi, g, rec, bias_gates, hs, gt, hs_new, y_row)


cdef void _forward_rows(ForwardCall* call, Py_ssize_t r0, Py_ssize_t r1,
                       floating* dtype) noexcept nogil:
    """A step of batch rows [r0, r1), every hidden unit (STEP of a row split).

    Both products of the classic variant too: q = r ∘ h of these rows is all
    its candidate product reads.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, B = seq.batch_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef Py_ssize_t t = call.t, n_active = call.n_active
    cdef Py_ssize_t b, j, gate, row, gate_row, r_end
    cdef floating* y = <floating*> call.y
    cdef floating* packed_hh = <floating*> call.packed_hh
    cdef const floating* bias_gates = <const floating*> call.bias_gates
    cdef const floating* bias_hn = <const floating*> call.bias_hn
    cdef floating* input_preact = <floating*> call.input_preact
    cdef floating* recurrent_preact = <floating*> call.recurrent_preact
    cdef floating* h_read = <floating*> call.h_read
    cdef floating* h_write = <floating*> call.h_write
    cdef floating* gates_first
    cdef const floating* g
    cdef floating* gt
    cdef floating* y_row
    cdef int m
    r_end = min(r1, n_active)
    if r_end <= r0:
        return
    m = <int> (r_end - r0)
    for gate in range(3 if seq.reset_after else 2):
        # recurrent_preact[r0:r_end, gH:gH+H] = h[r0:r_end] (m, H) @ W_hh[gH:gH+H].T (H, H)
        packed_gemm(m, <int> H, <int> H, h_read + r0 * H, H, packed_hh + gate * Hp * H,
                    H * PANEL, False, recurrent_preact + r0 * 3 * H + gate * H, 3 * H)
    for b in range(r0, r_end):
        row = seq.offsets[t] + b
        gate_row = row if call.store_history else b
        g = input_preact + (row - seq.offsets[call.chunk_lo]) * 3 * H
        gt = <floating*> call.gates + gate_row * 4 * H
        if seq.reset_after:
            y_row = NULL if y == NULL else y + (seq.out_rows[row] if seq.out_rows != NULL else row) * H
            forward_gates_reset_after(H, 0, H, g, recurrent_preact + b * 3 * H, bias_gates,
                                      bias_hn, h_read + b * H, gt,
                                      <floating*> call.h_prev + gate_row * H,
                                      h_write + b * H, y_row)
        else:
            forward_gates_classic(H, 0, H, g, recurrent_preact + b * 3 * H, bias_gates,
                                  h_read + b * H, gt, <floating*> call.h_prev + gate_row * H)
    if seq.reset_after:
        return
    gates_first = <floating*> call.gates + ((seq.offsets[t] if call.store_history else 0) + r0) * 4 * H
    # recurrent_preact[r0:r_end, 2H:3H] = q[r0:r_end] (m, H) @ W_hh[2H:3H].T (H, H),  q = r ∘ h
    packed_gemm(m, <int> H, <int> H, gates_first + 3 * H, 4 * H, packed_hh + 2 * Hp * H,
                H * PANEL, False, recurrent_preact + r0 * 3 * H + 2 * H, 3 * H)
    for b in range(r0, r_end):
        row = seq.offsets[t] + b
        gate_row = row if call.store_history else b
        g = input_preact + (row - seq.offsets[call.chunk_lo]) * 3 * H
        gt = <floating*> call.gates + gate_row * 4 * H
        y_row = NULL if y == NULL else y + (seq.out_rows[row] if seq.out_rows != NULL else row) * H
        forward_candidate_classic(H, 0, H, g, recurrent_preact + b * 3 * H, bias_gates,
                                  h_read + b * H, gt, h_write + b * H, y_row)


cdef void _forward_piece_float(void* call, int piece) noexcept nogil:
    _forward_piece(<ForwardCall*> call, piece, <float*> NULL)


cdef void _forward_piece_double(void* call, int piece) noexcept nogil:
    _forward_piece(<ForwardCall*> call, piece, <double*> NULL)


cdef int _signals_pending() noexcept nogil:
    """Run Python's signal handlers (GIL taken for a moment); 1 if one raised."""
    with gil:
        return PyErr_CheckSignals() != 0


cdef int _stopped() noexcept nogil:
    """Raise KeyboardInterrupt for a call that another thread asked to stop; returns 1."""
    with gil:
        PyErr_SetString(KeyboardInterrupt, "stopped by the thread that received Ctrl-C")
    return 1


cdef struct Interrupts:
    # When and how a call looks for Ctrl-C.
    bint main_thread      # only the main thread runs Python's signal handlers
    const int* stop       # another thread's request to stop
    long long last_check  # ns


cdef inline bint _interrupted(long long block_end, Interrupts* interrupts) noexcept nogil:
    """At the end of a pace block: time to look for Ctrl-C, and was it pressed?"""
    if block_end == 0 or block_end - interrupts.last_check < SIGNAL_CHECK_NS:
        return False
    interrupts.last_check = block_end
    if load_flag(interrupts.stop) != 0:
        return _stopped()
    return interrupts.main_thread and _signals_pending() != 0


cdef inline Interrupts _interrupts_from(const int* stop, bint main_thread) noexcept nogil:
    """How a call that starts now looks for Ctrl-C and for another thread's `stop`."""
    cdef Interrupts interrupts
    interrupts.main_thread = main_thread
    interrupts.stop = stop
    interrupts.last_check = now_ns()
    return interrupts


cdef int projection_forced = -1  # _force_projection: -1 the rule, 0 packed, 1 BLAS, 2 BLAS in pieces
cdef int ahead_projection = 1  # _set_ahead_projection: 0 never, 1 the pace's serial steps, 2 forced
cdef int AHEAD_GROUP_STEPS = 4  # steps' rows per piece of a projection ahead, in whole tiles


def _set_ahead_projection(mode):
    """Benchmark and test hook: whether the chunks of steps that run serially are
    projected ahead of them, with the workers (_ahead_possible), or in a phase of
    their own first.  None: when the pace runs the steps serially (the default);
    False: never; True: also when `_force_threads(False)` makes them serial (the
    projection then still uses the workers).  Returns the previous mode."""
    global ahead_projection
    previous = {0: False, 1: None, 2: True}[ahead_projection]
    ahead_projection = 1 if mode is None else 2 if mode else 0
    return previous


def _force_projection(mode):
    """Test and benchmark hook: how forward computes its input projection.

    None or False: on the packed kernel, in the step's pieces (the default,
    see _projection_on_blas); True: on BLAS, one GEMM per chunk of steps on
    the calling thread; "pieces": on BLAS in the step's pieces, each piece
    one GEMM per gate on its own columns, run by whichever thread claims it
    (hold BLAS to one thread for this: threadpoolctl).  BLAS only for calls
    that pass W_ih unpacked and hold more than one step per chunk.
    """
    global projection_forced
    if mode is None or mode is False:
        projection_forced = -1 if mode is None else 0
    elif mode is True:
        projection_forced = 1
    elif mode == "pieces":
        projection_forced = 2
    else:
        raise ValueError(f"_force_projection: None, False, True or 'pieces', not {mode!r}")


cdef bint _projection_on_blas(const Sequence* seq, Py_ssize_t preact_rows,
                              bint has_weight_ih) noexcept nogil:
    """Whether a forward call computes its input projection on BLAS: only when forced.

    Measured (issue 13, bench/blas_ab.py, numbers in bench/README.md):
    per core, BLAS's GEMM on a chunk is no faster than the packed kernel in
    the step's pieces, which already run on the core's own threads; BLAS
    wins only when the core runs on one thread and BLAS brings a second
    core.  With the core on two threads the BLAS projection loses (1.03-1.4x
    quiet), and right after a NumPy matmul far more (1.1-7x): BLAS's workers
    spin after each call and take the cores from the core's own workers in
    the steps that follow.  BLAS held to one thread and run by the core's own
    threads in the pieces (`_force_projection("pieces")`: no BLAS worker
    left spinning) loses too, in float32 and float64 (1.0-1.15x; AVX-512
    OpenBLAS kernels, Zen 4).  The choice must not depend on the thread
    count (the numbers would), so the packed kernel it is;
    `_force_projection` keeps both BLAS paths measurable and tested.  Never for a call whose chunks
    hold one step (preact_rows <= B): a one-step call projects on the packed
    kernel like a streaming step (StepKernel), bit for bit.
    """
    if not has_weight_ih or preact_rows <= seq.batch_size:
        return False
    return projection_forced == 1


cdef inline void _project_chunk(ForwardCall* call, floating* dtype) noexcept nogil:
    """The input preactivations of steps [chunk_lo, chunk_hi), on BLAS, on the calling thread.

    One GEMM per chunk whatever the thread count (BLAS uses its own threads,
    as many as threadpoolctl's user_api="blas" limit allows).
    """
    cdef const Sequence* seq = &call.seq
    cdef int H = <int> seq.hidden_size, I = <int> seq.input_size
    cdef int rows = <int> (seq.offsets[call.chunk_hi] - seq.offsets[call.chunk_lo])
    cdef floating one = 1, zero = 0
    # input_preact[:rows] (rows, 3H) = x[chunk rows] (rows, I) @ W_ih.T (I, 3H)
    gemm(False, True, rows, 3 * H, I, one,
         <const floating*> call.x + seq.offsets[call.chunk_lo] * I, I,
         <const floating*> call.weight_ih, I, zero, <floating*> call.input_preact, 3 * H)


cdef int _forward_run(ForwardCall* call, int participants, Interrupts* interrupts,
                      floating* dtype) noexcept nogil:
    """The time loop of a forward call, run by the calling thread (see forward_sequence).

    Returns 0, or -1 when a signal handler raised (the outputs are then unfinished).

    The state alternates between two buffers, `state` (h_read at step 0) and
    `state_scratch`: a step reads one and writes the other, so no piece
    overwrites a state another piece is still reading.  A row is written only
    during its own steps, which are consecutive, so its last state stays in
    the buffer its last step wrote; the rows left in `state_scratch` are
    copied back at the end.
    """
    cdef Sequence* seq = &call.seq
    cdef Py_ssize_t T = seq.seq_len, B = seq.batch_size, H = seq.hidden_size
    cdef Py_ssize_t step, b, n_next, row_count
    cdef floating* state = <floating*> call.h_read
    cdef floating* state_scratch = <floating*> call.h_write
    cdef void* swap
    cdef gf_piece_fn piece_fn, ahead_fn
    cdef gf_pace pace, projection_pace
    cdef gf_ahead ahead
    cdef bint ahead_possible = False
    cdef double projection_ns_per_row = 0  # the chunk's projection phase, charged per row
    cdef long long projection_start
    cdef int n_pieces = seq.hidden_pieces.count
    if floating is float:
        piece_fn = _forward_piece_float
        ahead_fn = _project_rows_float
    else:
        piece_fn = _forward_piece_double
        ahead_fn = _project_rows_double
    ahead.n_pieces = 0
    # A call whose phases have one piece each holds the pool for the projection
    # ahead alone (forward_sequence): its steps, packing and projection phase run
    # serially, and their paces have nothing to choose.
    cdef int phase_participants = participants if _most_pieces(seq) > 1 else 1
    pace_start(&pace, pace_key(B, H, seq.input_size,
                               2 * seq.reset_after + (floating is double) + 16 * seq.row_split),
               phase_participants)
    pace_start(&projection_pace, pace_key(B, H, seq.input_size, 8 + (floating is double)),
               phase_participants)

    # Rows that start late (reverse direction) find h0 in either buffer.
    memcpy(state_scratch, state, B * H * sizeof(floating))
    if call.pack_weights:
        call.phase = PACK
        projection_start = now_ns()
        run_paced_phase(&pace, piece_fn, call, n_pieces, n_pieces, run_policy)
        pace_exclude(&pace, now_ns() - projection_start)  # not a step's work

    call.chunk_lo = call.chunk_hi = 0
    for step in range(T):
        call.t = _time_of(seq, step, False)
        call.n_active = seq.batch_sizes[call.t]
        # Input preactivations, a chunk of steps at a time (never more than
        # preact_rows packed rows, and always at least the current step).
        call.project = call.n_active > 0 and (call.t < call.chunk_lo or call.t >= call.chunk_hi)
        if call.project:
            ahead_finish(&ahead)  # the chunk before, read by its steps: all done
            call.chunk_lo = call.t
            call.chunk_hi = call.t + 1
            if seq.reverse:
                while (call.chunk_lo > 0 and seq.offsets[call.chunk_hi]
                       - seq.offsets[call.chunk_lo - 1] <= call.preact_rows):
                    call.chunk_lo -= 1
            else:
                while (call.chunk_hi < T and seq.offsets[call.chunk_hi + 1]
                       - seq.offsets[call.chunk_lo] <= call.preact_rows):
                    call.chunk_hi += 1
        if call.project:
            ahead_possible = _ahead_possible(call, participants, dtype)
            projection_ns_per_row = 0
        if (call.project and ahead_possible and pace_participants(&pace) == 1
                and (ahead_projection == 2 or ahead_wanted())):
            # The steps run serially: a worker computes the chunk's preactivations
            # while the caller runs the first steps, in groups of rows claimed in
            # the order the steps read them (below).
            ahead_start(&ahead, ahead_fn, call, call.ahead_pieces, participants)
            call.project = False
        elif call.project and (call.blas_projection or call.chunk_hi - call.chunk_lo > 1
                               or seq.row_split):
            # A chunk of several steps: computed apart (on BLAS, or in a phase
            # of its own paced on its own) and left out of the steps' pace,
            # whose blocks would otherwise time an unequal mix of steps with
            # and without it (B = 16, H = I = 1024: a projecting step is ~17
            # ordinary ones).
            projection_start = now_ns()
            if call.blas_projection:
                _project_chunk(call, dtype)
            else:
                if call.input_tiles != NULL and not call.blas_in_pieces:
                    # x's rows of the chunk in row tiles, once for every piece and gate
                    pack_row_tiles(<int> (seq.offsets[call.chunk_hi] - seq.offsets[call.chunk_lo]),
                                   <int> seq.input_size,
                                   <const floating*> call.x + seq.offsets[call.chunk_lo] * seq.input_size,
                                   seq.input_size, <floating*> call.input_tiles)
                call.phase = PROJECT
                run_paced_phase(&projection_pace, piece_fn, call, n_pieces, n_pieces, run_policy)
                pace_timed_step_done(&projection_pace,
                                     seq.offsets[call.chunk_hi] - seq.offsets[call.chunk_lo],
                                     now_ns() - projection_start)
            pace_exclude(&pace, now_ns() - projection_start)
            if ahead_possible:  # charged to the chunk's steps, row by row (below)
                projection_ns_per_row = (<double> (now_ns() - projection_start)
                                         / <double> call.chunk_rows)
            call.project = False
        if ahead.n_pieces > 0 and pace_participants(&pace) > 1:
            ahead_finish(&ahead)  # the steps go threaded: the pool is theirs
        elif ahead.n_pieces > 0 and call.n_active > 0:
            # This step's rows of a chunk projected ahead: done, by a worker or
            # here.  What the caller spends on them counts in the steps' pace.
            ahead_ready(&ahead, _ahead_piece_of(call, call.t))
        elif projection_ns_per_row > 0:
            # Where the steps could run serially with the projection ahead, the
            # serial blocks pay the caller's share of the projection as it goes:
            # the threaded ones pay their projection phase too, spread over the
            # chunk's steps (a block that held it whole would not time like the
            # others: a projecting step can take as long as 17 ordinary ones).
            pace_exclude(&pace, -<long long> (projection_ns_per_row * call.n_active))
        if call.n_active == 0:
            # No row runs at this step (every length ends before it; reverse:
            # starts after it): y[t] is padding alone, zeroed here.  As a phase
            # of pieces it cost the threads a meeting for nothing: T=100, B=8,
            # H=128, every length 50 took 467 us on two threads against 391
            # for the same 50 steps without lengths (Zen 4, stop 36).
            if call.y != NULL:
                memset(<floating*> call.y + call.t * B * H, 0, B * H * sizeof(floating))
            continue
        call.phase = STEP
        call.rows = _row_pieces(call.n_active, seq.row_piece_min)
        run_paced_phase(&pace, piece_fn, call, _step_pieces(seq, call.rows),
                        _step_pieces(seq, call.rows), run_policy)
        if call.n_active > 0 and not seq.reset_after and not _rows_this_step(seq, call.rows):
            call.phase = CANDIDATE
            run_paced_phase(&pace, piece_fn, call, n_pieces, n_pieces, run_policy)
        if call.n_active > 0:
            swap = call.h_read
            call.h_read = call.h_write
            call.h_write = swap
        if _interrupted(pace_step_done(&pace, call.n_active + 1), interrupts):
            ahead_finish(&ahead)  # no worker may still write when the call returns
            pace_finish(&pace)
            pace_finish(&projection_pace)
            return -1
    ahead_finish(&ahead)
    pace_finish(&pace)
    pace_finish(&projection_pace)

    # Rows whose last step wrote state_scratch: their final state into `state`.
    # Steps that ran (n_active > 0) alternate the buffers, step 0 writing
    # state_scratch; a row's last step is the last step with n_active > row.
    row_count = 0  # steps run so far
    for step in range(T):
        call.t = _time_of(seq, step, False)
        if seq.batch_sizes[call.t] == 0:
            continue
        # rows whose last step is this one: [n_next, n_active)
        n_next = 0
        for b in range(step + 1, T):  # the next step that runs
            n_next = seq.batch_sizes[_time_of(seq, b, False)]
            if n_next > 0:
                break
        if row_count % 2 == 0:  # this step wrote state_scratch
            for b in range(n_next, seq.batch_sizes[call.t]):
                memcpy(state + b * H, state_scratch + b * H, H * sizeof(floating))
        row_count += 1
    return 0


cdef Sequence _sequence(object batch_sizes, object offsets, object out_rows,
                        Py_ssize_t batch_size, Py_ssize_t input_size, Py_ssize_t hidden_size,
                        Py_ssize_t n_rows, bint reset_after, bint reverse, int itemsize,
                        bint backward) except *:
    """The Sequence of a (forward or backward) call (order is left NULL), dtype of
    `itemsize` bytes; the packing's index arrays checked as `_index_data` does."""
    cdef Sequence seq
    seq.batch_sizes = <const Py_ssize_t*> _index_data(batch_sizes, b"batch_sizes")
    seq.offsets = <const Py_ssize_t*> _index_data(offsets, b"offsets")
    seq.out_rows = <const Py_ssize_t*> _index_data(out_rows, b"out_rows")
    seq.seq_len = cnp.PyArray_DIM(<cnp.ndarray> batch_sizes, 0)
    if cnp.PyArray_DIM(<cnp.ndarray> out_rows, 0) == 0:
        seq.out_rows = NULL
    seq.batch_size = batch_size
    seq.input_size = input_size
    seq.hidden_size = hidden_size
    seq.n_rows = n_rows
    seq.order = NULL
    seq.reset_after = reset_after
    seq.reverse = reverse
    seq.hidden_pieces = _pieces(hidden_size)
    seq.row_split = _row_split_on(batch_size, hidden_size, itemsize,
                                  _full_lengths(seq.batch_sizes, seq.seq_len, batch_size),
                                  backward)
    seq.row_piece_min = _row_piece_min(backward)
    return seq


# The entry points take their arrays as ndarrays, checked here in a few
# nanoseconds each (type, dtype, rank, C order, byte order, writable where
# written, and alignment, which typed memoryviews did not check), where typed
# memoryviews cost ~200 ns an argument: 18 arrays took ~3.5 us, a third of a
# one-step call (bench/call_overhead.py).  Shapes are the caller's
# (functional.py) to get right, as before.

cdef object _ARRAY_PROBLEMS = ("is not a NumPy array", "has another dtype",
                               "has another number of axes",
                               "is not C-contiguous, aligned and in native byte order",
                               "is read-only")


cdef int _array_problem(object array, int typenum, int ndim, bint writable) noexcept:
    """0 when `array` is an ndarray as an entry point needs it, else 1 + the problem's index.

    typenum -1: any signed integer of Py_ssize_t's size (np.intp)."""
    if not cnp.PyArray_Check(array):
        return 1
    cdef cnp.ndarray a = <cnp.ndarray> array
    if typenum >= 0:
        if cnp.PyArray_TYPE(a) != typenum:
            return 2
    elif not (cnp.PyArray_ISSIGNED(a) and cnp.PyArray_ITEMSIZE(a) == sizeof(Py_ssize_t)):
        return 2
    if cnp.PyArray_NDIM(a) != ndim:
        return 3
    if not cnp.PyArray_ISCARRAY_RO(a):
        return 4
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        return 5
    return 0


cdef char* _refuse(object array, const char* name, int problem) except NULL:
    raise ValueError(f"gru_fast._core: {(<bytes> name).decode()} {_ARRAY_PROBLEMS[problem - 1]} "
                     f"({type(array).__name__} {getattr(array, 'dtype', '')} "
                     f"{getattr(array, 'shape', '')})")


cdef inline char* _data(object array, int typenum, int ndim, bint writable,
                        const char* name) except NULL:
    """The data of `array`, a C-contiguous ndarray of `typenum` with `ndim` axes
    (and writable when `writable`); ValueError naming it otherwise."""
    cdef int problem = _array_problem(array, typenum, ndim, writable)
    if problem:
        return _refuse(array, name, problem)
    return <char*> cnp.PyArray_DATA(<cnp.ndarray> array)


cdef inline char* _index_data(object array, const char* name) except NULL:
    """The data of a 1-D np.intp array (the packing's)."""
    return _data(array, -1, 1, False, name)


cdef inline Py_ssize_t _dim(object array, int axis) noexcept:
    """Extent of axis `axis` of an ndarray `_data` accepted."""
    return cnp.PyArray_DIM(<cnp.ndarray> array, axis)


cdef int _float_typenum(object x) except -1:
    """NPY_FLOAT or NPY_DOUBLE: the dtype of a call, from its x."""
    if cnp.PyArray_Check(x):
        if cnp.PyArray_TYPE(<cnp.ndarray> x) == cnp.NPY_FLOAT:
            return cnp.NPY_FLOAT
        if cnp.PyArray_TYPE(<cnp.ndarray> x) == cnp.NPY_DOUBLE:
            return cnp.NPY_DOUBLE
    raise TypeError(f"gru_fast._core: x must be a float32 or float64 ndarray, "
                    f"got {type(x).__name__} {getattr(x, 'dtype', '')}")


def forward_sequence(x, batch_sizes, offsets, out_rows, order, weight_ih, weight_hh,
                     packed_ih, packed_hh, bias_gates, bias_hn, state, state_scratch, y,
                     gates, h_prev, input_preact, recurrent_preact,
                     bint reset_after, bint reverse, bint store_history,
                     int n_threads, stop, bint pack_weights=True, input_tiles=None):
    """Run one GRU layer in one direction over a packed sequence (GIL released).

    Shapes (N packed rows, T steps, B batch rows sorted by length, H hidden,
    Hp = padded_to_panels(H)):
    x (N, I); batch_sizes (T,); offsets (T+1,); out_rows (N,) and order (B,),
    both (0,) for the identity; weight_ih (3H, I); weight_hh (3H, H);
    packed_ih (3*Hp*I,) and packed_hh (3*Hp*H,) scratch for the packed
    weights; bias_gates (3H,) = b_ih plus b_hh folded in wherever it adds
    directly; bias_hn (H,) = b_hn when reset_after (zeros otherwise); state
    (B, H) in/out and state_scratch (B, H); y (T*B, H) out (padding zeroed),
    or (0, H) to write no outputs but the final state; gates (N, 4H) and
    h_prev (N, H) when store_history, else (B, 4H) and (B, H) scratch;
    input_preact (P, 3H) with P >= B, for x W_ih^T of a chunk of steps;
    recurrent_preact (B, 3H), for h W_hh^T of a step.
    Runs on up to n_threads threads (the caller's and the pool's workers).
    stop (1,) int32: the call stops with KeyboardInterrupt once stop[0] != 0
    (looked at when the main thread would look for signals).
    With pack_weights=False, packed_ih and packed_hh already hold the
    weights (pack_forward_weights) and weight_hh may be None; weight_ih
    (unpacked) lets the call project its input on BLAS (_projection_on_blas),
    None keeps the projection on the packed kernel.
    input_tiles (input_preact.shape[0], I), or None: scratch where a chunk
    of several steps projected on the packed kernel has its x rows packed
    into row tiles first (packed_gemm_tiled: the same bits, faster when a
    chunk's x does not fit half the L2).
    Raises whatever a signal handler raises (KeyboardInterrupt); y, state
    and the scratch are then unfinished.
    """
    cdef int typenum = _float_typenum(x)
    cdef int itemsize = 4 if typenum == cnp.NPY_FLOAT else 8
    cdef ForwardCall call
    call.x = _data(x, typenum, 2, False, b"x")
    call.seq = _sequence(batch_sizes, offsets, out_rows, _dim(state, 0), _dim(x, 1),
                         _dim(state, 1), _dim(x, 0), reset_after, reverse, itemsize, False)
    if call.seq.seq_len == 0 or call.seq.n_rows == 0:
        return
    call.seq.order = <const Py_ssize_t*> _index_data(order, b"order")
    if _dim(order, 0) == 0:
        call.seq.order = NULL
    call.store_history = store_history
    call.pack_weights = pack_weights
    call.weight_ih = NULL if weight_ih is None else _data(weight_ih, typenum, 2, False,
                                                          b"weight_ih")
    call.weight_hh = (_data(weight_hh, typenum, 2, False, b"weight_hh") if pack_weights
                      else NULL)
    call.packed_ih = _data(packed_ih, typenum, 1, True, b"packed_ih")
    call.packed_hh = _data(packed_hh, typenum, 1, True, b"packed_hh")
    call.bias_gates = _data(bias_gates, typenum, 1, False, b"bias_gates")
    call.bias_hn = _data(bias_hn, typenum, 1, False, b"bias_hn")
    call.y = _data(y, typenum, 2, True, b"y")
    if _dim(y, 0) == 0:
        call.y = NULL  # (0, H): final states only
    call.gates = _data(gates, typenum, 2, True, b"gates")
    call.h_prev = _data(h_prev, typenum, 2, True, b"h_prev")
    call.input_preact = _data(input_preact, typenum, 2, True, b"input_preact")
    call.recurrent_preact = _data(recurrent_preact, typenum, 2, True, b"recurrent_preact")
    call.h_read = _data(state, typenum, 2, True, b"state")
    call.h_write = _data(state_scratch, typenum, 2, True, b"state_scratch")
    call.preact_rows = _dim(input_preact, 0)
    call.input_tiles = NULL
    if input_tiles is not None:
        call.input_tiles = _data(input_tiles, typenum, 2, True, b"input_tiles")
        if _dim(input_tiles, 0) < call.preact_rows or _dim(input_tiles, 1) != call.seq.input_size:
            raise ValueError(f"input_tiles must be ({call.preact_rows}, {call.seq.input_size}), "
                             f"got {input_tiles.shape}")
    call.blas_projection = _projection_on_blas(&call.seq, call.preact_rows,
                                               call.weight_ih != NULL)
    call.blas_in_pieces = (projection_forced == 2 and call.weight_ih != NULL
                           and call.preact_rows > call.seq.batch_size)
    cdef const int* stop_flag = <const int*> _data(stop, cnp.NPY_INT32, 1, False, b"stop")
    cdef Interrupts interrupts = _interrupts_from(
        stop_flag, PyThread_get_thread_ident() == _main_thread)
    cdef int status, participants
    # as many threads as a step's phase has pieces, and one worker at least for a
    # projection ahead of the steps (_ahead_possible) when chunks hold several steps
    cdef int wanted = _most_pieces(&call.seq)
    if wanted < 2 and call.preact_rows > call.seq.batch_size and ahead_projection != 0:
        wanted = 2
    with nogil:
        participants = pool_acquire(min(n_threads, wanted))
        if typenum == cnp.NPY_FLOAT:
            status = _forward_run(&call, participants, &interrupts, <float*> NULL)
        else:
            status = _forward_run(&call, participants, &interrupts, <double*> NULL)
        if participants > 1:
            pool_release()
    if status != 0:
        raise_pending()


cdef void _backward_piece(BackwardCall* call, int piece, floating* dtype) noexcept nogil:
    """Run `piece` of the current phase of a backward call.

    Hidden pieces own the gradients of their units: dh[:, lo:hi], the
    gate-gradient columns of their units in every gate block, and the rows
    and bias entries of those gate units in dW_hh, db_ih and db_hh.

    PACK: the piece's columns of W_hh as panels (and of h_prev, and q, over
    all rows when hh_over_rows); zero its sums.
    GATE_GRADIENTS of step t, for the piece's units:
      1. the product of the step before (prev_t) into dh: its gate gradients
         are complete, so dh of every unit is, once every piece has run;
      2. unless hh_over_rows, the step before's share of dW_hh (its gate
         gradients and the packed rows of its h_prev, or q, are complete);
      3. the gate gradients of step t, their bias-gradient sums;
      4. unless hh_over_rows, the piece's columns of step t's h_prev (and q)
         packed for step 2 of the next phase.
    OVER_ROWS runs 1 and 2 for the last step walked (with hh_over_rows, the
    piece's rows of dW_hh over all rows instead of 2); its pieces after the
    hidden ones compute dx and dW_ih of their input columns when these are
    not on BLAS (_input_gradients).
    """
    if call.phase == OVER_ROWS and piece >= call.seq.hidden_pieces.count:
        _input_gradients(call, piece - call.seq.hidden_pieces.count, dtype)
        return
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, B = seq.batch_size
    cdef Py_ssize_t t = call.t, lo, hi, b, j, row, gate, t_next, n_next
    cdef const floating* gates = <const floating*> call.gates
    cdef const floating* h_prev = <const floating*> call.h_prev
    cdef floating* dh = <floating*> call.dh
    cdef floating* d_gi = <floating*> call.d_gi
    cdef floating* packed_hh = <floating*> call.packed_hh
    cdef floating* d_bias_ih = <floating*> call.d_bias_ih
    cdef floating* d_bias_hh = <floating*> call.d_bias_hh
    cdef const floating* gt
    cdef const floating* dy_row
    cdef const floating* hprev_row
    cdef floating* dh_row
    cdef floating* dgi_row
    cdef floating* dgh_row
    cdef floating* dq_row
    cdef floating* own_hh
    cdef int n_units
    cdef bint with_dy = call.with_dy, with_bias = call.with_bias  # locals, read once

    _piece_range(seq.hidden_pieces, piece, &lo, &hi)
    n_units = <int> (hi - lo)
    # This piece's panels: W_hh[:, lo:hi] as panels of 3H rows.
    own_hh = packed_hh + lo * 3 * H

    if call.phase == PACK:
        pack(<const floating*> call.weight_hh + lo, H, n_units, <int> (3 * H), own_hh)
        _zero_own_gradients(call, lo, hi, dtype)
        if call.hh_over_rows:
            _pack_all_rows(call, lo, hi, dtype)
        return

    if call.phase == GATE_GRADIENTS and _rows_this_step(seq, call.rows):
        # piece is a row piece (or a run of them: one by one, each in its own tiles)
        _piece_range(call.rows, piece, &lo, &hi)
        b = lo
        while b < hi:
            _backward_rows(call, b, min(hi, b + call.rows.units), dtype)
            b += call.rows.units
        return

    if call.phase == GATE_GRADIENTS or call.phase == OVER_ROWS:
        if call.prev_active > 0:
            # The product of the step before, into dh (its gate gradients are complete).
            if seq.reset_after:
                # dh[:n, lo:hi] (n, hi-lo) += d_gh[prev rows] (n, 3H) @ W_hh[:, lo:hi] (3H, hi-lo)
                packed_gemm(<int> call.prev_active, n_units, <int> (3 * H),
                            _d_gh_rows(call, call.prev_t, dtype), 3 * H,
                            own_hh, 3 * H * PANEL, True, dh + lo, H)
            else:
                # dh[:n, lo:hi] (n, hi-lo) += d_gi[rows, :2H] (n, 2H) @ W_hh[:2H, lo:hi] (2H, hi-lo)
                packed_gemm(<int> call.prev_active, n_units, <int> (2 * H),
                            d_gi + seq.offsets[call.prev_t] * 3 * H, 3 * H,
                            own_hh, 3 * H * PANEL, True, dh + lo, H)
            if not call.hh_over_rows:
                _step_weight_gradients(call, lo, hi, dtype)
        if call.phase == OVER_ROWS:
            if call.hh_over_rows:
                _weight_gradients_over_rows(call, lo, hi, dtype)
            if call.with_bias and seq.row_split:
                _bias_sums_over_rows(call, lo, hi, dtype)
            if call.with_bias:
                _bias_hh_from_bias_ih(call, lo, hi, dtype)
            return
        # The step walked next: its rows' cache (written long ago by the forward
        # pass, now in L3 or memory) is fetched while this step runs.
        t_next = t + 1 if seq.reverse else t - 1
        n_next = seq.batch_sizes[t_next] if 0 <= t_next < seq.seq_len else 0
        for b in range(call.n_active):
            if b < n_next:
                _prefetch_row(call, seq.offsets[t_next] + b, lo, hi, with_dy, dtype)
            row = seq.offsets[t] + b
            gt = gates + row * 4 * H
            hprev_row = h_prev + row * H
            dh_row = dh + b * H
            dgi_row = d_gi + row * 3 * H
            if with_dy:
                # dL/dh_t = (what came back from step t+1) + dy[t], in a loop of its own:
                # an `if with_dy` add inside the gate loops became a masked load of dy_row,
                # which without dy reads NULL + j, every lane masked off: a fault-suppression
                # assist per load (on Zen 3, 89% of the gate loops' time at B = 32, H = 128
                # when only dh_n comes back).
                dy_row = (<const floating*> call.dy
                          + (seq.out_rows[row] if seq.out_rows != NULL else row) * H)
                for j in range(lo, hi):
                    dh_row[j] = dh_row[j] + dy_row[j]
            if seq.reset_after:
                backward_gates_reset_after(H, lo, hi, gt, hprev_row, dh_row, dgi_row,
                                           _d_gh_rows(call, t, dtype) + b * 3 * H)
            else:
                backward_gates_classic(H, lo, hi, gt, hprev_row, dh_row, dgi_row)
        if with_bias and not seq.row_split:  # (row_split: summed over all rows at the end)
            # db_ih[gH+lo:gH+hi] += Σ_rows d_gi[rows of t, gH+lo:gH+hi] (r: in RESET_GRADIENTS
            # if classic); db_hh's r and z blocks (all, classic) are db_ih's, copied at the end
            for gate in range(0 if seq.reset_after else 1, 3):
                _add_row_sums(d_gi + seq.offsets[t] * 3 * H + gate * H, call.n_active, 3 * H,
                              lo, hi, d_bias_ih + gate * H)
            if seq.reset_after:
                # db_hh[2H+lo:2H+hi] += Σ_rows d_gh[rows of t, 2H+lo:2H+hi]  (= dn ∘ r)
                _add_row_sums(_d_gh_rows(call, t, dtype) + 2 * H, call.n_active, 3 * H,
                              lo, hi, d_bias_hh + 2 * H)
        if not call.hh_over_rows:
            _pack_step_rows(call, lo, hi, dtype)
        return

    # RESET_GRADIENTS (classic): dn of every unit is complete.
    # dq[:n, lo:hi] (n, hi-lo) = dn[rows] (n, H) @ W_hh[2H:, lo:hi] (H, hi-lo),  q = r ∘ h
    packed_gemm(<int> call.n_active, n_units, <int> H, d_gi + seq.offsets[t] * 3 * H + 2 * H,
                3 * H, own_hh + 2 * H * PANEL, 3 * H * PANEL, False, <floating*> call.dq + lo, H)
    for b in range(call.n_active):
        row = seq.offsets[t] + b
        gt = gates + row * 4 * H
        hprev_row = h_prev + row * H
        dh_row = dh + b * H
        dgi_row = d_gi + row * 3 * H
        dq_row = <floating*> call.dq + b * H
        backward_reset_classic(lo, hi, gt, hprev_row, dq_row, dh_row, dgi_row)
    if with_bias and not seq.row_split:  # (row_split: summed over all rows at the end)
        # db_ih[lo:hi] += Σ_rows dr[rows of t, lo:hi]
        _add_row_sums(d_gi + seq.offsets[t] * 3 * H, call.n_active, 3 * H, lo, hi, d_bias_ih)


cdef void _backward_rows(BackwardCall* call, Py_ssize_t r0, Py_ssize_t r1,
                        floating* dtype) noexcept nogil:
    """A step of batch rows [r0, r1), every hidden unit (GATE_GRADIENTS of a row split).

    1. the product of the step before into these rows of dh;
    2. the gate gradients of step t for these rows (classic: then dq = dn W_hn
       of these rows and the reset-gate gradients, which read only them).
    dW_hh (over all rows) and the bias gradients come in OVER_ROWS.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size
    cdef Py_ssize_t t = call.t, b, j, row, t_next, n_next, r_end
    cdef const floating* gates = <const floating*> call.gates
    cdef const floating* h_prev = <const floating*> call.h_prev
    cdef floating* dh = <floating*> call.dh
    cdef floating* d_gi = <floating*> call.d_gi
    cdef floating* packed_hh = <floating*> call.packed_hh
    cdef floating* dq = <floating*> call.dq
    cdef const floating* gt
    cdef const floating* dy_row
    cdef floating* dh_row
    cdef int m
    cdef bint with_dy = call.with_dy
    r_end = min(r1, call.prev_active)
    if r_end > r0:
        m = <int> (r_end - r0)
        if seq.reset_after:
            # dh[r0:r_end] (m, H) += d_gh[prev rows r0:r_end] (m, 3H) @ W_hh (3H, H)
            packed_gemm(m, <int> H, <int> (3 * H), _d_gh_rows(call, call.prev_t, dtype) + r0 * 3 * H,
                        3 * H, packed_hh, 3 * H * PANEL, True, dh + r0 * H, H)
        else:
            # dh[r0:r_end] (m, H) += d_gi[prev rows r0:r_end, :2H] (m, 2H) @ W_hh[:2H] (2H, H)
            packed_gemm(m, <int> H, <int> (2 * H),
                        d_gi + (seq.offsets[call.prev_t] + r0) * 3 * H, 3 * H,
                        packed_hh, 3 * H * PANEL, True, dh + r0 * H, H)
    r_end = min(r1, call.n_active)
    if r_end <= r0:
        return
    t_next = t + 1 if seq.reverse else t - 1
    n_next = seq.batch_sizes[t_next] if 0 <= t_next < seq.seq_len else 0
    for b in range(r0, r_end):
        if b < n_next:
            _prefetch_row(call, seq.offsets[t_next] + b, 0, H, with_dy, dtype)
        row = seq.offsets[t] + b
        gt = gates + row * 4 * H
        dh_row = dh + b * H
        if with_dy:
            # dL/dh_t = (what came back from step t+1) + dy[t] (a loop of its own:
            # see _backward_piece)
            dy_row = (<const floating*> call.dy
                      + (seq.out_rows[row] if seq.out_rows != NULL else row) * H)
            for j in range(H):
                dh_row[j] = dh_row[j] + dy_row[j]
        if seq.reset_after:
            backward_gates_reset_after(H, 0, H, gt, h_prev + row * H, dh_row, d_gi + row * 3 * H,
                                       _d_gh_rows(call, t, dtype) + b * 3 * H)
        else:
            backward_gates_classic(H, 0, H, gt, h_prev + row * H, dh_row, d_gi + row * 3 * H)
    if seq.reset_after:
        return
    m = <int> (r_end - r0)
    # dq[r0:r_end] (m, H) = dn[rows r0:r_end] (m, H) @ W_hh[2H:] (H, H),  q = r ∘ h
    packed_gemm(m, <int> H, <int> H, d_gi + (seq.offsets[t] + r0) * 3 * H + 2 * H, 3 * H,
                packed_hh + 2 * H * PANEL, 3 * H * PANEL, False, dq + r0 * H, H)
    for b in range(r0, r_end):
        row = seq.offsets[t] + b
        backward_reset_classic(0, H, gates + row * 4 * H, h_prev + row * H, dq + b * H,
                               dh + b * H, d_gi + row * 3 * H)


cdef inline void _bias_sums_over_rows(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                      floating* dtype) noexcept nogil:
    """The bias gradients of gate units [lo, hi), summed over all rows (row split).

    db_ih = Σ_rows d_gi; reset_after: db_hh's n block = Σ_rows d_gh's (= dn ∘ r).
    The rows in the order the time loop walked them, as the step sums of a
    hidden split add them.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, step, t, gate
    cdef const floating* d_gi = <const floating*> call.d_gi
    for step in range(seq.seq_len):
        t = _time_of(seq, step, True)
        if seq.batch_sizes[t] == 0:
            continue
        for gate in range(3):
            _add_row_sums(d_gi + seq.offsets[t] * 3 * H + gate * H, seq.batch_sizes[t], 3 * H,
                          lo, hi, <floating*> call.d_bias_ih + gate * H)
        if seq.reset_after:
            _add_row_sums(_d_gh_rows(call, t, dtype) + 2 * H, seq.batch_sizes[t], 3 * H,
                          lo, hi, <floating*> call.d_bias_hh + 2 * H)


cdef inline void _prefetch_row(BackwardCall* call, Py_ssize_t row, Py_ssize_t lo, Py_ssize_t hi,
                               bint with_dy, floating* dtype) noexcept nogil:
    """Prefetch columns [lo, hi) of packed row `row` of everything the gate gradients read."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, j, block
    cdef Py_ssize_t line = 64 // sizeof(floating)  # values per cache line
    cdef const floating* gt = <const floating*> call.gates + row * 4 * H
    cdef const floating* hprev_row = <const floating*> call.h_prev + row * H
    cdef const floating* dy_row = <const floating*> call.dy
    if with_dy:
        dy_row += (seq.out_rows[row] if seq.out_rows != NULL else row) * H
    j = lo
    while j < hi:
        for block in range(4):
            prefetch(gt + block * H + j)
        prefetch(hprev_row + j)
        if with_dy:
            prefetch(dy_row + j)
        j += line


cdef inline void _add_row_sums(const floating* rows, Py_ssize_t n_rows, Py_ssize_t ld,
                               Py_ssize_t lo, Py_ssize_t hi, floating* out) noexcept nogil:
    """out[lo:hi] += Σ over the n_rows rows (ld apart) of rows[:, lo:hi]."""
    cdef Py_ssize_t b, j
    cdef const floating* row
    for b in range(n_rows):
        row = rows + b * ld
        for j in range(lo, hi):
            out[j] += row[j]


cdef inline floating* _d_gh_rows(BackwardCall* call, Py_ssize_t t, floating* dtype) noexcept nogil:
    """The first of step t's rows of d_gh (reset_after).

    With hh_over_rows, d_gh holds every row (N, 3H, packed rows like d_gi),
    for dW_hh = d_gh^T h_prev over all rows at the end.  Otherwise it holds
    two steps (2B rows), in the slot of t's parity: the step whose gate
    gradients are being computed and the step before, whose product into dh
    and share of dW_hh run in the same phase.  Steps walked one after the
    other have consecutive time indices, so they fall in different slots.
    """
    if call.hh_over_rows:
        return <floating*> call.d_gh + call.seq.offsets[t] * 3 * call.seq.hidden_size
    return <floating*> call.d_gh + (t % 2) * call.seq.batch_size * 3 * call.seq.hidden_size


cdef inline floating* _all_packed_rows(BackwardCall* call, int operand,
                                      floating* dtype) noexcept nogil:
    """All N rows of h_prev (operand 0) or q (operand 1, classic) packed as panels (hh_over_rows).

    (N, Hp) as panels of PANEL columns, N * PANEL values apart.
    """
    cdef Py_ssize_t Hp = (call.seq.hidden_size + PANEL - 1) // PANEL * PANEL
    return <floating*> call.packed_rows + operand * call.seq.n_rows * Hp


cdef inline void _pack_all_rows(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                floating* dtype) noexcept nogil:
    """Pack columns [lo, hi) of h_prev (and q) over all rows, for dW_hh in OVER_ROWS."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, N = seq.n_rows
    # panels of h_prev (N, H): this piece's panels start at column lo
    pack(<const floating*> call.h_prev + lo, H, <int> (hi - lo), <int> N,
         _all_packed_rows(call, 0, dtype) + lo * N)
    if not seq.reset_after:
        # panels of q = gates[:, 3H:] (N, H)
        pack(<const floating*> call.gates + 3 * H + lo, 4 * H, <int> (hi - lo), <int> N,
             _all_packed_rows(call, 1, dtype) + lo * N)


cdef inline void _weight_gradients_over_rows(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                            floating* dtype) noexcept nogil:
    """The piece's rows of dW_hh (gate units [lo, hi) of each gate), over all N rows.

    One product per gate with k = N (the kernel blocks k), after every gate
    gradient is complete.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, N = seq.n_rows, gate
    cdef floating* d_weight_hh = <floating*> call.d_weight_hh
    cdef const floating* d_rows        # the gate gradients of all rows, 3H columns
    cdef const floating* rows_panels   # h_prev (or q) of all rows, packed
    if seq.reset_after:
        d_rows = <const floating*> call.d_gh
    else:
        d_rows = <const floating*> call.d_gi
    for gate in range(3):
        rows_panels = _all_packed_rows(call, 1 if gate == 2 and not seq.reset_after else 0, dtype)
        # dW_hh[gH+lo:gH+hi] (hi-lo, H) = d_gh[:, gH+lo:gH+hi].T (hi-lo, N) @ h_prev (N, H)
        # (classic: d_gi for d_gh, and q = r ∘ h for h_prev in the candidate block)
        _rows_by_piece(seq, lo, hi, H, N, d_rows + gate * H, 3 * H, rows_panels, N * PANEL, False,
                       d_weight_hh + gate * H * H)


cdef inline floating* _packed_rows(BackwardCall* call, Py_ssize_t t, int operand,
                                   floating* dtype) noexcept nogil:
    """Step t's rows of h_prev (operand 0) or q (operand 1, classic) packed as panels.

    Unless hh_over_rows.  Two slots per operand, by the parity of t (as `_d_gh_rows`), each
    (n_active, Hp) as panels of PANEL columns, n_active * PANEL values apart.
    """
    cdef Py_ssize_t H = call.seq.hidden_size
    cdef Py_ssize_t slot_size = call.seq.batch_size * ((H + PANEL - 1) // PANEL * PANEL)
    return <floating*> call.packed_rows + ((t % 2) * 2 + operand) * slot_size


cdef inline void _pack_step_rows(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                 floating* dtype) noexcept nogil:
    """Pack columns [lo, hi) of step t's h_prev (and q) rows, for dW_hh in the next phase."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, n = call.n_active, first = seq.offsets[call.t]
    # panels of h_prev[rows of t] (n, H): this piece's panels start at column lo
    pack(<const floating*> call.h_prev + first * H + lo, H, <int> (hi - lo), <int> n,
         _packed_rows(call, call.t, 0, dtype) + lo * n)
    if not seq.reset_after:
        # panels of q[rows of t] = gates[rows, 3H:] (n, H)
        pack(<const floating*> call.gates + first * 4 * H + 3 * H + lo, 4 * H,
             <int> (hi - lo), <int> n, _packed_rows(call, call.t, 1, dtype) + lo * n)


cdef inline void _step_weight_gradients(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                        floating* dtype) noexcept nogil:
    """Step prev_t's share of the piece's rows of dW_hh (gate units [lo, hi) of each gate).

    Summed step by step, while the step's gate gradients are still in cache,
    instead of one product over all rows after the time loop.
    """
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, gate
    cdef int n = <int> call.prev_active
    cdef floating* d_weight_hh = <floating*> call.d_weight_hh
    cdef const floating* d_rows        # the step's rows of the gate gradients, 3H columns
    cdef const floating* rows_panels   # the step's h_prev (or q) rows, packed
    if seq.reset_after:
        d_rows = _d_gh_rows(call, call.prev_t, dtype)
    else:
        d_rows = <const floating*> call.d_gi + seq.offsets[call.prev_t] * 3 * H
    for gate in range(3):
        rows_panels = _packed_rows(call, call.prev_t,
                                   1 if gate == 2 and not seq.reset_after else 0, dtype)
        # dW_hh[gH+lo:gH+hi] (hi-lo, H) += d_gh[rows, gH+lo:gH+hi].T (hi-lo, n) @ h_prev[rows] (n, H)
        # (classic: d_gi for d_gh, and q = r ∘ h for h_prev in the candidate block)
        _rows_by_piece(seq, lo, hi, H, n, d_rows + gate * H, 3 * H, rows_panels, n * PANEL, True,
                       d_weight_hh + gate * H * H)


cdef inline void _rows_by_piece(const Sequence* seq, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n,
                                Py_ssize_t k, const floating* a_t, Py_ssize_t lda,
                                const floating* panels, Py_ssize_t panel_stride, bint accumulate,
                                floating* c) noexcept nogil:
    """C[lo:hi] (hi-lo, n) (+)= A[:, lo:hi].T (hi-lo, k) @ B (k, n), one product per piece.

    A's columns [lo, hi) are the units of a piece or of a run of pieces; C's
    rows, those units' rows of a weight gradient.  The kernel groups a
    product's rows into tiles whose sums run in an order that depends on the
    tile (_kernel_impl.h), so a run's rows go piece by piece, each in the
    tiles it has when its piece runs alone: the same bits either way.
    """
    cdef Py_ssize_t p_lo = lo, p_hi
    while p_lo < hi:
        p_hi = min(hi, p_lo + seq.hidden_pieces.units)
        packed_gemm_strided(<int> (p_hi - p_lo), <int> n, <int> k, a_t + p_lo, 1, lda,
                            panels, panel_stride, accumulate, c + p_lo * n, n)
        p_lo = p_hi


cdef inline void _zero_own_gradients(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                     floating* dtype) noexcept nogil:
    """Zero the piece's bias-gradient entries and, summed per step, its rows of dW_hh."""
    cdef Py_ssize_t H = call.seq.hidden_size, gate, j
    cdef floating* d_bias_ih = <floating*> call.d_bias_ih
    cdef floating* d_bias_hh = <floating*> call.d_bias_hh
    for gate in range(3):
        if not call.hh_over_rows:
            memset(<floating*> call.d_weight_hh + (gate * H + lo) * H, 0,
                   (hi - lo) * H * sizeof(floating))
        for j in range(gate * H + lo, gate * H + hi):
            d_bias_ih[j] = 0
            d_bias_hh[j] = 0


cdef inline void _bias_hh_from_bias_ih(BackwardCall* call, Py_ssize_t lo, Py_ssize_t hi,
                                       floating* dtype) noexcept nogil:
    """db_hh's entries that equal db_ih's: the r and z blocks (reset_after), all (classic)."""
    cdef Py_ssize_t H = call.seq.hidden_size, gate, j
    cdef floating* d_bias_ih = <floating*> call.d_bias_ih
    cdef floating* d_bias_hh = <floating*> call.d_bias_hh
    for gate in range(2 if call.seq.reset_after else 3):
        for j in range(gate * H + lo, gate * H + hi):
            d_bias_hh[j] = d_bias_ih[j]


cdef inline void _input_gradients(BackwardCall* call, int piece, floating* dtype) noexcept nogil:
    """dx[:, in_lo:in_hi] and dW_ih[:, in_lo:in_hi] of input piece `piece`, on the packed kernel."""
    cdef const Sequence* seq = &call.seq
    cdef Py_ssize_t H = seq.hidden_size, I = seq.input_size, N = seq.n_rows, in_lo, in_hi
    _piece_range(call.input_pieces, piece, &in_lo, &in_hi)
    cdef int n_inputs = <int> (in_hi - in_lo)
    cdef const floating* d_gi = <const floating*> call.d_gi
    cdef floating* packed_ih = <floating*> call.packed_ih + in_lo * 3 * H
    cdef floating* packed_x = <floating*> call.packed_x + in_lo * N
    if n_inputs <= narrow_inputs_max:
        # A few columns: only the multiply-adds needed (_narrow.h), no padding to a panel.
        if call.dx != NULL:
            # dx[:, in_lo:in_hi] (N, n_in) = d_gi (N, 3H) @ W_ih[:, in_lo:in_hi] (3H, n_in)
            columns_to_rows(3 * H, n_inputs, <const floating*> call.weight_ih + in_lo, I,
                            packed_ih)
            narrow_input_gradient(N, 3 * H, n_inputs, d_gi, 3 * H, packed_ih,
                                  <floating*> call.dx + in_lo, I)
        # dW_ih[:, in_lo:in_hi] (3H, n_in) = d_gi.T (3H, N) @ x[:, in_lo:in_hi] (N, n_in)
        narrow_weight_gradient(N, 3 * H, n_inputs, d_gi, 3 * H, <const floating*> call.x + in_lo,
                               I, <floating*> call.d_weight_ih + in_lo, I)
        return
    if call.dx != NULL:  # (not wanted for a network's first layer)
        # dx[:, in_lo:in_hi] (N, n_in) = d_gi (N, 3H) @ W_ih[:, in_lo:in_hi] (3H, n_in)
        pack(<const floating*> call.weight_ih + in_lo, I, n_inputs, <int> (3 * H), packed_ih)
        packed_gemm(<int> N, n_inputs, <int> (3 * H), d_gi, 3 * H,
                    packed_ih, 3 * H * PANEL, False, <floating*> call.dx + in_lo, I)
    # dW_ih[:, in_lo:in_hi] (3H, n_in) = d_gi.T (3H, N) @ x[:, in_lo:in_hi] (N, n_in)
    pack(<const floating*> call.x + in_lo, I, n_inputs, <int> N, packed_x)
    if call.weight_tiles != NULL:
        # d_gi.T's row tiles packed a block at a time into the piece's own buffer
        packed_gemm_packing(<int> (3 * H), n_inputs, <int> N, d_gi, 1, 3 * H,
                            <floating*> call.weight_tiles + piece * call.weight_tiles_values,
                            packed_x, N * PANEL, False, <floating*> call.d_weight_ih + in_lo, I)
    else:
        packed_gemm_strided(<int> (3 * H), n_inputs, <int> N, d_gi, 1, 3 * H,
                            packed_x, N * PANEL, False, <floating*> call.d_weight_ih + in_lo, I)


# Input pieces of at most this many columns take the narrow products of
# _narrow.h: the packed kernel pads a piece to a panel, so it does PANEL / n
# times the multiply-adds needed, at several times the narrow loops' rate per
# multiply-add.  Backward at T = 20, B = 32, H = 128, one thread, Zen 3 (AVX2,
# panels of 16), narrow against kernel, without dx / with dx: float32 I = 1
# -75 / -148 us, I = 3 -27 / -40, I = 4 -4 / +10, I = 6 +47 / +110; float64
# I = 4 -10 / -49, I = 6 +79 / +112.  So: while the kernel would do at least
# 4x the work needed (4 columns of a 16-wide panel, 8 of a 32-wide one).
cdef int narrow_inputs_max = PANEL // 4


def _set_narrow_inputs(int max_inputs):
    """Test and benchmark hook: backward's input pieces of at most `max_inputs`
    columns compute dx and dW_ih with the narrow products of _narrow.h, the
    others on the packed kernel (0: every piece on the kernel)."""
    global narrow_inputs_max
    narrow_inputs_max = max_inputs


cdef int over_rows_forced = -1  # _force_over_rows: -1 the size rule, 0 packed kernel, 1 BLAS


def _force_over_rows(mode):
    """Test and benchmark hook: where backward's dx and dW_ih run.

    None: the size rule (over_rows_on_blas); True: BLAS; False: the packed kernel.
    """
    global over_rows_forced
    over_rows_forced = -1 if mode is None else int(bool(mode))


def over_rows_on_blas(Py_ssize_t n_rows, Py_ssize_t input_size, Py_ssize_t hidden_size,
                      int itemsize):
    """Whether backward computes dx and dW_ih on BLAS (else on the packed kernel).

    A property of the shape and dtype (itemsize 4 or 8) alone, so the
    numbers never depend on the thread count.  BLAS's threads are not the
    core's: when one of its workers has lost its core (right after a NumPy
    matmul, whose own OpenBLAS workers still spin) the call waits for it
    about a scheduler time slice, and its spinning workers slow the core's
    next steps; the packed kernel runs in the paced pieces, on the core's own
    threads that never wait for a late worker.  Measured (bench/README.md):
    in float32 the packed kernel matched or beat BLAS at every size.  In
    float64 it depends on the level's double register tile, whose rows are
    the FMAs each loaded panel vector feeds: with 3 rows (avx2; a Zen 3)
    OpenBLAS's dgemm ran 0.79-0.90 of the kernel's time on one core, so BLAS
    saves time in proportion to the products' size; but its workers keep
    spinning after the call, and when the next call follows at once (a
    training loop; compare.py's samples) they make its workers late, a cost
    about fixed per call.  On a Zen 3 (forward+backward on two threads,
    BLAS / kernel back to back, after 0.25 s idle, after a NumPy matmul):
    large (5.0e9 multiply-adds) 1.01-1.03, 0.91, 0.94: BLAS wins; wide
    (2.5e9) 1.10-1.12, 0.96, 0.99-1.03: the kernel wins.  Hence BLAS from
    OVER_ROWS_BLAS_MIN_MACS (2^32) multiply-adds on.  With 6 rows (avx512; a
    Zen 4) the kernel matched dgemm on one core (0.86-1.05 by product) and
    forward+backward on two threads ran 1.13x (large) and 1.11x (wide)
    faster than with BLAS, so from KERNEL_PACE_TILE_ROWS rows on, float64
    stays on the kernel too.
    The packed kernel needs W_ih and x packed as scratch
    (functional.gru_backward allocates it only then).
    """
    return _over_rows_on_blas(n_rows, input_size, hidden_size, itemsize)


# Input pieces of at least this many panels pack d_gi^T for dW_ih (weight_tiles_values).
cdef int WEIGHT_TILES_MIN_PANELS = 4


def weight_tiles_values(Py_ssize_t n_rows, Py_ssize_t input_size, Py_ssize_t hidden_size,
                        int itemsize, bint force=False):
    """Values of backward_sequence's weight_tiles scratch, 0 where it does not pay.

    One block of d_gi^T's row tiles (packed_gemm_packing of the (3H, N)
    product) per input piece.  Each piece packs its blocks for its own
    columns of dW_ih, so packing pays only over wide pieces: at least
    WEIGHT_TILES_MIN_PANELS panels (the packing's cost per value of A against
    the product's, n / lanes, scales with the vector width as the panel does).
    Measured, Zen 3, backward float32 on two threads (bench/README.md, "Row
    tiles"): pieces of 4 panels (I = 512, 1024) 11% and 4% faster; of 1 panel
    (I = 64, 100, 128) 2-5% slower.
    force: the size even where it does not pay (tests).
    """
    cdef Pieces pieces = _pieces(input_size)
    if n_rows == 0 or input_size == 0 or input_size <= narrow_inputs_max:
        return 0
    if not force and pieces.units < WEIGHT_TILES_MIN_PANELS * PANEL:
        return 0
    return pieces.count * packing_values(<int> (3 * hidden_size), <int> n_rows, itemsize)


cdef inline bint _over_rows_on_blas(Py_ssize_t n_rows, Py_ssize_t input_size,
                                    Py_ssize_t hidden_size, int itemsize) noexcept nogil:
    if over_rows_forced >= 0:
        return over_rows_forced == 1
    return (itemsize == 8 and DOUBLE_TILE_ROWS < KERNEL_PACE_TILE_ROWS
            and n_rows * 3 * hidden_size * 2 * input_size >= OVER_ROWS_BLAS_MIN_MACS)


cdef int hh_over_rows_forced = -1  # _force_weight_hh_over_rows: -1 the size rule, 0 per step, 1 rows


def _force_weight_hh_over_rows(mode):
    """Test and benchmark hook: how backward sums dW_hh.

    None: the size rule (weight_hh_over_rows); True: one product over all
    rows after the time loop; False: step by step.
    """
    global hh_over_rows_forced
    hh_over_rows_forced = -1 if mode is None else int(bool(mode))


def weight_hh_over_rows(Py_ssize_t hidden_size, int itemsize):
    """Whether backward computes dW_hh over all rows at the end (else summed step by step).

    Summed step by step, each step's rank-n_active update re-reads and
    re-writes all of dW_hh (3H x H): cheap while dW_hh stays in the core's
    L2 from one step to the next, the gate gradients then being read while
    still in cache and no (N, 3H) d_gh being stored.  A larger dW_hh goes
    back to L3 or memory at every step (3 MB in float32 at H = 512, 25 MB in
    float64 at H = 1024), and one product over all N rows, the kernel
    blocking k, reads it once; but that product reads its transposed
    operand d_gh^T with a stride of 3H, which costs about what the step
    sums lose until dW_hh is far out of L2.  The bound, 8 times the
    kernel's L2 budget (`level2_budget`, half of one core's L2 as the machine
    reports it), is measured on two CPUs (bench/README.md, "Training"), not
    derived.  With 1 MiB of budget (the fixed value of the first measurement):
    forward+backward on two threads, over all rows against step sums, H = 1024
    (12 and 25 MiB): 0.65-0.88x the time; H = 512 (3 and 6 MiB): 1.01-1.08x;
    H = 256: 0.92-1.13x (noise level); step sums faster at H <= 128.  On a
    Zen 3 (512 KiB of L2 per core, a 256 KiB budget, bound 2 MiB), backward
    alone: H = 512 float32 (3 MiB) 0.83x on one thread and 0.88x on two;
    H = 256 0.98-1.03x; H = 128 0.90-1.06x; H = 64 1.12-1.19x.
    A property of the shape, the dtype and the machine's L2 alone, so the
    numbers never depend on the thread count.  Over all rows needs d_gh (N, 3H) and the packed rows
    (N, Hp) (twice, classic) as scratch (functional.gru_backward sizes them).
    """
    return _weight_hh_over_rows(hidden_size, itemsize)


cdef inline bint _weight_hh_over_rows(Py_ssize_t hidden_size, int itemsize) noexcept nogil:
    """weight_hh_over_rows: as forced, else dW_hh (3H x H) beyond 8 L2 budgets."""
    if hh_over_rows_forced >= 0:
        return hh_over_rows_forced == 1
    return (3 * hidden_size * hidden_size * itemsize
            > HH_STEP_SUMS_MAX_BUDGETS * <long long> gf_level2_budget())


def backward_hh_over_rows(batch_sizes, Py_ssize_t batch_size, Py_ssize_t hidden_size,
                          int itemsize):
    """Whether backward sums dW_hh over all rows after the time loop: when
    `weight_hh_over_rows` says so, and always with row pieces (`row_split`),
    whose pieces each hold rows of every unit.  `batch_sizes` (np.intp) are the
    packing's rows per step (the caller sizes its scratch by this; the core
    decides the same, in `_backward_hh_over_rows`)."""
    cdef const Py_ssize_t* sizes = <const Py_ssize_t*> _index_data(batch_sizes,
                                                                   b"batch_sizes")
    cdef bint full = _full_lengths(sizes, _dim(batch_sizes, 0), batch_size)
    return (_weight_hh_over_rows(hidden_size, itemsize)
            or _row_split_on(batch_size, hidden_size, itemsize, full, True))


cdef inline bint _backward_hh_over_rows(const Sequence* seq, int itemsize) noexcept nogil:
    """`backward_hh_over_rows` of a backward call's Sequence (whose row_split is the
    backward one, `_row_split_on` with these full_lengths)."""
    return _weight_hh_over_rows(seq.hidden_size, itemsize) or seq.row_split


cdef inline void _gradients_over_rows(BackwardCall* call, floating* dtype) noexcept nogil:
    """dx and dW_ih from the gate gradients of all N rows: large GEMMs on BLAS.

    Run by the calling thread after the time loop; BLAS uses its own threads
    (as many as threadpoolctl's user_api="blas" limit allows).  (dW_hh is
    summed step by step in the time loop: `_recurrent_weight_gradients`.)
    """
    cdef const Sequence* seq = &call.seq
    cdef int H = <int> seq.hidden_size, I = <int> seq.input_size, N = <int> seq.n_rows
    cdef floating one = 1, zero = 0
    cdef const floating* d_gi = <const floating*> call.d_gi
    cdef const floating* x = <const floating*> call.x
    if call.dx != NULL:  # (not wanted for a network's first layer)
        # dx (N, I) = d_gi (N, 3H) @ W_ih (3H, I)
        gemm(False, False, N, I, 3 * H, one, d_gi, 3 * H,
             <const floating*> call.weight_ih, I, zero, <floating*> call.dx, I)
    # dW_ih (3H, I) = d_gi.T (3H, N) @ x (N, I)
    gemm(True, False, 3 * H, I, N, one, d_gi, 3 * H, x, I,
         zero, <floating*> call.d_weight_ih, I)


cdef void _backward_piece_float(void* call, int piece) noexcept nogil:
    _backward_piece(<BackwardCall*> call, piece, <float*> NULL)


cdef void _backward_piece_double(void* call, int piece) noexcept nogil:
    _backward_piece(<BackwardCall*> call, piece, <double*> NULL)


cdef int _backward_run(BackwardCall* call, int participants, Interrupts* interrupts,
                       floating* dtype) noexcept nogil:
    """The time loop of a backward call, then the products over rows (see backward_sequence).

    Returns 0, or -1 when a signal handler raised (the outputs are then unfinished).
    Each step's product into dh runs at the start of the next step's phase,
    piece by piece: a piece's dh columns are all the next step's gate
    gradients of that piece read.
    """
    cdef Sequence* seq = &call.seq
    cdef Py_ssize_t step
    cdef gf_piece_fn piece_fn
    cdef gf_pace pace
    cdef int n_pieces = seq.hidden_pieces.count
    if floating is float:
        piece_fn = _backward_piece_float
    else:
        piece_fn = _backward_piece_double
    pace_start(&pace, pace_key(seq.batch_size, seq.hidden_size, seq.input_size,
                               2 * seq.reset_after + (floating is double) + 4
                               + 16 * seq.row_split), participants)
    call.phase = PACK
    cdef long long pack_start = now_ns()
    run_paced_phase(&pace, piece_fn, call, n_pieces, n_pieces, backward_run_policy)
    pace_exclude(&pace, now_ns() - pack_start)  # not a step's work
    call.prev_active = 0
    call.prev_t = 0
    for step in range(seq.seq_len):
        # Backward walks the steps in the opposite order of the forward pass.
        call.t = _time_of(seq, step, True)
        call.n_active = seq.batch_sizes[call.t]
        if call.n_active == 0:
            continue
        call.phase = GATE_GRADIENTS
        # rows of dh this step writes: the step before's (its product into dh;
        # more than this step's when a reverse layer's rows end) and its own
        call.rows = _row_pieces(max(call.n_active, call.prev_active), seq.row_piece_min)
        run_paced_phase(&pace, piece_fn, call, _step_pieces(seq, call.rows),
                        _step_pieces(seq, call.rows), backward_run_policy)
        if not seq.reset_after and not _rows_this_step(seq, call.rows):
            call.phase = RESET_GRADIENTS
            run_paced_phase(&pace, piece_fn, call, n_pieces, n_pieces, backward_run_policy)
        call.prev_t = call.t
        call.prev_active = call.n_active
        if _interrupted(pace_step_done(&pace, call.n_active + 1), interrupts):
            pace_finish(&pace)
            return -1
    # The last step's product into dh, and the bias gradients, piece by piece;
    # dx and dW_ih in input pieces too, unless they go to BLAS after it.
    call.phase = OVER_ROWS
    run_paced_phase(&pace, piece_fn, call,
                    n_pieces + (0 if call.over_rows_on_blas else call.input_pieces.count),
                    n_pieces, backward_run_policy)
    pace_finish(&pace)
    if call.over_rows_on_blas:
        _gradients_over_rows(call, dtype)
    return 0


def backward_sequence(x, batch_sizes, offsets, out_rows, weight_ih, weight_hh, gates, h_prev,
                      dy, dh, d_gi, d_gh, dq, packed_hh, packed_rows, packed_ih, packed_x, dx,
                      d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh,
                      bint reset_after, bint reverse, bint with_bias,
                      int n_threads, stop, weight_tiles=None):
    """Backpropagation through time for one layer and direction (GIL released).

    Takes the packed layout and the cache written by `forward_sequence` with
    store_history.  dy (T*B, H) is read only at valid rows, and not at all
    when it has no rows (dy = 0: a loss on h_n only); dh (B, H) holds
    dL/dh_n on entry (sorted rows) and dL/dh0 on exit.  Writes the gate
    gradients d_gi (N, 3H) = dL/d(x W_ih^T + b_ih).  Scratch, with Hp = H
    rounded up to whole panels (padded_to_panels): d_gh (2B, 3H), the
    gradients dL/d(h W_hh^T + b_hh) (reset_after; unused otherwise: (1, 3H)),
    dq (B, H), packed_hh (Hp*3H,) and packed_rows (4*B*Hp,); when
    weight_hh_over_rows(H, itemsize), d_gh (N, 3H) and packed_rows (N*Hp,)
    (reset_after) or (2*N*Hp,) (classic: q too) instead;
    when not over_rows_on_blas(N, I, H, itemsize), with Ip = I rounded up likewise,
    packed_ih (Ip*3H,) and packed_x (Ip*N,) (else they may be empty).
    Outputs dx (N, I) (not computed when dx has no rows), d_weight_ih (3H, I),
    d_weight_hh (3H, H) and the bias gradients (3H,) when with_bias.  The time loop runs on
    up to n_threads threads; dx and dW_ih on BLAS's threads, or (small
    calls) on the core's in the last phase;
    stop as in forward_sequence.
    weight_tiles ((weight_tiles_values(N, I, H, itemsize),), or None): scratch
    where dW_ih on the packed kernel packs d_gi^T's row tiles (the same bits,
    faster; ignored when dW_ih is on BLAS or on the narrow products).
    Raises whatever a signal handler raises (KeyboardInterrupt); the outputs
    are then unfinished.
    """
    cdef int typenum = _float_typenum(x)
    cdef int itemsize = 4 if typenum == cnp.NPY_FLOAT else 8
    cdef BackwardCall call
    call.weight_tiles = NULL
    call.x = _data(x, typenum, 2, False, b"x")
    call.d_weight_ih = _data(d_weight_ih, typenum, 2, True, b"d_weight_ih")
    call.d_weight_hh = _data(d_weight_hh, typenum, 2, True, b"d_weight_hh")
    call.d_bias_ih = _data(d_bias_ih, typenum, 1, True, b"d_bias_ih")
    call.d_bias_hh = _data(d_bias_hh, typenum, 1, True, b"d_bias_hh")
    cdef Py_ssize_t n_rows = _dim(x, 0)
    cdef Py_ssize_t input_size = _dim(x, 1), hidden_size = _dim(dh, 1)
    if n_rows == 0:
        for gradient in (d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh):
            memset(cnp.PyArray_DATA(<cnp.ndarray> gradient), 0,
                   cnp.PyArray_NBYTES(<cnp.ndarray> gradient))
        return
    call.seq = _sequence(batch_sizes, offsets, out_rows, _dim(dh, 0), input_size,
                         hidden_size, n_rows, reset_after, reverse, itemsize, True)
    call.with_bias = with_bias
    call.with_dy = _dim(dy, 0) > 0
    call.weight_ih = _data(weight_ih, typenum, 2, False, b"weight_ih")
    call.weight_hh = _data(weight_hh, typenum, 2, False, b"weight_hh")
    call.gates = _data(gates, typenum, 2, False, b"gates")
    call.h_prev = _data(h_prev, typenum, 2, False, b"h_prev")
    call.dy = _data(dy, typenum, 2, False, b"dy") if call.with_dy else NULL
    call.dh = _data(dh, typenum, 2, True, b"dh")
    call.d_gi = _data(d_gi, typenum, 2, True, b"d_gi")
    call.d_gh = _data(d_gh, typenum, 2, True, b"d_gh")
    call.dq = _data(dq, typenum, 2, True, b"dq")
    call.packed_hh = _data(packed_hh, typenum, 1, True, b"packed_hh")
    call.packed_rows = _data(packed_rows, typenum, 1, True, b"packed_rows")
    call.over_rows_on_blas = _over_rows_on_blas(n_rows, input_size, hidden_size, itemsize)
    call.input_pieces = _pieces(input_size)
    call.hh_over_rows = _backward_hh_over_rows(&call.seq, itemsize)
    if not call.over_rows_on_blas:
        call.packed_ih = _data(packed_ih, typenum, 1, True, b"packed_ih")
        call.packed_x = _data(packed_x, typenum, 1, True, b"packed_x")
        if weight_tiles is not None:
            call.weight_tiles = _data(weight_tiles, typenum, 1, True, b"weight_tiles")
            call.weight_tiles_values = packing_values(<int> (3 * hidden_size), <int> n_rows,
                                                      itemsize)
            if (_dim(weight_tiles, 0) < call.input_pieces.count
                    * <Py_ssize_t> call.weight_tiles_values):
                raise ValueError(
                    f"weight_tiles must hold weight_tiles_values(...) = "
                    f"{call.input_pieces.count * call.weight_tiles_values} values, "
                    f"got {_dim(weight_tiles, 0)}")
    call.dx = _data(dx, typenum, 2, True, b"dx")
    if _dim(dx, 0) == 0:
        call.dx = NULL
    cdef const int* stop_flag = <const int*> _data(stop, cnp.NPY_INT32, 1, False, b"stop")
    cdef Interrupts interrupts = _interrupts_from(
        stop_flag, PyThread_get_thread_ident() == _main_thread)
    cdef int status, participants
    with nogil:
        participants = pool_acquire(min(n_threads, max(
            _most_pieces(&call.seq), call.seq.hidden_pieces.count
            if call.over_rows_on_blas else max(call.seq.hidden_pieces.count,
                                               call.input_pieces.count))))
        if typenum == cnp.NPY_FLOAT:
            status = _backward_run(&call, participants, &interrupts, <float*> NULL)
        else:
            status = _backward_run(&call, participants, &interrupts, <double*> NULL)
        if participants > 1:
            pool_release()
    if status != 0:
        raise_pending()


def activations(const floating[::1] values, floating[::1] sigmoid_out, floating[::1] tanh_out):
    """Apply the core's sigmoid and tanh to `values` (for accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            sigmoid_out[i] = sigmoid(values[i])
            tanh_out[i] = tanh_(values[i])


# ---------------------------------------------------------------------------
# The streaming entry: time steps of stacked layers on weights packed once.
#
# `forward_sequence` takes some twenty arrays (0.1 us to check them since they
# are read through NumPy's C API; as typed memoryviews they took ~3.5 us, most
# of a one-step call), and the Python around it checks and allocates them.  A
# `StepKernel` takes one layer's packed weights and biases once, when it is
# made, and keeps its own scratch; `step_layers` then takes only x_t, h and
# out, as raw buffers.  The step itself is `_forward_run` over one step of the
# identity packing, so its numbers are those of `gru_forward`, bit for bit, and whether the pool's
# workers help is decided as for a sequence (gf_pace, remembered per shape
# from call to call).  Nothing here raises for a wrong argument: the entries
# return False, having done nothing, and the caller (gru_fast._stepping)
# validates and explains.

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)
from libc.stdlib cimport free
from libc.string cimport memcpy, memset, memcmp

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** pointer, size_t alignment, size_t size)

cdef enum:
    _LINE = 64            # bytes: every scratch block starts on a cache line, as _workspace's do
    _NOGIL_BYTES = 16384  # same_bytes releases the GIL from this size on

cdef int _never_stop = 0  # a step is too short to look for Ctrl-C

import sys
cdef char _native_order = b'<' if sys.byteorder == "little" else b'>'


cdef inline char _float_kind(const char* format) noexcept:
    """'f' or 'd' for a buffer format of native float32 or float64, else 0.

    NumPy writes "f", but also "=f" or "<f" (arrays rebuilt from pickle
    buffers, say); all mean the same native float.
    """
    if format == NULL:
        return 0
    if format[0] == b'@' or format[0] == b'=' or format[0] == _native_order:
        format += 1
    if (format[0] == b'f' or format[0] == b'd') and format[1] == 0:
        return format[0]
    return 0


cdef inline Py_ssize_t _on_lines(Py_ssize_t n_bytes) noexcept nogil:
    """`n_bytes` rounded up to whole cache lines."""
    return (n_bytes + _LINE - 1) // _LINE * _LINE


cdef int _get_array(object obj, Py_buffer* view, int flags, char kind,
                    int ndim, const Py_ssize_t* shape) noexcept:
    """Acquire `obj` as a C-contiguous, aligned array of `kind` ('f' or 'd') and this shape.

    shape[i] < 0 accepts any extent >= 1 on axis i.  Returns 1 with `view`
    held, or 0 (nothing held, no exception set) if `obj` is anything else.
    """
    cdef int axis
    try:
        PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except Exception:
        return 0
    if (view.ndim == ndim and _float_kind(view.format) == kind
            and (<size_t> view.buf) % <size_t> view.itemsize == 0):  # aligned values
        for axis in range(ndim):
            if not (view.shape[axis] == shape[axis] if shape[axis] >= 0
                    else view.shape[axis] >= 1):
                break
        else:
            return 1
    PyBuffer_Release(view)
    return 0


cdef inline bint _overlap(const Py_buffer* a, const Py_buffer* b) noexcept nogil:
    """Whether the memory of two contiguous buffers overlaps."""
    cdef const char* a_start = <const char*> a.buf
    cdef const char* b_start = <const char*> b.buf
    return a_start < b_start + b.len and b_start < a_start + a.len


cdef void _step_layer(const floating* x, const floating* h, floating* out, char* scratch,
                      const floating* packed_ih, const floating* packed_hh,
                      const floating* bias_gates, const floating* bias_hn,
                      Py_ssize_t batch_size, Py_ssize_t input_size, Py_ssize_t hidden_size,
                      bint reset_after, int max_threads) noexcept nogil:
    """out (B, H) = one step from state h (B, H; NULL for zeros) on input x (B, I).

    `_forward_run` over one step of the identity packing, on packed weights,
    on up to max_threads threads (0: the core's default); `scratch` holds the
    blocks `StepKernel.scratch_bytes` counts.  h and out may be the same
    memory: h is copied to the scratch state first.
    """
    cdef Py_ssize_t B = batch_size, H = hidden_size
    cdef Py_ssize_t one_step[1]
    cdef Py_ssize_t offsets[2]
    one_step[0] = B
    offsets[0] = 0
    offsets[1] = B
    cdef floating* state = <floating*> scratch
    cdef floating* state_scratch = <floating*> (<char*> state + _on_lines(B * H * sizeof(floating)))
    cdef floating* gates = <floating*> (<char*> state_scratch + _on_lines(B * H * sizeof(floating)))
    cdef floating* h_prev = <floating*> (<char*> gates + _on_lines(4 * B * H * sizeof(floating)))
    cdef floating* input_preact = <floating*> (<char*> h_prev + _on_lines(B * H * sizeof(floating)))
    cdef floating* recurrent_preact = <floating*> (
        <char*> input_preact + _on_lines(3 * B * H * sizeof(floating)))
    if h == NULL:
        memset(state, 0, B * H * sizeof(floating))
    else:
        memcpy(state, h, B * H * sizeof(floating))
    cdef ForwardCall call
    memset(&call, 0, sizeof(call))  # every field a later one may add starts NULL / 0 / False
    call.seq.seq_len = 1
    call.seq.batch_size = B
    call.seq.input_size = input_size
    call.seq.hidden_size = H
    call.seq.n_rows = B
    call.seq.batch_sizes = one_step
    call.seq.offsets = offsets
    call.seq.out_rows = NULL
    call.seq.order = NULL
    call.seq.reset_after = reset_after
    call.seq.reverse = False
    call.seq.hidden_pieces = _pieces(H)
    call.seq.row_split = _row_split_on(B, H, sizeof(floating), True, False)
    call.seq.row_piece_min = _row_piece_min(False)
    call.store_history = False
    call.pack_weights = False
    call.preact_rows = B
    call.blas_projection = False  # one step: the packed kernel (see _projection_on_blas)
    call.blas_in_pieces = False
    call.x = x
    call.weight_ih = NULL
    call.weight_hh = NULL
    call.packed_ih = <void*> packed_ih
    call.packed_hh = <void*> packed_hh
    call.bias_gates = bias_gates
    call.bias_hn = bias_hn
    call.y = out
    call.gates = gates
    call.h_prev = h_prev
    call.input_preact = input_preact
    call.recurrent_preact = recurrent_preact
    call.h_read = state
    call.h_write = state_scratch
    cdef Interrupts interrupts = _interrupts_from(&_never_stop, False)
    if max_threads <= 0:
        max_threads = max_threads_c()
    cdef int participants = pool_acquire(min(max_threads, _most_pieces(&call.seq)))
    _forward_run(&call, participants, &interrupts, <floating*> NULL)
    if participants > 1:
        pool_release()


cdef class StepKernel:
    """One GRU layer's time step on weights packed once (the streaming entry).

    Parameters
    ----------
    packed_ih, packed_hh : ndarray
        The weights as `pack_forward_weights` packs them, (3*Hp*I,) and
        (3*Hp*H,); their buffers are held as long as the kernel lives.
    bias_gates, bias_hn : ndarray
        The folded biases (3H,) and (H,) (gru_fast.functional.fold_biases).
    input_size, hidden_size : int
        I and H.
    reset_after : bool
        The candidate-state variant.

    The dtype (float32 or float64) is that of the arrays.  The kernel's
    scratch serves one call at a time; a concurrent call (another Python
    thread) takes scratch of its own for that call.
    """
    cdef Py_buffer _weights[4]  # packed_ih, packed_hh, bias_gates, bias_hn, held
    cdef int _held
    cdef readonly int input_size
    cdef readonly int hidden_size
    cdef readonly bint reset_after
    cdef char _kind  # 'f' (float32) or 'd' (float64)
    cdef Py_ssize_t _itemsize
    cdef char* _scratch
    cdef Py_ssize_t _scratch_rows
    cdef bint _busy

    def __cinit__(self, packed_ih, packed_hh, bias_gates, bias_hn,
                  int input_size, int hidden_size, bint reset_after):
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, "
                             f"got {input_size} and {hidden_size}")
        cdef Py_ssize_t padded = padded_to_panels(hidden_size)
        cdef Py_ssize_t[4] sizes = [3 * padded * input_size, 3 * padded * hidden_size,
                                    3 * hidden_size, hidden_size]
        arrays = (packed_ih, packed_hh, bias_gates, bias_hn)
        names = ("packed_ih", "packed_hh", "bias_gates", "bias_hn")
        cdef Py_buffer* view
        cdef int i
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.reset_after = reset_after
        for i in range(4):
            view = &self._weights[i]
            PyObject_GetBuffer(arrays[i], view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            self._held = i + 1
            if i == 0:
                self._kind = _float_kind(view.format)
                self._itemsize = view.itemsize
            if (view.ndim != 1 or view.shape[0] != sizes[i] or self._kind == 0
                    or _float_kind(view.format) != self._kind):
                raise ValueError(
                    f"{names[i]} must be a contiguous float32 or float64 array of "
                    f"{sizes[i]} values, of one dtype with the others; got "
                    f"{view.ndim}-D, {view.shape[0] if view.ndim == 1 else '-'} values, format "
                    f"{(<bytes> view.format).decode() if view.format != NULL else None!r}")

    def __dealloc__(self):
        cdef int i
        for i in range(self._held):
            PyBuffer_Release(&self._weights[i])
        free(self._scratch)

    def __reduce__(self):
        raise TypeError("a StepKernel holds raw pointers and cannot be pickled; "
                        "make it again from the packed weights")

    @property
    def dtype_char(self):
        """'f' for float32, 'd' for float64."""
        return chr(self._kind)

    cdef Py_ssize_t scratch_bytes(self, Py_ssize_t batch_size) noexcept:
        """Bytes of scratch one step of `batch_size` rows needs (see `_step_layer`)."""
        cdef Py_ssize_t block = _on_lines(batch_size * self.hidden_size * self._itemsize)
        cdef Py_ssize_t block3 = _on_lines(3 * batch_size * self.hidden_size * self._itemsize)
        cdef Py_ssize_t block4 = _on_lines(4 * batch_size * self.hidden_size * self._itemsize)
        return 3 * block + block4 + 2 * block3  # state, state_scratch, h_prev; gates; proj, hidden

    cdef char* _take_scratch(self, Py_ssize_t batch_size, bint* owned) except NULL:
        """Scratch for one call (with the GIL): the kernel's own, or new memory if in use.

        owned[0] tells whether the caller must free() it.
        """
        cdef void* memory = NULL
        cdef Py_ssize_t n_bytes = self.scratch_bytes(batch_size)
        if not self._busy:
            if batch_size > self._scratch_rows:
                free(self._scratch)
                self._scratch = NULL
                self._scratch_rows = 0
                if posix_memalign(&memory, _LINE, n_bytes) != 0:
                    raise MemoryError()
                self._scratch = <char*> memory
                self._scratch_rows = batch_size
            self._busy = True
            owned[0] = False
            return self._scratch
        if posix_memalign(&memory, _LINE, n_bytes) != 0:
            raise MemoryError()
        owned[0] = True
        return <char*> memory

    cdef int _step_once(self, const char* x, const char* h, char* out,
                        Py_ssize_t batch_size, int max_threads) except -1:
        """One step on raw memory already checked, the GIL released around the work."""
        cdef bint owned = False
        cdef char* scratch = self._take_scratch(batch_size, &owned)
        with nogil:
            if self._kind == b'd':
                _step_layer(<const double*> x, <const double*> h, <double*> out, scratch,
                            <const double*> self._weights[0].buf,
                            <const double*> self._weights[1].buf,
                            <const double*> self._weights[2].buf,
                            <const double*> self._weights[3].buf,
                            batch_size, self.input_size, self.hidden_size,
                            self.reset_after, max_threads)
            else:
                _step_layer(<const float*> x, <const float*> h, <float*> out, scratch,
                            <const float*> self._weights[0].buf,
                            <const float*> self._weights[1].buf,
                            <const float*> self._weights[2].buf,
                            <const float*> self._weights[3].buf,
                            batch_size, self.input_size, self.hidden_size,
                            self.reset_after, max_threads)
        if owned:
            free(scratch)
        else:
            self._busy = False
        return 0

    def step(self, x_t, h, out, int max_threads=0):
        """out (B, H) = the state after one step from h (B, H) on x_t (B, I).

        As `step_layers` for this one layer, with 2-D h and out.
        """
        return _step_layers((self,), x_t, h, out, max_threads, False)


def step_layers(tuple kernels, x_t, h, out, int max_threads=0):
    """One time step of stacked layers: out[k] = the new state of layer k (GIL released).

    Parameters
    ----------
    kernels : tuple of StepKernel
        Layer 0 takes x_t; layer k > 0 takes out[k - 1] (so its input size is H).
    x_t : buffer, shape (B, I)
    h : buffer, shape (L, B, H), or None for zeros
    out : writable buffer, shape (L, B, H); may be h itself, must not overlap x_t
    max_threads : int
        Most threads a step may use (the caller's included): 0 for the core's
        default (`max_threads()`), 1 for serial.  Whether the pool's workers
        help is measured as for a sequence.

    Returns
    -------
    bool
        True when the step ran; False, with nothing done, unless the arrays
        are C-contiguous buffers of the kernels' dtype and these shapes.
    """
    return _step_layers(kernels, x_t, h, out, max_threads, True)


cdef object _step_layers(tuple kernels, x_t, h, out, int max_threads, bint stacked):
    """`step_layers` (stacked: h and out (L, B, H)) or `StepKernel.step` ((B, H))."""
    cdef Py_ssize_t n_layers = len(kernels), layer
    if n_layers == 0:
        return False
    cdef StepKernel first = <StepKernel?> kernels[0]
    cdef StepKernel kernel
    cdef char kind = first._kind
    cdef Py_ssize_t H = first.hidden_size
    for layer in range(1, n_layers):
        kernel = <StepKernel?> kernels[layer]
        if kernel._kind != kind or kernel.hidden_size != H or kernel.input_size != H:
            return False
    cdef Py_buffer x_view, h_view, out_view
    cdef Py_ssize_t x_shape[2]
    cdef Py_ssize_t state_shape[3]
    x_shape[0] = -1
    x_shape[1] = first.input_size
    if not _get_array(x_t, &x_view, 0, kind, 2, x_shape):
        return False
    cdef Py_ssize_t batch_size = x_view.shape[0]
    state_shape[0] = n_layers
    state_shape[1] = batch_size
    state_shape[2] = H
    cdef int ndim = 3 if stacked else 2
    cdef const Py_ssize_t* shape = &state_shape[0 if stacked else 1]
    cdef bint has_h = h is not None
    if has_h and not _get_array(h, &h_view, 0, kind, ndim, shape):
        PyBuffer_Release(&x_view)
        return False
    if not _get_array(out, &out_view, PyBUF_WRITABLE, kind, ndim, shape):
        if has_h:
            PyBuffer_Release(&h_view)
        PyBuffer_Release(&x_view)
        return False
    cdef bint ok = not _overlap(&out_view, &x_view) and not (
        has_h and _overlap(&out_view, &h_view) and out_view.buf != h_view.buf)
    cdef Py_ssize_t layer_bytes = batch_size * H * first._itemsize
    cdef char* out_ = <char*> out_view.buf
    cdef const char* h_ = <const char*> h_view.buf if has_h else NULL
    try:
        if ok:
            for layer in range(n_layers):
                kernel = <StepKernel> kernels[layer]
                kernel._step_once(
                    <const char*> x_view.buf if layer == 0 else out_ + (layer - 1) * layer_bytes,
                    h_ + layer * layer_bytes if has_h else NULL,
                    out_ + layer * layer_bytes, batch_size, max_threads)
    finally:
        PyBuffer_Release(&out_view)
        if has_h:
            PyBuffer_Release(&h_view)
        PyBuffer_Release(&x_view)
    return ok


def same_bytes(tuple arrays, tuple snapshots):
    """Whether arrays[i] holds exactly the bytes, dtype and shape of snapshots[i], for all i.

    Each array must be a C-contiguous buffer of float32 or float64 (anything
    else gives False); None matches None only.  Compares raw bytes (memcmp): -0.0 differs from
    0.0 and a NaN equals the same NaN, which is what a cache of packed
    weights needs.
    """
    cdef Py_ssize_t i, axis
    cdef Py_buffer array_view, snapshot_view
    cdef bint same
    if len(arrays) != len(snapshots):
        return False
    for i in range(len(arrays)):
        array = arrays[i]
        snapshot = snapshots[i]
        if array is None or snapshot is None:
            if array is not snapshot:
                return False
            continue
        try:
            PyObject_GetBuffer(array, &array_view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except Exception:
            return False
        try:
            PyObject_GetBuffer(snapshot, &snapshot_view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except Exception:
            PyBuffer_Release(&array_view)
            raise
        same = (array_view.ndim == snapshot_view.ndim and array_view.len == snapshot_view.len
                and _float_kind(array_view.format) != 0
                and _float_kind(array_view.format) == _float_kind(snapshot_view.format))
        if same:
            for axis in range(array_view.ndim):
                if array_view.shape[axis] != snapshot_view.shape[axis]:
                    same = False
        if same and array_view.len >= _NOGIL_BYTES:
            with nogil:
                same = memcmp(array_view.buf, snapshot_view.buf, array_view.len) == 0
        elif same:
            same = memcmp(array_view.buf, snapshot_view.buf, array_view.len) == 0
        PyBuffer_Release(&snapshot_view)
        PyBuffer_Release(&array_view)
        if not same:
            return False
    return True
