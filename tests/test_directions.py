"""Bidirectional layers: the two directions run concurrently or one after the other, same bits."""

import numpy as np
import pytest

import gru_fast
from gru_fast import _directions, functional


@pytest.fixture
def way(monkeypatch):
    """A function that makes run_both always run concurrently (True) or not (False)."""
    def set_to(concurrently):
        monkeypatch.setattr(_directions, "_choose", lambda key: concurrently)
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


def test_an_error_in_one_direction_is_raised_after_both_finish(way):
    way(True)
    calls = []

    def failing():
        raise ValueError("first direction failed")

    def second():
        calls.append("second")
        return 2

    with pytest.raises(ValueError, match="first direction failed"):
        _directions.run_both(failing, second, key="test")
    assert calls == ["second"]
    with pytest.raises(ZeroDivisionError):
        _directions.run_both(lambda: 1, lambda: 1 / 0, key="test")


def test_the_faster_way_is_kept_and_the_other_tried_now_and_then():
    key = ("test", "choose")
    _directions._seconds.pop(key, None)
    assert _directions._choose(key) is True  # nothing known: concurrently first
    _directions._record(key, True, 1.0)
    assert _directions._choose(key) is False  # then the other way
    _directions._record(key, False, 3.0)
    ways = [_directions._choose(key) for _ in range(40)]
    assert ways.count(True) > 30 and False in ways  # the faster, with trials of the other
