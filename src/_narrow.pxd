# Products with a narrow side (a few input columns): _narrow.h (see there).

from cython cimport floating

cdef extern from "_narrow.h" nogil:
    void gf_narrow_weight_gradient_float(
            Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const float* d, Py_ssize_t ld_d,
            const float* x, Py_ssize_t ld_x, float* out, Py_ssize_t ld_out)
    void gf_narrow_weight_gradient_double(
            Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const double* d, Py_ssize_t ld_d,
            const double* x, Py_ssize_t ld_x, double* out, Py_ssize_t ld_out)
    void gf_narrow_input_gradient_float(
            Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const float* d, Py_ssize_t ld_d,
            const float* w, float* out, Py_ssize_t ld_out)
    void gf_narrow_input_gradient_double(
            Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const double* d, Py_ssize_t ld_d,
            const double* w, double* out, Py_ssize_t ld_out)
    void gf_columns_to_rows_float(Py_ssize_t G, Py_ssize_t n_in, const float* W,
                                  Py_ssize_t ld_w, float* w)
    void gf_columns_to_rows_double(Py_ssize_t G, Py_ssize_t n_in, const double* W,
                                   Py_ssize_t ld_w, double* w)


cdef inline void narrow_weight_gradient(
        Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const floating* d, Py_ssize_t ld_d,
        const floating* x, Py_ssize_t ld_x, floating* out, Py_ssize_t ld_out) noexcept nogil:
    """out (G, n_in) = d (N, G).T @ x (N, n_in), rows summed in order."""
    if floating is float:
        gf_narrow_weight_gradient_float(N, G, n_in, d, ld_d, x, ld_x, out, ld_out)
    else:
        gf_narrow_weight_gradient_double(N, G, n_in, d, ld_d, x, ld_x, out, ld_out)


cdef inline void narrow_input_gradient(
        Py_ssize_t N, Py_ssize_t G, Py_ssize_t n_in, const floating* d, Py_ssize_t ld_d,
        const floating* w, floating* out, Py_ssize_t ld_out) noexcept nogil:
    """out (N, n_in) = d (N, G) @ w (n_in, G).T."""
    if floating is float:
        gf_narrow_input_gradient_float(N, G, n_in, d, ld_d, w, out, ld_out)
    else:
        gf_narrow_input_gradient_double(N, G, n_in, d, ld_d, w, out, ld_out)


cdef inline void columns_to_rows(Py_ssize_t G, Py_ssize_t n_in, const floating* W,
                                 Py_ssize_t ld_w, floating* w) noexcept nogil:
    """w (n_in, G) = the first n_in columns of W (G rows, ld_w apart), transposed."""
    if floating is float:
        gf_columns_to_rows_float(G, n_in, W, ld_w, w)
    else:
        gf_columns_to_rows_double(G, n_in, W, ld_w, w)
