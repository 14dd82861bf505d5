# Row-major GEMM over scipy's BLAS, for float32 and float64.
#
# Every BLAS call of the compiled core goes through `gemm` below; nothing else
# calls sgemm/dgemm.  (The per-step products use the packed kernel of
# _kernel.pxd instead.)  Arrays in the core are C-ordered (row-major) while
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
