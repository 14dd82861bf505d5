# Row-major GEMM over SciPy's BLAS (scipy.linalg.cython_blas), fused over float and double.
#
# The products over all T*B rows (backward's dx, dW_ih, dW_hh) go to BLAS:
# large GEMMs are what its maintainers tune for every CPU and dispatch at run
# time (OpenBLAS, MKL or Accelerate, whichever SciPy was built with), and
# their thread count is the user's (threadpoolctl, user_api="blas").  The
# per-step products stay on the packed kernel of _kernel.h (see there).
#
# BLAS is column-major; a row-major C (m, n) is a column-major C^T (n, m), so
# C = op(A) @ op(B) is computed as C^T = op(B)^T @ op(A)^T: the operands and
# m, n swap, and a transpose flag on a row-major operand means the same
# transpose of its column-major view.  That swap happens here and nowhere else.

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint transpose_a, bint transpose_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is (m, k): A (m, k) with row stride lda, or A (k, m) if transpose_a.
    op(B) is (k, n): B (k, n) with row stride ldb, or B (n, k) if transpose_b.
    C has row stride ldc.  Nothing happens when m or n is 0; k = 0 gives beta * C.
    """
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:  # BLAS would reject the leading dimensions of empty operands
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = beta * c[i * ldc + j] if beta != 0 else 0
        return
    # Column-major call for C^T (n, m) = op(B)^T (n, k) @ op(A)^T (k, m).
    cdef char trans_first = b'T' if transpose_b else b'N'
    cdef char trans_second = b'T' if transpose_a else b'N'
    if floating is float:
        sgemm(&trans_first, &trans_second, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&trans_first, &trans_second, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)
