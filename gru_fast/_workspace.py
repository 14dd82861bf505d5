"""Scratch arrays for the compiled core, kept from one call to the next; and
recycled memory for the large arrays a call returns.

The core's scratch (packed weights, gate gradients, the projection of a chunk
of steps) is large, and fresh NumPy arrays of that size come from the kernel
as new pages on every call: page faults and zeroing cost a noticeable part of
a backward pass (bench/README.md, "Measurements behind the code"), and the
threads of the core wait on each other's faults.  `scratch` instead hands
out views of a buffer kept per thread, dtype and name, grown to the largest
size asked for.  Scratch is never handed to the caller nor kept by a
GRUCache.

What a thread keeps is capped at SCRATCH_KEPT_BYTES: a call that needs more
gets the rest as temporary buffers, freed when it returns (for such a call
the page faults are a small part of the work).  `release_memory` frees what
every thread keeps.

The outputs and caches a call returns belong to the caller, and usually die
before the next call (a training loop, a loop over batches).  Where the C
library's malloc returns such large blocks to the kernel on free (glibc when
MALLOC_TRIM_THRESHOLD_ or MALLOC_MMAP_THRESHOLD_ is set, as Dask's nanny does
for every worker; musl always), every call faults all their pages in again:
a training epoch (H = 32, T = 50, batch 32) took 1.5x as long, and each
forward call with its cache at B = 32, H = 128 faulted ~1,400-2,400 pages.
`recycled_empty` hands out such arrays on memory the thread keeps and reuses
once nothing refers to it any more (no array, view or memoryview of it).
`contiguous` puts the C-contiguous copy of a strided input there too (a
cache may keep it; under such a malloc a chunk of a Dask array faulted its
copy in at every call).
"""

import os
import sys
import threading
import weakref
from math import prod

import numpy as np

MIN_KEPT_BYTES = 64 * 2**20
MAX_KEPT_BYTES = 256 * 2**20
KEPT_SHARE_OF_MEMORY = 1 / 128


def _memory_bytes():
    """The memory this process may use: the machine's, or its cgroup's limit if lower."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        memory = 0
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as limit_file:
                limit = int(limit_file.read().strip())
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
        if 0 < limit < memory or memory == 0:
            memory = limit
    return memory


def kept_bytes_cap():
    """Bytes one thread keeps of each kind between calls: KEPT_SHARE_OF_MEMORY of the
    memory (`_memory_bytes`), within MIN_KEPT_BYTES and MAX_KEPT_BYTES.

    Memory a thread keeps does not fault in again at its next call, and the
    faults are not cheap: a float64 forward + backward at (50, 64, 512, 512)
    needs 129 MiB of scratch, and with 64 MiB kept its backward faulted in
    ~1,000 fresh pages per call (huge pages, zeroed by the kernel: 7% of its
    profile), 1.06x the time of a call on kept memory; (25, 16, 1024, 1024)
    float64, whose returned gradients outgrew 64 MiB of recycled memory, 1.10x
    (medians of 11 alternating rounds, Zen 4, bench/README.md).  What is kept
    is bounded by the machine (24 GiB: 192 MiB of each kind), never more than
    MAX_KEPT_BYTES; `release_memory` gives it back.
    """
    return int(min(max(MIN_KEPT_BYTES, _memory_bytes() * KEPT_SHARE_OF_MEMORY),
                   MAX_KEPT_BYTES))


# Scratch bytes one thread keeps between calls, all names and dtypes together: a
# call that needs more does so much arithmetic per byte that the page faults of
# fresh buffers are a smaller part of it.
SCRATCH_KEPT_BYTES = kept_bytes_cap()

_local = threading.local()


# Views a thread's pool keeps ready, by (name, shape, dtype): slicing and
# reshaping a buffer costs about 1 us, five times in a forward call whose
# core may run for a few microseconds (a streaming call of one step).
MAX_KEPT_VIEWS = 64


class _Pool:
    """One thread's kept buffers, by (name, dtype), and views of them ready to hand out."""

    __slots__ = ("buffers", "views", "groups", "recycled", "__weakref__")

    def __init__(self):
        self.buffers = {}
        self.views = {}
        self.groups = {}  # scratch_group's tuples of views, by (specs, dtype)
        self.recycled = []  # (byte array, aligned start) that recycled_empty's arrays view


