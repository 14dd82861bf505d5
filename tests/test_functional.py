"""The compiled fast path (gru_fast.gru_forward/gru_backward) against the NumPy reference."""

import multiprocessing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gru_fast
from gru_fast import _core
from gru_fast import reference

from _helpers import GRAD_NAMES, assert_close, make_problem, run_in_threads


# The real thread choice, before the fixture below replaces it in every test.
real_core_threads = gru_fast.functional.core_threads
CORE_THREADS = {"one_thread": 1, "two_threads": 2, "three_threads": 3}


@pytest.fixture(autouse=True, params=list(CORE_THREADS))
def core_threads(request, monkeypatch):
    """Run every test on one, two and three threads of the core, whatever the shape.

    Every phase is handed to the workers (however small), and three threads
    on these small shapes leave some without pieces to claim.  The core's
    scratch is reused between calls (gru_fast._workspace), so tests that run
    after one another also check that nothing stale is read from it.
    """
    n_threads = CORE_THREADS[request.param]
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: n_threads)
    _core._force_threads(True)  # every phase handed to the workers, however small
    yield n_threads
    _core._force_threads(None)


def run_both(problem, dtype, rng, **options):
    """Forward and backward on both paths; assert everything agrees."""
    y, h_n, cache = gru_fast.gru_forward(**problem, **options, return_cache=True)
    y_ref, h_n_ref, cache_ref = reference.gru_forward(**problem, **options, return_cache=True)
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_n_ref, "h_n")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(h_n.shape).astype(dtype)
    grads = gru_fast.gru_backward(cache, dy, dh_n)
    grads_ref = reference.gru_backward(cache_ref, dy, dh_n)
    assert set(grads) == set(GRAD_NAMES)
    for name in GRAD_NAMES:
        if grads_ref[name] is None:
            assert grads[name] is None, name
        else:
            assert_close(grads[name], grads_ref[name], "d" + name, kind="gradient")
    return y, h_n, grads


LENGTH_CASES = {
    "none": None,
    "unsorted_with_0_and_T": [3, 0, 6, 1, 6],
    "all_T": [6, 6, 6, 6, 6],
    "all_0": [0, 0, 0, 0, 0],
    "sorted": [6, 4, 4, 2, 1],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("lengths", list(LENGTH_CASES), ids=list(LENGTH_CASES))
def test_matches_reference(dtype, reset_after, reverse, bias, with_h0, lengths):
    rng = np.random.default_rng(hash((reset_after, reverse, bias, with_h0, lengths)) % 2**32)
    problem = make_problem(rng, 6, 5, 7, 11, dtype, bias=bias, with_h0=with_h0)
    run_both(problem, dtype, rng, reset_after=reset_after, reverse=reverse,
             lengths=LENGTH_CASES[lengths])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 2, 5), (9, 1, 4, 3), (4, 2, 1, 1),
                                   (3, 17, 13, 33), (2, 3, 70, 9), (5, 1, 3, 40), (4, 6, 2, 45), (3, 5, 130, 140)])
@pytest.mark.parametrize("reset_after", [False, True])
def test_edge_shapes(dtype, shape, reset_after):
    rng = np.random.default_rng(sum(shape))
    problem = make_problem(rng, *shape, dtype)
    run_both(problem, dtype, rng, reset_after=reset_after)
    lengths = rng.integers(0, shape[0] + 1, size=shape[1])
    run_both(problem, dtype, rng, reset_after=reset_after, lengths=lengths, reverse=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    seq_len=st.integers(1, 7), batch_size=st.integers(1, 6), input_size=st.integers(1, 9),
    hidden_size=st.integers(1, 10), reset_after=st.booleans(), reverse=st.booleans(),
    use_lengths=st.booleans(), seed=st.integers(0, 2**31),
)
def test_random_shapes_float64(seq_len, batch_size, input_size, hidden_size, reset_after,
                               reverse, use_lengths, seed):
    rng = np.random.default_rng(seed)
    problem = make_problem(rng, seq_len, batch_size, input_size, hidden_size, np.float64)
    lengths = rng.integers(0, seq_len + 1, size=batch_size) if use_lengths else None
    run_both(problem, np.float64, rng, reset_after=reset_after, reverse=reverse,
             lengths=lengths)


