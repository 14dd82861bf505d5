"""Argument checking shared by the functional API, the layer and the reference.

Every check raises before any compiled code runs, with a message that names
the argument and says what was seen and what was expected.
"""

import numbers
import os
from typing import NamedTuple

import numpy as np

from ._fastpath import plain_forward_arrays, plain_lengths
from ._workspace import contiguous

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# The core indexes packed rows (T*B) and sizes with 32-bit ints.
MAX_CORE_INDEX = 2**31 - 1


def check_flag(value, name):
    """Return `value` as a bool, or raise TypeError if it is not a boolean.

    Only ``True``/``False`` and NumPy booleans pass: ``bool("False")`` is True,
    so strings, numbers and None are refused rather than interpreted.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def positive_int(value, name):
    """Return `value` as an int >= 1: TypeError for a non-integer (a bool too), ValueError below 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} "
                        f"({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def supported_dtype(dtype, name="dtype"):
    """`dtype` as a NumPy dtype if it is float32 or float64, else TypeError."""
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"{name} must be numpy.float32 or numpy.float64, got None")
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def own_dtype(value):
    """The dtype `value` carries (arrays, NumPy scalars, tensors), or None (lists, numbers)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.dtype
    if hasattr(value, "__array__") and hasattr(value, "dtype"):  # e.g. a torch.Tensor
        return np.asarray(value).dtype
    return None


def call_dtype(**arguments):
    """The dtype of a call: that of the first argument carrying one, in the order given.

    Pass the weights first (the weights decide).  Lists and Python numbers
    carry none; when no argument carries one, the call is float64 (NumPy's
    default for Python floats).

    Returns
    -------
    dtype : numpy.dtype
    source : str or None
        The name of the argument the dtype came from.
    """
    for name, value in arguments.items():
        dtype = own_dtype(value)
        if dtype is not None:
            return dtype, name
    return np.dtype(np.float64), None


def realigned(array):
    """`array`, or an aligned copy of it when its values are not on multiples of their size.

    Unpickling may leave arrays so (NumPy's protocol-5 buffers sit at any offset
    of the frame that carried them, as between Dask workers); the compiled core
    refuses them, as its vector code may assume aligned values.  A copy keeps
    the original's read-only flag.
    """
    if array is None or array.flags.aligned:
        return array
    copy = array.copy()
    copy.flags.writeable = array.flags.writeable
    return copy


def as_float_array(value, name, ndim, dtype=None, source="the weights"):
    """Return `value` as a float32/float64 ndarray of rank `ndim` (no copy if possible).

    An array (or anything with a dtype of its own) must already be float32
    or float64, and of `dtype` when given: no silent casts.  A list, tuple
    or Python number carries no dtype and is converted to `dtype` (float64
    when None), as the layer does.

    Parameters
    ----------
    value : array_like
        What the caller passed.
    name : str
        Argument name used in error messages.
    ndim : int
        Required rank.
    dtype : numpy.dtype, optional
        The call's dtype.
    source : str
        Where `dtype` comes from, for error messages ("the weights", an
        argument's name, "the layer").

    Returns
    -------
    numpy.ndarray
        The array, possibly the caller's own object: never write into it (a copy
        when its values were not aligned on their size).
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if own_dtype(value) is not None:
        array = np.asarray(value)
        if array.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
        if dtype is not None:
            check_dtype(array, name, dtype, source)
    else:
        array = list_as_array(value, name, np.dtype(np.float64) if dtype is None else dtype)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    return realigned(array)  # a buffer from a pickle or a socket may be at any offset


def list_as_array(value, name, dtype):
    """A list or Python number as an array of `dtype`; TypeError unless it holds numbers."""
    kind = type(value).__name__
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged lists and the like
        raise TypeError(f"{name} was given as a {kind} that is not a rectangular array of "
                        f"numbers: {error}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have dtype float32 or float64, or be a list of "
                        f"numbers; got a {kind} holding {array.dtype} values")
    return array.astype(dtype)


def check_dtype(array, name, dtype, source="the weights"):
    """Raise TypeError unless `array` has the call's `dtype` (no silent casts)."""
    if array.dtype != dtype:
        whose = "the weights are" if source == "the weights" else f"{source} is"
        raise TypeError(
            f"{name} has dtype {array.dtype} but {whose} {dtype}; all arrays of one call "
            "must share one dtype (cast explicitly; lists are converted to it)"
        )


def available_memory():
    """Bytes of memory this process could still get (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(nbytes, what):
    """Raise ValueError if `what` needs more than the memory available now."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise ValueError(f"{what} would need {nbytes / 2**30:.3g} GiB, more than the "
                         f"{available / 2**30:.3g} GiB of memory available")


def check_shape(array, expected, name, meaning):
    """Raise ValueError unless `array.shape == expected`; `meaning` spells the axes."""
    if array.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} {meaning}, got {array.shape}")


