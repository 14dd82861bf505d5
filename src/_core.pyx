# The compiled core: one GRU layer, one direction, a whole sequence.
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
#   have finished keep their value untouched, which is exactly the packed
#   sequence semantics.
# * Gate columns are ordered r, z, n.  The per-step cache `gates` has 4H
#   columns: r, z, n and a fourth block that backward needs:
#     reset_after=True:  hn = h_prev W_hn^T + b_hn   (the linear term r scales)
#     reset_after=False: q  = r ∘ h_prev             (the input of W_hn)
#
# Without a cache (store_history=False) `gates` and `h_prev` are (B, ...)
# scratch rewritten every step; the input projection is computed a chunk of
# steps at a time into `proj`, so memory beyond the outputs stays O(B·H).
#
# Products.  Every step multiplies the few active rows by the same weights.
# BLAS would repack the weights at every call, so every product of the core
# uses the packed kernel of _kernel.h: each call packs its weights once into
# panels of 32 columns (16 without AVX-512), per gate, padded to Hp columns:
#   forward:  packed_ih[g] = W_ih[gH:(g+1)H].T (I, Hp), packed_hh[g] likewise (H, Hp)
#   backward: packed_hh = W_hh (3H, H) as panels of its columns (3H, Hp)
# Backward's products over all rows at once (dx and the weight gradients)
# run after the time loop, in the same parallel region, on packed W_ih, x and
# h_prev (see _gradients_over_rows).
#
# Threads.  The time loop runs on n_threads OpenMP threads (one parallel
# region for the whole sequence; threadpoolctl and OMP_NUM_THREADS set the
# count), which meet at the spinning barrier of _parallel.h.  Thread i owns
# a range of hidden units, the same units in the r, z and n blocks, in whole
# panels, and does all the work of its units: packing their weights, their
# columns of the projection and of the recurrent product, and their gates.  A step reads the whole previous state (forward)
# or the gate gradients of every unit (backward), so threads meet at a barrier
# wherever one reads what another wrote; between barriers no thread reads a
# column another writes.

from cython cimport floating
from cython.parallel cimport parallel
cimport _openmp as openmp  # omp.h, or one-thread fallbacks in builds without OpenMP
from _gates cimport sigmoid, tanh_
from _kernel cimport PANEL, pack, pack_transposed, packed_gemm, packed_gemm_at

cdef extern from "_parallel.h" nogil:
    ctypedef struct gf_team:
        int arrived
        int generation
    void team_init "gf_team_init"(gf_team* team)
    void barrier "gf_barrier"(gf_team* team)


def max_threads():
    """Threads a parallel region of the core gets by default (OpenMP's setting)."""
    return openmp.omp_get_max_threads()


PANEL_WIDTH = PANEL  # columns per panel of the packed weights


