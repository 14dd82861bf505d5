"""GRUs over Dask arrays: inference and data-parallel training where the data lives.

Sequences of one batch are independent, so a batch cut into chunks along its
batch axis is a set of independent core calls: one task per chunk, each a
whole-sequence pass over that chunk (the time and feature axes are one chunk
each).  Dask schedules them: on the threaded scheduler the tasks share the
process (the core releases the GIL), on ``distributed`` they run in the
worker processes that hold the chunks, the model travelling there by pickle.

- `forward`: lazy batch-parallel inference, results as dask arrays.
- `training_data` / `DaskSequences`: what ``GRURegressor.fit`` and
  ``GRUClassifier.fit`` use for a dask X.  L-BFGS evaluates the full-batch
  loss and gradient as a sum of per-chunk sums computed where the chunks
  live, added up in a tree, and steps on the client with ``scipy.optimize``
  (the pattern of dask-glm); the parameters travel to the chunks once per
  evaluation.  The stochastic solvers run each epoch as one chain of tasks,
  one per chunk in a new random order every epoch: each trains on its chunk
  where the chunk lives and hands the parameters, the optimizer's state and
  the shuffling RNG to the next (the state travels, not the data).  Early
  stopping's validation rows stay in their chunks, scored there.

This module imports Dask only when it is used: ``import gru_fast`` works
without it, ``import gru_fast.dask`` needs ``dask[array]``.
"""

import copy
import pickle
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from . import functional
from ._sequences import SequenceData
from ._training import run_epoch, summed_loss_and_grad
from .frozen import FrozenGRU
from .layer import GRU
from ._validation import as_lengths, check_flag

try:
    import dask
    import dask.array as da
    from dask.sizeof import sizeof
    from dask.utils import parse_bytes
except ImportError as error:  # pragma: no cover - exercised only without dask
    raise ImportError("gru_fast.dask needs Dask: pip install 'dask[array]' "
                      "(and 'distributed' for a cluster)") from error

__all__ = ["forward", "training_data", "DaskSequences"]


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
    return functional.thread_budget(1)


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


def _pickled_bytes(obj):
    """The size of `obj`'s pickle, counted without copying its arrays (protocol 5)."""
    buffers = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(header) + sum(buffer.raw().nbytes for buffer in buffers)


def _model_argument(model, n_tasks):
    """The model as the chunk tasks' argument: itself in every task, or one shared key.

    Inside every task (pickled into each), a worker has the model as soon as it
    has the task.  As one key of the graph it is pickled once, but all workers
    but one fetch it from that one when their first task is ready to run,
    after it: measured on 2 workers that delayed and unbalanced the start of
    every computation, and Dask's work stealing then moved chunks between the
    busy workers (bench/dask_scaling.py).  So the model goes into each task as
    long as all the copies stay under half of Dask's own large-graph warning
    threshold (``distributed.admin.large-graph-warning-threshold``, 10 MB by
    default); a larger model, or very many chunks, share one key.
    """
    threshold = dask.config.get("distributed.admin.large-graph-warning-threshold", "10MB")
    if _pickled_bytes(model) * n_tasks <= parse_bytes(threshold) / 2:
        return model
    return dask.delayed(model, pure=True)  # one key: pickled once per graph


@sizeof.register(FrozenGRU)
def _sizeof_frozen(model):
    """Dask's size of a FrozenGRU: its packed weights and biases.

    Without it Dask counts the Python object alone (56 bytes), and a model
    large enough to travel as one key (see `_model_argument`) is priced as
    free to move between workers and left out of their memory accounting.
    """
    return model.nbytes


@sizeof.register(GRU)
def _sizeof_layer(model):
    """Dask's size of a GRU or FrozenGRULayer: its parameters, plus the packed copies
    a FrozenGRULayer holds (one FrozenGRU per layer and direction)."""
    held = sum(np.asarray(value).nbytes for value in model.params.values())
    frozen = getattr(model, "_frozen", None) or {}
    return held + sum(part.nbytes for part in frozen.values())


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

    model_task = _model_argument(model, len(batch_chunks))
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


# ---------------------------------------------------------------------- training


def _distributed_client():
    """The active ``distributed`` client, or None (Dask's local schedulers)."""
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def _check_finite(block, name):
    if not np.all(np.isfinite(block)):
        raise ValueError(f"{name} contains NaN or infinity (found in a chunk of "
                         f"{len(block)} rows)")


