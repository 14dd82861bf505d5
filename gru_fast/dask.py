"""GRU inference over Dask arrays: lazy, batch-parallel, where the data lives.

Sequences of one batch are independent, so a batch cut into chunks along its
batch axis is a set of independent core calls: one task per chunk, each a
whole-sequence forward pass of that chunk (the time and feature axes are one
chunk each).  Dask schedules them: on the threaded scheduler the tasks share
the process (the core releases the GIL), on ``distributed`` they run in the
worker processes that hold the chunks, the model travelling there by pickle.

This module imports Dask only when it is used: ``import gru_fast`` works
without it, ``import gru_fast.dask`` needs ``dask[array]``.
"""

import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from . import functional
from .frozen import FrozenGRU
from .layer import GRU
from ._validation import as_lengths, check_flag

try:
    import dask
    import dask.array as da
except ImportError as error:  # pragma: no cover - exercised only without dask
    raise ImportError("gru_fast.dask needs Dask: pip install 'dask[array]' "
                      "(and 'distributed' for a cluster)") from error

__all__ = ["forward"]


@dataclass(frozen=True)
class _Layout:
    """Where the batch sits in a model's input and outputs, and their sizes."""

    batch_axis: int  # of X and y
    time_axis: int  # of X and y
    state_batch_axis: int  # of h0 and h_n
    state_shape: tuple  # h_n's shape with the batch axis set to 0
    output_features: int  # y's last axis
    input_size: int
    dtype: np.dtype

    @classmethod
    def of(cls, model):
        """The layout of a GRU (or FrozenGRULayer) or a FrozenGRU."""
        if isinstance(model, GRU):
            batch_axis = 0 if model.batch_first else 1
            num_states = model.num_layers * model.num_directions
            return cls(batch_axis, 1 - batch_axis, 1, (num_states, 0, model.hidden_size),
                       model.num_directions * model.hidden_size, model.input_size,
                       np.dtype(model.dtype))
        if isinstance(model, FrozenGRU):
            return cls(1, 0, 0, (0, model.hidden_size), model.hidden_size,
                       model.input_size, np.dtype(model.dtype))
        raise TypeError(f"model must be a gru_fast.GRU, FrozenGRULayer or FrozenGRU, "
                        f"got {type(model).__name__}")

    def with_batch(self, shape, batch_axis, batch_size):
        """`shape` with its batch axis set to `batch_size`."""
        shape = list(shape)
        shape[batch_axis] = batch_size
        return tuple(shape)


def _core_thread_budget():
    """How many threads each chunk's core call may use, as a context manager.

    The chunks already keep the cores busy: on Dask's local thread pool (one
    thread per core by default) a chunk whose core call also started OpenMP
    threads would put two threads on every core, which meet at every time
    step.  There each call runs on one thread.  A ``distributed`` worker
    process keeps its own setting (its nanny sets OMP_NUM_THREADS=1 unless
    configured otherwise), and a call on the main thread (the synchronous
    scheduler) uses every thread OpenMP allows.
    """
    if threading.current_thread() is threading.main_thread() or _in_distributed_worker():
        return nullcontext()
    budget = getattr(functional, "thread_budget", None)
    return nullcontext() if budget is None else budget(1)


def _in_distributed_worker():
    try:
        from distributed import get_worker
        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def _forward_chunk(model, x, lengths, h0, return_sequences):
    """One task: the model's forward pass over one batch chunk; returns (y, h_n)."""
    with _core_thread_budget():
        if isinstance(model, FrozenGRU):
            return model.forward(x, h0, lengths=lengths, return_sequences=return_sequences)
        return model.forward(x, h0, lengths, return_sequences=return_sequences)


def _as_dask(array, name):
    if isinstance(array, da.Array):
        return array
    try:
        return da.asarray(array)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be converted to a dask array: {error}") from None


def _check_input(X, layout):
    """X as a dask array of the model's dtype, rechunked to whole sequences and features."""
    X = _as_dask(X, "X")
    if X.dtype != layout.dtype:
        raise TypeError(f"X has dtype {X.dtype} but the model's weights are {layout.dtype}; "
                        f"cast it first (X.astype(np.{layout.dtype.name}))")
    axes = "(B, T, I)" if layout.batch_axis == 0 else "(T, B, I)"
    if X.ndim != 3 or X.shape[2] != layout.input_size:
        raise ValueError(f"X must have shape {axes} with I={layout.input_size} (the "
                         f"model's input size), got shape {X.shape}")
    if any(np.isnan(size) for size in X.chunks[layout.batch_axis]):
        raise ValueError("X has chunks of unknown size along the batch axis; call "
                         "X.compute_chunk_sizes() first")
    if X.shape[layout.time_axis] < 1 or X.shape[layout.batch_axis] < 1:
        raise ValueError(f"X must have at least one time step and one batch row, "
                         f"got shape {X.shape}")
    return X.rechunk({layout.time_axis: -1, 2: -1})


