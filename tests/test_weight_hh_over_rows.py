"""Backward's dW_hh: summed step by step while small, one product over all rows when large.

`_core.weight_hh_over_rows` decides from H and the dtype (issue 14);
`_core._force_weight_hh_over_rows` forces either path so that both are checked on small
problems: against the NumPy reference and central finite differences, and bitwise the
same for any thread count.
"""

import numpy as np
import pytest

import _helpers
import gru_fast
from gru_fast import _core

# (T, B, I, H): hidden sizes over several pieces and partial panels, lengths (index 1).
CONFIGS = [(6, 3, 7, 33), (5, 9, 10, 100), (4, 13, 5, 40)]


@pytest.fixture
def force_hh_over_rows():
    # Row pieces always sum over all rows (tests/test_row_split.py): the two sums are
    # compared on hidden pieces.
    _core._set_row_split(False)
    yield _core._force_weight_hh_over_rows
    _core._force_weight_hh_over_rows(None)
    _core._set_row_split(None)


@pytest.mark.parametrize("over_rows", [True, False], ids=["over_rows", "per_step"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("with_dy", [True, False], ids=["dy", "no_dy"])
def test_both_paths_match_the_reference_on_any_thread_count(force_hh_over_rows, monkeypatch,
                                                            over_rows, dtype, reset_after,
                                                            with_dy):
    rng = np.random.default_rng(31 + reset_after)
    tol = 1e-3 if dtype == np.float32 else 1e-8
    force_hh_over_rows(over_rows)
    _helpers.assert_configs_on_thread_counts(monkeypatch, rng, CONFIGS, dtype, reset_after,
                                             with_dy, tol, over_rows)


@pytest.mark.parametrize("over_rows", [True, False], ids=["over_rows", "per_step"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_weight_hh_gradient_matches_finite_differences(force_hh_over_rows, over_rows,
                                                       reset_after):
    rng = np.random.default_rng(5)
    force_hh_over_rows(over_rows)
    problem = _helpers.make_problem(rng, 5, 4, 3, 6, dtype=np.float64)
    problem["lengths"] = np.array([5, 2, 0, 4])
    weights = rng.standard_normal((5, 4, 6))

    def loss(weight_hh):
        y, h_n = gru_fast.gru_forward(**{**problem, "weight_hh": weight_hh},
                                      reset_after=reset_after)
        return float((weights * y).sum() + h_n.sum())

    y, h_n, cache = gru_fast.gru_forward(**problem, reset_after=reset_after, return_cache=True)
    grad = gru_fast.gru_backward(cache, weights, np.ones_like(h_n))["weight_hh"]
    eps = 1e-6
    numeric = np.zeros_like(grad)
    for index in np.ndindex(*grad.shape):
        plus, minus = problem["weight_hh"].copy(), problem["weight_hh"].copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (loss(plus) - loss(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_the_paths_really_differ(force_hh_over_rows):
    """Step sums and one product over rows add in other orders: other last bits, same values."""
    rng = np.random.default_rng(9)
    problem = _helpers.make_problem(rng, 40, 16, 4, 64, dtype=np.float32)
    dy = rng.standard_normal((40, 16, 64)).astype(np.float32)
    force_hh_over_rows(True)
    over_rows = _helpers.core_gradients(problem, True, dy)
    force_hh_over_rows(False)
    per_step = _helpers.core_gradients(problem, True, dy)
    assert not np.array_equal(over_rows["weight_hh"], per_step["weight_hh"])
    scale = float(np.abs(per_step["weight_hh"]).max())
    np.testing.assert_allclose(over_rows["weight_hh"], per_step["weight_hh"], rtol=1e-4,
                               atol=1e-5 * scale)
    for name in ("x", "h0", "weight_ih", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(over_rows[name], per_step[name], err_msg=name)


def test_the_rule_follows_the_size_dtype_and_level2():
    # per step while 3H^2 * itemsize is at most 8 times the kernel's L2 budget
    from gru_fast import _caches
    try:
        for level2, largest_step_sums in ((2 << 20, 512), (512 << 10, 256)):
            _core.set_level2_cache(level2)  # budgets of 1 MiB (bound 8 MiB) and 256 KiB (2 MiB)
            bound = 8 * _core.level2_budget()
            for hidden_size in (16, 64, 128, 256, 512, 1024):
                for itemsize in (4, 8):
                    expected = 3 * hidden_size ** 2 * itemsize > bound
                    assert _core.weight_hh_over_rows(hidden_size, itemsize) == expected
            assert not _core.weight_hh_over_rows(largest_step_sums, 4)
            assert _core.weight_hh_over_rows(1024, 4)
    finally:
        _core.set_level2_cache(_caches.level2_cache_bytes())
