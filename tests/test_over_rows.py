"""Backward's products over rows (dx, dW_ih): on BLAS when large, else the packed kernel.

`_core.over_rows_on_blas` decides from the shape (issue 13); `_core._force_over_rows`
forces either path so that both are checked on small problems: against the NumPy
reference, and bitwise the same for any thread count.
"""

import numpy as np
import pytest

import _helpers
from gru_fast import _core

# (T, B, I, H): input and hidden sizes over several pieces, partial panels, lengths.
CONFIGS = [(6, 3, 7, 33), (5, 9, 70, 100), (4, 13, 300, 40)]


@pytest.fixture
def force_over_rows():
    yield _core._force_over_rows
    _core._force_over_rows(None)


@pytest.mark.parametrize("on_blas", [True, False], ids=["blas", "packed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_both_paths_match_the_reference_on_any_thread_count(force_over_rows, monkeypatch,
                                                            on_blas, dtype, reset_after):
    rng = np.random.default_rng(21 + reset_after)
    tol = 1e-3 if dtype == np.float32 else 1e-8
    force_over_rows(on_blas)
    _core._force_threads(True)
    try:
        for index, shape in enumerate(CONFIGS):
            problem = _helpers.make_problem(rng, *shape, dtype=dtype, bias=index != 1)
            if index == 1:
                problem["lengths"] = rng.integers(0, shape[0] + 1, shape[1])
            dy = rng.standard_normal((shape[0], shape[1], shape[3])).astype(dtype)
            _helpers.assert_gradients_on_thread_counts(monkeypatch, problem, reset_after, dy,
                                                       tol, shape)
    finally:
        _core._force_threads(None)


def test_the_paths_really_differ(force_over_rows):
    """BLAS and the packed kernel sum in other orders: other last bits, same values."""
    rng = np.random.default_rng(8)
    # N = 1600 rows: BLAS splits the sum over rows into blocks, the packed kernel does not
    problem = _helpers.make_problem(rng, 50, 32, 300, 64, dtype=np.float32)
    dy = rng.standard_normal((50, 32, 64)).astype(np.float32)
    force_over_rows(True)
    on_blas = _helpers.core_gradients(problem, True, dy)
    force_over_rows(False)
    packed = _helpers.core_gradients(problem, True, dy)
    names = ("x", "weight_ih")
    assert any(not np.array_equal(on_blas[name], packed[name]) for name in names)
    for name in names:
        scale = float(np.abs(packed[name]).max())
        np.testing.assert_allclose(on_blas[name], packed[name], rtol=1e-4, atol=1e-5 * scale)


def test_the_rule_follows_the_size_dtype_and_level():
    # T*B rows, I, H, itemsize: float32 always on the packed kernel; float64 on BLAS
    # from 2^32 multiply-adds (N * 3H * 2I) on, below the avx512 level only (its
    # double tile of 6 rows kept pace with dgemm; avx2's of 3 did not)
    for shape in ((100, 64, 64), (800, 64, 128), (3200, 128, 256), (3200, 512, 512)):
        assert not _core.over_rows_on_blas(*shape, 4)
    assert not _core.over_rows_on_blas(3200, 128, 256, 8)
    large_on_blas = _core.CPU_LEVEL != "avx512"
    assert _core.over_rows_on_blas(3200, 512, 512, 8) == large_on_blas  # 5.0e9
    assert _core.over_rows_on_blas(1400, 1024, 512, 8) == large_on_blas  # just above 2^32
    assert not _core.over_rows_on_blas(1364, 1024, 512, 8)  # just below 2^32
    # wide (2.5e9): BLAS's spinning workers cost the next call more than dgemm saves
    assert not _core.over_rows_on_blas(400, 1024, 1024, 8)
