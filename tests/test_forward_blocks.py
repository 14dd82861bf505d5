"""Forward without a cache runs a large batch as blocks of rows (functional.run_forward).

The blocks are an implementation detail: results must be those of the NumPy
reference for every option (lengths with zeros, h0, reverse, both variants,
return_sequences), the final states of ``return_sequences=False`` those of the
full pass bit for bit, padding zero, inputs untouched.  The tests force tiny
blocks through the module's sizing constants, so that small problems split
into uneven blocks (the last one shorter).
"""

import numpy as np
import pytest

import gru_fast
from gru_fast import _caches, _core, functional, reference
from _helpers import assert_close, make_problem, random_layer


@pytest.fixture
def blocks_of_three(monkeypatch):
    """Every forward without a cache over more than 3 rows runs in blocks of 3 or fewer."""
    monkeypatch.setattr(functional, "BLOCK_CACHE_SHARE", 0.0)
    monkeypatch.setattr(functional, "MIN_BLOCK_ROWS", 3)
    assert functional.forward_block_rows(8, 3, np.float64) == 3


def _count_core_calls(monkeypatch):
    calls = []
    forward_sequence = _core.forward_sequence

    def counting(*args, **kwargs):
        calls.append(args[0].shape)  # x of the call
        return forward_sequence(*args, **kwargs)

    monkeypatch.setattr(_core, "forward_sequence", counting)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_blocks_match_the_reference(blocks_of_three, monkeypatch, dtype, reset_after, reverse,
                                    with_lengths):
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 10, 3, 8
    problem = make_problem(rng, T, B, I, H, dtype)
    lengths = np.array([6, 0, 3, 6, 1, 2, 6, 0, 5, 4]) if with_lengths else None
    kwargs = dict(reset_after=reset_after, lengths=lengths, reverse=reverse)
    saved = {name: None if value is None else value.copy() for name, value in problem.items()}
    calls = _count_core_calls(monkeypatch)

    y, h_n = gru_fast.gru_forward(**problem, **kwargs)
    y_lean, h_lean = gru_fast.gru_forward(**problem, return_sequences=False, **kwargs)
    y_ref, h_ref = reference.gru_forward(**problem, **kwargs)

    assert len(calls) == 2 * 4  # 10 rows in 4 blocks, for each of the two passes
    if not with_lengths:
        assert sorted(shape[0] // T for shape in calls[:4]) == [2, 2, 3, 3]
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_ref, "h_n")
    assert y_lean is None
    np.testing.assert_array_equal(h_lean, h_n)
    if with_lengths:
        padded = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[padded] == 0)
    for name, value in saved.items():
        if value is not None:
            np.testing.assert_array_equal(problem[name], value, err_msg=name)


def test_blocks_leave_the_cached_forward_whole(blocks_of_three, monkeypatch):
    """A forward that keeps a cache for backward is one call: its history spans the batch."""
    rng = np.random.default_rng(4)
    problem = make_problem(rng, 4, 10, 3, 8)
    calls = _count_core_calls(monkeypatch)
    _, h_n, cache = gru_fast.gru_forward(**problem, return_cache=True)
    assert len(calls) == 1
    _, h_ref = reference.gru_forward(**problem)
    assert_close(h_n, h_ref, "h_n")
    grads = gru_fast.gru_backward(cache, np.ones((4, 10, 8)))
    assert grads["x"].shape == (4, 10, 3)


@pytest.mark.parametrize("frozen", [False, True])
def test_blocks_in_stacked_bidirectional_layers(blocks_of_three, frozen):
    layer = random_layer(2, bidirectional=True, batch_first=True, reset_after=True,
                         dtype=np.float64, input_size=3, hidden_size=5)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((11, 4, 3))
    h0 = rng.standard_normal((4, 11, 5))
    lengths = rng.integers(0, 5, 11)
    model = layer.freeze() if frozen else layer
    y, h_n = model(x, h0, lengths)
    _, h_lean = model(x, h0, lengths, return_sequences=False)
    reference_layer = gru_fast.reference.GRU(3, 5, 2, batch_first=True, bidirectional=True,
                                             reset_after=True, dtype=np.float64)
    reference_layer.load_state_dict(layer.state_dict())
    y_ref, h_ref = reference_layer(x, h0, lengths)
    assert_close(y, y_ref, "y", kind="gradient")
    assert_close(h_n, h_ref, "h_n", kind="gradient")
    np.testing.assert_array_equal(h_lean, h_n)


