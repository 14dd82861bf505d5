"""The fast functional API: validate, allocate, call the compiled core, wrap.

`gru_forward` and `gru_backward` have the signatures and results of
`gru_fast.reference`; the work happens in `gru_fast._core`, one call for the
whole sequence with the GIL released.  This module owns the checks and every
allocation; the core allocates nothing and checks only that each array is one it
can read (an ndarray of the call's dtype, rank and layout), not its shape.
"""

import functools
import threading
from contextlib import contextmanager

import numpy as np

from . import _caches, _core, _workspace
from ._cache import check_cache, sealed_cache
from ._fastpath import fold_plain_biases
from ._packing import make_packing
from ._validation import as_float_array, check_flag, check_shape, validate_forward_args

# Rows of the input projection computed per GEMM when no cache is kept: the
# projection is done a chunk of steps at a time so that forward without a
# cache needs O(B*H) memory beyond its outputs, yet each GEMM stays large.
PROJECTION_CHUNK_ROWS = 256
# ... times LONG_CHUNKS when W_ih is more than W_IH_FAR_BUDGETS of the kernel's
# L2 budgets (half a core's L2): every chunk streams all of W_ih from L3 again
# (_projection_chunk_rows).
LONG_CHUNKS = 4
W_IH_FAR_BUDGETS = 4

# Whether backward's dW_ih = d_gi^T x on the packed kernel packs d_gi^T's row
# tiles a block at a time (_core.backward_sequence's weight_tiles): its tiles
# otherwise read d_gi across its rows, a new cache line 3H values from the
# last at every k.  None: where _core.weight_tiles_values says it pays (wide
# input pieces); True: whenever dW_ih is on the packed kernel and not on the
# narrow products; False: never (True and False for tests and benchmarks).
# The bits are the same either way.
WEIGHT_TILES = None

# Whether a chunk's x is packed into the kernel's row tiles before its
# projection (_core.forward_sequence's input_tiles): None follows
# _input_tiles_pay; True (every chunk of several steps) and False (never)
# are for tests and benchmarks.  The bits are the same either way.
INPUT_TILES = None

# Forward without a cache runs a large batch as blocks of rows, one core call
# each (the rows are independent sequences): every step of a call reads and
# writes about 14*H values per row (projections, gates, states), and once that
# outgrows the caches every step waits on memory: one call over B = 5000 rows
# ran at about half the speed of the same rows in blocks (bench/README.md,
# "Measurements behind the code").  A block's per-step data
# is sized to BLOCK_CACHE_SHARE of the CPU's level-2 cache, read from the
# machine (_caches.level2_cache_bytes), never below MIN_BLOCK_ROWS rows.
BLOCK_CACHE_SHARE = 1.0
MIN_BLOCK_ROWS = 64

def core_threads():
    """Threads a core call may use: OpenMP's count (threadpoolctl and OMP_NUM_THREADS set it).

    The core decides itself, while a call runs, whether handing work to its
    worker threads pays (see src/_parallel.h): it times steps with and
    without them and keeps the faster, so no threshold tuned on one CPU
    decides it here.  The results are bitwise the same for any count.

    Returns
    -------
    int
        At least 1.
    """
    return max(1, _core.max_threads())


_call_context = threading.local()  # a thread budget and stop flag for this thread's calls


@contextmanager
def thread_budget(n_threads, stop_flag=None):
    """Within the block, this thread's core calls use at most `n_threads` threads.

    Parameters
    ----------
    n_threads : int
        The most threads (the caller's included) each core call may use.
    stop_flag : ndarray of int32, shape (1,), optional
        The core calls of the block stop with KeyboardInterrupt once it holds
        a nonzero value (another thread's way to pass on Ctrl-C, which only
        the main thread receives).
    """
    previous = getattr(_call_context, "limit", None), getattr(_call_context, "stop_flag", None)
    _call_context.limit, _call_context.stop_flag = n_threads, stop_flag
    try:
        yield
    finally:
        _call_context.limit, _call_context.stop_flag = previous


