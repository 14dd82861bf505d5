"""Forward's input projection on BLAS (forced: the default is the packed kernel, issue 13).

`_core._force_projection(True)` makes every forward call with more than one step
per chunk compute x W_ih^T on BLAS, one GEMM per chunk on the calling thread;
`_force_projection("pieces")` on BLAS in the step's pieces, one GEMM per gate
on each piece's hidden units, run by whichever thread claims the piece.  Both
paths must stay right (against the reference) and keep the core's promise:
bitwise the same numbers for any thread count.
"""

import numpy as np
import pytest

import _helpers
import gru_fast
from gru_fast import _core

# (T, B, I, H): one chunk; several chunks of 256 rows (and a partial one); a
# chunk boundary inside a step with lengths; a wide input.
CONFIGS = [(5, 3, 7, 33), (40, 13, 20, 70), (9, 64, 40, 64), (6, 4, 300, 100)]


@pytest.fixture
def projection():
    """A function that forces the projection onto BLAS (True) or the packed kernel (False)."""
    yield _core._force_projection
    _core._force_projection(None)


def make_problem(rng, shape, dtype, lengths):
    """gru_forward's keyword arguments for shape (T, B, I, H), with random lengths or none."""
    problem = _helpers.make_problem(rng, *shape, dtype=dtype)
    if lengths:
        problem["lengths"] = rng.integers(0, shape[0] + 1, shape[1])
    return problem


BLAS_MODES = [True, "pieces"]


@pytest.mark.parametrize("mode", BLAS_MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_blas_projection_matches_reference_on_any_thread_count(projection, monkeypatch,
                                                               mode, dtype, reset_after):
    rng = np.random.default_rng(11 + reset_after)
    tol = 2e-4 if dtype == np.float32 else 1e-9
    projection(mode)
    _core._force_threads(True)  # pieces really run on the workers
    try:
        for index, shape in enumerate(CONFIGS):
            problem = make_problem(rng, shape, dtype, lengths=index % 2 == 1)
            reverse = index % 3 == 2
            results = []
            for threads in (1, 2, 3):
                monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: threads)
                y, h_n, cache = gru_fast.gru_forward(**problem, reset_after=reset_after,
                                                     reverse=reverse, return_cache=True)
                results.append((y, h_n, cache.gates))
            _helpers.assert_forward_runs_match(results, problem, reset_after, reverse, tol,
                                               shape)
    finally:
        _core._force_threads(None)


@pytest.mark.parametrize("mode", BLAS_MODES)
def test_blas_projection_is_really_another_path(projection, mode):
    """BLAS sums x W_ih^T in another order than the packed kernel: other last bits."""
    problem = make_problem(np.random.default_rng(3), (20, 8, 300, 64), np.float32, False)
    projection(False)
    y_packed, _ = gru_fast.gru_forward(**problem, reset_after=True)
    projection(mode)
    y_blas, _ = gru_fast.gru_forward(**problem, reset_after=True)
    assert not np.array_equal(y_blas, y_packed)
    np.testing.assert_allclose(y_blas, y_packed, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", BLAS_MODES)
def test_one_step_calls_stay_on_the_packed_kernel(projection, mode):
    """A one-step sequence projects like a streaming step, even when BLAS is forced."""
    problem = make_problem(np.random.default_rng(4), (1, 6, 300, 40), np.float32, False)
    projection(mode)
    _, h_forced = gru_fast.gru_forward(**problem, reset_after=True)
    frozen = gru_fast.FrozenGRU(problem["weight_ih"], problem["weight_hh"],
                                problem["bias_ih"], problem["bias_hh"], reset_after=True)
    np.testing.assert_array_equal(frozen.step(problem["x"][0], problem["h0"]), h_forced)


def test_force_projection_refuses_an_unknown_mode(projection):
    with pytest.raises(ValueError, match="pieces"):
        projection("caller")
