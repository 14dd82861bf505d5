"""The measuring tools behind the benchmark claims: pipeline.py's contestant orders and
compare.py's intervals of a ratio over resampled repetitions."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
_PATH = list(sys.path)
sys.path.insert(0, str(BENCH))  # for these imports only (pipeline.py adds its own entries)
try:
    import pipeline
    from compare_lib.targets import interval_note, ratio_interval, within_noise
finally:
    sys.path[:] = _PATH


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_balanced_orders_put_each_contestant_after_every_other_once(n):
    orders = pipeline.balanced_orders(n)
    assert len(orders) == n
    for order in orders:
        assert sorted(order) == list(range(n))  # a permutation
    assert sorted(order[0] for order in orders) == list(range(n))  # each first once
    pairs = [pair for order in orders for pair in zip(order, order[1:])]
    assert sorted(pairs) == sorted(itertools.permutations(range(n), 2))


def test_balanced_orders_refuse_an_odd_count():
    with pytest.raises(ValueError, match="even"):
        pipeline.balanced_orders(5)


def test_the_interval_of_a_ratio_holds_the_ratio_and_narrows_with_less_noise():
    rng = np.random.default_rng(0)
    theirs = 2.0 * (1 + 0.2 * rng.random(15))
    ours = 1.0 * (1 + 0.2 * rng.random(15))
    low, high = ratio_interval(theirs, ours)
    point = np.median(theirs) / np.median(ours)
    assert low <= point <= high
    assert 1.6 < low < high < 2.4
    quiet_low, quiet_high = ratio_interval(2.0 * (1 + 0.01 * rng.random(15)),
                                           1.0 * (1 + 0.01 * rng.random(15)))
    assert quiet_high - quiet_low < (high - low) / 5
    assert ratio_interval(theirs, ours) == (low, high)  # seeded: the same every run


def test_pairs_stay_together_in_the_median_ratio():
    """Repetitions where both sides slowed by the same factor keep a ratio of 2 exactly."""
    drift = np.array([1.0, 3.0, 1.5, 7.0, 2.0, 1.1])
    low, high = ratio_interval(2 * drift, drift, "median ratio")
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)


def test_too_few_or_unpaired_repetitions_give_no_interval():
    assert ratio_interval([1.0, 2.0], [1.0, 2.0]) is None
    assert ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0]) is None
    with pytest.raises(ValueError, match="statistic"):
        ratio_interval([1.0] * 3, [1.0] * 3, "mean")


def test_within_noise_reads_the_interval_against_the_threshold():
    near = {"threshold": 1.3, "interval": (1.2, 1.4)}
    clear = {"threshold": 1.3, "interval": (1.35, 1.6)}
    assert within_noise(near) and not within_noise(clear)
    assert not within_noise({"threshold": 1.3})
    assert "within noise" in interval_note(near["interval"], 1.3)
    assert "clear of the target" in interval_note(clear["interval"], 1.3)
    assert interval_note(None, 1.3) == ""