# Every thread's pool, so that release_memory() reaches them all; a pool goes
# away with its thread.
_pools = weakref.WeakSet()
_pools_lock = threading.Lock()


def _this_threads_pool():
    try:
        return _local.pool
    except AttributeError:
        pool = _local.pool = _Pool()
        with _pools_lock:
            _pools.add(pool)
        return pool

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
    nbytes = size * dtype.itemsize
    return _aligned_part(np.empty(nbytes + ALIGNMENT, dtype=np.uint8), nbytes, dtype)


def _aligned_start(raw):
    """The offset in byte array `raw` of its first ALIGNMENT boundary (~1.5 us: ctypes)."""
    return -raw.ctypes.data % ALIGNMENT


def _aligned_part(raw, nbytes, dtype, start=None):
    """The first `nbytes` of byte array `raw` (ALIGNMENT more than that, or larger)
    from its first ALIGNMENT boundary on (`start`, found here when None), viewed as
    `dtype`: a view whose base is `raw`."""
    if start is None:
        start = _aligned_start(raw)
    return raw[start:start + nbytes].view(dtype)


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
        `scratch` call with the same name and dtype on this thread; or of a
        temporary buffer, when keeping it would take the thread's kept
        scratch over SCRATCH_KEPT_BYTES.
    """
    return _scratch(_this_threads_pool(), name, shape, dtype)[0]


def _scratch(owner, name, shape, dtype):
    """`scratch` in `owner`'s pool: (the view, whether its buffer is kept)."""
    views = owner.views
    view = views.get((name, shape, dtype))
    if view is not None:
        return view, True  # a view of the buffer kept now (a new buffer drops the old views)
    size = prod(shape)
    pool = owner.buffers
    key = (name, dtype)
    buffer = pool.get(key)
    kept = True
    if buffer is None or buffer.size < size:
        buffer = aligned_empty(size, dtype)
        kept_by_others = sum(kept.nbytes for other, kept in pool.items() if other != key)
        kept = kept_by_others + buffer.nbytes <= SCRATCH_KEPT_BYTES
        if kept:
            pool[key] = buffer  # else a temporary; the smaller kept one stays
            for old in [old for old in views if old[0] == name and old[2] == dtype]:
                del views[old]  # views of the buffer replaced
            owner.groups = {}  # and the groups that held one
    view = buffer[:size].reshape(shape)
    if kept:
        if len(views) >= MAX_KEPT_VIEWS:
            views.clear()
        views[(name, shape, dtype)] = view
    return view, kept


def scratch_group(specs, dtype):
    """`scratch(name, shape, dtype)` for every (name, shape) of `specs`, as a tuple.

    One dictionary lookup when this thread asked for the same group before
    and no buffer of it was replaced since: a forward call takes six scratch
    arrays, ~0.6 us each one by one, in a streaming call whose core may run
    for a few microseconds.  The names of a group must differ.

    Parameters
    ----------
    specs : tuple of (str, tuple of int)
    dtype : numpy.dtype

    Returns
    -------
    tuple of ndarray
        In the order of `specs`, valid as `scratch`'s.
    """
    owner = _this_threads_pool()
    key = (specs, dtype)
    group = owner.groups.get(key)
    if group is not None:
        return group
    made = [_scratch(owner, name, shape, dtype) for name, shape in specs]
    group = tuple(view for view, _ in made)
    if all(kept for _, kept in made):  # a temporary buffer is never handed out twice
        if len(owner.groups) >= MAX_KEPT_VIEWS:
            owner.groups = {}
        owner.groups[key] = group
    return group


# Bytes of recycled memory one thread keeps (in use by the caller's arrays or
# free), and the smallest array worth recycling: below, malloc keeps freed
# blocks itself (glibc's default mmap threshold is 128 KiB).
RECYCLED_KEPT_BYTES = kept_bytes_cap()
RECYCLE_MIN_BYTES = 128 * 2**10
# A kept byte array no array refers to is referenced by its (raw, start) entry in
# the pool's list, the loop variable that holds it and sys.getrefcount's own argument.
_UNREFERENCED = 3
# Free-threaded CPython counts references per thread and defers some: there
# the count cannot tell that nothing refers to a buffer, so nothing is recycled.
_COUNTS_ARE_EXACT = getattr(sys, "_is_gil_enabled", lambda: True)()