# Shapes over several panels (_core.PANEL_WIDTH columns: 32 with AVX-512, 16
# otherwise), for every tile of the packed kernel: B = 19 and 13 leave 3 and 5
# rows after the 8-row tiles (float) and 3 and 1 after 4-row tiles (double); H
# and I that are not multiples of the panel width leave partial panels; I = 150,
# 3H > 128 and N = T*B > 256 cross the blocks of k; three threads on H = 70
# (3 panels of 32) each own one.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 19, 65, 70), (20, 13, 150, 33), (3, 9, 31, 96)])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_shapes_over_several_panels(dtype, shape, reset_after, reverse, use_lengths):
    rng = np.random.default_rng(sum(shape) + reverse)
    problem = make_problem(rng, *shape, dtype)
    lengths = rng.integers(0, shape[0] + 1, size=shape[1]) if use_lengths else None
    options = dict(reset_after=reset_after, reverse=reverse, lengths=lengths)
    y, h_n, _ = run_both(problem, dtype, rng, **options)
    # Without a cache the projection runs in chunks (N > 256 rows here).
    y_alone, h_n_alone = gru_fast.gru_forward(**problem, **options)
    assert_close(y_alone, y, "y without cache")
    assert_close(h_n_alone, h_n, "h_n without cache")


# Every row count a step can have, up to two full tiles and a remainder, over
# H = 150 (five panels, the last partial): rows 4 to 7 go several panels at a
# time (three, then two, then one), the rest one panel at a time.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", range(1, 18))
def test_every_row_count_over_several_panels(dtype, batch_size):
    rng = np.random.default_rng(batch_size)
    problem = make_problem(rng, 3, batch_size, 20, 150, dtype)
    run_both(problem, dtype, rng, reset_after=True)


@pytest.mark.parametrize("shape", [(0, 3, 2, 4), (4, 0, 2, 4), (0, 0, 2, 4)])
@pytest.mark.parametrize("reset_after", [False, True])
def test_empty_sequences_and_batches(shape, reset_after):
    """T = 0 returns h0 unchanged; B = 0 returns empty arrays; gradients follow."""
    rng = np.random.default_rng(sum(shape))
    problem = make_problem(rng, *shape, np.float64)
    y, h_n, grads = run_both(problem, np.float64, rng, reset_after=reset_after)
    assert y.shape == shape[:2] + (shape[3],)
    np.testing.assert_array_equal(h_n, problem["h0"])
    assert not np.shares_memory(h_n, problem["h0"])
    assert np.all(grads["weight_ih"] == 0) and np.all(grads["weight_hh"] == 0)


def test_chunked_projection_spans_many_chunks():
    """More packed rows than one projection chunk: chunk boundaries in both directions."""
    rng = np.random.default_rng(7)
    seq_len, batch_size = 40, 13  # 520 rows > PROJECTION_CHUNK_ROWS (256)
    assert seq_len * batch_size > 2 * gru_fast.functional.PROJECTION_CHUNK_ROWS
    problem = make_problem(rng, seq_len, batch_size, 5, 6, np.float64)
    lengths = rng.integers(0, seq_len + 1, size=batch_size)
    for reverse in (False, True):
        for reset_after in (False, True):
            _uncached_equals_cached(problem, rng, reset_after=reset_after, reverse=reverse,
                                    lengths=lengths)


def _uncached_equals_cached(problem, rng, **options):
    """`run_both` (both paths against the reference), then the forward without a cache:
    the same y bit for bit. Returns that y."""
    y_cached, _, _ = run_both(problem, np.float64, rng, **options)
    y, _ = gru_fast.gru_forward(**problem, **options)
    np.testing.assert_array_equal(y, y_cached)
    return y


