"""Memory of gru_forward without a cache: what NumPy allocates beyond y and h_n."""

import gc
import tracemalloc

import numpy as np
from benchmarks.common import make_inputs

from .tasks import GROWTH_SHAPES, MAX_GROWTH_PER_STEP, SHAPES


def forward_extra_bytes(shape, dtype, reset_after):
    """Bytes NumPy allocates inside gru_forward (no cache) beyond y and h_n.

    tracemalloc sees NumPy's data buffers (NumPy reports them to it); the compiled core
    allocates nothing itself.  Returns (peak bytes during the call, output bytes).
    """
    import gru_fast
    x, h0, weights, _ = make_inputs(shape, dtype)
    gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after)  # warm caches
    # gru_fast keeps its scratch between calls (gru_fast._workspace); free it so
    # that the measured call allocates, and counts, all of it.
    workspace = getattr(gru_fast, "_workspace", None)
    if workspace is not None:
        workspace.release()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        y, h_n = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, y.nbytes + h_n.nbytes


def _growth(shape, reset_after):
    """Extra bytes at 4T and 8T steps (float32) and the growth per step between them."""
    seq_len, batch_size, input_size, hidden_size = shape
    row = {}
    for factor in (4, 8):
        longer = (factor * seq_len, batch_size, input_size, hidden_size)
        peak, outputs = forward_extra_bytes(longer, "float32", reset_after)
        row[f"extra_bytes_{factor}T"] = peak - outputs
    row["growth_per_step"] = (row["extra_bytes_8T"] - row["extra_bytes_4T"]) / (4 * seq_len)
    row["grows_with_T"] = row["growth_per_step"] > MAX_GROWTH_PER_STEP
    return row


def memory_report(shape_names):
    """Extra bytes of forward without cache, per shape/dtype/variant, and the cache size.

    ``extra_bytes_4T`` / ``extra_bytes_8T``: the same at 4x and 8x the sequence length
    (float32, GROWTH_SHAPES); O(B*H) memory means these two are equal (the input
    projection is done a bounded chunk of steps at a time, so short sequences may use
    less), up to MAX_GROWTH_PER_STEP bytes per step for per-step scalars.
    """
    import gru_fast
    rows = []
    for name in shape_names:
        shape = SHAPES[name]
        _, batch_size, _, hidden_size = shape
        for dtype in ("float32", "float64"):
            itemsize = np.dtype(dtype).itemsize
            for reset_after in (False, True):
                peak, outputs = forward_extra_bytes(shape, dtype, reset_after)
                row = dict(shape=name, dtype=dtype, reset_after=reset_after,
                           peak_bytes=peak, output_bytes=outputs, extra_bytes=peak - outputs,
                           extra_in_BH=(peak - outputs) / (batch_size * hidden_size * itemsize))
                if dtype == "float32" and name in GROWTH_SHAPES:
                    row.update(_growth(shape, reset_after))
                x, h0, weights, _ = make_inputs(shape, dtype)
                cache = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                             return_cache=True)[2]
                row["cache_bytes"] = int(cache.nbytes)
                rows.append(row)
    return rows