def as_lengths(lengths, batch_size, seq_len, name="lengths"):
    """Validate per-row sequence lengths and return them as an int64 array.

    Parameters
    ----------
    lengths : array_like of int or None
        One length per batch row, each in ``0..seq_len``.  Integer arrays, or
        floats holding finite whole numbers, are accepted.
    batch_size, seq_len : int
        B and T of the input.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of int64 or None
        None when `lengths` is None.
    """
    if lengths is None:
        return None
    try:
        array = np.asarray(lengths)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to an array: {error}") from None
    if array.dtype == np.bool_ or array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have shape ({batch_size},), one length per batch row, got {array.shape}"
        )
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite, got {array}")
        if not np.all(array == np.round(array)):
            raise ValueError(f"{name} must be whole numbers, got {array}")
    if array.size and (array.min() < 0 or array.max() > seq_len):
        raise ValueError(
            f"{name} must lie in 0..{seq_len} (the sequence length), "
            f"got min {array.min()} and max {array.max()}"
        )
    return array.astype(np.int64)


def check_state_and_lengths(h0, lengths, x_shape, hidden_size, dtype, state_name="h0",
                            source="the weights"):
    """Check h0 (B, H) or None and lengths against x's (T, B, I); return them.

    `state_name` names h0 in error messages, `source` where `dtype` came from.

    h0 comes back as an array of `dtype` (the caller's own object when it
    already was one: never write into it), lengths as int64 or None.
    """
    seq_len, batch_size, _ = x_shape
    if h0 is not None:
        h0 = as_float_array(h0, state_name, 2, dtype, source)
        check_shape(h0, (batch_size, hidden_size), state_name,
                    f"(B, H) for B={batch_size} from x and H={hidden_size}")
    return h0, as_lengths(lengths, batch_size, seq_len)


def layer_array(value, name, dtype):
    """`value` as an array of a layer's `dtype`; arrays (and tensors) must already have it.

    Lists, tuples and Python numbers carry no dtype and are converted to the
    layer's, as `gru_fast.gru_forward` converts them to the weights'.
    """
    if own_dtype(value) is None:
        return list_as_array(value, name, dtype)
    array = np.asarray(value)  # an ndarray, or e.g. a torch tensor: same rule
    if array.dtype != dtype:
        raise TypeError(f"{name} has dtype {array.dtype}, but the layer's dtype "
                        f"is {dtype}; cast it with {name}.astype(np.{dtype.name})")
    return realigned(array)


def check_layer_input(x, input_size, dtype, batch_first):
    """A layer's input x: 3-D (T, B, I), or (B, T, I) when `batch_first`, not empty."""
    x = layer_array(x, "x", dtype)
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D {layout}, got shape {x.shape} "
                         f"({x.ndim}-D); for a single sequence add a batch axis")
    if x.shape[2] != input_size:
        raise ValueError(f"x has {x.shape[2]} features (shape {x.shape}), expected "
                         f"input_size={input_size}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have at least one time step and one batch row, "
                         f"got shape {x.shape} {layout}")
    if x.shape[0] * x.shape[1] > MAX_CORE_INDEX:
        raise ValueError(f"x has T*B = {x.shape[0] * x.shape[1]} rows (shape {x.shape}); the "
                         f"core handles at most {MAX_CORE_INDEX}: split the batch")
    return x


def check_layer_state(h, name, expected, dtype):
    """A layer's state (num_states, B, H) or None, returned C-contiguous."""
    if h is None:
        return None
    h = layer_array(h, name, dtype)
    if h.shape != tuple(expected):
        raise ValueError(f"{name} has shape {h.shape}, expected {tuple(expected)} "
                         f"(num_layers*num_directions, batch, hidden_size)")
    return np.ascontiguousarray(h)


def check_input_features(x, name, ndim, layout, input_size, dtype, c_contiguous=True):
    """x of rank `ndim` and the weights' `dtype` whose last axis is I; C-contiguous
    (copied if need be) unless `c_contiguous` is false."""
    x = as_float_array(x, name, ndim, dtype)
    if x.shape[-1] != input_size:
        raise ValueError(f"{name} must have shape {layout} with I={input_size} "
                         f"(the weights' input size), got {x.shape}")
    return contiguous(x) if c_contiguous else x


class ForwardArgs(NamedTuple):
    """Validated forward arguments: C-contiguous arrays of one dtype, and sizes.

    A NamedTuple rather than a frozen dataclass: it is made on every call, and
    a frozen dataclass' constructor costs measurably more (bench/README.md).
    """

    x: np.ndarray
    h0: np.ndarray | None
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray | None
    bias_hh: np.ndarray | None
    lengths: np.ndarray | None
    reset_after: bool
    reverse: bool

    @property
    def dims(self):
        """(T, B, I, H)."""
        seq_len, batch_size, input_size = self.x.shape
        return seq_len, batch_size, input_size, self.weight_hh.shape[1]


WEIGHT_NAMES = ("weight_hh", "weight_ih", "bias_ih", "bias_hh")


def weights_dtype(weight_ih, weight_hh, bias_ih, bias_hh, **others):
    """The call's dtype and, for messages, where it comes from (the weights decide).

    `others` (x, h0) decide only when every weight is a list.  Raises
    TypeError if the deciding argument's dtype is not float32 or float64.
    """
    dtype, source = call_dtype(weight_hh=weight_hh, weight_ih=weight_ih, bias_ih=bias_ih,
                               bias_hh=bias_hh, **others)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{source} must have dtype float32 or float64, got {dtype}")
    return dtype, ("the weights" if source in WEIGHT_NAMES or source is None else source)