def test_frozen_gru_blocks(blocks_of_three):
    rng = np.random.default_rng(6)
    problem = make_problem(rng, 5, 7, 3, 8, np.float32)
    frozen = gru_fast.FrozenGRU(problem["weight_ih"], problem["weight_hh"],
                                problem["bias_ih"], problem["bias_hh"], reset_after=True)
    y, h_n = frozen.forward(problem["x"], problem["h0"])
    y_ref, h_ref = reference.gru_forward(**problem, reset_after=True)
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_ref, "h_n")


def test_block_size_comes_from_the_level2_cache(monkeypatch):
    """Blocks hold the rows whose per-step data fits the L2 cache the machine reports."""
    assert _caches.level2_cache_bytes() >= 64 * 1024  # read from the OS, or the fallback
    monkeypatch.setattr(_caches, "level2_cache_bytes", lambda: 1 << 20)
    # 14 H + I values per row: (14 * 64 + 16) * 4 bytes = 3648 bytes -> 287 rows per MiB
    assert functional.forward_block_rows(64, 16, np.float32) == 287
    assert functional.forward_block_rows(64, 16, np.float64) == 143
    assert functional.forward_block_rows(4096, 16, np.float32) == functional.MIN_BLOCK_ROWS


@pytest.mark.parametrize("model_kind, reverse", [("FrozenGRU", False), ("FrozenGRU", True),
                                                 ("FrozenGRULayer", False), ("GRU", False)])
def test_a_batch_slice_runs_in_blocks_without_a_whole_copy(blocks_of_three, monkeypatch,
                                                           model_kind, reverse):
    """A batch chunk of a time-major array (what dask.array.from_array hands a task) is read
    block by block in place: same bits as its C-contiguous copy, the input untouched, and
    no copy of all of it (functional.input_for_run)."""
    rng = np.random.default_rng(7)
    T, I, H = 5, 3, 8
    whole = rng.standard_normal((T, 20, I)).astype(np.float32)
    saved = whole.copy()
    view = whole[:, 4:14]  # 10 rows, each step's rows contiguous, steps 20 rows apart
    assert not view.flags.c_contiguous
    layer = random_layer(1, bidirectional=False, batch_first=False, reset_after=True,
                         dtype=np.float32, input_size=I, hidden_size=H)
    if model_kind == "FrozenGRU":
        params = layer.params
        frozen = gru_fast.FrozenGRU(params["weight_ih_l0"], params["weight_hh_l0"],
                                    params["bias_ih_l0"], params["bias_hh_l0"],
                                    reset_after=True)

        def run(x, **kwargs):
            return frozen(x, reverse=reverse, **kwargs)
    else:
        model = layer.freeze() if model_kind == "FrozenGRULayer" else layer

        def run(x, **kwargs):
            y, h_n = model(x, **kwargs)
            return y, h_n[0]

    copies = []
    recycled_copy = functional._workspace.recycled_copy

    def counting(array):  # every copy `_workspace.contiguous` makes
        copies.append(array.shape)
        return recycled_copy(array)

    monkeypatch.setattr(functional._workspace, "recycled_copy", counting)
    assert functional.input_for_run(view, H) is view
    y, h_n = run(view)
    _, h_lean = run(view, return_sequences=False)
    assert copies == []
    y_ref, h_ref = run(np.ascontiguousarray(view))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(h_n, h_ref)
    np.testing.assert_array_equal(h_lean, h_ref)
    np.testing.assert_array_equal(whole, saved)
    # with a cache kept (one core call over the whole batch) it is copied
    assert functional.input_for_run(view, H, keep_history=True) is not view
    # a batch-first input transposed (rows T * I apart) is copied whole
    batch_first = np.ascontiguousarray(view.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert functional.input_for_run(batch_first, H) is not batch_first
