"""Scratch arrays for the compiled core, kept from one call to the next.

The core's scratch (packed weights, gate gradients, the projection of a chunk
of steps) is large, and fresh NumPy arrays of that size come from the kernel
as new pages on every call: page faults and zeroing cost a noticeable part of
a backward pass (bench/README.md, "Measurements behind the code"), and the
threads of the core wait on each other's faults.  `scratch` instead hands out views of a buffer kept per thread,
dtype and name, grown to the largest size asked for; `release` frees them.
Only scratch goes through here: nothing a caller receives, nor anything a
GRUCache keeps.
"""

import threading
from math import prod

import numpy as np

_local = threading.local()

# Every buffer starts on a cache line, which is also one AVX-512 vector: the
# kernel loads each packed panel row as two 64-byte vectors, and a vector that
# straddles two lines costs two loads.  NumPy's own arrays start on 16 bytes
# only (bench/README.md, "Measurements behind the code", has what that cost).
ALIGNMENT = 64


def aligned_empty(size, dtype):
    """An uninitialized 1-D array of `size` values whose data starts on ALIGNMENT bytes.

    Parameters
    ----------
    size : int
    dtype : numpy.dtype

    Returns
    -------
    ndarray
        A view of a slightly larger byte buffer (which it keeps alive).
    """
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size * dtype.itemsize].view(dtype)


def scratch(name, shape, dtype):
    """An uninitialized C-contiguous array on ALIGNMENT bytes, reused by this thread's next call.

    Parameters
    ----------
    name : str
        What the array is for; two arrays in use at the same time need two names.
    shape : tuple of int
    dtype : numpy.dtype

    Returns
    -------
    ndarray
        A view of this thread's buffer for (name, dtype), valid until the next
        `scratch` call with the same name and dtype on this thread.
    """
    size = prod(shape)
    try:
        pool = _local.pool
    except AttributeError:
        pool = _local.pool = {}
    key = (name, dtype)
    buffer = pool.get(key)
    if buffer is None or buffer.size < size:
        buffer = aligned_empty(size, dtype)
        pool[key] = buffer
    return buffer[:size].reshape(shape)


def release():
    """Free the scratch buffers this thread keeps (they are made again when needed)."""
    _local.__dict__.pop("pool", None)  # the next scratch() makes a new pool
