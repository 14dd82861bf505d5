"""Argument checking shared by the functional API, the layer and the reference.

Every check raises before any compiled code runs, with a message that names
the argument and says what was seen and what was expected.
"""

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_flag(value, name):
    """Return `value` as a bool, or raise TypeError if it is not a boolean."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def as_float_array(value, name, ndim, dtype=None):
    """Return `value` as a float32/float64 ndarray of rank `ndim` (no copy if possible).

    Parameters
    ----------
    value : array_like
        What the caller passed.
    name : str
        Argument name used in error messages.
    ndim : int
        Required rank.
    dtype : numpy.dtype, optional
        When given, the array must already have this dtype (no silent casts).

    Returns
    -------
    numpy.ndarray
        The array, possibly the caller's own object: never write into it.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array: {error}") from None
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {array.dtype} but the weights are {dtype}; "
            "all arrays of one call must share the weights' dtype (cast explicitly)"
        )
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    return array


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