def recycled_empty(shape, dtype):
    """An uninitialized C-contiguous array for the caller to keep, on recycled memory.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy.dtype

    Returns
    -------
    ndarray
        Starting on ALIGNMENT bytes; its memory is one this thread kept from
        an earlier array that nothing refers to any more, or new (then kept
        for later calls while the thread's recycled memory stays within
        RECYCLED_KEPT_BYTES).  Small arrays are plain ``np.empty``.
    """
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    if nbytes < RECYCLE_MIN_BYTES or not _COUNTS_ARE_EXACT:
        return np.empty(shape, dtype)
    need = nbytes + ALIGNMENT
    recycled = _this_threads_pool().recycled
    # Only this thread takes from its list, so a buffer seen free here stays
    # free until this thread hands it out (other threads can only drop arrays).
    # Entries are (raw, start): start is raw's first ALIGNMENT boundary, found once.
    chosen = None
    kept = 0
    for raw, start in recycled:
        kept += raw.nbytes
        if (chosen is None and need <= raw.nbytes <= 2 * need
                and sys.getrefcount(raw) <= _UNREFERENCED):
            chosen, chosen_start = raw, start
    raw = None  # the loop's last buffer would otherwise look in use below
    if chosen is None:
        chosen = np.empty(need, dtype=np.uint8)
        chosen_start = _aligned_start(chosen)
        if kept + need > RECYCLED_KEPT_BYTES:  # make room: drop buffers nothing uses
            recycled[:] = [(raw, start) for raw, start in recycled
                           if sys.getrefcount(raw) > _UNREFERENCED]
            kept = sum(raw.nbytes for raw, _ in recycled)
        if kept + need <= RECYCLED_KEPT_BYTES:
            recycled.append((chosen, chosen_start))
    # a view of a view has the owner (chosen) as its base: every array made
    # from the result keeps chosen's reference count up while it lives
    return _aligned_part(chosen, nbytes, dtype, chosen_start).reshape(shape)


def recycled_copy(array):
    """A C-contiguous copy of `array` on recycled memory (see `recycled_empty`).

    For the copies a cache keeps (weights, input): a fresh 192 KiB copy of
    W_hh (H = 128, float32) took 69 us a call where malloc had just given the
    pages back (glibc trims the heap top on free), 5.7 us on kept memory.
    """
    copy = recycled_empty(array.shape, array.dtype)
    np.copyto(copy, array)
    return copy


def contiguous(array):
    """`array` itself when C-contiguous, else a C-contiguous copy on recycled memory.

    For inputs the core must read row by row: a batch chunk of a larger array
    (``dask.array.from_array`` hands each task such a view) is copied into
    memory this thread kept, not into a fresh array, whose pages a malloc that
    returns large blocks to the kernel (Dask's nanny sets it up so) faults in
    again at every call.
    """
    if array.flags.c_contiguous:
        return array
    return recycled_copy(array)


def kept_bytes():
    """Bytes of scratch all threads keep now (see SCRATCH_KEPT_BYTES)."""
    with _pools_lock:
        pools = list(_pools)
    return sum(buffer.nbytes for pool in pools for buffer in list(pool.buffers.values()))


def release_memory():
    """Free the memory gru_fast keeps between calls to make later calls faster.

    That is the scratch of the compiled core, which every thread keeps up to
    ``gru_fast._workspace.SCRATCH_KEPT_BYTES`` (1/128 of the memory, within 64
    and 256 MiB), the memory of returned outputs, caches and copies of strided
    inputs that nothing uses any more, kept for reuse up to
    ``RECYCLED_KEPT_BYTES`` (as much; arrays still in use keep theirs), and
    the layouts of recent variable-length batches (a few MiB at most).  Calls running at the
    same time in other threads are not disturbed: they keep what they use
    until they return.  Later calls allocate again what they need.

    Examples
    --------
    >>> import gru_fast
    >>> gru_fast.release_memory()
    """
    from . import _packing  # here: _packing does not depend on this module

    with _pools_lock:
        pools = list(_pools)
    for pool in pools:
        pool.buffers = {}  # one store: the owner thread sees the old dict or the new one
        pool.views = {}  # after: a view cached meanwhile of an old buffer goes too
        pool.groups = {}
        pool.recycled = []  # arrays still using a buffer keep it alive themselves
    _packing.forget_kept_packings()


release = release_memory  # the older private name
