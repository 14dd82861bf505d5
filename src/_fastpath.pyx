# gru_fast._fastpath: the checks and small arithmetic every forward call repeats, compiled.
#
# Why compiled: inside a pipeline, the Python before the core runs cold.  Right
# after a NumPy 512 x 512 matmul or an ONNX Runtime session run (their data
# evicted ours and the interpreter's from the caches), `validate_forward_args`
# took 70-90 us and `fold_biases` 45-60 us for a stream call (T=100, B=1,
# I=H=64) whose core ran 155 us; warm they take 6 us and 1 us (Zen 4, /tmp
# probes of stop 36: each call timed right after the other library's).  Each
# NumPy function a check calls brings its own code and data back into the
# caches; the C below touches the array structs alone.
#
# Nothing here decides what is valid: each `plain_*` check says yes only for
# arguments the Python checks (`_validation.validate_forward_args`, FrozenGRU's and
# GRU's) would pass and return unchanged: "plain" arrays (`_plain`) of one dtype and
# matching shapes.  Anything else, including every error, takes the Python path,
# which raises the descriptive messages; `fold_plain_biases` likewise declines what
# is not plain.  Compiled for the baseline instruction set (setup.py), as gru_fast._cpu.

cimport numpy as cnp

cnp.import_array()

# The core indexes packed rows (T*B) with 32-bit ints (_validation.MAX_CORE_INDEX).
cdef cnp.npy_intp MAX_CORE_INDEX = 2**31 - 1


cdef inline bint _plain(object value, int ndim, int type_num):
    """Plain: an exact ndarray of rank `ndim` and NumPy type number `type_num`,
    native byte order, C-contiguous and aligned, one the core reads as it is."""
    if type(value) is not cnp.ndarray:  # subclasses and tensors: the Python path
        return False
    cdef cnp.ndarray array = <cnp.ndarray> value
    return (cnp.PyArray_NDIM(array) == ndim
            and cnp.PyArray_TYPE(array) == type_num
            and not cnp.PyArray_ISBYTESWAPPED(array)
            and cnp.PyArray_IS_C_CONTIGUOUS(array)
            and cnp.PyArray_ISALIGNED(array))


cdef inline cnp.npy_intp _dim(object array, int axis):
    return cnp.PyArray_DIMS(<cnp.ndarray> array)[axis]


