"""gru_fast.dask on a distributed.LocalCluster of 2 worker processes.

One cluster for the module (starting one costs seconds).  The workers are
separate processes that import gru_fast themselves: the fixture checks they
import this checkout (spawned workers inherit sys.path; CI's editable install
gives the same answer), and every model reaches them by pickle.
"""

import logging

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import gru_fast  # noqa: E402
import gru_fast.dask as gru_dask  # noqa: E402

TOL = dict(rtol=1e-12, atol=1e-13)  # float64; chunks of another size round differently


def _gru_fast_file():
    import gru_fast
    return gru_fast.__file__


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR) as cluster:
        with distributed.Client(cluster) as client:
            files = client.run(_gru_fast_file)
            assert set(files.values()) == {gru_fast.__file__}, files
            yield client


@pytest.mark.parametrize("frozen", [False, True])
def test_stacked_bidirectional_with_lengths(client, frozen):
    rng = np.random.default_rng(0)
    gru = gru_fast.GRU(3, 16, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    model = gru.freeze() if frozen else gru
    T, B = 9, 120
    x = rng.standard_normal((T, B, 3))
    lengths = rng.integers(0, T + 1, B)
    h0 = rng.standard_normal((4, B, 16))
    X = da.from_array(x, chunks=(T, 30, 3))
    y, h_n = gru_dask.forward(model, X, da.from_array(lengths, chunks=30),
                              da.from_array(h0, chunks=(4, 40, 16)))
    y, h_n = client.compute([y, h_n], sync=True)
    y_ref, h_ref = model(x, h0, lengths)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(h_n, h_ref, **TOL)


def test_batch_first_final_states_only(client):
    rng = np.random.default_rng(2)
    model = gru_fast.GRU(4, 8, batch_first=True, reset_after=True, dtype=np.float64,
                         seed=3).freeze()
    x = rng.standard_normal((100, 12, 4))
    lengths = rng.integers(1, 13, 100)
    y, h_n = gru_dask.forward(model, da.from_array(x, chunks=(25, 12, 4)), lengths,
                              return_sequences=False)
    assert y is None
    np.testing.assert_allclose(client.compute(h_n, sync=True), model(x, lengths=lengths)[1],
                               **TOL)


def test_frozen_gru_runs_on_both_workers(client):
    rng = np.random.default_rng(4)
    H, I = 8, 2
    weights = [rng.standard_normal(shape) * 0.3
               for shape in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))]
    frozen = gru_fast.FrozenGRU(*weights)
    x = rng.standard_normal((5, 64, I))
    y, h_n = gru_dask.forward(frozen, da.from_array(x, chunks=(5, 8, I)))
    with distributed.get_task_stream(client) as stream:
        y, h_n = client.compute([y, h_n], sync=True)
    workers = {task["worker"] for task in stream.data if "_forward_chunk" in str(task["key"])}
    assert len(workers) == 2, stream.data
    y_ref, h_ref = frozen(x)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(h_n, h_ref, **TOL)
