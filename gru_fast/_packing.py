"""Packed-sequence layout: which rows of which step the compiled core runs.

Rows are sorted by length, longest first (stable), so the rows still running
at step t are a prefix of the sorted batch.  Packed arrays hold those rows
step after step, as PyTorch's PackedSequence does: step t occupies packed rows
``offsets[t]:offsets[t + 1]`` and packed row p belongs to row ``out_rows[p]``
of the time-major (T*B, ...) view of x and y.  Padding costs no work.

The compiled core trusts these indices (it reads and writes x, y and dy
through them without checks), and packings are shared between calls, so their
arrays are immutable: read-only views of a bytes object, whose WRITEABLE flag
cannot be turned back on.  A pickled packing comes back the same way.
"""

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Packing:
    """Where each step's rows live; see the module docstring."""

    seq_len: int
    batch_size: int
    batch_sizes: np.ndarray  # (T,) intp, non-increasing
    offsets: np.ndarray  # (T + 1,) intp
    out_rows: np.ndarray  # (N,) intp; empty for the identity (no O(T*B) index)
    order: np.ndarray | None  # (B,) sorted position -> original row; None when identity

    @functools.cached_property  # read 2-3 times a call; int(offsets[-1]) costs ~0.2 us
    def n_rows(self):
        """N, the number of (step, row) pairs that run."""
        return int(self.offsets[-1])

    @property
    def is_identity(self):
        """True when every row runs every step: packed arrays are the (T*B, ...) views."""
        return self.order is None

    def pack(self, array_2d):
        """Gather the valid rows of a (T*B, F) array into a new (N, F) array."""
        return np.take(array_2d, self.out_rows, axis=0)  # half the time of array_2d[out_rows]

    def unpack(self, packed, n_features, dtype):
        """Scatter (N, F) packed rows into a zero-padded (T, B, F) array."""
        full = np.zeros((self.seq_len * self.batch_size, n_features), dtype=dtype)
        full[self.out_rows] = packed
        return full.reshape(self.seq_len, self.batch_size, n_features)

    def sort_rows(self, batch_major):
        """Return a new (B, F) array with rows in sorted (longest first) order."""
        if self.order is None:
            if type(batch_major) is np.ndarray:  # the method: np.array's keywords cost ~15 us cold
                return batch_major.copy(order="C")
            return np.array(batch_major, copy=True, order="C")
        return np.ascontiguousarray(batch_major[self.order])

    def __reduce__(self):
        """Pickle as the arguments of `frozen_packing` (NumPy's pickles drop read-only)."""
        return (frozen_packing, (self.seq_len, self.batch_size, self.batch_sizes,
                                 self.offsets, self.out_rows, self.order))

    def unsort_rows(self, sorted_rows):
        """Inverse of `sort_rows`: rows back in the caller's batch order."""
        if self.order is None:
            return sorted_rows
        rows = np.empty_like(sorted_rows)
        rows[self.order] = sorted_rows
        return rows


def _immutable(array):
    """A read-only intp copy of `array` whose WRITEABLE flag cannot be set again."""
    array = np.ascontiguousarray(array, dtype=np.intp)
    return np.frombuffer(array.tobytes(), dtype=np.intp).reshape(array.shape)


def frozen_packing(seq_len, batch_size, batch_sizes, offsets, out_rows, order):
    """A `Packing` holding immutable copies of the given index arrays."""
    return Packing(int(seq_len), int(batch_size), _immutable(batch_sizes), _immutable(offsets),
                   _immutable(out_rows), None if order is None else _immutable(order))


@functools.lru_cache(maxsize=64)
def _identity_packing(seq_len, batch_size):
    """The packing where every row runs every step; shared, so immutable."""
    return frozen_packing(seq_len, batch_size, np.full(seq_len, batch_size),
                          np.arange(seq_len + 1) * batch_size, np.empty(0), order=None)


# Packings for up to this many (step, row) pairs are kept (the last
# PACKINGS_KEPT of them), so calls with the same lengths -- every layer and
# direction of one GRU.forward, or a fixed evaluation set -- build it once.
# Building one is a few NumPy calls per step (measured: bench/README.md); a
# kept one costs at most 8 * T * B bytes.
KEPT_PACKING_MAX_ROWS = 1 << 16
PACKINGS_KEPT = 16


def make_packing(lengths, seq_len, batch_size):
    """The `Packing` for validated `lengths` (int64 array or None).

    Lengths that are all equal to the sequence length give the identity
    packing, so the full-length case never gathers or scatters.  The result
    may be shared with other calls: its arrays are read-only.
    """
    if lengths is None or lengths.min(initial=seq_len) == seq_len:  # (lengths <= T)
        return _identity_packing(seq_len, batch_size)
    if seq_len * batch_size <= KEPT_PACKING_MAX_ROWS:
        return _kept_packing(lengths.astype(np.int64, copy=False).tobytes(), seq_len,
                             batch_size)
    return _build_packing(lengths, seq_len, batch_size)


@functools.lru_cache(maxsize=PACKINGS_KEPT)
def _kept_packing(lengths_bytes, seq_len, batch_size):
    return _build_packing(np.frombuffer(lengths_bytes, dtype=np.int64), seq_len, batch_size)


def _build_packing(lengths, seq_len, batch_size):
    """Sort rows longest first and lay out the valid (step, row) pairs, step by step."""
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    steps = np.arange(seq_len)
    active = steps[:, None] < sorted_lengths[None, :]  # (T, B), each row a prefix
    batch_sizes = active.sum(axis=1).astype(np.intp)
    offsets = np.zeros(seq_len + 1, dtype=np.intp)
    np.cumsum(batch_sizes, out=offsets[1:])
    out_rows = (steps[:, None] * batch_size + order[None, :])[active]
    return frozen_packing(seq_len, batch_size, batch_sizes, offsets, out_rows, order)


def forget_kept_packings():
    """Drop the packings kept for recent lengths (`gru_fast.release_memory`)."""
    _kept_packing.cache_clear()
    _identity_packing.cache_clear()
