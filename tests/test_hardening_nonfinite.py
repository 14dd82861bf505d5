"""Non-finite inputs: the fast path and the reference agree on where Inf and NaN go.

An Inf or NaN in h0, a weight or a valid position of x gives non-finite values in
the same places on both paths (and the same finite values elsewhere); what
sits at padded positions of x or dy never reaches a result.
"""

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, reference

import fuzz_gru


def random_problem(rng, dtype, seq_len=5, batch_size=3, input_size=4, hidden_size=37):
    scale = 1 / np.sqrt(hidden_size)
    return {
        "x": rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype),
        "h0": rng.standard_normal((batch_size, hidden_size)).astype(dtype),
        "weight_ih": rng.uniform(-2 * scale, 2 * scale, (3 * hidden_size, input_size)).astype(dtype),
        "weight_hh": rng.uniform(-2 * scale, 2 * scale, (3 * hidden_size, hidden_size)).astype(dtype),
        "bias_ih": rng.uniform(-scale, scale, 3 * hidden_size).astype(dtype),
        "bias_hh": rng.uniform(-scale, scale, 3 * hidden_size).astype(dtype),
    }


def both_paths(problem, dy, **options):
    """(y, h_n, grads) of the fast path and of the reference."""
    results = []
    for module in (gru_fast, reference):
        with np.errstate(all="ignore"):
            y, h_n, cache = module.gru_forward(**problem, **options, return_cache=True)
            results.append((y, h_n, module.gru_backward(cache, dy)))
    return results


def assert_same_non_finite_places(fast, ref):
    (y, h_n, grads), (y_ref, h_n_ref, grads_ref) = fast, ref
    fuzz_gru.assert_matches(y, y_ref, "y")
    fuzz_gru.assert_matches(h_n, h_n_ref, "h_n")
    fuzz_gru.assert_grads_match(grads, grads_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("where", ["h0", "x", "weight_ih", "weight_hh", "bias_hh"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_inf_and_nan_go_to_the_same_places(dtype, reset_after, where, value):
    rng = np.random.default_rng(0)
    for trial in range(6):
        problem = random_problem(rng, dtype)
        target = problem[where]
        target[tuple(rng.integers(size) for size in target.shape)] = value
        lengths = rng.integers(0, 6, 3) if trial % 2 else None
        dy = rng.standard_normal((5, 3, 37)).astype(dtype)
        fast, ref = both_paths(problem, dy, reset_after=reset_after, reverse=trial % 3 == 0,
                               lengths=lengths)
        assert_same_non_finite_places(fast, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_infinite_state_does_not_give_plausible_outputs(dtype):
    """Issue 11: a sigmoid that never reached 0 made r * Inf = tiny * Inf = Inf, and tanh
    of that a finite, plausible 1 where the reference's 0 * Inf gives NaN."""
    # H = 2, h0 = [Inf, 0]: both units read the infinite one with weight -1 in the
    # reset and update gates (r = z = sigmoid(-Inf) = 0) and +1 in W_hn (hn = +Inf).
    weight_hh = np.zeros((6, 2), dtype=dtype)
    weight_hh[0:2, 0] = -1  # W_hr
    weight_hh[2:4, 0] = -1  # W_hz
    weight_hh[4:6, 0] = 1   # W_hn
    problem = {"x": np.zeros((1, 1, 1), dtype), "h0": np.array([[np.inf, 0]], dtype),
               "weight_ih": np.zeros((6, 1), dtype), "weight_hh": weight_hh}
    with np.errstate(all="ignore"):
        y, _ = gru_fast.gru_forward(**problem, reset_after=True)
        y_ref, _ = reference.gru_forward(**problem, reset_after=True)
    # n = tanh(r * hn) = tanh(0 * Inf) = NaN; h = z * h_prev + (1 - z) * n = NaN.
    assert np.isnan(y_ref).all()
    assert np.isnan(y).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_nan_at_padded_positions_reaches_no_result(dtype, reset_after):
    rng = np.random.default_rng(2)
    problem = random_problem(rng, dtype)
    lengths = np.array([5, 2, 0])
    padded = np.arange(5)[:, None] >= lengths[None, :]  # (T, B)
    problem["x"][padded] = np.nan
    dy = rng.standard_normal((5, 3, 37)).astype(dtype)
    dy[padded] = np.nan
    for reverse in (False, True):
        fast, ref = both_paths(problem, dy, reset_after=reset_after, reverse=reverse,
                               lengths=lengths)
        for y, h_n, grads in (fast, ref):
            assert np.isfinite(y).all() and np.isfinite(h_n).all()
            assert all(np.isfinite(value).all() for value in grads.values())
            assert not grads["x"][padded].any()
        assert_same_non_finite_places(fast, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_activations_are_exact(dtype):
    """sigmoid reaches exactly 0 and 1 (as exp overflows to Inf); tanh reaches exactly -1, 1."""
    big = 100.0 if dtype == np.float32 else 1000.0
    values = np.array([-np.inf, -big, big, np.inf], dtype=dtype)
    sigmoid, tanh = np.empty_like(values), np.empty_like(values)
    _core.activations(values, sigmoid, tanh)
    np.testing.assert_array_equal(sigmoid, [0, 0, 1, 1])
    np.testing.assert_array_equal(tanh, [-1, -1, 1, 1])