def _chunked_lengths(lengths, batch_chunks, seq_len):
    """lengths cut like the batch: a list of NumPy slices or dask blocks (or Nones)."""
    batch_size = sum(batch_chunks)
    if lengths is None:
        return [None] * len(batch_chunks)
    if isinstance(lengths, da.Array):
        if lengths.ndim != 1 or lengths.shape[0] != batch_size:
            raise ValueError(f"lengths must have shape ({batch_size},), one length per "
                             f"batch row, got {lengths.shape}")
        if lengths.dtype == np.bool_ or lengths.dtype.kind not in "iuf":
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        # Each chunk's forward checks its lengths against 0..T when it runs.
        return list(lengths.rechunk((batch_chunks,)).to_delayed())
    lengths = as_lengths(lengths, batch_size, seq_len)
    bounds = np.cumsum((0,) + tuple(batch_chunks))
    return [lengths[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def _chunked_state(h0, layout, batch_chunks):
    """h0 cut like the batch: a list of NumPy slices or dask blocks (or Nones)."""
    if h0 is None:
        return [None] * len(batch_chunks)
    axis = layout.state_batch_axis
    expected = layout.with_batch(layout.state_shape, axis, sum(batch_chunks))
    if getattr(h0, "dtype", layout.dtype) != layout.dtype:
        raise TypeError(f"h0 has dtype {h0.dtype} but the model's weights are {layout.dtype}")
    if tuple(np.shape(h0)) != expected:
        raise ValueError(f"h0 must have shape {expected}, got {tuple(np.shape(h0))}")
    if isinstance(h0, da.Array):
        chunks = tuple(batch_chunks if i == axis else -1 for i in range(h0.ndim))
        return [block for block in h0.rechunk(chunks).to_delayed().ravel()]
    h0 = np.asarray(h0, dtype=layout.dtype)
    bounds = np.cumsum((0,) + tuple(batch_chunks))
    return [np.take(h0, np.arange(lo, hi), axis=axis) for lo, hi in zip(bounds[:-1], bounds[1:])]


def forward(model, X, lengths=None, h0=None, return_sequences=True):
    """Lazy, batch-parallel forward pass of a GRU over a Dask array.

    One task per chunk of X along the batch axis runs the model's forward on
    that chunk (the time and feature axes are rechunked to one chunk when they
    are not).  Nothing runs until the results are computed, on whichever
    scheduler is active: Dask's thread pool (the core releases the GIL) or a
    ``distributed`` cluster, whose workers receive the model by pickle.

    Parameters
    ----------
    model : GRU, FrozenGRULayer or FrozenGRU
        The weights to run.  A `FrozenGRULayer` (``gru.freeze()``) packs them
        once for every chunk.
    X : dask.array.Array (or array_like)
        Input sequences of the model's dtype: (T, B, I), or (B, T, I) for a
        ``batch_first`` GRU.  Chunks along B become tasks.
    lengths : dask.array.Array or array_like of int, shape (B,), optional
        Valid steps per batch row (packed-sequence semantics, see
        `gru_fast.GRU.forward`).  NumPy lengths are checked here; dask
        lengths when each chunk runs.
    h0 : dask.array.Array or array_like, optional
        Initial states, (num_layers*D, B, H) for a GRU, (B, H) for a FrozenGRU.
    return_sequences : bool, default True
        False: compute only the final states; ``y`` is None and no chunk
        allocates its outputs.

    Returns
    -------
    y : dask.array.Array or None
        Shaped and chunked along B like X, last axis D*H (H for a FrozenGRU).
    h_n : dask.array.Array
        (num_layers*D, B, H) for a GRU (batch on axis 1), (B, H) for a
        FrozenGRU, chunked along B like X.

    Raises
    ------
    TypeError
        For another model type, or arrays of another dtype than the model's.
    ValueError
        For wrong shapes, unknown chunk sizes along B, or NumPy lengths out of range.

    Examples
    --------
    >>> import numpy as np, dask.array as da, gru_fast, gru_fast.dask
    >>> gru = gru_fast.GRU(4, 8, batch_first=True, seed=0)
    >>> X = da.zeros((1000, 20, 4), dtype=np.float32, chunks=(250, 20, 4))
    >>> y, h_n = gru_fast.dask.forward(gru.freeze(), X)
    >>> y.shape, h_n.shape, h_n.chunks[1]
    ((1000, 20, 8), (1, 1000, 8), (250, 250, 250, 250))
    """
    layout = _Layout.of(model)
    return_sequences = check_flag(return_sequences, "return_sequences")
    X = _check_input(X, layout)
    batch_chunks = X.chunks[layout.batch_axis]
    seq_len = X.shape[layout.time_axis]
    chunk_lengths = _chunked_lengths(lengths, batch_chunks, seq_len)
    chunk_states = _chunked_state(h0, layout, batch_chunks)

    model_task = dask.delayed(model, pure=True)  # one key: pickled once per graph
    x_blocks = X.to_delayed().reshape(-1)  # one block per batch chunk
    outputs, states = [], []
    for x_block, rows, lengths_block, h0_block in zip(x_blocks, batch_chunks, chunk_lengths,
                                                       chunk_states):
        result = dask.delayed(_forward_chunk, pure=True, nout=2)(
            model_task, x_block, lengths_block, h0_block, return_sequences)
        if return_sequences:
            y_shape = layout.with_batch(X.shape[:2] + (layout.output_features,),
                                        layout.batch_axis, rows)
            outputs.append(da.from_delayed(result[0], y_shape, dtype=layout.dtype))
        state_shape = layout.with_batch(layout.state_shape, layout.state_batch_axis, rows)
        states.append(da.from_delayed(result[1], state_shape, dtype=layout.dtype))
    y = da.concatenate(outputs, axis=layout.batch_axis) if return_sequences else None
    h_n = da.concatenate(states, axis=layout.state_batch_axis)
    return y, h_n
