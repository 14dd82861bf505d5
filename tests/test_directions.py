"""Bidirectional layers: the two directions run concurrently or one after the other, same bits."""

import numpy as np
import pytest

import gru_fast
import time

from gru_fast import _concurrent, functional


@pytest.fixture
def way(monkeypatch):
    """A function that makes run_all always run concurrently (True) or not (False)."""
    def set_to(concurrently):
        monkeypatch.setattr(_concurrent, "_choose", lambda key: concurrently)
    monkeypatch.setattr(functional, "core_threads", lambda: 2)
    return set_to


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("frozen", [False, True])
def test_concurrent_directions_give_the_same_bits(way, dtype, frozen):
    rng = np.random.default_rng(2)
    layer = gru_fast.GRU(7, 40, num_layers=2, bidirectional=True, reset_after=True,
                         dtype=dtype, seed=3)
    x = rng.standard_normal((9, 5, 7)).astype(dtype)
    lengths = np.array([9, 3, 0, 7, 9])
    model = layer.freeze() if frozen else layer
    results = {}
    for concurrently in (False, True):
        way(concurrently)
        if frozen:
            results[concurrently] = model(x, lengths=lengths)
        else:
            y, h_n, cache = model.forward(x, lengths=lengths, return_cache=True)
            dy = np.ones_like(y)
            results[concurrently] = (y, h_n) + model.backward(cache, dy)[:2] + tuple(
                model.backward(cache, dy)[2].values())
    for got, want in zip(results[True], results[False]):
        np.testing.assert_array_equal(got, want)


def test_an_error_in_one_direction_is_raised_after_the_other_finishes(way):
    way(True)
    events = []

    def failing():
        time.sleep(0.05)  # the other direction has started by now (a helper claimed it)
        raise ValueError("first direction failed")

    def second():
        events.append("started")
        time.sleep(0.2)
        events.append("finished")
        return 2

    for calls in ((failing, second), (second, failing)):
        events.clear()
        with pytest.raises(ValueError, match="first direction failed"):
            _concurrent.run_all(calls, key="test")
        # nothing of the run is still running once the error is raised
        assert events in ([], ["started", "finished"])
    with pytest.raises(ZeroDivisionError):
        _concurrent.run_all([lambda: 1, lambda: 1 / 0], key="test")
