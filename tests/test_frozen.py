"""FrozenGRU (weights packed once) against the NumPy reference and gru_forward."""

import pickle

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, _workspace, reference

from _helpers import assert_close, make_weights, run_in_threads

THREADS = [1, 2, 3]


@pytest.fixture(autouse=True, params=THREADS, ids=[f"{n}_threads" for n in THREADS])
def core_threads(request, monkeypatch):
    """Every test on one, two and three threads of the core (the packed layout must not care)."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: request.param)
    _core._force_threads(True)  # every phase handed to the workers, however small
    yield request.param
    _core._force_threads(None)


# (T, B, I, H): one panel, a partial panel, several panels with a partial
# last one (three threads then own one each), and a batch over the 8-row tiles.
SHAPES = [(5, 3, 7, 11), (4, 1, 5, 33), (6, 13, 40, 70), (3, 19, 65, 96)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_matches_reference_and_gru_forward(dtype, reset_after, bias, shape):
    seq_len, batch_size, input_size, hidden_size = shape
    rng = np.random.default_rng(sum(shape) + 7 * reset_after + 3 * bias)
    weights = make_weights(rng, input_size, hidden_size, dtype, bias)
    frozen = gru_fast.FrozenGRU(**weights, reset_after=reset_after)
    x = rng.standard_normal(shape[:3]).astype(dtype)
    h0 = rng.standard_normal((batch_size, hidden_size)).astype(dtype)
    lengths = rng.integers(0, seq_len + 1, size=batch_size)
    for options in ({}, {"lengths": lengths}, {"lengths": lengths, "reverse": True}):
        for state in (None, h0):
            y, h_n = frozen(x, state, **options)
            y_ref, h_n_ref = reference.gru_forward(x, state, **weights,
                                                   reset_after=reset_after, **options)
            assert_close(y, y_ref, f"y {options}")
            assert_close(h_n, h_n_ref, f"h_n {options}")
            # Same packed kernel, same order of sums: the very same numbers.
            y_fast, h_n_fast = gru_fast.gru_forward(x, state, **weights,
                                                    reset_after=reset_after, **options)
            np.testing.assert_array_equal(y, y_fast)
            np.testing.assert_array_equal(h_n, h_n_fast)


@pytest.mark.parametrize("reset_after", [False, True])
def test_step_by_step_equals_the_sequence(reset_after):
    rng = np.random.default_rng(5)
    weights = make_weights(rng, 6, 40, np.float64)
    frozen = gru_fast.FrozenGRU(**weights, reset_after=reset_after)
    x = rng.standard_normal((7, 3, 6))
    y_ref, h_n_ref = reference.gru_forward(x, None, **weights, reset_after=reset_after)
    h = None
    for t in range(x.shape[0]):
        h = frozen.step(x[t], h)
        assert_close(h, y_ref[t], f"step {t}")
    assert_close(h, h_n_ref, "h_n")


def test_weights_are_a_snapshot_and_inputs_are_not_modified():
    rng = np.random.default_rng(8)
    weights = make_weights(rng, 5, 33, np.float32)
    originals = {name: array.copy() for name, array in weights.items()}
    frozen = gru_fast.FrozenGRU(**weights, reset_after=True)
    x = rng.standard_normal((4, 2, 5)).astype(np.float32)
    h0 = rng.standard_normal((2, 33)).astype(np.float32)
    x_copy, h0_copy = x.copy(), h0.copy()
    y_before, h_before = frozen(x, h0)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(h0, h0_copy)
    for name, array in weights.items():
        np.testing.assert_array_equal(array, originals[name], err_msg=name)
        array *= 3  # the caller changes its weights in place
    y_after, h_after = frozen(x, h0)
    np.testing.assert_array_equal(y_after, y_before)
    np.testing.assert_array_equal(h_after, h_before)
    # ... and gru_forward, which packs on every call, does see the change.
    y_changed, _ = gru_fast.gru_forward(x, h0, **weights, reset_after=True)
    assert not np.allclose(y_changed, y_before)


def test_results_are_owned_by_the_caller():
    rng = np.random.default_rng(9)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 4, 32, np.float32))
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y1, h1 = frozen(x)
    y1_copy, h1_copy = y1.copy(), h1.copy()
    frozen(2 * x)  # reuses the scratch of the first call
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(h1, h1_copy)
    assert not np.shares_memory(y1, h1)


def test_concurrent_calls_from_threads_agree():
    rng = np.random.default_rng(10)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 16, 64, np.float64), reset_after=True)
    inputs = [rng.standard_normal((20, 8, 16)) for _ in range(4)]
    expected = [frozen(x)[0] for x in inputs]
    results = [None] * len(inputs)

    def work(index):
        for _ in range(5):
            results[index] = frozen(inputs[index])[0]

    run_in_threads(work, len(inputs))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_packed_weights_and_scratch_start_on_a_cache_line():
    rng = np.random.default_rng(11)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 3, 5, np.float32))
    assert frozen._packed_ih.ctypes.data % _workspace.ALIGNMENT == 0
    assert frozen._packed_hh.ctypes.data % _workspace.ALIGNMENT == 0
    for size in (1, 7, 1000, 100_003):
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            array = _workspace.aligned_empty(size, dtype)
            assert array.shape == (size,) and array.dtype == dtype
            assert array.ctypes.data % _workspace.ALIGNMENT == 0
            scratch = _workspace.scratch(f"test_{size}", (size,), dtype)
            assert scratch.ctypes.data % _workspace.ALIGNMENT == 0


def test_properties_and_nbytes():
    rng = np.random.default_rng(12)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 3, 40, np.float64), reset_after=True)
    assert (frozen.input_size, frozen.hidden_size) == (3, 40)
    assert frozen.dtype == np.float64 and frozen.reset_after is True
    width = gru_fast._core.PANEL_WIDTH  # 32 with AVX-512, 16 otherwise
    padded = -(-40 // width) * width  # 40 hidden units in whole panels
    # packed W_ih and W_hh, b_ih + b_hh folded (3H) and b_hn (H)
    assert frozen.nbytes == 8 * (3 * padded * (3 + 40) + 3 * 40 + 40)
    assert "hidden_size=40" in repr(frozen)


def test_empty_sequences_and_batches():
    rng = np.random.default_rng(13)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 3, 8, np.float32))
    for shape in ((0, 2, 3), (4, 0, 3)):
        y, h_n = frozen(np.zeros(shape, dtype=np.float32))
        assert y.shape == shape[:2] + (8,) and h_n.shape == (shape[1], 8)
    h0 = rng.standard_normal((2, 8)).astype(np.float32)
    _, h_n = frozen(np.zeros((0, 2, 3), dtype=np.float32), h0)
    np.testing.assert_array_equal(h_n, h0)


GOOD = {"weight_ih": np.zeros((6, 3), np.float32), "weight_hh": np.zeros((6, 2), np.float32)}


@pytest.mark.parametrize("changes, error, match", [
    ({"weight_hh": np.zeros((5, 2), np.float32)}, ValueError, "weight_hh"),
    ({"weight_ih": np.zeros((6, 3), np.float64)}, TypeError, "weight_ih"),
    ({"weight_ih": np.zeros((6, 0), np.float32)}, ValueError, "weight_ih"),
    ({"weight_ih": np.zeros((4, 3), np.float32)}, ValueError, "weight_ih"),
    ({"weight_hh": np.zeros((6, 2), np.int32)}, TypeError, "weight_hh"),
    ({"bias_ih": np.zeros(6, np.float32)}, ValueError, "bias_ih and bias_hh"),
    ({"bias_ih": np.zeros(5, np.float32), "bias_hh": np.zeros(6, np.float32)}, ValueError,
     "bias_ih"),
    ({"reset_after": 1}, TypeError, "reset_after"),
])
def test_bad_weights_raise(changes, error, match):
    with pytest.raises(error, match=match):
        gru_fast.FrozenGRU(**{**GOOD, **changes})


@pytest.mark.parametrize("call, error, match", [
    (lambda f: f(np.zeros((2, 1, 4), np.float32)), ValueError, "x must have shape"),
    (lambda f: f(np.zeros((2, 3), np.float32)), ValueError, "x must be 3-D"),
    (lambda f: f(np.zeros((2, 1, 3), np.float64)), TypeError, "x has dtype float64"),
    (lambda f: f(np.zeros((2, 1, 3), np.float32), np.zeros((2, 2), np.float32)), ValueError,
     "h0 must have shape"),
    (lambda f: f(np.zeros((2, 1, 3), np.float32), lengths=[3]), ValueError, "lengths"),
    (lambda f: f(np.zeros((2, 1, 3), np.float32), reverse="yes"), TypeError, "reverse"),
    (lambda f: f.step(np.zeros((1, 1, 3), np.float32)), ValueError, "x_t must be 2-D"),
    (lambda f: f.step(np.zeros((1, 4), np.float32)), ValueError, "x_t must have shape"),
    (lambda f: f.step(np.zeros((1, 3), np.float32), np.zeros((2, 2), np.float32)), ValueError,
     "h must have shape"),
    (lambda f: f.step(np.zeros((1, 3), np.float32), np.zeros((1, 2), np.float64)), TypeError,
     "h has dtype"),
])
def test_bad_calls_raise(call, error, match):
    with pytest.raises(error, match=match):
        call(gru_fast.FrozenGRU(**GOOD))


def test_pickle_round_trip_keeps_results_and_alignment():
    rng = np.random.default_rng(14)
    frozen = gru_fast.FrozenGRU(**make_weights(rng, 5, 40, np.float32), reset_after=True)
    copy = pickle.loads(pickle.dumps(frozen))
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(copy(x)[0], frozen(x)[0])
    assert copy._packed_ih.ctypes.data % _workspace.ALIGNMENT == 0
    assert copy._packed_hh.ctypes.data % _workspace.ALIGNMENT == 0
    layer = gru_fast.GRU(5, 40, 2, bidirectional=True, seed=15).freeze()
    layer_copy = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(layer_copy(x)[0], layer(x)[0])
    assert not any(value.flags.writeable for value in layer_copy.params.values())