def test_long_chunks_only_where_weight_ih_is_far_beyond_the_level2_budget():
    functional = gru_fast.functional
    budget = gru_fast._core.level2_budget()
    far = functional.W_IH_FAR_BUDGETS * budget // (3 * 4) // 64 + 1  # W_ih (3 * 64, I) just past
    assert functional._projection_chunk_rows(far, 64, np.float32) == (
        functional.LONG_CHUNKS * functional.PROJECTION_CHUNK_ROWS)
    assert functional._projection_chunk_rows(far // 2, 64, np.float32) == (
        functional.PROJECTION_CHUNK_ROWS)
    assert functional._projection_chunk_rows(far // 2 + 1, 64, np.float64) == (
        functional.LONG_CHUNKS * functional.PROJECTION_CHUNK_ROWS)


@pytest.mark.parametrize("reset_after", [False, True])
def test_long_chunks_match_the_reference(monkeypatch, reset_after):
    """Long chunks forced on a small problem (520 rows, chunks of 160): right, and the
    cached and uncached passes agree bit for bit."""
    functional = gru_fast.functional
    monkeypatch.setattr(functional, "PROJECTION_CHUNK_ROWS", 40)
    monkeypatch.setattr(functional, "W_IH_FAR_BUDGETS", 0)
    assert functional._projection_chunk_rows(5, 6, np.float64) == 40 * functional.LONG_CHUNKS
    rng = np.random.default_rng(17)
    problem = make_problem(rng, 40, 13, 5, 6, np.float64)
    lengths = rng.integers(0, 41, size=13)
    for reverse in (False, True):
        y = _uncached_equals_cached(problem, rng, reset_after=reset_after, reverse=reverse,
                                    lengths=lengths)
        y_ref, _ = reference.gru_forward(**problem, reset_after=reset_after, reverse=reverse,
                                         lengths=lengths)
        assert_close(y, y_ref, "y")


@pytest.mark.parametrize("reset_after", [False, True])
def test_without_cache_equals_with_cache(reset_after):
    rng = np.random.default_rng(3)
    problem = make_problem(rng, 8, 4, 3, 5, np.float32)
    lengths = [8, 2, 0, 5]
    y, h_n = gru_fast.gru_forward(**problem, reset_after=reset_after, lengths=lengths)
    y_c, h_n_c, _ = gru_fast.gru_forward(**problem, reset_after=reset_after, lengths=lengths,
                                         return_cache=True)
    np.testing.assert_array_equal(y, y_c)
    np.testing.assert_array_equal(h_n, h_n_c)


def test_padding_is_zero_and_padded_dy_is_ignored():
    rng = np.random.default_rng(4)
    problem = make_problem(rng, 5, 3, 2, 4, np.float64)
    lengths = np.array([2, 5, 0])
    y, h_n, cache = gru_fast.gru_forward(**problem, lengths=lengths, return_cache=True)
    padded = np.arange(5)[:, None] >= lengths[None, :]
    assert np.all(y[padded] == 0)
    assert np.all(y[~padded] != 0)
    np.testing.assert_array_equal(h_n[2], problem["h0"][2])
    dy = rng.standard_normal(y.shape)
    grads = gru_fast.gru_backward(cache, dy)
    dy_noisy = dy.copy()
    dy_noisy[padded] = np.nan  # never read
    grads_noisy = gru_fast.gru_backward(cache, dy_noisy)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(grads[name], grads_noisy[name])
    assert np.all(grads["x"][padded] == 0)