def _chunk_sequences(x_block, dtype):
    """A chunk (rows, T, I) of X as SequenceData of the network's dtype, checked finite."""
    _check_finite(x_block, "X")
    return SequenceData.from_batch_major(np.asarray(x_block, dtype=dtype))


def _chunk_loss_and_grad(network, x_block, target_block):
    """One task: the summed loss and float64 gradient of one chunk at ``network.flat``."""
    # Tasks on one worker share the network they received; each computes on its own copy.
    network = copy.deepcopy(network)
    with _core_thread_budget():
        return summed_loss_and_grad(network, _chunk_sequences(x_block, network.dtype),
                                    np.asarray(target_block))


def _rows_in_place(array, rows):
    """``array[rows]`` for sorted `rows`, every chunk giving its own rows as one chunk.

    No row moves to another chunk (dask's own fancy indexing may merge the
    rows of several chunks into one), so each part stays where its chunk
    lives.  Chunks without a selected row drop out.
    """
    bounds = np.cumsum((0,) + tuple(array.chunks[0]))
    parts = []
    for index, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        local = rows[np.searchsorted(rows, lo):np.searchsorted(rows, hi)] - lo
        if len(local):
            parts.append(array.blocks[index][local])
    return da.concatenate(parts)


def _chunk_outputs(network, x_block):
    """One task: the network's outputs for the sequences of one chunk."""
    network = copy.deepcopy(network)  # tasks on one worker share what they received
    with _core_thread_budget():
        return network.forward_data(_chunk_sequences(x_block, network.dtype))


def _add_pairs(*parts):
    """Sum of (loss, grad) pairs."""
    loss = sum(part[0] for part in parts)
    grad = parts[0][1].copy()
    for part in parts[1:]:
        grad += part[1]
    return loss, grad


def _tree_sum(parts, fan_in=8):
    """Delayed (loss, grad) pairs added up in a tree of `fan_in`-way sums."""
    while len(parts) > 1:
        parts = [dask.delayed(_add_pairs, pure=True)(*parts[i:i + fan_in])
                 for i in range(0, len(parts), fan_in)]
    return parts[0]


def _encode_labels(block, classes):
    unknown = ~np.isin(block, classes)
    if unknown.any():
        raise ValueError(f"y has labels {np.unique(block[unknown])} that are not in "
                         f"classes_ {classes}")
    return np.searchsorted(classes, block).astype(np.int64)


def _regression_targets(block, dtype):
    _check_finite(block, "y")
    return block.reshape(len(block), -1).astype(dtype)


class _EpochState:
    """What a stochastic epoch carries from chunk to chunk: the network, the optimizer
    (bound to ``network.flat``), the shuffling RNG and the running sum of the loss.

    One object, so that one pickle holds the network and the optimizer together
    and the optimizer stays bound to that network's ``flat`` when it travels.
    (A plain class, not a dataclass: Dask would take a dataclass argument apart.)
    """

    __slots__ = ("network", "optimizer", "rng", "loss_sum")

    def __init__(self, network, optimizer, rng, loss_sum):
        self.network, self.optimizer, self.rng = network, optimizer, rng
        self.loss_sum = loss_sum

    def __getstate__(self):
        return (self.network, self.optimizer, self.rng, self.loss_sum)

    def __setstate__(self, state):
        self.network, self.optimizer, self.rng, self.loss_sum = state

    def hand_back(self, network, optimizer, rng):
        """Copy this state into the client's own `network`, `optimizer` and `rng`, in place
        (the estimator keeps references to them)."""
        network.flat[...] = self.network.flat
        optimizer.load_state_dict(self.optimizer.state_dict())
        rng.bit_generator.state = self.rng.bit_generator.state


@sizeof.register(_EpochState)
def _sizeof_epoch_state(state):
    """Dask's size of an epoch's state: the parameters and the optimizer's buffers
    (a few times ``flat``), so the scheduler sees it is cheaper to move than a chunk."""
    buffers = sum(value.nbytes for per_name in state.optimizer.state.values()
                  for value in per_name.values())
    return state.network.flat.nbytes + buffers + 1024


def _chunk_epoch(state, x_block, target_block, batch_size):
    """One task of a stochastic epoch's chain: train on one chunk, return the next state.

    Works on a copy of `state`: a task must leave its inputs as they were (Dask
    may run it again, after a lost worker, from the same inputs; on the
    threaded scheduler the first input is the client's own network).
    """
    state = copy.deepcopy(state)  # one copy: the optimizer stays bound to the copy's flat
    data = _chunk_sequences(x_block, state.network.dtype)
    # No thread budget (unlike `_forward_chunk`): the chain's tasks run one at a time, on
    # the calling thread (`_chain_scheduler`) or in a distributed worker, which keeps its
    # own setting.
    mean_loss = run_epoch(state.network, state.optimizer, data, np.asarray(target_block),
                          batch_size, state.rng)
    state.loss_sum += mean_loss * data.n_samples
    return state


