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


cdef inline void small_gemm(int m, int n, int k,
                            const floating* a, int lda,
                            const floating* b, int ldb,
                            bint accumulate, floating* c, int ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ B (k, n) (+ C if accumulate), row-major, no BLAS.

    For the tiny per-step products of small batches, where a BLAS call costs
    more than the arithmetic.  Rows of C are computed four at a time so that
    each row of B is loaded once per four rows; the inner loop runs along a
    row of B and C and vectorizes without reassociating sums.
    """
    cdef Py_ssize_t i, p, j
    cdef floating a0, a1, a2, a3, bj
    cdef const floating* b_row
    cdef floating* c0
    cdef floating* c1
    cdef floating* c2
    cdef floating* c3
    for i in range(0, m - 3, 4):
        c0 = c + i * ldc
        c1 = c0 + ldc
        c2 = c1 + ldc
        c3 = c2 + ldc
        if not accumulate:
            for j in range(n):
                c0[j] = 0
                c1[j] = 0
                c2[j] = 0
                c3[j] = 0
        for p in range(k):
            a0 = a[i * lda + p]
            a1 = a[(i + 1) * lda + p]
            a2 = a[(i + 2) * lda + p]
            a3 = a[(i + 3) * lda + p]
            b_row = b + p * ldb
            for j in range(n):
                bj = b_row[j]
                c0[j] += a0 * bj
                c1[j] += a1 * bj
                c2[j] += a2 * bj
                c3[j] += a3 * bj
    for i in range(m - m % 4, m):
        c0 = c + i * ldc
        if not accumulate:
            for j in range(n):
                c0[j] = 0
        for p in range(k):
            a0 = a[i * lda + p]
            b_row = b + p * ldb
            for j in range(n):
                c0[j] += a0 * b_row[j]
