# cython: language_level=3
"""The optimizers' per-element updates in one pass (gru_fast.optim).

NumPy runs Adam's update as a dozen whole-array operations, each a pass over
the parameters: 0.11 ms of a 2.2 ms training step at H = 128, T = 20 (Zen 3,
about 50 000 float32 parameters).  Here every element is updated once, with
the same operations in the same order and the same precision as
`optim.Adam._update`'s NumPy code, so the results are the same bits (the
module is compiled without contracting a * b + c into an FMA).
Compiled per CPU level like the core (gru_fast/_optim_kernels.py picks the
core's): Adam's update is bound by sqrt and division, which AVX2's 8-wide
vectors do twice as fast as the x86-64 baseline's 4-wide ones (26 against
49 us for 50 000 float32 parameters), with the same bits.
"""

from cython cimport floating
from libc.math cimport sqrt, sqrtf


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
                floating[::1] exp_avg_sq, double beta1, double beta2, double step_size,
                double bias_correction2_sqrt, double eps):
    """One Adam step in place, element by element (GIL released).

    With every scalar cast to the arrays' dtype first, as the NumPy code does::

        m = m * beta1 + g * (1 - beta1)
        v = v * beta2 + (g * g) * (1 - beta2)
        p = p - (m / (sqrt(v) / bias_correction2_sqrt + eps)) * step_size

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : numpy.ndarray
        One-dimensional, contiguous, of one dtype (float32 or float64) and
        size; param, exp_avg and exp_avg_sq are updated.  grad must not
        share memory with them.
    beta1, beta2, step_size, bias_correction2_sqrt, eps : float
        ``step_size = lr / (1 - beta1**t)`` and
        ``bias_correction2_sqrt = sqrt(1 - beta2**t)`` at step t.
    """
    cdef Py_ssize_t i, n = param.shape[0]
    if grad.shape[0] != n or exp_avg.shape[0] != n or exp_avg_sq.shape[0] != n:
        raise ValueError("adam_update: param, grad, exp_avg and exp_avg_sq differ in size")
    cdef floating b1 = <floating> beta1, keep1 = <floating> (1.0 - beta1)
    cdef floating b2 = <floating> beta2, keep2 = <floating> (1.0 - beta2)
    cdef floating correction = <floating> bias_correction2_sqrt
    cdef floating epsilon = <floating> eps, step = <floating> step_size
    cdef floating g, m, v, root
    with nogil:
        for i in range(n):
            g = grad[i]
            m = exp_avg[i] * b1 + g * keep1
            v = exp_avg_sq[i] * b2 + (g * g) * keep2
            if floating is float:
                root = sqrtf(v)
            else:
                root = sqrt(v)
            exp_avg[i] = m
            exp_avg_sq[i] = v
            param[i] = param[i] - (m / (root / correction + epsilon)) * step
