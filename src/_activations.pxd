# The activations of the gates, sigmoid and tanh, for the loops of the core.
#
# Everything here inlines into the typed loops of _core.pyx.  The activations
# are the only transcendental functions of the core; their vectorizable
# implementation is in _activations.h (see there for the method and accuracy).

from cython cimport floating

cdef extern from "_activations.h" nogil:
    float gf_sigmoid_float(float a)
    double gf_sigmoid_double(double a)
    float gf_tanh_float(float a)
    double gf_tanh_double(double a)


cdef inline floating sigmoid(floating a) noexcept nogil:
    """σ(a) = 1 / (1 + exp(-a)) in the dtype of a, vectorizable."""
    if floating is float:
        return gf_sigmoid_float(a)
    else:
        return gf_sigmoid_double(a)


cdef inline floating tanh_(floating a) noexcept nogil:
    """tanh(a) in the dtype of a, vectorizable."""
    if floating is float:
        return gf_tanh_float(a)
    else:
        return gf_tanh_double(a)