def _threads_for_call():
    """`core_threads`, within this thread's `thread_budget`."""
    limit = getattr(_call_context, "limit", None)
    threads = core_threads()
    return threads if limit is None else max(1, min(threads, limit))


def _call_settings():
    """(`_threads_for_call()`, `_stop_flag()`) with one look at the thread's context."""
    context = _call_context.__dict__
    limit, flag = context.get("limit"), context.get("stop_flag")
    threads = core_threads()
    return (threads if limit is None else max(1, min(threads, limit)),
            _NEVER_STOP if flag is None else flag)


def _stop_flag():
    """The stop flag of this thread's `thread_budget`, or the core's 'never' flag."""
    flag = getattr(_call_context, "stop_flag", None)
    return _NEVER_STOP if flag is None else flag


_NEVER_STOP = np.zeros(1, dtype=np.int32)
_NEVER_STOP.flags.writeable = False


def _owned(array, caller_array):
    """`array`, copied if it may share memory with an array the caller holds."""
    if caller_array is not None and np.may_share_memory(array, caller_array):
        return _workspace.recycled_copy(array)
    return array


_NO_ROWS = np.empty(0, dtype=np.intp)  # the core's "identity" for out_rows and order
_NO_ROWS.flags.writeable = False


def fold_biases(bias_ih, bias_hh, hidden_size, reset_after, dtype):
    """Biases as the core adds them: (b_ih + b_hh where they add directly, b_hn).

    For reset_after=True, b_hn sits inside r ∘ (h W_hn^T + b_hn) and stays apart;
    for the classic variant, and without biases, the second array is zeros.
    Both are new arrays or views the core only reads.
    """
    if bias_ih is None:
        return np.zeros(3 * hidden_size, dtype=dtype), np.zeros(hidden_size, dtype=dtype)
    # The same sums in C for plain arrays: the three NumPy operations below take
    # 45-60 us when they run cold, right after another library (src/_fastpath.pyx).
    folded = fold_plain_biases(bias_ih, bias_hh, hidden_size, reset_after)
    if folded is not None:
        return folded
    if not reset_after:
        return bias_ih + bias_hh, np.zeros(hidden_size, dtype=dtype)
    recurrent_rz = 2 * hidden_size
    bias_gates = bias_ih.copy()
    bias_gates[:recurrent_rz] += bias_hh[:recurrent_rz]
    return bias_gates, bias_hh[recurrent_rz:]


