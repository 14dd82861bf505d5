# Scalar gate math shared by the forward and backward loops of the core.
#
# Everything here is `inline noexcept nogil` so that it folds into the typed
# loops of _core.pyx.  The activations are the only transcendental functions
# of the core; they live here so that there is one place to make them faster.

from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf


cdef inline floating sigmoid(floating a) noexcept nogil:
    """σ(a) = 1 / (1 + exp(-a)), exact to the libm exp of the dtype."""
    if floating is float:
        return 1.0 / (1.0 + expf(-a))
    else:
        return 1.0 / (1.0 + exp(-a))


cdef inline floating tanh_(floating a) noexcept nogil:
    """tanh(a) in the dtype of a."""
    if floating is float:
        return tanhf(a)
    else:
        return tanh(a)
