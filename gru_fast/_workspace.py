"""Scratch arrays for the compiled core, kept from one call to the next.

The core's scratch (packed weights, gate gradients, the projection of a chunk
of steps) is large, and fresh NumPy arrays of that size come from the kernel
as new pages on every call: page faults and zeroing were 14% of a float64
backward pass here, and the two threads of the core wait on each other's
faults.  `scratch` instead hands out views of a buffer kept per thread,
dtype and name, grown to the largest size asked for; `release` frees them.
Only scratch goes through here: nothing a caller receives, nor anything a
GRUCache keeps.
"""

import threading
from math import prod

import numpy as np

_local = threading.local()


# Below this many bytes a fresh array is cheaper than looking one up: NumPy
# serves it from its own small-block cache, without new pages.
FRESH_BELOW_BYTES = 1 << 18


def scratch(name, shape, dtype):
    """An uninitialized C-contiguous array, reused by this thread's next call.

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
        `scratch` call with the same name and dtype on this thread; small
        arrays are simply new.
    """
    size = prod(shape)
    if size * dtype.itemsize < FRESH_BELOW_BYTES:
        return np.empty(shape, dtype=dtype)
    pool = _local.__dict__.setdefault("pool", {})
    key = (name, dtype)
    buffer = pool.get(key)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=dtype)
        pool[key] = buffer
    return buffer[:size].reshape(shape)


def release():
    """Free the scratch buffers this thread keeps (they are made again when needed)."""
    _local.__dict__.pop("pool", None)
