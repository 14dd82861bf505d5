# The gate loops of one row of a piece: _gate_loops.h (in C for `restrict`; see there).
# The equations are above each function in _gate_loops_impl.h.

from cython cimport floating

cdef extern from "_gate_loops.h" nogil:
    void gf_forward_gates_reset_after_float(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const float* g, const float* rec,
            const float* bias_gates, const float* bias_hn, const float* h, float* gt, float* hprev,
            float* h_new, float* y)
    void gf_forward_gates_reset_after_double(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const double* g, const double* rec,
            const double* bias_gates, const double* bias_hn, const double* h, double* gt,
            double* hprev, double* h_new, double* y)
    void gf_forward_gates_classic_float(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const float* g, const float* rec,
            const float* bias_gates, const float* h, float* gt, float* hprev)
    void gf_forward_gates_classic_double(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const double* g, const double* rec,
            const double* bias_gates, const double* h, double* gt, double* hprev)
    void gf_forward_candidate_classic_float(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const float* g, const float* rec,
            const float* bias_gates, const float* h, float* gt, float* h_new, float* y)
    void gf_forward_candidate_classic_double(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const double* g, const double* rec,
            const double* bias_gates, const double* h, double* gt, double* h_new, double* y)
    void gf_backward_gates_reset_after_float(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const float* gt, const float* hprev,
            float* dh, float* d_gi, float* d_gh)
    void gf_backward_gates_reset_after_double(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const double* gt, const double* hprev,
            double* dh, double* d_gi, double* d_gh)
    void gf_backward_gates_classic_float(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const float* gt, const float* hprev,
            float* dh, float* d_gi)
    void gf_backward_gates_classic_double(
            Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const double* gt, const double* hprev,
            double* dh, double* d_gi)
    void gf_backward_reset_classic_float(
            Py_ssize_t lo, Py_ssize_t hi, const float* gt, const float* hprev, const float* dq,
            float* dh, float* d_gi)
    void gf_backward_reset_classic_double(
            Py_ssize_t lo, Py_ssize_t hi, const double* gt, const double* hprev, const double* dq,
            double* dh, double* d_gi)



cdef inline void forward_gates_reset_after(
        Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* g, const floating* rec,
        const floating* bias_gates, const floating* bias_hn, const floating* h, floating* gt,
        floating* hprev, floating* h_new, floating* y) noexcept nogil:
    """r, z, n, hn and h' of one row (reset_after); y skipped when NULL."""
    if floating is float:
        gf_forward_gates_reset_after_float(
                H, lo, hi, g, rec, bias_gates, bias_hn, h, gt, hprev, h_new, y)
    else:
        gf_forward_gates_reset_after_double(
                H, lo, hi, g, rec, bias_gates, bias_hn, h, gt, hprev, h_new, y)


cdef inline void forward_gates_classic(
        Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* g, const floating* rec,
        const floating* bias_gates, const floating* h, floating* gt,
        floating* hprev) noexcept nogil:
    """r, z and q = r ∘ h of one row (classic, first phase)."""
    if floating is float:
        gf_forward_gates_classic_float(H, lo, hi, g, rec, bias_gates, h, gt, hprev)
    else:
        gf_forward_gates_classic_double(H, lo, hi, g, rec, bias_gates, h, gt, hprev)


cdef inline void forward_candidate_classic(
        Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* g, const floating* rec,
        const floating* bias_gates, const floating* h, floating* gt, floating* h_new,
        floating* y) noexcept nogil:
    """n and h' of one row (classic, second phase); y skipped when NULL."""
    if floating is float:
        gf_forward_candidate_classic_float(H, lo, hi, g, rec, bias_gates, h, gt, h_new, y)
    else:
        gf_forward_candidate_classic_double(H, lo, hi, g, rec, bias_gates, h, gt, h_new, y)


cdef inline void backward_gates_reset_after(
        Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* gt, const floating* hprev,
        floating* dh, floating* d_gi, floating* d_gh) noexcept nogil:
    """d_gi, d_gh and the direct part of dh of one row (reset_after)."""
    if floating is float:
        gf_backward_gates_reset_after_float(H, lo, hi, gt, hprev, dh, d_gi, d_gh)
    else:
        gf_backward_gates_reset_after_double(H, lo, hi, gt, hprev, dh, d_gi, d_gh)


cdef inline void backward_gates_classic(
        Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* gt, const floating* hprev,
        floating* dh, floating* d_gi) noexcept nogil:
    """dz, dn and the direct part of dh of one row (classic, first phase)."""
    if floating is float:
        gf_backward_gates_classic_float(H, lo, hi, gt, hprev, dh, d_gi)
    else:
        gf_backward_gates_classic_double(H, lo, hi, gt, hprev, dh, d_gi)


cdef inline void backward_reset_classic(
        Py_ssize_t lo, Py_ssize_t hi, const floating* gt, const floating* hprev,
        const floating* dq, floating* dh, floating* d_gi) noexcept nogil:
    """dr and dh += dq ∘ r of one row (classic, second phase)."""
    if floating is float:
        gf_backward_reset_classic_float(lo, hi, gt, hprev, dq, dh, d_gi)
    else:
        gf_backward_reset_classic_double(lo, hi, gt, hprev, dq, dh, d_gi)
