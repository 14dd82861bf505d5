"""Backward's dx and dW_ih for a few input columns: the narrow products (src/_narrow.h).

An input piece of at most `_core._set_narrow_inputs` columns skips the packed kernel,
which would pad it to a whole panel.  Both paths are forced here on the same problems:
against the NumPy reference, bitwise the same for any thread count, and really different
code (other summation orders, so other last bits).
"""

import numpy as np
import pytest

import _helpers
from gru_fast import _core

# (T, B, I, H): one to five inputs, 17 (a full piece, then a narrow one of 1 column);
# 3H below one chunk of 32 gate columns (H = 5), whole chunks (H = 32) and a partial
# last chunk (H = 37); lengths in the second.
CONFIGS = [(6, 3, 1, 5), (5, 9, 2, 32), (4, 7, 3, 37), (3, 5, 5, 37), (4, 6, 17, 33)]


@pytest.fixture
def narrow_inputs():
    yield _core._set_narrow_inputs
    _core._set_narrow_inputs(_core.PANEL_WIDTH // 4)


@pytest.mark.parametrize("narrow", [True, False], ids=["narrow", "kernel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_both_paths_match_the_reference_on_any_thread_count(narrow_inputs, monkeypatch,
                                                            narrow, dtype, reset_after):
    rng = np.random.default_rng(5 + reset_after)
    tol = 1e-3 if dtype == np.float32 else 1e-8
    narrow_inputs(64 if narrow else 0)
    _core._force_threads(True)
    try:
        for index, shape in enumerate(CONFIGS):
            problem = _helpers.make_problem(rng, *shape, dtype=dtype, bias=index != 2)
            if index == 1:
                problem["lengths"] = rng.integers(0, shape[0] + 1, shape[1])
            dy = rng.standard_normal((shape[0], shape[1], shape[3])).astype(dtype)
            _helpers.assert_gradients_on_thread_counts(monkeypatch, problem, reset_after, dy,
                                                       tol, shape)
    finally:
        _core._force_threads(None)


def test_the_paths_really_differ(narrow_inputs):
    rng = np.random.default_rng(9)
    problem = _helpers.make_problem(rng, 50, 32, 2, 40, dtype=np.float32)
    dy = rng.standard_normal((50, 32, 40)).astype(np.float32)
    narrow_inputs(64)
    narrow = _helpers.core_gradients(problem, True, dy)
    narrow_inputs(0)
    kernel = _helpers.core_gradients(problem, True, dy)
    names = ("x", "weight_ih")
    assert any(not np.array_equal(narrow[name], kernel[name]) for name in names)
    for name in names:
        scale = float(np.abs(kernel[name]).max())
        np.testing.assert_allclose(narrow[name], kernel[name], rtol=1e-4, atol=1e-5 * scale)