def validate_weights(weight_ih, weight_hh, bias_ih, bias_hh, input_size=None, dtype=None,
                     source="the weights"):
    """Check a layer's weights and biases; return them C-contiguous, with (H, I).

    `input_size` is I as the input has it (a mismatch blames weight_ih and
    names both sizes); None takes I from weight_ih.  `dtype` is the call's
    (see `weights_dtype`; None works it out from the weights), `source` where
    it came from.  Raises TypeError for wrong dtypes and ValueError for
    wrong ranks or shapes.

    Returns
    -------
    tuple
        (weight_ih, weight_hh, bias_ih, bias_hh, hidden_size, input_size); the
        biases are None when both were.
    """
    if dtype is None:
        dtype, source = weights_dtype(weight_ih, weight_hh, bias_ih, bias_hh)
    weight_hh = as_float_array(weight_hh, "weight_hh", 2, dtype, source)
    weight_ih = as_float_array(weight_ih, "weight_ih", 2, dtype, source)
    three_h, hidden_size = weight_hh.shape
    if hidden_size < 1 or three_h != 3 * hidden_size:
        raise ValueError(
            f"weight_hh must have shape (3*H, H) with H >= 1, got {weight_hh.shape}"
        )
    if input_size is None:
        input_size = weight_ih.shape[1]
        if input_size < 1:
            raise ValueError(f"weight_ih must have shape (3*H, I) with I >= 1, "
                             f"got {weight_ih.shape}")
        meaning = f"(3*H, I) for H={hidden_size} from weight_hh"
    else:
        meaning = f"(3*H, I) for H={hidden_size} from weight_hh and I={input_size} from x"
    check_shape(weight_ih, (3 * hidden_size, input_size), "weight_ih", meaning)

    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("bias_ih and bias_hh must both be given or both be None")
    if bias_ih is not None:
        bias_ih = as_float_array(bias_ih, "bias_ih", 1, dtype, source)
        bias_hh = as_float_array(bias_hh, "bias_hh", 1, dtype, source)
        check_shape(bias_ih, (3 * hidden_size,), "bias_ih", f"(3*H,) for H={hidden_size}")
        check_shape(bias_hh, (3 * hidden_size,), "bias_hh", f"(3*H,) for H={hidden_size}")
        bias_ih, bias_hh = np.ascontiguousarray(bias_ih), np.ascontiguousarray(bias_hh)
    return (np.ascontiguousarray(weight_ih), np.ascontiguousarray(weight_hh), bias_ih, bias_hh,
            hidden_size, input_size)


def validate_forward_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                          reset_after, lengths, reverse):
    """Check every forward argument; return them as a `ForwardArgs`.

    The weights decide the dtype (x, then h0, when the weights are lists);
    lists are converted to it, arrays must have it.  Raises TypeError for
    wrong types or dtypes and ValueError for wrong ranks, shapes or lengths,
    naming the argument and the shapes seen.  Arrays are returned
    C-contiguous (copied only when they were not).
    """
    if (type(reset_after) is bool and type(reverse) is bool
            and plain_forward_arrays(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)):
        # Plain arrays that pass every check below unchanged, checked in C:
        # called right after another library, these checks in Python cost
        # more than a stream call's core (src/_fastpath.pyx).
        checked = plain_lengths(lengths, x.shape[1], x.shape[0])
        if checked is not False:
            return ForwardArgs(x=x, h0=h0, weight_ih=weight_ih, weight_hh=weight_hh,
                               bias_ih=bias_ih, bias_hh=bias_hh, lengths=checked,
                               reset_after=reset_after, reverse=reverse)
    reset_after = check_flag(reset_after, "reset_after")
    reverse = check_flag(reverse, "reverse")
    dtype, source = weights_dtype(weight_ih, weight_hh, bias_ih, bias_hh, x=x, h0=h0)
    x = as_float_array(x, "x", 3, dtype, source)
    if x.shape[2] < 1:
        raise ValueError(f"x must have shape (T, B, I) with I >= 1 features, got {x.shape}")
    if x.shape[0] * x.shape[1] > MAX_CORE_INDEX:
        raise ValueError(f"x has T*B = {x.shape[0] * x.shape[1]} rows (shape {x.shape}); the "
                         f"core handles at most {MAX_CORE_INDEX}: split the batch")
    weight_ih, weight_hh, bias_ih, bias_hh, hidden_size, _ = validate_weights(
        weight_ih, weight_hh, bias_ih, bias_hh, input_size=x.shape[2], dtype=dtype,
        source=source)
    h0, lengths = check_state_and_lengths(h0, lengths, x.shape, hidden_size, dtype,
                                          source=source)
    return ForwardArgs(
        x=contiguous(x), h0=h0, weight_ih=weight_ih, weight_hh=weight_hh,
        bias_ih=bias_ih, bias_hh=bias_hh, lengths=lengths,
        reset_after=reset_after, reverse=reverse,
    )