def plain_forward_arrays(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    """True when a forward's arrays need no conversion and pass every check.

    x (T, B, I) with T, B, I >= 1 and T*B within the core's index range,
    weight_ih (3H, I), weight_hh (3H, H) with H >= 1, both biases (3H,) or
    both None, h0 (B, H) or None: every one an exact ndarray of weight_hh's
    dtype (float32 or float64), native byte order, C-contiguous and aligned.
    False means "check in Python", never "invalid".
    """
    if type(weight_hh) is not cnp.ndarray:
        return False
    cdef int type_num = cnp.PyArray_TYPE(<cnp.ndarray> weight_hh)
    if type_num != cnp.NPY_FLOAT and type_num != cnp.NPY_DOUBLE:
        return False
    if not (_plain(weight_ih, 2, type_num) and _plain(weight_hh, 2, type_num)):
        return False
    cdef cnp.npy_intp hidden_size = _dim(weight_hh, 1), input_size = _dim(weight_ih, 1)
    if (hidden_size < 1 or _dim(weight_hh, 0) != 3 * hidden_size
            or _dim(weight_ih, 0) != 3 * hidden_size):
        return False
    if (bias_ih is None) != (bias_hh is None):
        return False
    if bias_ih is not None:
        if not (_plain(bias_ih, 1, type_num) and _plain(bias_hh, 1, type_num)):
            return False
        if _dim(bias_ih, 0) != 3 * hidden_size or _dim(bias_hh, 0) != 3 * hidden_size:
            return False
    return _plain_input(x, h0, input_size, hidden_size, 0, False, type_num)


ctypedef fused real:
    float
    double


cdef void _fold(const real* bias_ih, const real* bias_hh, real* gates, real* hn,
                Py_ssize_t hidden_size, bint reset_after) noexcept nogil:
    cdef Py_ssize_t j, added = 3 * hidden_size if not reset_after else 2 * hidden_size
    # gates = b_ih + b_hh over the gates whose biases add directly (r, z; and n
    # in the classic variant); b_in alone where b_hn stays inside r * (...)
    for j in range(added):
        gates[j] = bias_ih[j] + bias_hh[j]
    for j in range(added, 3 * hidden_size):
        gates[j] = bias_ih[j]
    # hn = b_hn (reset_after) or zeros
    for j in range(hidden_size):
        hn[j] = bias_hh[2 * hidden_size + j] if reset_after else 0


def fold_plain_biases(bias_ih, bias_hh, Py_ssize_t hidden_size, bint reset_after):
    """`functional.fold_biases` for two plain (3H,) float biases of one dtype (see
    `_plain`); None for anything else (fold with NumPy).

    Returns new arrays (bias_gates (3H,), bias_hn (H,)) with the same values,
    bit for bit, as NumPy's: each an IEEE sum of two values or a copy.
    """
    if type(bias_ih) is not cnp.ndarray:
        return None
    cdef int type_num = cnp.PyArray_TYPE(<cnp.ndarray> bias_ih)
    if type_num != cnp.NPY_FLOAT and type_num != cnp.NPY_DOUBLE:
        return None
    if not (_plain(bias_ih, 1, type_num) and _plain(bias_hh, 1, type_num)
            and _dim(bias_ih, 0) == 3 * hidden_size and _dim(bias_hh, 0) == 3 * hidden_size):
        return None
    cdef cnp.ndarray ih = <cnp.ndarray> bias_ih, hh = <cnp.ndarray> bias_hh
    cdef cnp.npy_intp gates_shape = 3 * hidden_size, hn_shape = hidden_size
    cdef cnp.ndarray gates = cnp.PyArray_EMPTY(1, &gates_shape, type_num, 0)
    cdef cnp.ndarray hn = cnp.PyArray_EMPTY(1, &hn_shape, type_num, 0)
    if type_num == cnp.NPY_FLOAT:
        _fold(<const float*> cnp.PyArray_DATA(ih), <const float*> cnp.PyArray_DATA(hh),
              <float*> cnp.PyArray_DATA(gates), <float*> cnp.PyArray_DATA(hn),
              hidden_size, reset_after)
    else:
        _fold(<const double*> cnp.PyArray_DATA(ih), <const double*> cnp.PyArray_DATA(hh),
              <double*> cnp.PyArray_DATA(gates), <double*> cnp.PyArray_DATA(hn),
              hidden_size, reset_after)
    return gates, hn


def plain_lengths(lengths, Py_ssize_t batch_size, Py_ssize_t seq_len):
    """Lengths checked in C: None when `lengths` is None; a new int64 array (what
    `_validation.as_lengths` returns) when it is a plain 1-D int64 or int32 ndarray of
    `batch_size` values in 0..seq_len (see `_plain`); else False ("check in
    Python", never "invalid").
    """
    if lengths is None:
        return None
    if type(lengths) is not cnp.ndarray:
        return False
    cdef cnp.ndarray array = <cnp.ndarray> lengths
    cdef int type_num = cnp.PyArray_TYPE(array)
    if type_num != cnp.NPY_INT64 and type_num != cnp.NPY_INT32:
        return False
    if not _plain(array, 1, type_num) or cnp.PyArray_DIMS(array)[0] != batch_size:
        return False
    cdef cnp.npy_intp n = batch_size
    cdef cnp.ndarray copy = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
    cdef cnp.int64_t* out = <cnp.int64_t*> cnp.PyArray_DATA(copy)
    cdef const cnp.int64_t* wide = <const cnp.int64_t*> cnp.PyArray_DATA(array)
    cdef const cnp.int32_t* narrow = <const cnp.int32_t*> cnp.PyArray_DATA(array)
    cdef Py_ssize_t b
    cdef cnp.int64_t value
    for b in range(batch_size):
        value = wide[b] if type_num == cnp.NPY_INT64 else narrow[b]
        if value < 0 or value > seq_len:
            return False  # the Python path names the bad values
        out[b] = value
    return copy


cdef bint _plain_input(object x, object h0, Py_ssize_t input_size, Py_ssize_t hidden_size,
                       int num_states, bint batch_first, int type_num):
    """x and h0 of `plain_sequence_input`."""
    if not _plain(x, 3, type_num):
        return False
    cdef cnp.npy_intp seq_len = _dim(x, 1 if batch_first else 0)
    cdef cnp.npy_intp batch_size = _dim(x, 0 if batch_first else 1)
    if seq_len < 1 or batch_size < 1 or input_size < 1 or _dim(x, 2) != input_size:
        return False
    if seq_len > MAX_CORE_INDEX // batch_size:
        return False
    if h0 is None:
        return True
    if num_states == 0:
        return (_plain(h0, 2, type_num) and _dim(h0, 0) == batch_size
                and _dim(h0, 1) == hidden_size)
    return (_plain(h0, 3, type_num) and _dim(h0, 0) == num_states
            and _dim(h0, 1) == batch_size and _dim(h0, 2) == hidden_size)


def plain_sequence_input(x, h0, Py_ssize_t input_size, Py_ssize_t hidden_size,
                         int num_states, bint batch_first, int type_num):
    """True when a sequence model's x and h0 are plain and pass its checks unchanged.

    x (T, B, I), or (B, T, I) when `batch_first`, with I == `input_size`, T and
    B >= 1 and T*B within the core's index range; h0 None, or (B, H) when
    `num_states` is 0 (`FrozenGRU`, `gru_forward`), else (num_states, B, H) (a
    `GRU`'s); every array plain (see `_plain`) of type `type_num`.  False
    means "check in Python", never "invalid".
    """
    return _plain_input(x, h0, input_size, hidden_size, num_states, batch_first, type_num)


def plain_params(params, shape_items, int type_num):
    """True when `params` is a dict holding, for every (name, shape) of `shape_items`,
    an exact ndarray of that shape and of type `type_num` in native byte order: what
    `GRU._check_params` passes without a word.  False means "check in Python".
    """
    if type(params) is not dict:
        return False
    cdef cnp.ndarray array
    cdef int axis
    for name, shape in shape_items:
        value = (<dict> params).get(name)
        if type(value) is not cnp.ndarray:
            return False
        array = <cnp.ndarray> value
        if cnp.PyArray_TYPE(array) != type_num or cnp.PyArray_ISBYTESWAPPED(array):
            return False
        if cnp.PyArray_NDIM(array) != len(shape):
            return False
        for axis in range(cnp.PyArray_NDIM(array)):
            if cnp.PyArray_DIMS(array)[axis] != shape[axis]:
                return False
    return True
