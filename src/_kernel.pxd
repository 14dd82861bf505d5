# The packed GEMM kernel of _kernel.h, fused over float and double.
#
# The per-step products of the core (a few rows times the same weights) go
# through `packed_gemm`: the weights are packed once per call into panels of
# PANEL columns (32 at the avx512 level, 16 below), then register tiles run
# over the panels (see _kernel.h).
#
# Why not BLAS for these: OpenBLAS repacks its operand at every call, so the
# per-step products paid for packing all of W_hh at every step whether 1 row
# or 64 was active (measured in the issue-5 notes and bench/README.md).  The
# products over many rows (the projection of a chunk, backward's dx, dW_ih,
# dW_hh) run on this kernel too, on the core's own threads, with A's row
# tiles packed where that pays (`packed_gemm_tiled`, `packed_gemm_packing`);
# in float64 from a size on, at the levels whose double tile is short, dx and
# dW_ih go to BLAS (_blas.pxd).

from cython cimport floating

cdef extern from "_kernel.h" nogil:
    enum: PANEL "GF_PANEL"
    enum: FLOAT_TILE_ROWS "GF_FLOAT_TILE_ROWS"
    enum: DOUBLE_TILE_ROWS "GF_DOUBLE_TILE_ROWS"
    void gf_packed_gemm_float(int m, int n, int k, const float* a, Py_ssize_t lda,
                              Py_ssize_t a_step, const float* panels, Py_ssize_t panel_stride,
                              int accumulate, float* c, Py_ssize_t ldc)
    void gf_packed_gemm_double(int m, int n, int k, const double* a, Py_ssize_t lda,
                               Py_ssize_t a_step, const double* panels, Py_ssize_t panel_stride,
                               int accumulate, double* c, Py_ssize_t ldc)
    void gf_packed_gemm_tiled_float(int m, int n, int k, const float* a, Py_ssize_t lda,
                                    Py_ssize_t a_step, const float* tiles, const float* panels,
                                    Py_ssize_t panel_stride, int accumulate, float* c,
                                    Py_ssize_t ldc)
    void gf_packed_gemm_tiled_double(int m, int n, int k, const double* a, Py_ssize_t lda,
                                     Py_ssize_t a_step, const double* tiles,
                                     const double* panels, Py_ssize_t panel_stride,
                                     int accumulate, double* c, Py_ssize_t ldc)
    void gf_pack_row_tiles_float(int m, int k, const float* a, Py_ssize_t lda,
                                 Py_ssize_t a_step, float* tiles)
    void gf_pack_row_tiles_double(int m, int k, const double* a, Py_ssize_t lda,
                                  Py_ssize_t a_step, double* tiles)
    void gf_packed_gemm_packing_float(int m, int n, int k, const float* a, Py_ssize_t lda,
                                      Py_ssize_t a_step, float* buffer, const float* panels,
                                      Py_ssize_t panel_stride, int accumulate, float* c,
                                      Py_ssize_t ldc)
    void gf_packed_gemm_packing_double(int m, int n, int k, const double* a, Py_ssize_t lda,
                                       Py_ssize_t a_step, double* buffer,
                                       const double* panels, Py_ssize_t panel_stride,
                                       int accumulate, double* c, Py_ssize_t ldc)
    size_t gf_packing_values_float(int m, int k)
    size_t gf_packing_values_double(int m, int k)
    void gf_pack_transposed_float(const float* w, Py_ssize_t ldw, int n, int k, float* panels)
    void gf_pack_transposed_double(const double* w, Py_ssize_t ldw, int n, int k, double* panels)
    void gf_pack_float(const float* w, Py_ssize_t ldw, int n, int k, float* panels)
    void gf_pack_double(const double* w, Py_ssize_t ldw, int n, int k, double* panels)


