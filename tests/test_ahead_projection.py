"""The input projection computed ahead of serial steps (_core._set_ahead_projection).

When a call's steps run on the caller alone, the workers compute the input
preactivations of the steps to come in pieces of rows, claimed in the order the
steps need them; the caller runs any piece still unclaimed when a step needs it
and waits only for pieces a worker has started (_parallel.h, gf_ahead_*).  The
pieces are whole kernel row tiles of the chunk, so the results must be the bits
of the projection in one phase, on any thread count, and a worker held back
must not hold up the call.  ``_set_ahead_projection(True)`` projects ahead even
with ``_force_threads(False)`` (every other phase on the caller), so that the
tests see the mode on every call.
"""

import time

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, reference
from test_threads import GRAD_NAMES, config_problems, make_problem, run


@pytest.fixture
def threads(monkeypatch):
    """A function that makes the next core calls use n threads; the steps serial."""
    def set_to(n_threads):
        monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: n_threads)
    _core._force_threads(False)
    previous = _core._set_ahead_projection(None)
    yield set_to
    _core._force_threads(None)
    _core._set_ahead_projection(previous)


def forward(problem, reset_after, reverse):
    return gru_fast.gru_forward(**problem, reset_after=reset_after, reverse=reverse)


# (T, B, I, H): batch sizes around the row tile (8 rows in float32 at the avx512
# level, 6 in float64) so that pieces start mid-step and chunks end in partial
# tiles; T * B beyond one chunk (256 rows) for several chunks in a call; H of one
# panel (32 units) or less, where the projection ahead is the only threaded phase.
CONFIGS = [(40, 1, 16, 40), (300, 1, 8, 33), (70, 3, 20, 64), (90, 5, 12, 40),
           (60, 7, 9, 70), (50, 9, 30, 100), (33, 13, 5, 50), (60, 1, 48, 24),
           (50, 3, 20, 16)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_ahead_gives_the_bits_of_the_projection_phase(threads, dtype, reset_after):
    rng = np.random.default_rng(21 + reset_after)
    for index, sizes, problem, reverse in config_problems(rng, CONFIGS, dtype):
        where = f"config {index} {sizes}"
        _core._set_ahead_projection(False)
        threads(1)
        y1, h1 = forward(problem, reset_after, reverse)
        _core._set_ahead_projection(True)
        for n_threads in (2, 3, 2):
            threads(n_threads)
            before = _core._thread_stats()["threaded_phases"]
            y, h_n = forward(problem, reset_after, reverse)
            # every other phase runs on the caller: the threaded ones are the projections
            assert _core._thread_stats()["threaded_phases"] > before, where
            np.testing.assert_array_equal(y, y1, err_msg=f"y, {where}, {n_threads} threads")
            np.testing.assert_array_equal(h_n, h1, err_msg=f"h_n, {where}, {n_threads} threads")
        y_ref, h_ref = reference.gru_forward(**problem, reset_after=reset_after,
                                             reverse=reverse)
        rtol = 2e-4 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(y1, y_ref, rtol=rtol, atol=rtol, err_msg=where)
        np.testing.assert_allclose(h1, h_ref, rtol=rtol, atol=rtol, err_msg=where)


@pytest.mark.parametrize("config", [(60, 1, 48, 24), (80, 3, 20, 64), (40, 2, 30, 40)])
def test_training_gradients_keep_their_bits(threads, config):
    """A forward that keeps its history for backward projects ahead too: the gradients
    are those of one thread, bit for bit."""
    seq_len, batch_size, input_size, hidden_size = config
    rng = np.random.default_rng(31)
    problem = make_problem(rng, seq_len, batch_size, input_size, hidden_size, np.float64,
                           bias=True, lengths=True)
    dy = rng.standard_normal((seq_len, batch_size, hidden_size))
    threads(1)
    y1, h1, g1 = run(problem, True, False, dy)
    threads(2)
    _core._set_ahead_projection(True)
    before = _core._thread_stats()["threaded_phases"]
    y, h_n, grads = run(problem, True, False, dy)
    assert _core._thread_stats()["threaded_phases"] > before
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(h_n, h1)
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(grads[name], g1[name], err_msg=name)


def test_frozen_gru_streams_with_the_projection_ahead(threads):
    """FrozenGRU (weights packed once) on one batch row, the stream case."""
    rng = np.random.default_rng(4)
    problem = make_problem(rng, 500, 1, 64, 64, np.float32, bias=True, lengths=False)
    frozen = gru_fast.FrozenGRU(problem["weight_ih"], problem["weight_hh"],
                                problem["bias_ih"], problem["bias_hh"], reset_after=True)
    threads(1)
    expected = frozen(problem["x"], problem["h0"])
    threads(2)
    _core._set_ahead_projection(True)
    for _ in range(3):
        got = frozen(problem["x"], problem["h0"])
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_the_worker_runs_pieces_ahead_of_the_steps(threads):
    """Not only the caller: over a few long calls the worker takes pieces."""
    rng = np.random.default_rng(8)
    problem = make_problem(rng, 2000, 1, 48, 40, np.float32, bias=True, lengths=False)
    threads(2)
    _core._set_ahead_projection(True)
    before = _core._thread_stats()["worker_pieces"]
    deadline = time.perf_counter() + 5.0
    while time.perf_counter() < deadline:
        forward(problem, True, False)
        if _core._thread_stats()["worker_pieces"] > before:
            break
    assert _core._thread_stats()["worker_pieces"] > before


@pytest.mark.parametrize("mid_piece", [False, True])
def test_a_worker_held_back_does_not_hold_up_the_call(threads, mid_piece):
    """Worker 1 sleeps `stall` s before each claim: the caller runs every piece the
    worker has not started, so the calls take about their serial time.  Or it sleeps
    inside its first piece of each phase: the caller waits for that piece (nothing
    else could finish it) and the results are still the bits of one thread."""
    stall = 0.2 if not mid_piece else 0.01
    rng = np.random.default_rng(12)
    problem = make_problem(rng, 400, 2, 24, 48, np.float32, bias=True, lengths=True)
    threads(1)
    expected = forward(problem, False, False)
    threads(2)
    _core._set_ahead_projection(True)
    forward(problem, False, False)  # the worker exists before it is stalled
    _core._set_worker_stall(1, stall, mid_piece=mid_piece)
    calls = 3
    try:
        before = _core._thread_stats()["threaded_phases"]
        start = time.perf_counter()
        for _ in range(calls):
            got = forward(problem, False, False)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
        elapsed = time.perf_counter() - start
        phases = _core._thread_stats()["threaded_phases"] - before
    finally:
        _core._set_worker_stall(-1, 0.0)
    assert phases >= 2 * calls  # 800 rows: chunks of 256, each projected ahead
    if not mid_piece:
        # waiting for the worker's claims (a barrier at every chunk) would take
        # phases * stall; the calls themselves take about a millisecond
        assert elapsed < 0.25 * phases * stall, f"took {elapsed:.2f} s"


def test_the_hook_says_what_it_was():
    previous = _core._set_ahead_projection(False)
    try:
        assert _core._set_ahead_projection(True) is False
        assert _core._set_ahead_projection(None) is True
        assert _core._set_ahead_projection(None) is None
    finally:
        _core._set_ahead_projection(previous)