def _chain_scheduler():
    """The scheduler of an epoch's chain: the active one, but Dask's thread pool made
    synchronous.

    On the thread pool (Dask's default without a ``distributed`` client) the
    chunks are in this process anyway, and the pool would start loading every
    chunk at once (all are ready at the start) and hold them until the chain
    reached them: 5 to 16 of 16 chunks alive at once, measured.  The synchronous
    scheduler loads each chunk as its task comes (tests/test_dask_stochastic.py
    checks the bound).
    """
    import dask.threaded

    active = dask.base.get_scheduler()
    return "sync" if active is None or active is dask.threaded.get else None


def _run_epoch_pulling_chunks(data, network, optimizer, targets, batch_size, rng):
    """The former stochastic epoch: every chunk pulled to the client, trained there.

    Kept as the baseline of bench/dask_scaling.py and of the tests that show
    `DaskSequences.run_epoch` gathers no chunk: the same chunks in the same
    order, the next chunk fetched while this one trains under ``distributed``.
    Updates `network`, `optimizer` and `rng` in place and returns the epoch's
    mean loss, as `DaskSequences.run_epoch`.
    """
    pairs = data._chunk_pairs(targets)
    order = rng.permutation(len(pairs))
    client = _distributed_client()
    fetch = ((lambda pair: client.compute(pair)) if client is not None
             else (lambda pair: pair))
    pending = fetch(pairs[order[0]])
    total = 0.0
    for position in range(len(order)):
        current = pending
        if position + 1 < len(order):
            pending = fetch(pairs[order[position + 1]])
        x_block, target_block = (client.gather(current) if client is not None
                                 else dask.compute(*current))
        chunk = _chunk_sequences(x_block, network.dtype)
        total += run_epoch(network, optimizer, chunk, np.asarray(target_block),
                           batch_size, rng) * chunk.n_samples
    return total / data.n_samples


