# Row-major GEMM over scipy's BLAS, for float32 and float64.
#
# Every matrix product of the compiled core goes through `gemm` below; nothing
# else calls sgemm/dgemm.  Arrays in the core are C-ordered (row-major) while
# BLAS is column-major.  A row-major matrix of shape (m, n) with row stride ld
# is, read column-major, its transpose (n, m) with leading dimension ld.  So the
# row-major product C = op(A) @ op(B) is computed as the column-major product
# C^T = op(B)^T @ op(A)^T: swap the operands and swap m with n; the transpose
# flags stay attached to their own operand.  No copies, and a block of columns
# of a wider array is passed as its first element plus the full row stride.

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint transpose_a, bint transpose_b,
                      int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major.

    op(X) is X or X.T as the flag says; lda, ldb, ldc are the row strides (in
    elements) of A, B and C as stored.  With m == 0 or n == 0 nothing happens;
    with k == 0, C = beta * C.
    """
    cdef char flag_a = b'T' if transpose_a else b'N'
    cdef char flag_b = b'T' if transpose_b else b'N'
    if m <= 0 or n <= 0:
        return
    # Column-major view: C^T (n, m) = op(B)^T (n, k) @ op(A)^T (k, m).
    if floating is float:
        sgemm(&flag_b, &flag_a, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&flag_b, &flag_a, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


cdef inline void _small_gemm_rows(int n_rows, int col_lo, int col_hi, int k,
                                  const floating* a, int lda,
                                  const floating* b, int ldb,
                                  bint accumulate, floating* c, int ldc) noexcept nogil:
    """C[:n_rows, col_lo:col_hi] (+)= A[:n_rows] @ B[:, col_lo:col_hi], n_rows <= 4.

    The generic path: each C element is loaded and stored once per p.
    """
    cdef Py_ssize_t r, p, j
    cdef floating a_rp
    cdef floating* c_row
    cdef const floating* b_row
    for r in range(n_rows):
        c_row = c + r * ldc
        if not accumulate:
            for j in range(col_lo, col_hi):
                c_row[j] = 0
        for p in range(k):
            a_rp = a[r * lda + p]
            b_row = b + p * ldb
            for j in range(col_lo, col_hi):
                c_row[j] += a_rp * b_row[j]


cdef inline void _small_gemm_row(int n, int k, const floating* a,
                                 const floating* b, int ldb,
                                 bint accumulate, floating* c) noexcept nogil:
    """c (n,) (+)= a (k,) @ B (k, n) for one row, in tiles of 64 columns.

    A single row has no other rows to share loads of B with; 128 columns give
    four independent vector accumulators (float), enough to hide the FMA latency.
    """
    cdef Py_ssize_t p, j, col
    cdef floating a_p
    cdef floating acc[64]
    cdef const floating* b_row
    cdef int full_cols = n - n % 64
    for col in range(0, full_cols, 64):
        for j in range(64):
            acc[j] = 0
        for p in range(k):
            a_p = a[p]
            b_row = b + p * ldb + col
            for j in range(64):
                acc[j] += a_p * b_row[j]
        if accumulate:
            for j in range(64):
                c[col + j] += acc[j]
        else:
            for j in range(64):
                c[col + j] = acc[j]
    if full_cols < n:
        _small_gemm_rows(1, full_cols, n, k, a, k, b, ldb, accumulate, c, n)


cdef inline void small_gemm(int m, int n, int k,
                            const floating* a, int lda,
                            const floating* b, int ldb,
                            bint accumulate, floating* c, int ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ B (k, n) (+ C if accumulate), row-major, no BLAS.

    For the tiny per-step products of small batches, where a BLAS call costs
    more than the arithmetic.  k is split into blocks of 128 so that the panel
    of B one column tile reads (128 x 32 values) stays in L1 while every tile
    of rows goes over it.
    """
    cdef int p0
    for p0 in range(0, k, 128):
        _small_gemm_k_block(m, n, min(128, k - p0), a + p0, lda, b + p0 * ldb, ldb,
                            accumulate or p0 > 0, c, ldc)


cdef inline void _small_gemm_k_block(int m, int n, int k,
                                     const floating* a, int lda,
                                     const floating* b, int ldb,
                                     bint accumulate, floating* c, int ldc) noexcept nogil:
    """C (m, n) (+)= A (m, k) @ B (k, n), one block of k (see small_gemm).

    C is computed in tiles of 4 rows x 32 columns
    held in local accumulators (registers, once vectorized) over the whole k
    loop, so each step of k loads 32 values of B and broadcasts 4 of A, and C
    is written once.  Rows left over take `_small_gemm_row`; columns that do
    not fill a tile take the generic path.
    """
    cdef Py_ssize_t i, p, j, col
    cdef floating a0, a1, a2, a3, b_j
    cdef floating acc0[32]
    cdef floating acc1[32]
    cdef floating acc2[32]
    cdef floating acc3[32]
    cdef const floating* b_row
    cdef floating* c0
    cdef int full_cols = n - n % 32
    cdef int full_rows = m - m % 4
    for col in range(0, full_cols, 32):
        for i in range(0, full_rows, 4):
            for j in range(32):
                acc0[j] = 0
                acc1[j] = 0
                acc2[j] = 0
                acc3[j] = 0
            for p in range(k):
                a0 = a[i * lda + p]
                a1 = a[(i + 1) * lda + p]
                a2 = a[(i + 2) * lda + p]
                a3 = a[(i + 3) * lda + p]
                b_row = b + p * ldb + col
                for j in range(32):
                    b_j = b_row[j]
                    acc0[j] += a0 * b_j
                    acc1[j] += a1 * b_j
                    acc2[j] += a2 * b_j
                    acc3[j] += a3 * b_j
            c0 = c + i * ldc + col
            if accumulate:
                for j in range(32):
                    c0[j] += acc0[j]
                    c0[ldc + j] += acc1[j]
                    c0[2 * ldc + j] += acc2[j]
                    c0[3 * ldc + j] += acc3[j]
            else:
                for j in range(32):
                    c0[j] = acc0[j]
                    c0[ldc + j] = acc1[j]
                    c0[2 * ldc + j] = acc2[j]
                    c0[3 * ldc + j] = acc3[j]
    for i in range(full_rows, m):
        _small_gemm_row(n, k, a + i * lda, b, ldb, accumulate, c + i * ldc)
    if full_cols < n:
        for i in range(0, full_rows, 4):
            _small_gemm_rows(4, full_cols, n, k, a + i * lda, lda, b, ldb,
                             accumulate, c + i * ldc, ldc)