def padded_to_panels(width):
    """`width` rounded up to whole panels: Hp and Ip, the padded widths of packed operands."""
    return -(-width // PANEL) * PANEL


cdef inline void _unit_range(Py_ssize_t hidden_size, int thread, int n_threads,
                             Py_ssize_t* first, Py_ssize_t* last) noexcept nogil:
    """Hidden units [first, last) of `thread` of `n_threads`, in whole panels (maybe none).

    Whole panels also keep two threads from writing the same 64-byte line of a row.
    """
    cdef Py_ssize_t n_panels = (hidden_size + PANEL - 1) // PANEL
    first[0] = min(hidden_size, (thread * n_panels // n_threads) * PANEL)
    last[0] = min(hidden_size, ((thread + 1) * n_panels // n_threads) * PANEL)


cdef inline void _pack_forward_weights(
        const floating* weight_ih, const floating* weight_hh,
        floating* own_ih, floating* own_hh, Py_ssize_t lo, int n_units,
        int input_size, int hidden_size) noexcept nogil:
    """Pack hidden units [lo, lo + n_units) of every gate, as forward's products read them.

    own_ih = packed_ih + lo * I and own_hh = packed_hh + lo * H: gate g's panels
    start at packed_*[g * Hp * K], each K x PANEL (K = I or H), so the units of a
    thread are whole panels wherever `lo` is a multiple of PANEL.
    """
    cdef Py_ssize_t H = hidden_size, I = input_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef int gate
    for gate in range(3):
        # packed_ih[g] = W_ih[gH+lo : gH+lo+n_units].T  (I, n_units) as panels
        pack_transposed(weight_ih + (gate * H + lo) * I, I, n_units, input_size,
                        own_ih + gate * Hp * I)
        # packed_hh[g] = W_hh[gH+lo : gH+lo+n_units].T  (H, n_units) as panels
        pack_transposed(weight_hh + (gate * H + lo) * H, H, n_units, hidden_size,
                        own_hh + gate * Hp * H)


def pack_forward_weights(const floating[:, ::1] weight_ih,
                         const floating[:, ::1] weight_hh,
                         floating[::1] packed_ih,
                         floating[::1] packed_hh):
    """Pack the weights once, as forward_sequence(..., pack_weights=True) would.

    weight_ih (3H, I), weight_hh (3H, H); packed_ih (3*Hp*I,) and packed_hh
    (3*Hp*H,) are filled (Hp = padded_to_panels(H)).  The layout does not
    depend on the thread count, so the result serves any later call.
    """
    cdef int hidden_size = <int> weight_hh.shape[1]
    cdef int input_size = <int> weight_ih.shape[1]
    with nogil:
        _pack_forward_weights(&weight_ih[0, 0], &weight_hh[0, 0], &packed_ih[0],
                              &packed_hh[0], 0, hidden_size, input_size, hidden_size)


cdef void _forward_loop(
        const floating* x, const Py_ssize_t* batch_sizes,
        const Py_ssize_t* offsets, const Py_ssize_t* out_rows, const Py_ssize_t* order,
        const floating* weight_ih, const floating* weight_hh,
        floating* packed_ih, floating* packed_hh,
        const floating* bias_gates, const floating* bias_hn,
        floating* state, floating* state_scratch, Py_ssize_t batch_size, floating* y,
        floating* gates, floating* h_prev,
        floating* proj, Py_ssize_t proj_rows, floating* hidden,
        Py_ssize_t seq_len, int input_size, int hidden_size,
        bint reset_after, bint reverse, bint store_history, bint pack_weights,
        gf_team* team, int thread, int n_threads) noexcept nogil:
    """The forward time loop, as run by `thread` of `n_threads` (see forward_sequence).

    The state alternates between two buffers, `state` and `state_scratch`:
    a step reads one and writes the other, so no thread overwrites a state
    that another is still reading, and one barrier per step is enough for
    reset_after (two for the classic variant, whose second product reads
    r ∘ h_prev of every unit).  A row whose last step wrote the scratch
    buffer is copied back to `state` at once (its own columns, by each thread).
    """
    cdef Py_ssize_t H = hidden_size, I = input_size
    cdef Py_ssize_t Hp = (H + PANEL - 1) // PANEL * PANEL
    cdef Py_ssize_t step, t, b, j, n_active, n_next, row, gate_row, chunk_lo = 0, chunk_hi = 0
    cdef Py_ssize_t gate, lo, hi
    cdef floating r, z, cand, hn, hp, h_new
    cdef const floating* g
    cdef const floating* rec
    cdef floating* hs
    cdef floating* hs_new
    cdef floating* h_read = state
    cdef floating* h_write = state_scratch
    cdef floating* swap
    cdef floating* gt
    cdef floating* hprev_row
    cdef floating* y_row
    cdef bint threaded = n_threads > 1
    _unit_range(H, thread, n_threads, &lo, &hi)
    cdef int n_units = <int> (hi - lo)
    # This thread's panels of gate g start at packed_*[g * Hp * K + lo * K].
    cdef floating* own_ih = packed_ih + lo * I
    cdef floating* own_hh = packed_hh + lo * H

    # Rows that start late (reverse direction) find h0 in either buffer.
    for b in range(batch_size):
        for j in range(lo, hi):
            state_scratch[b * H + j] = state[b * H + j]
    if pack_weights:
        _pack_forward_weights(weight_ih, weight_hh, own_ih, own_hh, lo, n_units,
                              input_size, hidden_size)

    for step in range(seq_len):
        t = seq_len - 1 - step if reverse else step
        n_active = batch_sizes[t]
        if order != NULL and y != NULL:
            # y[t, row] = 0 for the rows not running at step t (this thread's units):
            # cheaper than np.zeros, whose fresh pages fault in when the core writes.
            for b in range(n_active, batch_size):
                y_row = y + (t * batch_size + order[b]) * H
                for j in range(lo, hi):
                    y_row[j] = 0
        if n_active == 0:
            continue

        # Input projection, a chunk of steps at a time (never more than
        # proj_rows packed rows, and always at least the current step).
        if t < chunk_lo or t >= chunk_hi:
            chunk_lo = t
            chunk_hi = t + 1
            if reverse:
                while chunk_lo > 0 and offsets[chunk_hi] - offsets[chunk_lo - 1] <= proj_rows:
                    chunk_lo -= 1
            else:
                while chunk_hi < seq_len and offsets[chunk_hi + 1] - offsets[chunk_lo] <= proj_rows:
                    chunk_hi += 1
            for gate in range(3):
                # proj[:rows, gH+lo:gH+hi] = x[chunk rows] (rows, I) @ W_ih[gH+lo:gH+hi].T (I, hi-lo)
                packed_gemm(<int> (offsets[chunk_hi] - offsets[chunk_lo]), n_units, input_size,
                            x + offsets[chunk_lo] * I, I, own_ih + gate * Hp * I, I * PANEL,
                            False, proj + gate * H + lo, 3 * H)

        for gate in range(3 if reset_after else 2):
            # hidden[:n, gH+lo:gH+hi] = h_prev[:n] (n, H) @ W_hh[gH+lo:gH+hi].T (H, hi-lo)
            packed_gemm(<int> n_active, n_units, hidden_size, h_read, H,
                        own_hh + gate * Hp * H, H * PANEL, False, hidden + gate * H + lo, 3 * H)

        for b in range(n_active):
            row = offsets[t] + b
            gate_row = row if store_history else b
            g = proj + (row - offsets[chunk_lo]) * 3 * H
            rec = hidden + b * 3 * H
            hs = h_read + b * H
            hs_new = h_write + b * H
            gt = gates + gate_row * 4 * H
            hprev_row = h_prev + gate_row * H
            if reset_after:
                # Without y (final states only) the output lands on the new state itself.
                y_row = hs_new if y == NULL else y + (out_rows[row] if out_rows != NULL else row) * H
                # Two loops, the sigmoids first: one loop with the sigmoid, then the
                # tanh that needs it, was a chain too long for the CPU to overlap
                # (B = 1, H = 64: 480 -> 445 ns per step).
                for j in range(lo, hi):
                    gt[j] = sigmoid(g[j] + rec[j] + bias_gates[j])
                    gt[H + j] = sigmoid(g[H + j] + rec[H + j] + bias_gates[H + j])
                for j in range(lo, hi):
                    hp = hs[j]
                    r = gt[j]
                    z = gt[H + j]
                    hn = rec[2 * H + j] + bias_hn[j]
                    cand = tanh_(g[2 * H + j] + bias_gates[2 * H + j] + r * hn)
                    h_new = cand + z * (hp - cand)
                    gt[2 * H + j] = cand
                    gt[3 * H + j] = hn
                    hprev_row[j] = hp
                    hs_new[j] = h_new
                    y_row[j] = h_new
            else:
                for j in range(lo, hi):
                    hp = hs[j]
                    r = sigmoid(g[j] + rec[j] + bias_gates[j])
                    z = sigmoid(g[H + j] + rec[H + j] + bias_gates[H + j])
                    gt[j] = r
                    gt[H + j] = z
                    gt[3 * H + j] = r * hp
                    hprev_row[j] = hp

        if not reset_after:
            if threaded:
                barrier(team)  # q = r ∘ h_prev is complete
            gt = gates + (offsets[t] if store_history else 0) * 4 * H
            # hidden[:n, 2H+lo:2H+hi] = q[:n] (n, H) @ W_hh[2H+lo:2H+hi].T (H, hi-lo),  q = r ∘ h_prev
            packed_gemm(<int> n_active, n_units, hidden_size, gt + 3 * H, 4 * H,
                        own_hh + 2 * Hp * H, H * PANEL, False, hidden + 2 * H + lo, 3 * H)
            for b in range(n_active):
                row = offsets[t] + b
                gate_row = row if store_history else b
                g = proj + (row - offsets[chunk_lo]) * 3 * H
                rec = hidden + b * 3 * H
                hs = h_read + b * H
                hs_new = h_write + b * H
                gt = gates + gate_row * 4 * H
                y_row = hs_new if y == NULL else y + (out_rows[row] if out_rows != NULL else row) * H
                for j in range(lo, hi):
                    hp = hs[j]
                    z = gt[H + j]
                    cand = tanh_(g[2 * H + j] + bias_gates[2 * H + j] + rec[2 * H + j])
                    h_new = cand + z * (hp - cand)
                    gt[2 * H + j] = cand
                    hs_new[j] = h_new
                    y_row[j] = h_new

        if threaded:
            barrier(team)  # the new state is complete before the next step reads it
        # Rows whose sequence ends here keep their last state in `state`.
        # (After the barrier: until then other threads may read `state`.)
        if reverse:
            n_next = batch_sizes[t - 1] if t > 0 else 0
        else:
            n_next = batch_sizes[t + 1] if t + 1 < seq_len else 0
        if h_write != state:
            for b in range(n_next, n_active):
                for j in range(lo, hi):
                    state[b * H + j] = h_write[b * H + j]
        swap = h_read
        h_read = h_write
        h_write = swap


def forward_sequence(const floating[:, ::1] x,
                     const Py_ssize_t[::1] batch_sizes,
                     const Py_ssize_t[::1] offsets,
                     const Py_ssize_t[::1] out_rows,
                     const Py_ssize_t[::1] order,
                     const floating[:, ::1] weight_ih,
                     const floating[:, ::1] weight_hh,
                     floating[::1] packed_ih,
                     floating[::1] packed_hh,
                     const floating[::1] bias_gates,
                     const floating[::1] bias_hn,
                     floating[:, ::1] state,
                     floating[:, ::1] state_scratch,
                     floating[:, ::1] y,
                     floating[:, ::1] gates,
                     floating[:, ::1] h_prev,
                     floating[:, ::1] proj,
                     floating[:, ::1] hidden,
                     bint reset_after, bint reverse, bint store_history,
                     int n_threads, bint pack_weights=True):
    """Run one GRU layer in one direction over a packed sequence (GIL released).

    Shapes (N packed rows, T steps, B batch rows sorted by length, H hidden,
    Hp = padded_to_panels(H)):
    x (N, I); batch_sizes (T,); offsets (T+1,); out_rows (N,) and order (B,),
    both (0,) for the identity; weight_ih (3H, I); weight_hh (3H, H); packed_ih (3*Hp*I,)
    and packed_hh (3*Hp*H,) scratch for the packed weights; bias_gates (3H,)
    = b_ih plus b_hh folded in wherever it adds directly; bias_hn (H,) = b_hn
    when reset_after (zeros otherwise); state (B, H) in/out and state_scratch (B, H); y (T*B, H) out
    (padding zeroed), or (0, H) to write no outputs but the final state; gates (N, 4H) and h_prev (N, H) when store_history,
    else (B, 4H) and (B, H) scratch; proj (P, 3H) with P >= B; hidden (B, 3H).
    The time loop runs on n_threads OpenMP threads (one runs it serially).
    With pack_weights=False, packed_ih and packed_hh already hold the
    weights (pack_forward_weights) and weight_ih/weight_hh may be None.
    """
    cdef Py_ssize_t seq_len = batch_sizes.shape[0]
    if seq_len == 0 or x.shape[0] == 0:
        return
    cdef const floating* x_ = &x[0, 0]
    cdef const Py_ssize_t* batch_sizes_ = &batch_sizes[0]
    cdef const Py_ssize_t* offsets_ = &offsets[0]
    cdef const Py_ssize_t* out_rows_ = &out_rows[0] if out_rows.shape[0] > 0 else NULL
    cdef const Py_ssize_t* order_ = &order[0] if order.shape[0] > 0 else NULL
    cdef const floating* weight_ih_ = &weight_ih[0, 0] if pack_weights else NULL
    cdef const floating* weight_hh_ = &weight_hh[0, 0] if pack_weights else NULL
    cdef floating* packed_ih_ = &packed_ih[0]
    cdef floating* packed_hh_ = &packed_hh[0]
    cdef const floating* bias_gates_ = &bias_gates[0]
    cdef const floating* bias_hn_ = &bias_hn[0]
    cdef floating* state_ = &state[0, 0]
    cdef floating* state_scratch_ = &state_scratch[0, 0]
    cdef Py_ssize_t batch_size = state.shape[0]
    cdef floating* y_ = &y[0, 0] if y.shape[0] > 0 else NULL  # (0, H): final states only
    cdef floating* gates_ = &gates[0, 0]
    cdef floating* h_prev_ = &h_prev[0, 0]
    cdef floating* proj_ = &proj[0, 0]
    cdef floating* hidden_ = &hidden[0, 0]
    cdef Py_ssize_t proj_rows = proj.shape[0]
    cdef int input_size = <int> x.shape[1]
    cdef int hidden_size = <int> state.shape[1]
    cdef gf_team team
    team_init(&team)
    if n_threads <= 1:
        with nogil:
            _forward_loop(x_, batch_sizes_, offsets_, out_rows_, order_, weight_ih_, weight_hh_,
                          packed_ih_, packed_hh_, bias_gates_, bias_hn_,
                          state_, state_scratch_, batch_size, y_, gates_, h_prev_,
                      proj_, proj_rows, hidden_,
                          seq_len, input_size, hidden_size,
                          reset_after, reverse, store_history, pack_weights, &team, 0, 1)
        return
    with nogil, parallel(num_threads=n_threads):
        _forward_loop(x_, batch_sizes_, offsets_, out_rows_, order_, weight_ih_, weight_hh_,
                      packed_ih_, packed_hh_, bias_gates_, bias_hn_,
                      state_, state_scratch_, batch_size, y_, gates_, h_prev_,
                      proj_, proj_rows, hidden_,
                      seq_len, input_size, hidden_size,
                      reset_after, reverse, store_history, pack_weights,
                      &team, openmp.omp_get_thread_num(), openmp.omp_get_num_threads())


cdef void _backward_loop(
        const Py_ssize_t* batch_sizes,
        const Py_ssize_t* offsets, const Py_ssize_t* out_rows,
        const floating* weight_hh, floating* packed_hh,
        const floating* gates, const floating* h_prev, const floating* dy,
        floating* dh, floating* d_gi, floating* d_gh, floating* dq,
        Py_ssize_t seq_len, int hidden_size, bint reset_after, bint reverse,
        gf_team* team, int thread, int n_threads) noexcept nogil:
    """The backward time loop, run by `thread` of `n_threads` (see backward_sequence).

    A thread writes the gate gradients and dh of its own units only; the
    products dh[:, lo:hi] += d_gates @ W_hh[:, lo:hi] read the gate gradients
    of every unit, after a barrier.
    """
    cdef Py_ssize_t H = hidden_size
    cdef Py_ssize_t step, t, b, j, n_active, row, lo, hi
    cdef floating r, z, cand, hn, d_h, d_an, d_ar, d_az
    cdef bint threaded = n_threads > 1
    cdef floating one = 1  # a typed 1: a bare literal would promote float math to double
    cdef const floating* gt
    cdef const floating* dy_row
    cdef const floating* hprev_row
    cdef floating* dh_row
    cdef floating* dgi_row
    cdef floating* dgh_row
    cdef floating* dq_row
    _unit_range(H, thread, n_threads, &lo, &hi)
    cdef int n_units = <int> (hi - lo)
    # This thread's panels: W_hh[:, lo:hi] as panels of 3H rows.
    cdef floating* own_hh = packed_hh + lo * 3 * H
    pack(weight_hh + lo, H, n_units, 3 * hidden_size, own_hh)

    # Backward walks the steps in the opposite order of the forward pass.
    for step in range(seq_len):
        t = step if reverse else seq_len - 1 - step
        n_active = batch_sizes[t]
        if n_active == 0:
            continue
        for b in range(n_active):
            row = offsets[t] + b
            gt = gates + row * 4 * H
            hprev_row = h_prev + row * H
            dy_row = dy + (out_rows[row] if out_rows != NULL else row) * H
            dh_row = dh + b * H
            dgi_row = d_gi + row * 3 * H
            dgh_row = d_gh + row * 3 * H
            if reset_after:
                for j in range(lo, hi):
                    r = gt[j]
                    z = gt[H + j]
                    cand = gt[2 * H + j]
                    hn = gt[3 * H + j]
                    d_h = dh_row[j] + dy_row[j]               # dL/dh_t
                    d_an = d_h * (one - z) * (one - cand * cand)  # dL/d(pre-tanh of n)
                    d_az = d_h * (hprev_row[j] - cand) * z * (one - z)
                    d_ar = d_an * hn * r * (one - r)             # n = tanh(... + r ∘ hn)
                    dgi_row[j] = d_ar
                    dgi_row[H + j] = d_az
                    dgi_row[2 * H + j] = d_an
                    dgh_row[j] = d_ar
                    dgh_row[H + j] = d_az
                    dgh_row[2 * H + j] = d_an * r
                    dh_row[j] = d_h * z                        # direct path h_{t-1} -> h_t
            else:
                for j in range(lo, hi):
                    z = gt[H + j]
                    cand = gt[2 * H + j]
                    d_h = dh_row[j] + dy_row[j]
                    dgi_row[H + j] = d_h * (hprev_row[j] - cand) * z * (one - z)
                    dgi_row[2 * H + j] = d_h * (one - z) * (one - cand * cand)
                    dh_row[j] = d_h * z
        if threaded:
            barrier(team)  # this step's gate gradients are complete
        if reset_after:
            # dh[:n, lo:hi] (n, hi-lo) += d_gh[rows] (n, 3H) @ W_hh[:, lo:hi] (3H, hi-lo)
            packed_gemm(<int> n_active, n_units, 3 * hidden_size, d_gh + offsets[t] * 3 * H, 3 * H,
                        own_hh, 3 * H * PANEL, True, dh + lo, H)
        else:
            # dq[:n, lo:hi] (n, hi-lo) = d_an[rows] (n, H) @ W_hh[2H:, lo:hi] (H, hi-lo),  q = r ∘ h_prev
            packed_gemm(<int> n_active, n_units, hidden_size, d_gi + offsets[t] * 3 * H + 2 * H,
                        3 * H, own_hh + 2 * H * PANEL, 3 * H * PANEL, False, dq + lo, H)
            for b in range(n_active):
                row = offsets[t] + b
                gt = gates + row * 4 * H
                hprev_row = h_prev + row * H
                dh_row = dh + b * H
                dgi_row = d_gi + row * 3 * H
                dq_row = dq + b * H
                for j in range(lo, hi):
                    r = gt[j]
                    dgi_row[j] = dq_row[j] * hprev_row[j] * r * (one - r)
                    dh_row[j] += dq_row[j] * r
            if threaded:
                barrier(team)  # the reset-gate gradients are complete
            # dh[:n, lo:hi] (n, hi-lo) += d_gi[rows, :2H] (n, 2H) @ W_hh[:2H, lo:hi] (2H, hi-lo)
            packed_gemm(<int> n_active, n_units, 2 * hidden_size, d_gi + offsets[t] * 3 * H, 3 * H,
                        own_hh, 3 * H * PANEL, True, dh + lo, H)


cdef void _gradients_over_rows(
        const floating* x, const floating* weight_ih,
        const floating* gates, const floating* h_prev,
        const floating* d_gi, const floating* d_gh,
        floating* packed_ih, floating* packed_x, floating* packed_h,
        floating* dx, floating* d_weight_ih, floating* d_weight_hh,
        floating* d_bias_ih, floating* d_bias_hh,
        Py_ssize_t n_rows, int input_size, int hidden_size,
        bint reset_after, bint with_bias, int thread, int n_threads) noexcept nogil:
    """dx, the weight and the bias gradients from the gate gradients of all N rows.

    Run by `thread` of `n_threads` after the time loop: the thread computes
    its own panels of input columns (dx, dW_ih) and of hidden units (dW_hh,
    the biases).  Ip = I and Hp = H rounded up to whole panels:
    packed_ih (Ip*3H,), packed_x (Ip*N,) and packed_h (Hp*N,) are scratch.
    """
    cdef Py_ssize_t H = hidden_size, I = input_size, N = n_rows
    cdef Py_ssize_t lo, hi, in_lo, in_hi, gate
    _unit_range(H, thread, n_threads, &lo, &hi)
    _unit_range(I, thread, n_threads, &in_lo, &in_hi)
    cdef int n_units = <int> (hi - lo)
    cdef int n_inputs = <int> (in_hi - in_lo)

    # dx[:, in_lo:in_hi] (N, n_in) = d_gi (N, 3H) @ W_ih[:, in_lo:in_hi] (3H, n_in)
    pack(weight_ih + in_lo, I, n_inputs, 3 * hidden_size, packed_ih + in_lo * 3 * H)
    packed_gemm(<int> N, n_inputs, 3 * hidden_size, d_gi, 3 * H,
                packed_ih + in_lo * 3 * H, 3 * H * PANEL, False, dx + in_lo, I)
    # dW_ih[:, in_lo:in_hi] (3H, n_in) = d_gi.T (3H, N) @ x[:, in_lo:in_hi] (N, n_in)
    pack(x + in_lo, I, n_inputs, <int> N, packed_x + in_lo * N)
    packed_gemm_at(3 * hidden_size, n_inputs, <int> N, d_gi, 3 * H,
                   packed_x + in_lo * N, N * PANEL, d_weight_ih + in_lo, I)

    pack(h_prev + lo, H, n_units, <int> N, packed_h + lo * N)
    if reset_after:
        # dW_hh[:, lo:hi] (3H, n) = d_gh.T (3H, N) @ h_prev[:, lo:hi] (N, n)
        packed_gemm_at(3 * hidden_size, n_units, <int> N, d_gh, 3 * H,
                       packed_h + lo * N, N * PANEL, d_weight_hh + lo, H)
    else:
        # dW_hh[:2H, lo:hi] (2H, n) = d_gi[:, :2H].T (2H, N) @ h_prev[:, lo:hi] (N, n)
        packed_gemm_at(2 * hidden_size, n_units, <int> N, d_gi, 3 * H,
                       packed_h + lo * N, N * PANEL, d_weight_hh + lo, H)
        # dW_hh[2H:, lo:hi] (H, n) = d_an.T (H, N) @ q[:, lo:hi] (N, n),  q = gates[:, 3H:]
        pack(gates + 3 * H + lo, 4 * H, n_units, <int> N, packed_h + lo * N)
        packed_gemm_at(hidden_size, n_units, <int> N, d_gi + 2 * H, 3 * H,
                       packed_h + lo * N, N * PANEL, d_weight_hh + 2 * H * H + lo, H)
    if with_bias:
        for gate in range(3):
            # b_ih[gH+lo:gH+hi] = sum over rows of d_gi[:, gH+lo:gH+hi]; b_hh likewise
            _column_sums(d_gi, N, 3 * H, gate * H + lo, gate * H + hi, d_bias_ih)
            _column_sums(d_gh if reset_after else d_gi, N, 3 * H,
                         gate * H + lo, gate * H + hi, d_bias_hh)


cdef inline void _column_sums(const floating* matrix, Py_ssize_t n_rows, Py_ssize_t n_cols,
                              Py_ssize_t col_lo, Py_ssize_t col_hi,
                              floating* out) noexcept nogil:
    """out[col_lo:col_hi] = sum over rows of matrix[:, col_lo:col_hi]; matrix (n_rows, n_cols)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    for j in range(col_lo, col_hi):
        out[j] = 0
    for i in range(n_rows):
        row = matrix + i * n_cols
        for j in range(col_lo, col_hi):
            out[j] += row[j]


cdef void _backward_thread(
        const floating* x, const Py_ssize_t* batch_sizes,
        const Py_ssize_t* offsets, const Py_ssize_t* out_rows,
        const floating* weight_ih, const floating* weight_hh,
        const floating* gates, const floating* h_prev, const floating* dy,
        floating* dh, floating* d_gi, floating* d_gh, floating* dq,
        floating* packed_ih, floating* packed_hh, floating* packed_x, floating* packed_h,
        floating* dx, floating* d_weight_ih, floating* d_weight_hh,
        floating* d_bias_ih, floating* d_bias_hh,
        Py_ssize_t seq_len, Py_ssize_t n_rows, int input_size, int hidden_size,
        bint reset_after, bint reverse, bint with_bias,
        gf_team* team, int thread, int n_threads) noexcept nogil:
    """All of backward for `thread` of `n_threads`: the time loop, then the products over rows."""
    _backward_loop(batch_sizes, offsets, out_rows, weight_hh, packed_hh, gates, h_prev, dy,
                   dh, d_gi, d_gh, dq, seq_len, hidden_size, reset_after, reverse,
                   team, thread, n_threads)
    if n_threads > 1:
        barrier(team)  # the gate gradients of every row and unit are complete
    _gradients_over_rows(x, weight_ih, gates, h_prev, d_gi, d_gh,
                         packed_ih, packed_x, packed_h, dx, d_weight_ih, d_weight_hh,
                         d_bias_ih, d_bias_hh, n_rows, input_size, hidden_size,
                         reset_after, with_bias, thread, n_threads)


def backward_sequence(const floating[:, ::1] x,
                      const Py_ssize_t[::1] batch_sizes,
                      const Py_ssize_t[::1] offsets,
                      const Py_ssize_t[::1] out_rows,
                      const floating[:, ::1] weight_ih,
                      const floating[:, ::1] weight_hh,
                      const floating[:, ::1] gates,
                      const floating[:, ::1] h_prev,
                      const floating[:, ::1] dy,
                      floating[:, ::1] dh,
                      floating[:, ::1] d_gi,
                      floating[:, ::1] d_gh,
                      floating[:, ::1] dq,
                      floating[::1] packed_ih,
                      floating[::1] packed_hh,
                      floating[::1] packed_x,
                      floating[::1] packed_h,
                      floating[:, ::1] dx,
                      floating[:, ::1] d_weight_ih,
                      floating[:, ::1] d_weight_hh,
                      floating[::1] d_bias_ih,
                      floating[::1] d_bias_hh,
                      bint reset_after, bint reverse, bint with_bias,
                      int n_threads):
    """Backpropagation through time for one layer and direction (GIL released).

    Takes the packed layout and the cache written by `forward_sequence` with
    store_history.  dy (T*B, H) is read only at valid rows; dh (B, H) holds
    dL/dh_n on entry (sorted rows) and dL/dh0 on exit.  Writes the gate
    gradients d_gi (N, 3H) = dL/d(x W_ih^T + b_ih) and, for reset_after,
    d_gh (N, 3H) = dL/d(h W_hh^T + b_hh) (unused otherwise).  Scratch, with
    Ip and Hp = I and H rounded up to whole panels (padded_to_panels): dq (B, H),
    packed_ih (Ip*3H,), packed_hh (Hp*3H,), packed_x (Ip*N,), packed_h
    (Hp*N,).  Outputs dx (N, I), d_weight_ih (3H, I), d_weight_hh (3H, H) and
    the bias gradients (3H,) when with_bias.  Runs on n_threads OpenMP threads.
    """
    cdef Py_ssize_t seq_len = batch_sizes.shape[0]
    cdef Py_ssize_t n_rows = x.shape[0]
    if n_rows == 0:
        d_weight_ih[...] = 0
        d_weight_hh[...] = 0
        d_bias_ih[...] = 0
        d_bias_hh[...] = 0
        return
    cdef const floating* x_ = &x[0, 0]
    cdef const Py_ssize_t* batch_sizes_ = &batch_sizes[0]
    cdef const Py_ssize_t* offsets_ = &offsets[0]
    cdef const Py_ssize_t* out_rows_ = &out_rows[0] if out_rows.shape[0] > 0 else NULL
    cdef const floating* weight_ih_ = &weight_ih[0, 0]
    cdef const floating* weight_hh_ = &weight_hh[0, 0]
    cdef const floating* gates_ = &gates[0, 0]
    cdef const floating* h_prev_ = &h_prev[0, 0]
    cdef const floating* dy_ = &dy[0, 0]
    cdef floating* dh_ = &dh[0, 0]
    cdef floating* d_gi_ = &d_gi[0, 0]
    cdef floating* d_gh_ = &d_gh[0, 0]
    cdef floating* dq_ = &dq[0, 0]
    cdef floating* packed_ih_ = &packed_ih[0]
    cdef floating* packed_hh_ = &packed_hh[0]
    cdef floating* packed_x_ = &packed_x[0]
    cdef floating* packed_h_ = &packed_h[0]
    cdef floating* dx_ = &dx[0, 0]
    cdef floating* d_weight_ih_ = &d_weight_ih[0, 0]
    cdef floating* d_weight_hh_ = &d_weight_hh[0, 0]
    cdef floating* d_bias_ih_ = &d_bias_ih[0]
    cdef floating* d_bias_hh_ = &d_bias_hh[0]
    cdef int input_size = <int> x.shape[1]
    cdef int hidden_size = <int> dh.shape[1]
    cdef gf_team team
    team_init(&team)
    if n_threads <= 1:
        with nogil:
            _backward_thread(x_, batch_sizes_, offsets_, out_rows_, weight_ih_, weight_hh_,
                             gates_, h_prev_, dy_, dh_, d_gi_, d_gh_, dq_,
                             packed_ih_, packed_hh_, packed_x_, packed_h_,
                             dx_, d_weight_ih_, d_weight_hh_, d_bias_ih_, d_bias_hh_,
                             seq_len, n_rows, input_size, hidden_size,
                             reset_after, reverse, with_bias, &team, 0, 1)
        return
    with nogil, parallel(num_threads=n_threads):
        _backward_thread(x_, batch_sizes_, offsets_, out_rows_, weight_ih_, weight_hh_,
                         gates_, h_prev_, dy_, dh_, d_gi_, d_gh_, dq_,
                         packed_ih_, packed_hh_, packed_x_, packed_h_,
                         dx_, d_weight_ih_, d_weight_hh_, d_bias_ih_, d_bias_hh_,
                         seq_len, n_rows, input_size, hidden_size,
                         reset_after, reverse, with_bias,
                         &team, openmp.omp_get_thread_num(), openmp.omp_get_num_threads())


def activations(const floating[::1] values, floating[::1] sigmoid_out, floating[::1] tanh_out):
    """Apply the core's sigmoid and tanh to `values` (for accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            sigmoid_out[i] = sigmoid(values[i])
            tanh_out[i] = tanh_(values[i])
