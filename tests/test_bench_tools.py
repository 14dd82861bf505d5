"""The measuring tools behind the benchmark claims: pipeline.py's contestant orders,
compare.py's intervals of a ratio over resampled repetitions, and gemm_bound.py's
products and interleaving."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
_PATH = list(sys.path)
sys.path.insert(0, str(BENCH))  # for these imports only (pipeline.py adds its own entries)
try:
    import gemm_bound
    import pipeline
    from compare_lib.targets import interval_note, ratio_interval, within_noise
    from compare_lib.tasks import task_flops
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


@pytest.mark.parametrize("pass_", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("shape", [(7, 3, 5, 4), (2, 1, 9, 3)])
def test_the_gemm_bound_counts_the_flops_compare_py_counts(pass_, shape):
    products = gemm_bound.product_operands(shape, "float32", pass_)
    assert len(products) == (2 if pass_ == "fwd" else 6)
    assert gemm_bound.product_flops(products) == task_flops(shape, pass_)


def test_the_gemm_bound_runs_the_products_of_a_gru_call():
    seq_len, batch_size, input_size, hidden_size = shape = (4, 3, 5, 2)
    n, three_h = seq_len * batch_size, 3 * hidden_size
    products = gemm_bound.product_operands(shape, "float64", "fwdbwd")
    # forward's two, then backward's dx, dW_ih, dh, dW_hh
    assert [out.shape for _, _, out in products] == [
        (n, three_h), (n, three_h), (n, input_size), (three_h, input_size),
        (n, hidden_size), (three_h, hidden_size)]
    gemm_bound.bound_callable(products)()
    for a, b, out in products:
        np.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_the_gemm_bound_interleaves_its_runs_in_rotated_orders():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "FrozenGRU")}
    samples, shares = gemm_bound.time_interleaved(runs, repeats=3, calls=2, pause=0)
    assert {name: len(v) for name, v in samples.items()} == {"a": 3, "b": 3, "FrozenGRU": 3}
    assert all(t >= 0 for v in samples.values() for t in v)
    assert list(shares) == ["FrozenGRU"]  # serial shares of gru_fast's runs only
    starts = calls[::2]  # each sample: `calls` calls in a row
    assert calls[1::2] == starts
    assert starts == ["a", "b", "FrozenGRU", "b", "FrozenGRU", "a", "FrozenGRU", "a", "b"]


def test_the_gemm_bound_names_the_targets_it_weighs():
    forward = gemm_bound.targets_of("fwd_f32", "large")
    assert forward["torch"] == [(pipeline.VS_TORCH, "pipeline.py")]
    assert (pipeline.VS_ONNXRUNTIME, "pipeline.py") in forward["onnxruntime"]
    assert gemm_bound.targets_of("fb_f64", "large") == {"torch": [(1.5, "compare.py")]}