def test_nan_in_padded_input_does_not_leak():
    rng = np.random.default_rng(5)
    problem = make_problem(rng, 4, 2, 3, 3, np.float64)
    lengths = [4, 1]
    clean = run_both(problem, np.float64, rng, lengths=lengths)
    problem["x"][1:, 1] = np.nan
    y, h_n, cache = gru_fast.gru_forward(**problem, lengths=lengths, return_cache=True)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(h_n))
    grads = gru_fast.gru_backward(cache, np.ones_like(y))
    for name in GRAD_NAMES:
        assert np.all(np.isfinite(grads[name])), name
    np.testing.assert_array_equal(y, clean[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_are_not_modified_and_outputs_are_owned(dtype):
    rng = np.random.default_rng(6)
    problem = make_problem(rng, 5, 3, 4, 6, dtype)
    before = {name: array.copy() for name, array in problem.items()}
    lengths = np.array([5, 3, 0])
    lengths_before = lengths.copy()
    y, h_n, cache = gru_fast.gru_forward(**problem, lengths=lengths, return_cache=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(h_n.shape).astype(dtype)
    dy_before, dh_n_before = dy.copy(), dh_n.copy()
    grads = gru_fast.gru_backward(cache, dy, dh_n)
    for name, array in problem.items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    np.testing.assert_array_equal(lengths, lengths_before)
    np.testing.assert_array_equal(dy, dy_before)
    np.testing.assert_array_equal(dh_n, dh_n_before)
    outputs = [y, h_n] + [g for g in grads.values() if g is not None]
    for output in outputs:
        assert output.dtype == dtype
        for array in list(problem.values()) + [dy, dh_n]:
            assert not np.shares_memory(output, array)


def test_cache_is_independent_of_caller_arrays_and_reusable():
    rng = np.random.default_rng(8)
    problem = make_problem(rng, 4, 3, 2, 5, np.float64)
    y, _, cache = gru_fast.gru_forward(**problem, return_cache=True)
    dy = rng.standard_normal(y.shape)
    first = gru_fast.gru_backward(cache, dy)
    for array in problem.values():
        array[...] = 123.0  # the caller reuses its buffers after the forward pass
    y[...] = -1.0
    second = gru_fast.gru_backward(cache, dy)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(first[name], second[name])


def test_non_contiguous_inputs_are_accepted():
    rng = np.random.default_rng(9)
    problem = make_problem(rng, 5, 4, 3, 6, np.float64)
    strided = {
        "x": np.asfortranarray(problem["x"]),
        "h0": np.asfortranarray(problem["h0"]),
        "weight_ih": np.asfortranarray(problem["weight_ih"]),
        "weight_hh": np.repeat(problem["weight_hh"], 2, axis=1)[:, ::2],
        "bias_ih": np.repeat(problem["bias_ih"], 2)[::2],
        "bias_hh": problem["bias_hh"],
    }
    assert not strided["weight_hh"].flags.c_contiguous
    y, h_n = gru_fast.gru_forward(**strided, reset_after=True)
    y_ref, h_n_ref = reference.gru_forward(**problem, reset_after=True)
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_n_ref, "h_n")


def test_cache_nbytes_matches_documented_formula():
    rng = np.random.default_rng(10)
    seq_len, batch_size, input_size, hidden_size = 6, 4, 5, 7
    for dtype in (np.float32, np.float64):
        problem = make_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype)
        for lengths in (None, [6, 2, 0, 3]):
            n_rows = seq_len * batch_size if lengths is None else sum(lengths)
            _, _, cache = gru_fast.gru_forward(**problem, lengths=lengths, return_cache=True)
            itemsize = np.dtype(dtype).itemsize
            expected = itemsize * (n_rows * (input_size + 5 * hidden_size)
                                   + 3 * hidden_size * (input_size + hidden_size))
            assert cache.nbytes == expected


def test_concurrent_calls_from_threads_agree():
    rng = np.random.default_rng(11)
    problems = [make_problem(rng, 20, 8, 16, 32, np.float64) for _ in range(4)]
    expected = [gru_fast.gru_forward(**p, reset_after=True)[0] for p in problems]
    results = [None] * len(problems)

    dy = rng.standard_normal((20, 8, 32))
    expected_grads = [gru_fast.gru_backward(
        gru_fast.gru_forward(**p, reset_after=True, return_cache=True)[2], dy) for p in problems]
    grads = [None] * len(problems)

    def work(index):
        for _ in range(5):
            results[index] = gru_fast.gru_forward(**problems[index], reset_after=True)[0]
            cache = gru_fast.gru_forward(**problems[index], reset_after=True, return_cache=True)[2]
            grads[index] = gru_fast.gru_backward(cache, dy)

    run_in_threads(work, len(problems))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(grads, expected_grads):
        for name in GRAD_NAMES:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_later_calls_leave_earlier_results_alone():
    """The core's scratch is reused between calls; nothing returned or cached may share it."""
    rng = np.random.default_rng(13)
    first, second = (make_problem(rng, 7, 5, 9, 40, np.float64) for _ in range(2))
    y, h_n, cache = gru_fast.gru_forward(**first, reset_after=True, return_cache=True)
    y_alone, h_n_alone = gru_fast.gru_forward(**first, reset_after=True)
    dy = rng.standard_normal(y.shape)
    grads = gru_fast.gru_backward(cache, dy)
    kept = [a.copy() for a in (y, h_n, y_alone, h_n_alone, *grads.values())]
    _, _, other_cache = gru_fast.gru_forward(**second, reset_after=True, return_cache=True)
    gru_fast.gru_forward(**second, reset_after=True)
    gru_fast.gru_backward(other_cache, dy)
    for before, after in zip(kept, (y, h_n, y_alone, h_n_alone, *grads.values())):
        np.testing.assert_array_equal(after, before)
    again = gru_fast.gru_backward(cache, dy)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(again[name], grads[name], err_msg=name)


# ---------------------------------------------------------------- bad input

def good_args(dtype=np.float32):
    rng = np.random.default_rng(12)
    return make_problem(rng, 3, 2, 4, 5, dtype)


@pytest.mark.parametrize("name, value, error, match", [
    ("x", np.zeros((3, 2), np.float32), ValueError, r"x must be 3-D, got shape \(3, 2\)"),
    ("x", np.zeros((3, 2, 7), np.float32), ValueError, r"weight_ih must have shape \(15, 7\)"),
    ("x", np.zeros((3, 2, 0), np.float32), ValueError, r"x must have shape \(T, B, I\) with I >= 1"),
    ("x", np.zeros((3, 2, 4), np.float64), TypeError, r"x has dtype float64 but the weights"),
    ("x", np.zeros((3, 2, 4), np.int64), TypeError, r"x must have dtype float32 or float64"),
    ("x", np.zeros((3, 2, 4), np.float16), TypeError, r"x must have dtype float32 or float64"),
    ("x", np.zeros((3, 2, 4), np.complex64), TypeError, r"x must have dtype"),
    ("x", "not an array", TypeError, r"x must have dtype"),
    ("x", None, TypeError, r"x must be an array, got None"),
    ("h0", np.zeros((2, 6), np.float32), ValueError, r"h0 must have shape \(2, 5\)"),
    ("h0", np.zeros((1, 2, 5), np.float32), ValueError, r"h0 must be 2-D"),
    ("weight_ih", np.zeros((14, 4), np.float32), ValueError, r"weight_ih must have shape \(15, 4\)"),
    ("weight_hh", np.zeros((15, 4), np.float32), ValueError, r"weight_hh must have shape \(3\*H, H\)"),
    ("weight_hh", np.zeros((15,), np.float32), ValueError, r"weight_hh must be 2-D"),
    ("weight_hh", np.zeros((15, 5), np.int32), TypeError, r"weight_hh must have dtype"),
    ("bias_ih", np.zeros(14, np.float32), ValueError, r"bias_ih must have shape \(15,\)"),
    ("bias_hh", np.zeros((1, 15), np.float32), ValueError, r"bias_hh must be 1-D"),
    ("bias_hh", None, ValueError, r"bias_ih and bias_hh must both be given"),
    ("bias_ih", np.zeros(15, np.float64), TypeError, r"bias_ih has dtype float64"),
])
def test_bad_arrays_raise(name, value, error, match):
    args = good_args()
    args[name] = value
    with pytest.raises(error, match=match):
        gru_fast.gru_forward(**args)


@pytest.mark.parametrize("lengths, error, match", [
    ([3, 4], ValueError, r"lengths must lie in 0..3"),
    ([-1, 2], ValueError, r"lengths must lie in 0..3"),
    ([3], ValueError, r"lengths must have shape \(2,\)"),
    ([[3, 3]], ValueError, r"lengths must have shape \(2,\)"),
    ([np.nan, 2], ValueError, r"lengths must be finite"),
    ([np.inf, 2], ValueError, r"lengths must be finite"),
    ([2.5, 2], ValueError, r"lengths must be whole numbers"),
    ([True, False], TypeError, r"lengths must hold integers"),
    (["a", "b"], TypeError, r"lengths must hold integers"),
])
def test_bad_lengths_raise(lengths, error, match):
    with pytest.raises(error, match=match):
        gru_fast.gru_forward(**good_args(), lengths=lengths)


def test_float_lengths_with_whole_values_are_accepted():
    args = good_args(np.float64)
    y_float, _ = gru_fast.gru_forward(**args, lengths=np.array([3.0, 1.0]))
    y_int, _ = gru_fast.gru_forward(**args, lengths=[3, 1])
    np.testing.assert_array_equal(y_float, y_int)


@pytest.mark.parametrize("flag", ["reset_after", "reverse", "return_cache"])
def test_non_boolean_flags_raise(flag):
    with pytest.raises(TypeError, match=flag):
        gru_fast.gru_forward(**good_args(), **{flag: "yes"})


def test_backward_rejects_bad_cache_and_gradients():
    args = good_args()
    y, h_n, cache = gru_fast.gru_forward(**args, return_cache=True)
    _, _, ref_cache = reference.gru_forward(**args, return_cache=True)
    with pytest.raises(TypeError, match="cache must be the GRUCache"):
        gru_fast.gru_backward(ref_cache, np.zeros_like(y))
    with pytest.raises(TypeError, match="cache must be the GRUCache"):
        gru_fast.gru_backward(None, np.zeros_like(y))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 5\)"):
        gru_fast.gru_backward(cache, np.zeros((3, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2, 5\)"):
        gru_fast.gru_backward(cache, np.zeros((4, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"dy must be 3-D"):
        gru_fast.gru_backward(cache, np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"dy has dtype float64"):
        gru_fast.gru_backward(cache, np.zeros((3, 2, 5), np.float64))
    with pytest.raises(ValueError, match=r"dh_n must have shape \(2, 5\)"):
        gru_fast.gru_backward(cache, np.zeros_like(y), np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"dh_n has dtype float64"):
        gru_fast.gru_backward(cache, np.zeros_like(y), np.zeros((2, 5), np.float64))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    x_shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    h0_shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    hidden=st.integers(0, 4),
    input_size=st.integers(0, 5),
)
def test_random_bad_shapes_raise_cleanly_or_run(x_shape, h0_shape, hidden, input_size):
    """Any shape combination either runs and matches the reference, or raises ValueError."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    h0 = rng.standard_normal(h0_shape)
    weight_ih = rng.standard_normal((3 * hidden, input_size))
    weight_hh = rng.standard_normal((3 * hidden, hidden))
    try:
        y, h_n = gru_fast.gru_forward(x, h0, weight_ih, weight_hh)
    except ValueError as error:
        assert str(error)
        return
    y_ref, h_n_ref = reference.gru_forward(x, h0, weight_ih, weight_hh)
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_n_ref, "h_n")


def test_read_only_and_big_endian_inputs():
    """Read-only arrays work (nothing is written into inputs); big-endian floats are refused."""
    rng = np.random.default_rng(13)
    problem = make_problem(rng, 4, 3, 2, 5, np.float32)
    for array in problem.values():
        array.flags.writeable = False
    y, h_n, cache = gru_fast.gru_forward(**problem, lengths=[4, 0, 2], return_cache=True)
    dy = np.ones_like(y)
    dy.flags.writeable = False
    grads = gru_fast.gru_backward(cache, dy)
    y_ref, _ = reference.gru_forward(**problem, lengths=[4, 0, 2])
    assert_close(y, y_ref, "y")
    assert grads["x"].flags.writeable
    swapped = dict(problem, x=problem["x"].astype(">f4"))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got >f4"):
        gru_fast.gru_forward(**swapped)


@pytest.mark.skipif(not gru_fast.show_config("dicts")["threads"]["openmp"],
                    reason="built without OpenMP: the thread count is the CPUs online")
def test_core_threads_follow_openmp():
    """Threads come from OpenMP's setting, so threadpoolctl limits them."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    assert real_core_threads() == max(1, _core.max_threads())
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _core.max_threads() == 1
        assert real_core_threads() == 1


def _forward_in_child(problem, queue):
    queue.put(gru_fast.gru_forward(**problem, reset_after=True)[0])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs the fork start method")
def test_forked_child_after_threaded_calls_does_not_hang(core_threads):
    """The core's worker threads do not survive fork; a forked child must still compute."""
    rng = np.random.default_rng(14)
    problem = make_problem(rng, 6, 8, 5, 70, np.float64)
    expected = gru_fast.gru_forward(**problem, reset_after=True)[0]  # threads start here
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(problem, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


def test_packings_are_kept_read_only_and_keyed_by_value():
    from gru_fast import _packing
    lengths = np.array([3, 0, 6, 1, 6], dtype=np.int64)
    first = _packing.make_packing(lengths, 6, 5)
    assert _packing.make_packing(lengths.copy(), 6, 5) is first  # same values: kept
    for array in (first.batch_sizes, first.offsets, first.out_rows, first.order):
        assert not array.flags.writeable
    np.testing.assert_array_equal(first.batch_sizes, [4, 3, 3, 2, 2, 2])
    np.testing.assert_array_equal(first.order, [2, 4, 0, 3, 1])
    lengths[0] = 2  # the caller's array changes: a new packing, the kept one intact
    second = _packing.make_packing(lengths, 6, 5)
    assert second is not first
    np.testing.assert_array_equal(first.batch_sizes, [4, 3, 3, 2, 2, 2])
    np.testing.assert_array_equal(second.batch_sizes, [4, 3, 2, 2, 2, 2])
    # Beyond KEPT_PACKING_MAX_ROWS the packing is built anew, with the same layout.
    big_t = _packing.KEPT_PACKING_MAX_ROWS // 5 + 1
    big = np.array([big_t, 0, 3, big_t - 1, 1], dtype=np.int64)
    built = _packing.make_packing(big, big_t, 5)
    assert _packing.make_packing(big, big_t, 5) is not built
    assert built.n_rows == int(big.sum())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_steps_no_row_runs_are_zero_on_recycled_memory_with_any_threads(dtype, reverse):
    # Every length ends before T (reverse: starts after step 0 for those steps), so
    # the last steps run no row: the core zeroes them without a phase.  y comes on
    # memory a dropped earlier y of the same shape filled with non-zero values.
    rng = np.random.default_rng(9)
    seq_len, batch, hidden = 60, 6, 128  # y over RECYCLE_MIN_BYTES in float32
    problem = make_problem(rng, seq_len, batch, 16, hidden, dtype)
    lengths = np.array([25, 3, 17, 0, 25, 9])
    padded = np.arange(seq_len)[:, None] >= lengths[None, :]
    results = []
    try:
        for threads in (False, True):
            _core._force_threads(threads)
            gru_fast.gru_forward(**problem, reverse=reverse)  # its y is dropped: recycled next
            y, h_n = gru_fast.gru_forward(**problem, lengths=lengths, reverse=reverse)
            results.append((y, h_n))
    finally:
        _core._force_threads(None)
    y_ref, h_ref = reference.gru_forward(**problem, lengths=lengths, reverse=reverse)
    for y, h_n in results:
        assert np.all(y[padded] == 0)
        assert np.all(y[25:] == 0)
        assert_close(y, y_ref, dtype)
        assert_close(h_n, h_ref, dtype)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    _, h_lean = gru_fast.gru_forward(**problem, lengths=lengths, reverse=reverse,
                                     return_sequences=False)
    np.testing.assert_array_equal(h_lean, results[0][1])