class DaskSequences:
    """Training sequences in a dask array, chunked along the samples; for the estimators.

    Stands in for the in-memory ``SequenceData`` of ``gru_fast.estimators``:
    it has ``x`` and ``n_samples``, and instead of handing out batches it
    computes the full-batch objective (`full_batch_objective`), runs
    stochastic epochs (`run_epoch`), splits off early stopping's validation
    rows (`split`) and scores them (`forward_outputs`) chunk by chunk.  Made
    by `training_data`.

    Parameters
    ----------
    x : dask.array.Array, shape (n_samples, T, n_features)
        One chunk along T and along the features; chunks of known size along
        the samples.
    """

    def __init__(self, x):
        self.x = x

    @property
    def n_samples(self):
        """The number of sequences."""
        return self.x.shape[0]

    def _chunk_pairs(self, targets):
        """(x chunk, targets chunk) delayed pairs, one per chunk along the samples."""
        targets = targets.rechunk({0: self.x.chunks[0]})  # a no-op unless a split moved them
        return list(zip(self.x.to_delayed().ravel(), targets.to_delayed().ravel()))

    def full_batch_objective(self, network, targets):
        """``w -> (mean loss, gradient)`` over every chunk, for L-BFGS.

        Each evaluation sends the network with parameters ``w`` to the chunks
        (one key of the graph, fetched once by every worker), computes every
        chunk's summed loss and gradient where it lives, adds them in a tree
        and brings back one loss and one gradient.

        Parameters
        ----------
        network : GRUNetwork
            Its ``flat`` is set to ``w`` at every evaluation, as in memory.
        targets : dask.array.Array
            Encoded targets, chunked like ``x`` along the samples.

        Returns
        -------
        callable
        """
        pairs = self._chunk_pairs(targets)
        n_samples = self.n_samples

        def objective(w):
            network.flat[...] = w
            network_task = dask.delayed(network, pure=False)  # pickled once per evaluation
            parts = [dask.delayed(_chunk_loss_and_grad, pure=True)(network_task, x, t)
                     for x, t in pairs]
            loss, grad = _tree_sum(parts).compute()
            return loss / n_samples, grad / n_samples

        return objective

    def run_epoch(self, network, optimizer, targets, batch_size, rng):
        """One stochastic epoch, trained chunk after chunk where the chunks live.

        The chunks come in an order drawn from `rng` (as every epoch in
        memory draws its order).  Chunk i's task takes the network, the
        optimizer and the RNG as the previous chunk's task left them, runs
        ``gru_fast._training.run_epoch`` on its chunk (shuffled minibatches,
        one optimizer step each) and passes them on: one chain of tasks, one
        graph per epoch, computed once.  On ``distributed`` each task runs on
        the worker holding its chunk (the state, parameters and optimizer
        moments, is far smaller than a chunk), so only the final state
        reaches the client.  Instead of Dask's thread pool the chain runs on
        the synchronous scheduler, which loads one chunk at a time (the pool
        loads every chunk ahead of the chain).  The steps, minibatches and
        their order are those of training on the chunks one after the other
        in memory; the client's `network`, `optimizer` and `rng` are updated
        in place at the end, as if it had.

        Parameters
        ----------
        network : GRUNetwork
        optimizer : gru_fast.optim optimizer
            Bound to ``{"flat": network.flat}``.
        targets : dask.array.Array
            Encoded targets, chunked like ``x`` along the samples.
        batch_size : int
        rng : numpy.random.Generator
            Draws the order of the chunks, then travels with the state.

        Returns
        -------
        float
            The mean over the epoch's samples of the batch losses.
        """
        pairs = self._chunk_pairs(targets)
        order = rng.permutation(len(pairs))
        state = _EpochState(network, optimizer, rng, 0.0)
        for index in order:
            x_block, target_block = pairs[index]
            state = dask.delayed(_chunk_epoch, pure=False)(state, x_block, target_block,
                                                           batch_size)
        final = state.compute(scheduler=_chain_scheduler())
        final.hand_back(network, optimizer, rng)
        return final.loss_sum / self.n_samples

    def split(self, targets, train_rows, validation_rows):
        """Early stopping's split: training and validation rows, taken where the chunks live.

        Both parts stay dask arrays chunked along the samples (every chunk
        gives its own rows, in order), so X is never gathered; only the
        validation targets come to the client, for scoring.

        Parameters
        ----------
        targets : dask.array.Array
            Encoded targets, chunked like ``x``.
        train_rows, validation_rows : ndarray of int
            Disjoint sample indices, in any order.

        Returns
        -------
        (DaskSequences, dask.array.Array), (DaskSequences, numpy.ndarray)
            The training data and targets; the validation data and targets.
        """
        targets = targets.rechunk({0: self.x.chunks[0]})
        train_rows, validation_rows = np.sort(train_rows), np.sort(validation_rows)
        validation_targets = np.asarray(_rows_in_place(targets, validation_rows).compute())
        return ((DaskSequences(_rows_in_place(self.x, train_rows)),
                 _rows_in_place(targets, train_rows)),
                (DaskSequences(_rows_in_place(self.x, validation_rows)), validation_targets))

    def forward_outputs(self, network):
        """The network's outputs for every sequence, computed where the chunks live.

        Parameters
        ----------
        network : GRUNetwork
            Sent to the chunks once (one key of the graph).

        Returns
        -------
        numpy.ndarray, shape (n_samples, output_size)
        """
        network_task = dask.delayed(network, pure=False)
        # outputs[b] (rows, O) from x[b] (rows, T, I): one task per chunk, where it lives
        outputs = da.blockwise(_chunk_outputs, "bo", network_task, None, self.x, "bti",
                               new_axes={"o": network.output_size}, concatenate=True,
                               dtype=network.dtype, meta=np.empty((0, 0), network.dtype))
        return np.asarray(outputs.compute())


def _set_columns(estimator, n_columns, first_pass):
    """Record (or check) a 2-D X's T columns as the estimator does for a 2-D NumPy X."""
    name = type(estimator).__name__
    if first_pass:
        estimator._table_input = True
        estimator.n_features_in_ = n_columns
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif getattr(estimator, "_table_input", False):
        if n_columns != estimator.n_features_in_:
            raise ValueError(f"X has {n_columns} features, but {name} is expecting "
                             f"{estimator.n_features_in_} features as input")
    elif estimator.gru_.input_size != 1:
        raise ValueError(f"X is 2-D with T={n_columns} columns, read as univariate "
                         f"sequences, but {name} was fitted on sequences of "
                         f"{estimator.gru_.input_size} features; pass (n_samples, T, "
                         f"n_features)")