cdef inline void packed_gemm(int m, int n, int k, const floating* a, Py_ssize_t lda,
                             const floating* panels, Py_ssize_t panel_stride,
                             bint accumulate, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ B (k, n) (+ C if accumulate), B packed by `pack*`.

    panels points at the first panel (offset by p0 * PANEL to start at row
    p0 of B); panel q is at panels + q * panel_stride.  A is row-major with
    row stride lda.
    """
    if floating is float:
        gf_packed_gemm_float(m, n, k, a, lda, 1, panels, panel_stride, accumulate, c, ldc)
    else:
        gf_packed_gemm_double(m, n, k, a, lda, 1, panels, panel_stride, accumulate, c, ldc)


cdef inline void packed_gemm_strided(int m, int n, int k, const floating* a, Py_ssize_t lda,
                                     Py_ssize_t a_step, const floating* panels,
                                     Py_ssize_t panel_stride, bint accumulate, floating* c,
                                     Py_ssize_t ldc) noexcept nogil:
    """`packed_gemm` with A[i, p] at a[i * lda + p * a_step].

    lda = 1 and a_step = the row stride reads A as the transpose of a
    row-major matrix (the weight gradients: d_gates.T @ rows).
    """
    if floating is float:
        gf_packed_gemm_float(m, n, k, a, lda, a_step, panels, panel_stride, accumulate, c, ldc)
    else:
        gf_packed_gemm_double(m, n, k, a, lda, a_step, panels, panel_stride, accumulate, c, ldc)


cdef inline void packed_gemm_tiled(int m, int n, int k, const floating* a, Py_ssize_t lda,
                                   const floating* tiles, const floating* panels,
                                   Py_ssize_t panel_stride, bint accumulate, floating* c,
                                   Py_ssize_t ldc) noexcept nogil:
    """`packed_gemm` with A's full row tiles read from `tiles` (`pack_row_tiles` of A).

    The same bits as `packed_gemm`; faster when A has many rows (one stream
    of A per tile instead of one per row).
    """
    if floating is float:
        gf_packed_gemm_tiled_float(m, n, k, a, lda, 1, tiles, panels, panel_stride, accumulate,
                                   c, ldc)
    else:
        gf_packed_gemm_tiled_double(m, n, k, a, lda, 1, tiles, panels, panel_stride, accumulate,
                                    c, ldc)


cdef inline void pack_row_tiles(int m, int k, const floating* a, Py_ssize_t lda,
                                floating* tiles) noexcept nogil:
    """Pack the full row tiles of A (m, k), row stride lda, for `packed_gemm_tiled`.

    tiles holds at least m * k values, in the blocks of the product (m, k).
    """
    if floating is float:
        gf_pack_row_tiles_float(m, k, a, lda, 1, tiles)
    else:
        gf_pack_row_tiles_double(m, k, a, lda, 1, tiles)


cdef inline void packed_gemm_packing(int m, int n, int k, const floating* a, Py_ssize_t lda,
                                     Py_ssize_t a_step, floating* buffer,
                                     const floating* panels, Py_ssize_t panel_stride,
                                     bint accumulate, floating* c,
                                     Py_ssize_t ldc) noexcept nogil:
    """`packed_gemm_strided` that packs A's row tiles into `buffer` a block at a time.

    buffer holds at least `packing_values(m, k)` values.  The same bits as
    `packed_gemm_strided`; faster for a transposed A (a_step > 1) and a wide B.
    """
    if floating is float:
        gf_packed_gemm_packing_float(m, n, k, a, lda, a_step, buffer, panels, panel_stride,
                                     accumulate, c, ldc)
    else:
        gf_packed_gemm_packing_double(m, n, k, a, lda, a_step, buffer, panels, panel_stride,
                                      accumulate, c, ldc)


cdef inline size_t packing_values(int m, int k, int itemsize) noexcept nogil:
    """Values of the buffer `packed_gemm_packing` needs for A (m, k) of `itemsize` bytes."""
    if itemsize == 4:
        return gf_packing_values_float(m, k)
    return gf_packing_values_double(m, k)


cdef inline void pack_transposed(const floating* w, Py_ssize_t ldw, int n, int k,
                                 floating* panels) noexcept nogil:
    """Pack B = W.T for packed_gemm; W (n, k), row stride ldw; panels k * PANEL apart."""
    if floating is float:
        gf_pack_transposed_float(w, ldw, n, k, panels)
    else:
        gf_pack_transposed_double(w, ldw, n, k, panels)


cdef inline void pack(const floating* w, Py_ssize_t ldw, int n, int k,
                      floating* panels) noexcept nogil:
    """Pack B = W for packed_gemm; W (k, n), row stride ldw; panels k * PANEL apart."""
    if floating is float:
        gf_pack_float(w, ldw, n, k, panels)
    else:
        gf_pack_double(w, ldw, n, k, panels)
