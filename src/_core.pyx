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

from cython cimport floating
from _blas cimport gemm, small_gemm
from _gates cimport sigmoid, tanh_


cdef inline void _project_inputs(
        const floating* x, const floating* weight_ih,
        floating* proj, Py_ssize_t first_row, Py_ssize_t n_rows,
        int input_size, int hidden_size) noexcept nogil:
    # proj[:n_rows] (n_rows, 3H) = x[first_row:first_row+n_rows] (n_rows, I) @ W_ih.T (I, 3H)
    gemm(False, True, <int> n_rows, 3 * hidden_size, input_size,
         <floating> 1.0, x + first_row * input_size, input_size,
         weight_ih, input_size,
         <floating> 0.0, proj, 3 * hidden_size)


cdef inline void _transpose(const floating* matrix, Py_ssize_t n_rows, Py_ssize_t n_cols,
                            floating* out) noexcept nogil:
    """out (n_cols, n_rows) = matrix (n_rows, n_cols).T, in 16x16 blocks."""
    cdef Py_ssize_t i0, j0, i, j
    for i0 in range(0, n_rows, 16):
        for j0 in range(0, n_cols, 16):
            for i in range(i0, min(i0 + 16, n_rows)):
                for j in range(j0, min(j0 + 16, n_cols)):
                    out[j * n_rows + i] = matrix[i * n_cols + j]