def _sequence_input(estimator, X, first_pass):
    """Check a dask X for `estimator` (as its NumPy checks do) and chunk it for the core.

    Returns
    -------
    dask.array.Array, shape (n_samples, T, n_features)
        One chunk along T and the features (2-D X: univariate, T columns).
    """
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask array, got {type(X).__name__} (a dask DataFrame: "
                        f"X.to_dask_array(lengths=True))")
    if X.ndim not in (2, 3):
        raise ValueError(f"dask X must be (n_samples, T) or (n_samples, T, n_features), got "
                         f"shape {X.shape}")
    if X.dtype.kind != "f":
        raise TypeError(f"dask X must hold floats, got dtype {X.dtype}")
    if any(np.isnan(size) for size in X.chunks[0]):
        raise ValueError("X has chunks of unknown size; call X.compute_chunk_sizes() first")
    if min(X.shape) < 1:
        raise ValueError(f"X must have at least one sample, step and feature, got shape "
                         f"{X.shape}")
    if X.ndim == 2:  # (n_samples, T): univariate sequences, T columns, as in memory
        _set_columns(estimator, X.shape[1], first_pass)
        X = X[:, :, None]
    else:
        estimator._set_sequence_features(X.shape[2], first_pass)
    return X.rechunk({1: -1, 2: -1})


def prediction_data(estimator, X):
    """A fitted estimator's dask X, checked, as DaskSequences for its outputs; nothing is gathered.

    Called by the estimators' ``predict`` / ``predict_proba`` for a dask X:
    the outputs are computed chunk by chunk where the chunks live
    (`DaskSequences.forward_outputs`); only they (n_samples, n_outputs) reach
    the client.
    """
    if isinstance(X, (list, tuple)):
        raise TypeError("X is a list holding dask arrays: ragged sequences are predicted in "
                        "memory only. Put sequences of equal length T into one dask array")
    return DaskSequences(_sequence_input(estimator, X, first_pass=False))


def training_data(estimator, X, y, first_pass, classes=None):
    """Check dask training data for `estimator` and prepare it; nothing is gathered.

    Called by ``GRURegressor.fit`` / ``GRUClassifier.fit`` for a dask X.  Sets
    what the estimator's own checks set (``n_features_in_``, ``classes_``),
    running them on the labels (classifier, computed with ``da.unique``) or
    on the first target row (regressor).  Under a ``distributed`` client X
    and y are persisted on the workers, so that every L-BFGS evaluation finds
    them there (a lost worker's chunks are recomputed from their graph).

    Parameters
    ----------
    estimator : GRURegressor or GRUClassifier
    X : dask.array.Array, shape (n_samples, T, n_features) or (n_samples, T)
        Floating sequences of equal length (2-D: univariate, T columns, as
        for NumPy input); NaN is reported when a chunk runs.
    y : dask.array.Array or array_like, shape (n_samples,) or (n_samples, n_outputs)
    first_pass : bool
        A new fit (not warm_start / partial_fit).
    classes : array_like, optional
        partial_fit's classes.

    Returns
    -------
    data : DaskSequences
    targets : dask.array.Array
        Encoded targets chunked like X along the samples.
    """
    if isinstance(X, (list, tuple)):
        raise TypeError("X is a list holding dask arrays: ragged sequences are trained in "
                        "memory only. For dask, put sequences of equal length T into one "
                        "dask array (n_samples, T) or (n_samples, T, n_features), one fit "
                        "or partial_fit per length, or pass NumPy arrays")
    x = _sequence_input(estimator, X, first_pass)
    y = _as_dask(y, "y")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be (n_samples,) or (n_samples, n_outputs) with "
                         f"n_samples={x.shape[0]} (from X), got shape {y.shape}")
    y = y.rechunk((x.chunks[0],) + ((-1,) if y.ndim == 2 else ()))

    if estimator._loss == "cross_entropy":
        labels = classes if classes is not None else np.unique(da.unique(y).compute())
        # The classifier's own checks and classes_, run on the labels alone.
        estimator._encode_targets(labels, first_pass, classes)
        targets = y.map_blocks(_encode_labels, estimator.classes_, dtype=np.int64)
    else:
        estimator._encode_targets(y[:1].compute(), first_pass)  # y's checks, y's rank
        dtype = np.dtype(estimator.dtype)
        targets = y.map_blocks(_regression_targets, dtype, dtype=dtype,
                               chunks=(x.chunks[0], (int(np.prod(y.shape[1:])),)),
                               new_axis=1 if y.ndim == 1 else None)
    if _distributed_client() is not None:
        x, targets = dask.persist(x, targets)
    return DaskSequences(x), targets
