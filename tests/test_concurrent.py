"""Independent core calls run concurrently or one after the other (gru_fast._concurrent).

Concurrently or not, the results are the same bits (a core call gives the
same bits on any number of threads); a helper thread that never shows up
does not hold the run up; the faster way is kept and the other tried now and
then.
"""

import threading

import numpy as np
import pytest

import gru_fast
from gru_fast import _concurrent, functional, reference
from _helpers import assert_close, make_problem


@pytest.fixture
def two_threads_and_tiny_blocks(monkeypatch):
    """Two core threads; a forward without a cache over more than 3 rows runs in blocks of 3."""
    monkeypatch.setattr(functional, "core_threads", lambda: 2)
    monkeypatch.setattr(functional, "BLOCK_CACHE_SHARE", 0.0)
    monkeypatch.setattr(functional, "MIN_BLOCK_ROWS", 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_blocks_give_the_same_bits_concurrently_or_not(two_threads_and_tiny_blocks, monkeypatch,
                                                       dtype, reset_after, return_sequences):
    rng = np.random.default_rng(5)
    T, B, I, H = 7, 17, 4, 24
    problem = make_problem(rng, T, B, I, H, dtype)
    lengths = rng.integers(0, T + 1, size=B)
    kwargs = dict(reset_after=reset_after, lengths=lengths, return_sequences=return_sequences)
    results = {}
    for concurrently in (False, True):
        monkeypatch.setattr(_concurrent, "_choose", lambda key: concurrently)
        results[concurrently] = gru_fast.gru_forward(**problem, **kwargs)
    y_ref, h_ref = reference.gru_forward(**problem, reset_after=reset_after, lengths=lengths)
    assert_close(results[True][1], h_ref, "h_n")
    if return_sequences:
        assert_close(results[True][0], y_ref, "y")
    for got, want in zip(results[True], results[False]):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)


def test_a_helper_that_never_starts_does_not_hold_the_run_up(two_threads_and_tiny_blocks,
                                                            monkeypatch):
    monkeypatch.setattr(_concurrent, "_choose", lambda key: True)
    release = threading.Event()
    # Occupy every helper thread: the run's own helper job queues behind it.
    busy = _concurrent._helpers(1).submit(release.wait)
    try:
        rng = np.random.default_rng(6)
        problem = make_problem(rng, 5, 13, 3, 16, np.float64)
        y, h_n = gru_fast.gru_forward(**problem, reset_after=True)  # the caller runs every block
        y_ref, h_ref = reference.gru_forward(**problem, reset_after=True)
        assert not busy.done()
    finally:
        release.set()
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_ref, "h_n")


def test_results_keep_the_order_of_the_calls(monkeypatch):
    monkeypatch.setattr(functional, "core_threads", lambda: 3)
    monkeypatch.setattr(_concurrent, "_choose", lambda key: True)
    got = _concurrent.run_all([lambda i=i: i * i for i in range(10)], key=("test", "order"))
    assert got == [i * i for i in range(10)]


def test_the_faster_way_is_kept_and_the_other_tried_now_and_then():
    key = ("test", "choose")
    _concurrent._seconds.pop(key, None)
    assert _concurrent._choose(key) is True  # nothing known: concurrently first
    _concurrent._record(key, True, 1.0)
    assert _concurrent._choose(key) is False  # then the other way
    _concurrent._record(key, False, 3.0)
    ways = [_concurrent._choose(key) for _ in range(40)]
    assert ways.count(True) > 30 and False in ways  # the faster, with trials of the other
