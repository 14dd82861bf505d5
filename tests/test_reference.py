"""Tests of the NumPy reference GRU (gru_fast.reference), the oracle of every other test."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gru_fast.reference import gru_backward, gru_forward

from _helpers import GRAD_NAMES, assert_close, make_problem, numeric_gradient


def run_forward(inputs, **options):
    return gru_forward(
        inputs["x"],
        inputs["h0"],
        inputs["weight_ih"],
        inputs["weight_hh"],
        inputs["bias_ih"],
        inputs["bias_hh"],
        **options,
    )


def loss(inputs, Gy, Gh, **options):
    y, h_n = run_forward(inputs, **options)
    return float(np.sum(y * Gy) + np.sum(h_n * Gh))


def numerical_grads(inputs, Gy, Gh, eps=1e-6, **options):
    """Central finite differences of ``loss`` for every given input array."""
    probe = {k: (v.copy() if v is not None else None) for k, v in inputs.items()}
    return {name: numeric_gradient(lambda: loss(probe, Gy, Gh, **options), probe[name], eps)
            for name in GRAD_NAMES if probe[name] is not None}


def check_gradients(inputs, rng, **options):
    """Compare gru_backward with finite differences; return the analytic grads."""
    T, B, _ = inputs["x"].shape
    H = inputs["weight_hh"].shape[1]
    Gy = rng.standard_normal((T, B, H))
    Gh = rng.standard_normal((B, H))
    y, h_n, cache = run_forward(inputs, return_cache=True, **options)
    grads = gru_backward(cache, Gy, Gh)
    assert set(grads) == set(GRAD_NAMES)
    expected = numerical_grads(inputs, Gy, Gh, **options)
    for name in GRAD_NAMES:
        if inputs[name] is None and name != "h0":
            assert grads[name] is None, name
            continue
        if name == "h0" and inputs["h0"] is None:
            # gradient with respect to the zero initial state
            zero_state = dict(inputs, h0=np.zeros((B, H)))
            want = numerical_grads(zero_state, Gy, Gh, **options)["h0"]
        else:
            want = expected[name]
        assert grads[name].shape == want.shape, name
        assert grads[name].dtype == np.float64, name
        assert_close(grads[name], want, name, kind="finite_difference")
    return grads


# ----------------------------------------------------------------------------------------
# Gradients by central finite differences (float64)
# ----------------------------------------------------------------------------------------

LENGTH_CASES = {
    "full": None,
    "unsorted_with_0_and_T": [2, 0, 4],
    "all_T": [4, 4, 4],
}


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("given_h0", [True, False])
@pytest.mark.parametrize("lengths_case", list(LENGTH_CASES))
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_finite_differences(reset_after, bias, given_h0, lengths_case, reverse):
    rng = np.random.default_rng(1234)
    T, B, I, H = 4, 3, 2, 3
    inputs = make_problem(rng, T, B, I, H, bias=bias, with_h0=given_h0)
    check_gradients(
        inputs,
        rng,
        reset_after=reset_after,
        lengths=LENGTH_CASES[lengths_case],
        reverse=reverse,
    )


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    I=st.integers(1, 3),
    H=st.integers(1, 3),
    reset_after=st.booleans(),
    reverse=st.booleans(),
    bias=st.booleans(),
    given_h0=st.booleans(),
    use_lengths=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradients_random_shapes(T, B, I, H, reset_after, reverse, bias, given_h0, use_lengths, seed):
    rng = np.random.default_rng(seed)
    inputs = make_problem(rng, T, B, I, H, bias=bias, with_h0=given_h0)
    lengths = rng.integers(0, T + 1, size=B) if use_lengths else None
    check_gradients(inputs, rng, reset_after=reset_after, lengths=lengths, reverse=reverse)


# ----------------------------------------------------------------------------------------
# Semantics
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_equal_running_each_row_alone(reset_after, reverse):
    rng = np.random.default_rng(7)
    T, B, I, H = 5, 4, 3, 2
    lengths = np.array([3, 5, 0, 1])  # unsorted, includes 0 and T
    inputs = make_problem(rng, T, B, I, H)
    options = dict(reset_after=reset_after, reverse=reverse)
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    y, h_n, cache = run_forward(inputs, lengths=lengths, return_cache=True, **options)
    grads = gru_backward(cache, dy, dh_n)

    weight_grads = {name: 0.0 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    for b, length in enumerate(lengths):
        row = dict(inputs, x=inputs["x"][:length, b : b + 1], h0=inputs["h0"][b : b + 1])
        y_row, h_row, cache_row = run_forward(row, return_cache=True, **options)
        assert_close(y[:length, b], y_row[:, 0], "y", kind="reordered")
        np.testing.assert_array_equal(y[length:, b], 0.0)
        assert_close(h_n[b], h_row[0], "h_n", kind="reordered")

        grads_row = gru_backward(cache_row, dy[:length, b : b + 1], dh_n[b : b + 1])
        assert_close(grads["x"][:length, b], grads_row["x"][:, 0], "dx", kind="reordered")
        np.testing.assert_array_equal(grads["x"][length:, b], 0.0)
        assert_close(grads["h0"][b], grads_row["h0"][0], "dh0", kind="reordered")
        for name in weight_grads:
            weight_grads[name] = weight_grads[name] + grads_row[name]
    for name, total in weight_grads.items():
        assert_close(grads[name], total, name, kind="row_sums")


def test_zero_length_row_returns_h0_and_zero_outputs():
    rng = np.random.default_rng(3)
    inputs = make_problem(rng, 3, 2, 2, 3)
    for reverse in (False, True):
        y, h_n = run_forward(inputs, lengths=[0, 3], reverse=reverse)
        np.testing.assert_array_equal(h_n[0], inputs["h0"][0])
        np.testing.assert_array_equal(y[:, 0], 0.0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("reset_after", [False, True])
def test_padding_of_y_is_exactly_zero(reverse, reset_after):
    rng = np.random.default_rng(11)
    T, B, H = 4, 3, 3
    inputs = make_problem(rng, T, B, 2, H)
    lengths = np.array([1, 4, 2])
    y, _ = run_forward(inputs, lengths=lengths, reverse=reverse, reset_after=reset_after)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(y[pad] == 0.0)
    assert np.all(y[~pad] != 0.0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("reset_after", [False, True])
def test_dy_at_padded_positions_is_ignored(reverse, reset_after):
    rng = np.random.default_rng(5)
    T, B, H = 4, 3, 2
    inputs = make_problem(rng, T, B, 3, H)
    lengths = np.array([2, 0, 4])
    _, _, cache = run_forward(
        inputs, lengths=lengths, reverse=reverse, reset_after=reset_after, return_cache=True
    )
    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    pad = np.arange(T)[:, None] >= lengths[None, :]
    dy_perturbed = dy.copy()
    dy_perturbed[pad] += 100.0 * rng.standard_normal((int(pad.sum()), H))
    base = gru_backward(cache, dy, dh_n)
    perturbed = gru_backward(cache, dy_perturbed, dh_n)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(base[name], perturbed[name], err_msg=name)
    # and the perturbation would matter if the positions were valid
    valid_dy = dy.copy()
    valid_dy[~pad] += 1.0
    assert not np.allclose(gru_backward(cache, valid_dy, dh_n)["x"], base["x"])


@pytest.mark.parametrize("reset_after", [False, True])
def test_reverse_equals_flipping_time(reset_after):
    rng = np.random.default_rng(9)
    T, B, I, H = 4, 2, 3, 3
    inputs = make_problem(rng, T, B, I, H)
    flipped = dict(inputs, x=inputs["x"][::-1].copy())
    y_rev, h_rev, cache_rev = run_forward(inputs, reverse=True, reset_after=reset_after, return_cache=True)
    y_fwd, h_fwd, cache_fwd = run_forward(flipped, reverse=False, reset_after=reset_after, return_cache=True)
    assert_close(y_rev, y_fwd[::-1], "y", kind="reordered")
    assert_close(h_rev, h_fwd, "h_n", kind="reordered")

    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    g_rev = gru_backward(cache_rev, dy, dh_n)
    g_fwd = gru_backward(cache_fwd, dy[::-1], dh_n)
    assert_close(g_rev["x"], g_fwd["x"][::-1], "dx", kind="reordered")
    for name in ("h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert_close(g_rev[name], g_fwd[name], name, kind="reordered")


def test_reverse_with_lengths_starts_at_last_valid_step():
    # Row 0 has length 2 of T=4: reverse must process t=1 then t=0, i.e. equal the
    # forward run on the flipped valid part x[1], x[0] (not x[3], x[2], ...).
    rng = np.random.default_rng(21)
    inputs = make_problem(rng, 4, 1, 2, 2)
    y, h_n = run_forward(inputs, lengths=[2], reverse=True)
    row = dict(inputs, x=inputs["x"][1::-1].copy())
    y_row, h_row = run_forward(row)
    np.testing.assert_allclose(y[:2, 0], y_row[::-1, 0], rtol=1e-12)
    np.testing.assert_allclose(h_n, h_row, rtol=1e-12)


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_none_equals_all_full(reset_after, reverse):
    rng = np.random.default_rng(4)
    inputs = make_problem(rng, 3, 2, 2, 2)
    a = run_forward(inputs, reset_after=reset_after, reverse=reverse)
    b = run_forward(inputs, reset_after=reset_after, reverse=reverse, lengths=[3, 3])
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("reset_after", [False, True])
def test_h0_none_equals_zeros(reset_after):
    rng = np.random.default_rng(2)
    T, B, H = 3, 2, 3
    inputs = make_problem(rng, T, B, 2, H, with_h0=False)
    zeros = dict(inputs, h0=np.zeros((B, H)))
    y_none, h_none, cache_none = run_forward(inputs, reset_after=reset_after, return_cache=True)
    y_zero, h_zero, cache_zero = run_forward(zeros, reset_after=reset_after, return_cache=True)
    np.testing.assert_array_equal(y_none, y_zero)
    np.testing.assert_array_equal(h_none, h_zero)
    dy = rng.standard_normal((T, B, H))
    g_none = gru_backward(cache_none, dy)
    g_zero = gru_backward(cache_zero, dy)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(g_none[name], g_zero[name], err_msg=name)
    assert g_none["h0"].shape == (B, H)


def test_dh_n_none_equals_zeros():
    rng = np.random.default_rng(8)
    T, B, H = 3, 2, 2
    inputs = make_problem(rng, T, B, 2, H)
    _, _, cache = run_forward(inputs, return_cache=True, lengths=[1, 3])
    dy = rng.standard_normal((T, B, H))
    a = gru_backward(cache, dy)
    b = gru_backward(cache, dy, np.zeros((B, H)))
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_float32_agrees_with_float64(reset_after, reverse):
    rng = np.random.default_rng(6)
    T, B, I, H = 4, 3, 3, 3
    inputs64 = make_problem(rng, T, B, I, H)
    inputs32 = {k: v.astype(np.float32) for k, v in inputs64.items()}
    options = dict(reset_after=reset_after, reverse=reverse, lengths=[4, 1, 3])
    y64, h64, cache64 = run_forward(inputs64, return_cache=True, **options)
    y32, h32, cache32 = run_forward(inputs32, return_cache=True, **options)
    assert y32.dtype == h32.dtype == np.float32
    assert y64.dtype == h64.dtype == np.float64
    assert_close(y32, y64, "y", kind="float32_rounding", check_dtype=False)
    assert_close(h32, h64, "h_n", kind="float32_rounding", check_dtype=False)

    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    g64 = gru_backward(cache64, dy, dh_n)
    g32 = gru_backward(cache32, dy.astype(np.float32), dh_n.astype(np.float32))
    for name in GRAD_NAMES:
        assert g32[name].dtype == np.float32, name
        assert_close(g32[name], g64[name], name, kind="float32_rounding_gradient", check_dtype=False)


def test_reset_after_variants_differ_when_b_hn_nonzero():
    rng = np.random.default_rng(10)
    inputs = make_problem(rng, 3, 2, 2, 2, bias=False)
    H = 2
    # Without any bias and with h0 = 0 the first step agrees, so set only b_hn.
    bias_hh = np.zeros(3 * H)
    bias_hh[2 * H :] = 0.8
    inputs = dict(inputs, bias_ih=np.zeros(3 * H), bias_hh=bias_hh, h0=None)
    y_classic, _ = run_forward(inputs, reset_after=False)
    y_after, _ = run_forward(inputs, reset_after=True)
    assert not np.allclose(y_classic[0], y_after[0])
    # with b_hn = 0 and h0 = 0 the first step is identical in both variants
    inputs_no_bhn = dict(inputs, bias_hh=np.zeros(3 * H))
    y_classic0, _ = run_forward(inputs_no_bhn, reset_after=False)
    y_after0, _ = run_forward(inputs_no_bhn, reset_after=True)
    np.testing.assert_allclose(y_classic0[0], y_after0[0], rtol=1e-14)


@pytest.mark.parametrize("reset_after", [False, True])
def test_hand_computed_scalar_step(reset_after):
    x, h0 = 0.7, -0.4
    w_ir, w_iz, w_in = 0.5, -1.2, 0.9
    w_hr, w_hz, w_hn = 0.3, 0.8, -0.6
    b_ir, b_iz, b_in = 0.1, -0.2, 0.05
    b_hr, b_hz, b_hn = -0.3, 0.4, 0.25

    def sigmoid(a):
        return 1.0 / (1.0 + math.exp(-a))

    r = sigmoid(x * w_ir + b_ir + h0 * w_hr + b_hr)
    z = sigmoid(x * w_iz + b_iz + h0 * w_hz + b_hz)
    if reset_after:
        n = math.tanh(x * w_in + b_in + r * (h0 * w_hn + b_hn))
    else:
        n = math.tanh(x * w_in + b_in + (r * h0) * w_hn + b_hn)
    h1 = z * h0 + (1 - z) * n

    y, h_n = gru_forward(
        np.array([[[x]]]),
        np.array([[h0]]),
        np.array([[w_ir], [w_iz], [w_in]]),
        np.array([[w_hr], [w_hz], [w_hn]]),
        np.array([b_ir, b_iz, b_in]),
        np.array([b_hr, b_hz, b_hn]),
        reset_after=reset_after,
    )
    assert y.shape == (1, 1, 1) and h_n.shape == (1, 1)
    assert y[0, 0, 0] == pytest.approx(h1, rel=1e-14)
    assert h_n[0, 0] == pytest.approx(h1, rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_inputs_unmodified_and_outputs_fresh(dtype, reset_after):
    rng = np.random.default_rng(12)
    T, B, H = 3, 2, 3
    inputs = make_problem(rng, T, B, 2, H, dtype=dtype)
    lengths = np.array([3, 1])
    saved = {k: v.copy() for k, v in inputs.items()}
    saved_lengths = lengths.copy()
    y, h_n, cache = run_forward(inputs, lengths=lengths, reset_after=reset_after, return_cache=True)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    dy_saved, dh_n_saved = dy.copy(), dh_n.copy()
    grads = gru_backward(cache, dy, dh_n)
    grads_again = gru_backward(cache, dy, dh_n)  # the cache is not consumed

    for name, value in inputs.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    np.testing.assert_array_equal(lengths, saved_lengths)
    np.testing.assert_array_equal(dy, dy_saved)
    np.testing.assert_array_equal(dh_n, dh_n_saved)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(grads[name], grads_again[name], err_msg=name)

    outputs = [y, h_n] + [grads[name] for name in GRAD_NAMES]
    for out in outputs:
        assert out.dtype == dtype
        for value in list(inputs.values()) + [dy, dh_n]:
            assert not np.shares_memory(out, value)
    assert not np.shares_memory(grads["h0"], grads_again["h0"])


def test_zero_length_everywhere_returns_copy_of_h0():
    rng = np.random.default_rng(13)
    inputs = make_problem(rng, 2, 2, 2, 2)
    y, h_n = run_forward(inputs, lengths=[0, 0])
    np.testing.assert_array_equal(h_n, inputs["h0"])
    assert not np.shares_memory(h_n, inputs["h0"])
    np.testing.assert_array_equal(y, 0.0)
    # an empty sequence (T = 0) too
    empty = dict(inputs, x=inputs["x"][:0])
    y, h_n, cache = run_forward(empty, return_cache=True)
    assert y.shape == (0, 2, 2)
    np.testing.assert_array_equal(h_n, inputs["h0"])
    assert not np.shares_memory(h_n, inputs["h0"])
    dh_n = np.ones((2, 2))
    grads = gru_backward(cache, np.zeros((0, 2, 2)), dh_n)
    np.testing.assert_array_equal(grads["h0"], dh_n)
    assert not np.shares_memory(grads["h0"], dh_n)
    assert grads["x"].shape == (0, 2, 2)


def test_cache_records_call():
    rng = np.random.default_rng(14)
    inputs = make_problem(rng, 3, 2, 2, 4, bias=False, with_h0=False)
    _, _, cache = run_forward(inputs, reset_after=True, reverse=True, lengths=[2, 3], return_cache=True)
    assert cache["reset_after"] is True and cache["reverse"] is True
    assert cache["has_bias"] is False and cache["has_h0"] is False
    assert cache["shape"] == (3, 2, 2, 4)
    assert cache["dtype"] == np.float64
    np.testing.assert_array_equal(cache["lengths"], [2, 3])
    for key in ("r", "z", "n", "h_prev", "hn_pre"):
        assert cache[key].shape == (3, 2, 4), key


def test_bad_shapes_raise_value_error():
    rng = np.random.default_rng(15)
    inp = make_problem(rng, 3, 2, 2, 3)
    bad_calls = [
        dict(inp, x=inp["x"][0]),
        dict(inp, h0=inp["h0"][:1]),
        dict(inp, weight_ih=inp["weight_ih"][:, :1]),
        dict(inp, weight_hh=inp["weight_hh"][:6]),
        dict(inp, bias_ih=inp["bias_ih"][:5]),
        dict(inp, bias_hh=None),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            run_forward(call)
    for lengths in ([1, 4], [-1, 2], [1, 2, 3], [1.5, 2]):
        with pytest.raises(ValueError):
            run_forward(inp, lengths=lengths)
    _, _, cache = run_forward(inp, return_cache=True)
    with pytest.raises(ValueError):
        gru_backward(cache, np.zeros((3, 2, 2)))
    with pytest.raises(ValueError):
        gru_backward(cache, np.zeros((3, 2, 3)), np.zeros((2, 2)))