def run_forward(x, h0, lengths, bias_gates, bias_hn, hidden_size, reset_after, reverse,
                keep_history, *, weights=None, packed=None, return_sequences=True,
                out_y=None):
    """Allocate the outputs and scratch of a forward pass and run the core on them.

    Arguments are already validated: x (T, B, I) (C-contiguous, or with any
    strides if the batch runs in blocks: see `input_for_run`), h0 (B, H) or
    None, lengths int64 or None, biases from `fold_biases`.  The weights come
    either as ``weights=(weight_ih, weight_hh)``, packed by the core during
    the call, or as ``packed=(packed_ih, packed_hh)`` from
    ``_core.pack_forward_weights`` (``weights`` may then give W_ih unpacked
    as ``(weight_ih, None)``, which the core's BLAS projection reads when
    forced: see ``_core._force_projection``).  With ``return_sequences=False`` no y is
    allocated nor written (the core gets a (0, H) array): memory beyond the
    input stays O(B*H).  Without `keep_history` a batch larger than
    `forward_block_rows` runs as blocks of rows, one core call each.  `out_y`
    (T, B, H), C-contiguous, is where y goes instead of a new array (blocks
    only; it is never split again).

    Returns
    -------
    y, h_n : ndarray
        (T, B, H) (None without `return_sequences`) and (B, H), owned by the caller.
    run : tuple or None
        (packing, x_packed, gates, h_prev), what a cache keeps; gates and
        h_prev are per-step history only when `keep_history`.  None when the
        batch ran in blocks.
    """
    seq_len, batch_size, input_size = x.shape
    dtype = bias_gates.dtype
    if out_y is None and runs_in_blocks(batch_size, hidden_size, input_size, dtype,
                                        keep_history):
        return _run_forward_in_blocks(
            x, h0, lengths, bias_gates, bias_hn, hidden_size, reset_after, reverse,
            forward_block_rows(hidden_size, input_size, dtype), weights=weights,
            packed=packed, return_sequences=return_sequences)
    x = _workspace.contiguous(x)  # the core reads x's rows in place (a no-op for the callers' arrays)
    packing = make_packing(lengths, seq_len, batch_size)

    x_rows = x.reshape(seq_len * batch_size, input_size)
    x_packed = x_rows if packing.is_identity else packing.pack(x_rows)
    if h0 is None:
        state = np.zeros((batch_size, hidden_size), dtype=dtype)
    else:
        state = packing.sort_rows(h0)

    if return_sequences:
        y = (_workspace.recycled_empty((seq_len, batch_size, hidden_size), dtype)
             if out_y is None else out_y)  # the core zeroes padding
        if packing.n_rows == 0:
            y.fill(0)  # every length is 0: the core returns at once
        y_rows = y.reshape(seq_len * batch_size, hidden_size)
    else:
        y = None
        y_rows = np.empty((0, hidden_size), dtype=dtype)  # the core writes no outputs
    tiles, specs = _forward_scratch_specs(batch_size, input_size, hidden_size, dtype,
                                          packing.n_rows, keep_history, packed is None,
                                          _scratch_tuning())
    scratch = _workspace.scratch_group(specs, dtype)
    input_preact, recurrent_preact, state_scratch = scratch[:3]
    if keep_history:  # kept by the cache
        gates = _workspace.recycled_empty((packing.n_rows, 4 * hidden_size), dtype)
        h_prev = _workspace.recycled_empty((packing.n_rows, hidden_size), dtype)
    else:
        gates, h_prev = scratch[3:5]
    input_tiles = scratch[-3 if packed is None else -1] if tiles else None
    weight_ih, weight_hh = (None, None) if weights is None else weights
    packed_ih, packed_hh = scratch[-2:] if packed is None else packed
    n_threads, stop_flag = _call_settings()

    _core.forward_sequence(
        x_packed, packing.batch_sizes, packing.offsets, packing.out_rows,
        _NO_ROWS if packing.is_identity else packing.order,
        weight_ih, weight_hh, packed_ih, packed_hh, bias_gates, bias_hn,
        state, state_scratch, y_rows,
        gates, h_prev, input_preact, recurrent_preact, reset_after, reverse, keep_history,
        n_threads, stop_flag, packed is None, input_tiles,
    )
    return y, packing.unsort_rows(state), (packing, x_packed, gates, h_prev)


def _scratch_tuning():
    """What `_forward_scratch_specs` reads besides its arguments (tests change these)."""
    return (PROJECTION_CHUNK_ROWS, LONG_CHUNKS, W_IH_FAR_BUDGETS, INPUT_TILES,
            _core.level2_budget())