cdef inline void _times_transposed(
        bint small, int m, int n, int k, const floating* a, int lda,
        const floating* w, int ldw, const floating* w_t, int ldw_t,
        floating* c, int ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ W.T, W (n, k) at w; W.T (k, n) at w_t when small."""
    if small:
        small_gemm(m, n, k, a, lda, w_t, ldw_t, False, c, ldc)
    else:
        gemm(False, True, m, n, k, <floating> 1.0, a, lda, w, ldw, <floating> 0.0, c, ldc)


cdef inline void _times(
        bint small, int m, int n, int k, const floating* a, int lda,
        const floating* w, int ldw, bint accumulate, floating* c, int ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ W (k, n), plus C if accumulate."""
    if small:
        small_gemm(m, n, k, a, lda, w, ldw, accumulate, c, ldc)
    else:
        gemm(False, False, m, n, k, <floating> 1.0, a, lda, w, ldw,
             <floating> (1.0 if accumulate else 0.0), c, ldc)


cdef void _forward_loop(
        const floating* x, const Py_ssize_t* batch_sizes,
        const Py_ssize_t* offsets, const Py_ssize_t* out_rows,
        const floating* weight_ih, const floating* weight_hh, floating* weight_hh_t,
        const floating* bias_gates, const floating* bias_hn,
        floating* state, floating* y,
        floating* gates, floating* h_prev,
        floating* proj, Py_ssize_t proj_rows, floating* hidden,
        Py_ssize_t seq_len, int input_size, int hidden_size,
        bint reset_after, bint reverse, bint store_history,
        Py_ssize_t small_rows) noexcept nogil:
    cdef Py_ssize_t H = hidden_size
    cdef Py_ssize_t step, t, b, j, n_active, row, gate_row, chunk_lo = 0, chunk_hi = 0
    cdef floating r, z, cand, hn, hp, h_new
    cdef const floating* g
    cdef const floating* rec
    cdef floating* hs
    cdef floating* gt
    cdef floating* hprev_row
    cdef floating* y_row

    cdef bint small
    if small_rows > 0:
        _transpose(weight_hh, 3 * H, H, weight_hh_t)

    for step in range(seq_len):
        t = seq_len - 1 - step if reverse else step
        n_active = batch_sizes[t]
        if n_active == 0:
            continue
        small = n_active <= small_rows  # hand-written kernel for this step's products

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
            _project_inputs(x, weight_ih, proj, offsets[chunk_lo],
                            offsets[chunk_hi] - offsets[chunk_lo], input_size, hidden_size)

        if reset_after:
            # hidden[:n] (n, 3H) = state[:n] (n, H) @ W_hh.T (H, 3H)
            _times_transposed(small, <int> n_active, 3 * hidden_size, hidden_size,
                              state, hidden_size, weight_hh, hidden_size,
                              weight_hh_t, 3 * hidden_size, hidden, 3 * hidden_size)
        else:
            # hidden[:n, :2H] (n, 2H) = state[:n] (n, H) @ W_hh[:2H].T (H, 2H)
            _times_transposed(small, <int> n_active, 2 * hidden_size, hidden_size,
                              state, hidden_size, weight_hh, hidden_size,
                              weight_hh_t, 3 * hidden_size, hidden, 3 * hidden_size)

        for b in range(n_active):
            row = offsets[t] + b
            gate_row = row if store_history else b
            g = proj + (row - offsets[chunk_lo]) * 3 * H
            rec = hidden + b * 3 * H
            hs = state + b * H
            gt = gates + gate_row * 4 * H
            hprev_row = h_prev + gate_row * H
            if reset_after:
                y_row = y + (out_rows[row] if out_rows != NULL else row) * H
                for j in range(H):
                    hp = hs[j]
                    r = sigmoid(g[j] + rec[j] + bias_gates[j])
                    z = sigmoid(g[H + j] + rec[H + j] + bias_gates[H + j])
                    hn = rec[2 * H + j] + bias_hn[j]
                    cand = tanh_(g[2 * H + j] + bias_gates[2 * H + j] + r * hn)
                    h_new = cand + z * (hp - cand)
                    gt[j] = r
                    gt[H + j] = z
                    gt[2 * H + j] = cand
                    gt[3 * H + j] = hn
                    hprev_row[j] = hp
                    hs[j] = h_new
                    y_row[j] = h_new
            else:
                for j in range(H):
                    hp = hs[j]
                    r = sigmoid(g[j] + rec[j] + bias_gates[j])
                    z = sigmoid(g[H + j] + rec[H + j] + bias_gates[H + j])
                    gt[j] = r
                    gt[H + j] = z
                    gt[3 * H + j] = r * hp
                    hprev_row[j] = hp

        if not reset_after:
            gt = gates + (offsets[t] if store_history else 0) * 4 * H
            # hidden[:n, 2H:] (n, H) = q[:n] (n, H) @ W_hh[2H:].T (H, H),  q = r ∘ h_prev
            _times_transposed(small, <int> n_active, hidden_size, hidden_size,
                              gt + 3 * H, 4 * hidden_size, weight_hh + 2 * H * H, hidden_size,
                              weight_hh_t + 2 * H, 3 * hidden_size, hidden + 2 * H, 3 * hidden_size)
            for b in range(n_active):
                row = offsets[t] + b
                gate_row = row if store_history else b
                g = proj + (row - offsets[chunk_lo]) * 3 * H
                rec = hidden + b * 3 * H
                hs = state + b * H
                gt = gates + gate_row * 4 * H
                y_row = y + (out_rows[row] if out_rows != NULL else row) * H
                for j in range(H):
                    hp = hs[j]
                    z = gt[H + j]
                    cand = tanh_(g[2 * H + j] + bias_gates[2 * H + j] + rec[2 * H + j])
                    h_new = cand + z * (hp - cand)
                    gt[2 * H + j] = cand
                    hs[j] = h_new
                    y_row[j] = h_new


def forward_sequence(const floating[:, ::1] x,
                     const Py_ssize_t[::1] batch_sizes,
                     const Py_ssize_t[::1] offsets,
                     const Py_ssize_t[::1] out_rows,
                     const floating[:, ::1] weight_ih,
                     const floating[:, ::1] weight_hh,
                     floating[:, ::1] weight_hh_t,
                     const floating[::1] bias_gates,
                     const floating[::1] bias_hn,
                     floating[:, ::1] state,
                     floating[:, ::1] y,
                     floating[:, ::1] gates,
                     floating[:, ::1] h_prev,
                     floating[:, ::1] proj,
                     floating[:, ::1] hidden,
                     bint reset_after, bint reverse, bint store_history,
                     Py_ssize_t small_rows):
    """Run one GRU layer in one direction over a packed sequence (GIL released).

    Shapes (N packed rows, T steps, B batch rows sorted by length, H hidden):
    x (N, I); batch_sizes (T,); offsets (T+1,); out_rows (N,) or (0,) for
    the identity;
    weight_ih (3H, I); weight_hh (3H, H); the per-step products of steps with
    at most `small_rows` active rows use the hand-written small_gemm instead
    of BLAS, and then weight_hh_t (H, 3H) is scratch that receives W_hh.T
    (with small_rows = 0 it may be any (1, 1) array); bias_gates (3H,) = b_ih plus b_hh
    folded in wherever it adds directly; bias_hn (H,) = b_hn when reset_after
    (zeros otherwise); state (B, H) in/out; y (T*B, H) out (padding untouched);
    gates (N, 4H) and h_prev (N, H) when store_history, else (B, 4H) and
    (B, H) scratch; proj (P, 3H) with P >= B; hidden (B, 3H).
    """
    cdef Py_ssize_t seq_len = batch_sizes.shape[0]
    if seq_len == 0 or x.shape[0] == 0:
        return
    with nogil:
        _forward_loop(&x[0, 0], &batch_sizes[0], &offsets[0],
                      &out_rows[0] if out_rows.shape[0] > 0 else NULL,
                      &weight_ih[0, 0], &weight_hh[0, 0], &weight_hh_t[0, 0],
                      &bias_gates[0], &bias_hn[0],
                      &state[0, 0], &y[0, 0], &gates[0, 0], &h_prev[0, 0],
                      &proj[0, 0], proj.shape[0], &hidden[0, 0],
                      seq_len, <int> x.shape[1], <int> state.shape[1],
                      reset_after, reverse, store_history, small_rows)


cdef void _backward_loop(
        const floating* x, const Py_ssize_t* batch_sizes,
        const Py_ssize_t* offsets, const Py_ssize_t* out_rows,
        const floating* weight_ih, const floating* weight_hh,
        const floating* gates, const floating* h_prev, const floating* dy,
        floating* dh, floating* d_gi, floating* d_gh, floating* dq,
        floating* dx, floating* d_weight_ih, floating* d_weight_hh,
        floating* d_bias_ih, floating* d_bias_hh,
        Py_ssize_t seq_len, Py_ssize_t n_rows, int input_size, int hidden_size,
        bint reset_after, bint reverse, bint with_bias,
        Py_ssize_t small_rows) noexcept nogil:
    cdef Py_ssize_t H = hidden_size
    cdef Py_ssize_t step, t, b, j, n_active, row
    cdef floating r, z, cand, hn, d_h, d_an, d_ar, d_az
    cdef bint small
    cdef floating one = 1  # a typed 1: a bare literal would promote float math to double
    cdef const floating* gt
    cdef const floating* dy_row
    cdef const floating* hprev_row
    cdef floating* dh_row
    cdef floating* dgi_row
    cdef floating* dgh_row
    cdef floating* dq_row

    # Backward walks the steps in the opposite order of the forward pass.
    for step in range(seq_len):
        t = step if reverse else seq_len - 1 - step
        n_active = batch_sizes[t]
        if n_active == 0:
            continue
        small = n_active <= small_rows
        for b in range(n_active):
            row = offsets[t] + b
            gt = gates + row * 4 * H
            hprev_row = h_prev + row * H
            dy_row = dy + (out_rows[row] if out_rows != NULL else row) * H
            dh_row = dh + b * H
            dgi_row = d_gi + row * 3 * H
            dgh_row = d_gh + row * 3 * H
            if reset_after:
                for j in range(H):
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
                for j in range(H):
                    z = gt[H + j]
                    cand = gt[2 * H + j]
                    d_h = dh_row[j] + dy_row[j]
                    dgi_row[H + j] = d_h * (hprev_row[j] - cand) * z * (one - z)
                    dgi_row[2 * H + j] = d_h * (one - z) * (one - cand * cand)
                    dh_row[j] = d_h * z
        if reset_after:
            # dh[:n] (n, H) += d_gh[rows] (n, 3H) @ W_hh (3H, H)
            _times(small, <int> n_active, hidden_size, 3 * hidden_size,
                   d_gh + offsets[t] * 3 * H, 3 * hidden_size, weight_hh, hidden_size,
                   True, dh, hidden_size)
        else:
            # dq[:n] (n, H) = d_an[rows] (n, H) @ W_hh[2H:] (H, H),  q = r ∘ h_prev
            _times(small, <int> n_active, hidden_size, hidden_size,
                   d_gi + offsets[t] * 3 * H + 2 * H, 3 * hidden_size,
                   weight_hh + 2 * H * H, hidden_size, False, dq, hidden_size)
            for b in range(n_active):
                row = offsets[t] + b
                gt = gates + row * 4 * H
                hprev_row = h_prev + row * H
                dh_row = dh + b * H
                dgi_row = d_gi + row * 3 * H
                dq_row = dq + b * H
                for j in range(H):
                    r = gt[j]
                    dgi_row[j] = dq_row[j] * hprev_row[j] * r * (one - r)
                    dh_row[j] += dq_row[j] * r
            # dh[:n] (n, H) += d_gi[rows, :2H] (n, 2H) @ W_hh[:2H] (2H, H)
            _times(small, <int> n_active, hidden_size, 2 * hidden_size,
                   d_gi + offsets[t] * 3 * H, 3 * hidden_size, weight_hh, hidden_size,
                   True, dh, hidden_size)

    # Everything below is over all N packed rows at once.
    # dx (N, I) = d_gi (N, 3H) @ W_ih (3H, I)
    gemm(False, False, <int> n_rows, input_size, 3 * hidden_size,
         <floating> 1.0, d_gi, 3 * hidden_size, weight_ih, input_size,
         <floating> 0.0, dx, input_size)
    # dW_ih (3H, I) = d_gi.T (3H, N) @ x (N, I)
    gemm(True, False, 3 * hidden_size, input_size, <int> n_rows,
         <floating> 1.0, d_gi, 3 * hidden_size, x, input_size,
         <floating> 0.0, d_weight_ih, input_size)
    if reset_after:
        # dW_hh (3H, H) = d_gh.T (3H, N) @ h_prev (N, H)
        gemm(True, False, 3 * hidden_size, hidden_size, <int> n_rows,
             <floating> 1.0, d_gh, 3 * hidden_size, h_prev, hidden_size,
             <floating> 0.0, d_weight_hh, hidden_size)
    else:
        # dW_hh[:2H] (2H, H) = d_gi[:, :2H].T (2H, N) @ h_prev (N, H)
        gemm(True, False, 2 * hidden_size, hidden_size, <int> n_rows,
             <floating> 1.0, d_gi, 3 * hidden_size, h_prev, hidden_size,
             <floating> 0.0, d_weight_hh, hidden_size)
        # dW_hh[2H:] (H, H) = d_an.T (H, N) @ q (N, H),  q = gates[:, 3H:]
        gemm(True, False, hidden_size, hidden_size, <int> n_rows,
             <floating> 1.0, d_gi + 2 * H, 3 * hidden_size, gates + 3 * H, 4 * hidden_size,
             <floating> 0.0, d_weight_hh + 2 * H * H, hidden_size)
    if with_bias:
        _column_sums(d_gi, n_rows, 3 * H, d_bias_ih)
        _column_sums(d_gh if reset_after else d_gi, n_rows, 3 * H, d_bias_hh)


cdef inline void _column_sums(const floating* matrix, Py_ssize_t n_rows,
                              Py_ssize_t n_cols, floating* out) noexcept nogil:
    """out (n_cols,) = sum over rows of matrix (n_rows, n_cols)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    for j in range(n_cols):
        out[j] = 0
    for i in range(n_rows):
        row = matrix + i * n_cols
        for j in range(n_cols):
            out[j] += row[j]


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
                      floating[:, ::1] dx,
                      floating[:, ::1] d_weight_ih,
                      floating[:, ::1] d_weight_hh,
                      floating[::1] d_bias_ih,
                      floating[::1] d_bias_hh,
                      bint reset_after, bint reverse, bint with_bias,
                      Py_ssize_t small_rows):
    """Backpropagation through time for one layer and direction (GIL released).

    Takes the packed layout and the cache written by `forward_sequence` with
    store_history.  dy (T*B, H) is read only at valid rows; dh (B, H) holds
    dL/dh_n on entry (sorted rows) and dL/dh0 on exit.  Writes the gate
    gradients d_gi (N, 3H) = dL/d(x W_ih^T + b_ih) and, for reset_after,
    d_gh (N, 3H) = dL/d(h W_hh^T + b_hh) (unused otherwise); dq (B, H) is
    scratch.  Outputs dx (N, I), d_weight_ih (3H, I), d_weight_hh (3H, H) and
    the bias gradients (3H,) when with_bias.  Steps with at most `small_rows`
    active rows use the hand-written kernel (see forward_sequence).
    """
    cdef Py_ssize_t seq_len = batch_sizes.shape[0]
    cdef Py_ssize_t n_rows = x.shape[0]
    if n_rows == 0:
        d_weight_ih[...] = 0
        d_weight_hh[...] = 0
        d_bias_ih[...] = 0
        d_bias_hh[...] = 0
        return
    with nogil:
        _backward_loop(&x[0, 0], &batch_sizes[0], &offsets[0],
                       &out_rows[0] if out_rows.shape[0] > 0 else NULL,
                       &weight_ih[0, 0], &weight_hh[0, 0], &gates[0, 0], &h_prev[0, 0],
                       &dy[0, 0], &dh[0, 0], &d_gi[0, 0], &d_gh[0, 0], &dq[0, 0],
                       &dx[0, 0], &d_weight_ih[0, 0], &d_weight_hh[0, 0],
                       &d_bias_ih[0], &d_bias_hh[0],
                       seq_len, n_rows, <int> x.shape[1], <int> dh.shape[1],
                       reset_after, reverse, with_bias, small_rows)


def activations(const floating[::1] values, floating[::1] sigmoid_out, floating[::1] tanh_out):
    """Apply the core's sigmoid and tanh to `values` (for accuracy tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(values.shape[0]):
            sigmoid_out[i] = sigmoid(values[i])
            tanh_out[i] = tanh_(values[i])
