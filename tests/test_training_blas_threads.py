"""A stochastic epoch holds BLAS to one thread and gives the user's limits back after."""

import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from gru_fast import _training  # noqa: E402
from gru_fast._sequences import SequenceData  # noqa: E402
from gru_fast.network import GRUNetwork  # noqa: E402
from gru_fast.optim import Adam  # noqa: E402


def _blas_threads():
    return [entry["num_threads"] for entry in threadpoolctl.threadpool_info()
            if entry["user_api"] == "blas"]


def test_epoch_runs_blas_on_one_thread_and_restores():
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl controls")
    seen = []
    network = GRUNetwork(2, 5, 1, dtype=np.float64, seed=0)
    real = network.loss_and_grad

    def spying(*args, **kwargs):
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    network.loss_and_grad = spying
    rng = np.random.default_rng(0)
    data = SequenceData.from_batch_major(rng.standard_normal((10, 4, 2)))
    targets = rng.standard_normal((10, 1))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        _training.run_epoch(network, Adam({"flat": network.flat}), data, targets, 4, rng)
        after = _blas_threads()
    assert len(seen) == 3 and all(set(counts) == {1} for counts in seen)
    assert after == before


def test_nested_uses_restore_once_and_other_threads_leave_limits_alone():
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl controls")
    limiter = _training._BlasOnOneThread()
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        with limiter:
            with limiter:
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}   # the outer use still holds
        assert _blas_threads() == before
        seen = []

        def other_fit():
            with limiter:
                seen.append(_blas_threads())

        worker = threading.Thread(target=other_fit)
        worker.start()
        worker.join(10)
        assert seen == [before] and _blas_threads() == before