@functools.lru_cache(maxsize=64)
def _forward_scratch_specs(batch_size, input_size, hidden_size, dtype, n_rows, keep_history,
                           pack_weights, tuning):
    """(tiles, specs) of a forward call: whether its chunks go into row tiles, and
    the (name, shape) of every scratch array it takes (`_workspace.scratch_group`).

    Kept per call shape (`tuning` is `_scratch_tuning()`, part of the key): worked
    out every call, these few lines took 10-16 us of a stream call right after
    another library ran (cold; /tmp probe of stop 36, Zen 4).
    """
    chunk_rows = _projection_chunk_rows(input_size, hidden_size, dtype)
    preact_rows = max(batch_size, min(chunk_rows, n_rows))
    tiles = _input_tiles_pay(preact_rows, batch_size, input_size, dtype)
    three_h = 3 * hidden_size
    # x W_ih^T of a chunk of steps, and h W_hh^T of one step; the second state buffer
    specs = (("input_preact", (preact_rows, three_h)), ("recurrent_preact", (batch_size, three_h)),
             ("state", (batch_size, hidden_size)))
    if not keep_history:  # this step's gates and previous state only
        specs += (("gates", (batch_size, 4 * hidden_size)), ("h_prev", (batch_size, hidden_size)))
    if tiles:
        specs += (("input_tiles", (preact_rows, input_size)),)
    if pack_weights:
        padded = _core.padded_to_panels(hidden_size)
        specs += (("packed_ih", (3 * padded * input_size,)),
                  ("packed_hh", (3 * padded * hidden_size,)))
    return tiles, specs


def _projection_chunk_rows(input_size, hidden_size, dtype):
    """Rows of x projected per chunk: PROJECTION_CHUNK_ROWS, or LONG_CHUNKS times it
    when W_ih (3H x I) is far beyond the kernel's L2 budget.

    Each chunk's product streams all of W_ih from L3 again; a small W_ih
    stays near the core, and then shorter chunks keep their preactivations
    in cache for the steps that read them. Measured on a Zen 3 (512 KiB L2,
    256 KiB budget; FrozenGRU forward float32, two threads, 256 against 1024
    rows, alternating in one process): W_ih 3 MiB ((50, 64, 512, 512) and
    (100, 32, 512, 512)) 1.06-1.08x faster with 1024 rows; 12 MiB ((25, 16,
    1024, 1024), 400 rows in all) 1.00x; 768 KiB ((50, 64, 256, 256)) 0.93x
    and medium's 384 KiB 0.95x (slower). The bound, W_IH_FAR_BUDGETS budgets,
    sits between those two groups in units of the machine's own L2.
    """
    weight_bytes = 3 * hidden_size * input_size * np.dtype(dtype).itemsize
    if weight_bytes > W_IH_FAR_BUDGETS * _core.level2_budget():
        return LONG_CHUNKS * PROJECTION_CHUNK_ROWS
    return PROJECTION_CHUNK_ROWS


def _input_tiles_pay(preact_rows, batch_size, input_size, dtype):
    """Whether a chunk's x goes into row tiles before its projection.

    Only for chunks of several steps (one step projects inside its step's
    phase) whose x exceeds the kernel's L2 budget: there each row tile reads
    its rows from L2 as that many separate streams, and packing (by the
    calling thread, once per chunk for every piece and gate) pays back.
    Measured on a Zen 3 (bench/README.md, "Row tiles"), forward on two
    threads, off / on: (50, 64, 512, 512) float64 1.04-1.07, (25, 16, 1024,
    1024) float64 1.02-1.03, float32 0.97-1.00 at both (neutral); where x
    fits (medium) the packing cost more than the product gained (0.96).
    """
    if preact_rows <= batch_size or INPUT_TILES is False:
        return False
    chunk_bytes = preact_rows * input_size * np.dtype(dtype).itemsize
    return INPUT_TILES is True or chunk_bytes > _core.level2_budget()


def runs_in_blocks(batch_size, hidden_size, input_size, dtype, keep_history=False):
    """Whether `run_forward` runs this batch as blocks of rows, one core call each.

    Never with a history kept (a cache), nor for MIN_BLOCK_ROWS rows or fewer.
    """
    return (not keep_history and batch_size > MIN_BLOCK_ROWS
            and batch_size > forward_block_rows(hidden_size, input_size, dtype))


def input_for_run(x, hidden_size, keep_history=False):
    """x (T, B, I) as `run_forward` reads it: C-contiguous, or x itself when each
    step's rows are (only the steps far apart) and the batch runs in blocks of rows.

    Each block copies its own rows of x into scratch anyway, so a batch chunk
    of a time-major array (what ``dask.array.from_array`` hands each task)
    needs no C-contiguous copy of all of it first: that copy took 1.5% of a
    chunk's forward (T = 100, 2000 rows, I = 16, H = 64, one thread; 1.014-1.015x
    the time of a C-contiguous chunk, 1.00 without it; Zen 4).  A batch-first
    input transposed (rows T * I apart) is still copied whole: gathering its
    rows block by block measured no faster (1.05-1.09x against 1.05).
    """
    itemsize = x.dtype.itemsize
    if (x.strides[2] == itemsize and x.strides[1] == x.shape[2] * itemsize
            and runs_in_blocks(x.shape[1], hidden_size, x.shape[2], x.dtype, keep_history)):
        return x
    return _workspace.contiguous(x)


def forward_block_rows(hidden_size, input_size, dtype):
    """Batch rows per core call of a forward pass without a cache.

    The rows whose per-step data (input and recurrent projections 3H each,
    gates 4H, two states and the previous state H each, x's I) fill
    BLOCK_CACHE_SHARE of the level-2 cache; at least MIN_BLOCK_ROWS.  The
    same with and without y (only written, once per step), so that
    ``return_sequences=False`` gives the final states of the full pass bit
    for bit.
    """
    values_per_row = 14 * hidden_size + input_size
    budget = BLOCK_CACHE_SHARE * _caches.level2_cache_bytes()
    return max(MIN_BLOCK_ROWS, int(budget // (values_per_row * np.dtype(dtype).itemsize)))


def _run_forward_in_blocks(x, h0, lengths, bias_gates, bias_hn, hidden_size, reset_after,
                           reverse, block_rows, *, weights, packed, return_sequences):
    """`run_forward` without a cache over blocks of at most `block_rows` rows.

    Each block is its own sequence batch: its x rows copied together, its
    h0 rows and lengths, its y written into the caller's y.  Rows never
    mix, so the results are those of one call over the whole batch up to
    rounding: a row's last bits depend on the size of the batch it runs in
    (the packed kernel's tail tiles), in blocks or not.  The blocks run one
    after the other (each on all the core's threads) or several at once
    (each on a share of them), whichever measured faster for this shape
    (`_concurrent.run_all`); the bits are the same either way.
    """
    from . import _concurrent  # imports this module

    seq_len, batch_size, input_size = x.shape
    dtype = bias_gates.dtype
    y = np.empty((seq_len, batch_size, hidden_size), dtype=dtype) if return_sequences else None
    h_n = np.empty((batch_size, hidden_size), dtype=dtype)
    n_blocks = -(-batch_size // block_rows)
    bounds = np.linspace(0, batch_size, n_blocks + 1).round().astype(int)  # even blocks

    def run_block(lo, hi):
        rows = hi - lo
        x_block = _workspace.scratch("x_block", (seq_len, rows, input_size), dtype)
        x_block[...] = x[:, lo:hi]
        y_block = (_workspace.scratch("y_block", (seq_len, rows, hidden_size), dtype)
                   if return_sequences else None)
        y_rows, h_rows, _ = run_forward(
            x_block, None if h0 is None else h0[lo:hi],
            None if lengths is None else lengths[lo:hi], bias_gates, bias_hn, hidden_size,
            reset_after, reverse, False, weights=weights, packed=packed,
            return_sequences=return_sequences, out_y=y_block)
        if return_sequences:
            y[:, lo:hi] = y_rows
        h_n[lo:hi] = h_rows

    calls = [lambda lo=lo, hi=hi: run_block(lo, hi)
             for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
    key = ("forward blocks", block_rows, seq_len, hidden_size, input_size, dtype.str,
           reset_after, return_sequences, lengths is None)
    _concurrent.run_all(calls, key, work=batch_size)
    return y, h_n, None


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                reset_after=False, lengths=None, reverse=False, return_cache=False,
                return_sequences=True):
    """Run one GRU layer in one direction over a whole sequence.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
        Time-major input, float32 or float64 (the weights' dtype).
    h0 : ndarray, shape (B, H), or None
        Initial state; None means zeros.
    weight_ih : ndarray, shape (3H, I)
        Input weights, gate rows ordered reset, update, candidate (r, z, n).
    weight_hh : ndarray, shape (3H, H)
        Recurrent weights, same gate order.  Its dtype is the call's dtype.
    bias_ih, bias_hh : ndarray, shape (3H,), or None
        Input and recurrent biases; both or neither.
    reset_after : bool, default False
        False: n = tanh(x W_in^T + b_in + (r ∘ h) W_hn^T + b_hn), the classic
        GRU.  True: n = tanh(x W_in^T + b_in + r ∘ (h W_hn^T + b_hn)), as in
        PyTorch, cuDNN and Keras' default.
    lengths : array_like of int, shape (B,), optional
        Valid steps per row, 0..T, any order.  Row b runs steps 0..len_b-1;
        y is zero beyond; h_n is the state after the row's last step.
    reverse : bool, default False
        Run each row from its last valid step down to step 0.
    return_cache : bool, default False
        Also return what `gru_backward` needs.
    return_sequences : bool, default True
        False: return only the final states; y is None and is never
        allocated, so memory beyond the input stays O(B*H).

    Returns
    -------
    y : ndarray, shape (T, B, H), or None
        The state after every step, zero at padded positions; None when
        ``return_sequences=False``.
    h_n : ndarray, shape (B, H)
        The final state of every row.
    cache : GRUCache
        Only with ``return_cache=True``.

    Raises
    ------
    TypeError
        For a dtype other than float32/float64, mixed dtypes, or non-boolean flags.
    ValueError
        For wrong ranks or shapes, one bias without the other, or lengths
        of the wrong size, not whole numbers, or outside 0..T.

    Notes
    -----
    Lists and tuples carry no dtype and are converted to the weights' dtype
    (to x's when the weights are lists).  Inf or NaN in h0, the weights or
    valid positions of x give Inf/NaN in the same places as
    `gru_fast.reference` (saturated gates are exactly 0 or 1), finite values
    elsewhere; values at padded positions of x never reach a result.
    """
    return_cache = check_flag(return_cache, "return_cache")
    return_sequences = check_flag(return_sequences, "return_sequences")
    args = validate_forward_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                                 reset_after, lengths, reverse)
    return forward_validated(args, return_cache, return_sequences,
                             callers=(x, weight_ih, weight_hh))


def forward_validated(args, return_cache, return_sequences, callers):
    """`gru_forward` once its arguments are checked: `args` is a `ForwardArgs`.

    For callers that have already checked everything `validate_forward_args`
    does (the layer checks x, h0, lengths and its params once per forward,
    not once per layer and direction): x, h0, the weights and biases
    C-contiguous of one float dtype and matching shapes, lengths int64 in
    0..T or None, flags bools.  `callers` are the caller's own (x, weight_ih,
    weight_hh): the cache copies what may share memory with them.
    """
    x, weight_ih, weight_hh = callers
    hidden_size = args.weight_hh.shape[1]
    bias_gates, bias_hn = fold_biases(args.bias_ih, args.bias_hh, hidden_size,
                                      args.reset_after, args.weight_hh.dtype)
    y, h_n, run = run_forward(args.x, args.h0, args.lengths, bias_gates, bias_hn,
                              hidden_size, args.reset_after, args.reverse, return_cache,
                              weights=(args.weight_ih, args.weight_hh),
                              return_sequences=return_sequences)
    if not return_cache:
        return y, h_n
    packing, x_packed, gates, h_prev = run
    cache = sealed_cache(
        x_packed=_owned(x_packed, x),
        gates=gates,
        h_prev=h_prev,
        weight_ih=_owned(args.weight_ih, weight_ih),
        weight_hh=_owned(args.weight_hh, weight_hh),
        packing=packing,
        hidden_size=hidden_size,
        reset_after=args.reset_after,
        reverse=args.reverse,
        has_bias=args.bias_ih is not None,
    )
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None, *, input_grad=True, _out=None):
    """Backpropagation through time for a `gru_forward` call.

    Parameters
    ----------
    cache : GRUCache
        From ``gru_forward(..., return_cache=True)``; it can be used again.
    dy : ndarray, shape (T, B, H), or None
        Gradient of the loss with respect to y; padded positions are ignored
        (whatever they hold, NaN included).  None means zeros (a loss on h_n
        only): nothing is allocated nor read for it.
    dh_n : ndarray, shape (B, H), or None
        Gradient with respect to h_n; None means zeros.
    input_grad : bool, default True
        False skips the gradient with respect to x (returned as None): the
        first layer of a network being trained needs none.
    _out : dict, optional
        Internal (`gru_fast.layer.GRU._backward`): arrays the core writes
        "weight_ih", "weight_hh" (and "bias_ih", "bias_hh" with biases) into,
        C-contiguous, writable, of the gradients' shapes and the cache's dtype,
        sharing no memory with the cache or each other; returned as the gradients.

    Returns
    -------
    dict
        Gradients keyed "x" (T, B, I), "h0" (B, H), "weight_ih" (3H, I),
        "weight_hh" (3H, H), "bias_ih" and "bias_hh" (3H,) or None when the
        forward pass had no bias.  "x" is zero at padded positions.

    Raises
    ------
    TypeError
        If `cache` is not a GRUCache or dy/dh_n have another dtype.
    ValueError
        If dy or dh_n do not have the shapes of the forward call, or the cache
        was not made by `gru_forward` or was changed since (see `check_cache`).
    """
    check_cache(cache)
    input_grad = check_flag(input_grad, "input_grad")
    packing = cache.packing
    seq_len, batch_size = packing.seq_len, packing.batch_size
    hidden_size = cache.hidden_size
    dtype = cache.dtype
    if dy is None:
        dy_rows = np.empty((0, hidden_size), dtype=dtype)  # the core reads no dy
    else:
        dy = as_float_array(dy, "dy", 3, dtype)
        check_shape(dy, (seq_len, batch_size, hidden_size), "dy",
                    "(T, B, H) of the forward call that made the cache")
        dy_rows = np.ascontiguousarray(dy).reshape(seq_len * batch_size, hidden_size)
    if dh_n is None:
        dh = np.zeros((batch_size, hidden_size), dtype=dtype)
    else:
        dh_n = as_float_array(dh_n, "dh_n", 2, dtype)
        check_shape(dh_n, (batch_size, hidden_size), "dh_n",
                    "(B, H) of the forward call that made the cache")
        dh = packing.sort_rows(dh_n)

    return run_backward(cache.x_packed, cache.packing, cache.weight_ih, cache.weight_hh,
                        cache.gates, cache.h_prev, dy_rows, dh, cache.reset_after,
                        cache.reverse, cache.has_bias, input_grad, out=_out)


def run_backward(x_packed, packing, weight_ih, weight_hh, gates, h_prev, dy_rows, dh,
                 reset_after, reverse, has_bias, input_grad, *, out=None):
    """Allocate the scratch and gradients of a backward pass and run the core on them.

    Arguments are what `run_forward` kept (``run``: packing, x_packed, gates,
    h_prev) and the weights it ran with, all unchanged since; `dy_rows` (N, H)
    in packed row order or (0, H) for zeros, `dh` (B, H) in the packing's
    sorted row order (the core overwrites it with dh0).  `out` as
    `gru_backward`'s ``_out``.

    Returns
    -------
    dict
        As `gru_backward`.
    """
    seq_len, batch_size = packing.seq_len, packing.batch_size
    hidden_size = weight_hh.shape[1]
    input_size = x_packed.shape[1]
    dtype = gates.dtype
    n_rows = packing.n_rows
    d_gi = _workspace.scratch("d_gi", (n_rows, 3 * hidden_size), dtype)
    # dW_hh summed step by step: d_gh of two steps and their rows of h_prev (and q) as
    # panels; over all rows after the time loop: d_gh and h_prev (and q) of every row
    hh_over_rows = _core.backward_hh_over_rows(packing.batch_sizes, batch_size, hidden_size,
                                               np.dtype(dtype).itemsize)
    padded_hidden = _core.padded_to_panels(hidden_size)
    d_gh = _workspace.scratch("d_gh", ((n_rows if hh_over_rows else 2 * batch_size)
                                       if reset_after else 1, 3 * hidden_size), dtype)
    dq = _workspace.scratch("dq", (1 if reset_after else batch_size, hidden_size), dtype)
    packed_hh = _workspace.scratch("packed_hh", (padded_hidden * 3 * hidden_size,), dtype)
    packed_rows = _workspace.scratch(
        "packed_rows", (((1 if reset_after else 2) * n_rows if hh_over_rows
                         else 4 * batch_size) * padded_hidden,), dtype)
    weight_tiles = None
    if _core.over_rows_on_blas(n_rows, input_size, hidden_size, np.dtype(dtype).itemsize):
        packed_ih = packed_x = np.empty(0, dtype=dtype)  # BLAS reads W_ih and x as they are
    else:  # dx and dW_ih on the packed kernel: W_ih and x as panels
        padded_input = _core.padded_to_panels(input_size)
        packed_ih = _workspace.scratch("packed_ih", (padded_input * 3 * hidden_size,), dtype)
        packed_x = _workspace.scratch("packed_x", (padded_input * n_rows,), dtype)
        tile_values = (0 if WEIGHT_TILES is False else _core.weight_tiles_values(
            n_rows, input_size, hidden_size, np.dtype(dtype).itemsize, WEIGHT_TILES is True))
        if tile_values:
            weight_tiles = _workspace.scratch("weight_tiles", (tile_values,), dtype)
    # the large returned gradients on recycled memory, like forward's outputs
    dx_packed = _workspace.recycled_empty((n_rows if input_grad else 0, input_size), dtype)
    if out is None:
        d_weight_ih = _workspace.recycled_empty(weight_ih.shape, dtype)
        d_weight_hh = _workspace.recycled_empty(weight_hh.shape, dtype)
    else:
        d_weight_ih, d_weight_hh = out["weight_ih"], out["weight_hh"]
    if out is not None and has_bias:
        d_bias_ih, d_bias_hh = out["bias_ih"], out["bias_hh"]  # the core zeroes them
    else:
        d_bias_ih = np.empty(3 * hidden_size, dtype=dtype)  # the core zeroes what it sums into
        d_bias_hh = np.empty(3 * hidden_size, dtype=dtype)

    _core.backward_sequence(
        x_packed, packing.batch_sizes, packing.offsets, packing.out_rows,
        weight_ih, weight_hh, gates, h_prev,
        dy_rows, dh, d_gi, d_gh, dq, packed_hh, packed_rows, packed_ih, packed_x, dx_packed,
        d_weight_ih,
        d_weight_hh, d_bias_ih, d_bias_hh, reset_after, reverse, has_bias,
        *_call_settings(), weight_tiles,
    )
    if not input_grad:
        dx = None
    elif packing.is_identity:
        dx = dx_packed.reshape(seq_len, batch_size, input_size)
    else:
        dx = packing.unpack(dx_packed, input_size, dtype)
    return {
        "x": dx,
        "h0": packing.unsort_rows(dh),
        "weight_ih": d_weight_ih,
        "weight_hh": d_weight_hh,
        "bias_ih": d_bias_ih if has_bias else None,
        "bias_hh": d_bias_hh if has_bias else None,
    }
