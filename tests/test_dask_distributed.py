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


@pytest.mark.parametrize("threshold, one_key", [("10MB", False), ("1kB", True)])
def test_model_inside_every_task_or_as_one_key(client, threshold, one_key):
    """A small model travels inside each chunk's task; one whose copies would pass half
    of Dask's large-graph threshold is one key of the graph.  Same results either way."""
    import dask

    rng = np.random.default_rng(8)
    model = gru_fast.GRU(3, 8, dtype=np.float64, seed=9).freeze()
    x = rng.standard_normal((6, 40, 3))
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": threshold}):
        y, h_n = gru_dask.forward(model, da.from_array(x, chunks=(6, 10, 3)))
    model_keys = [key for key in h_n.__dask_graph__()
                  if str(key).startswith(type(model).__name__)]
    assert len(model_keys) == (1 if one_key else 0), model_keys
    with distributed.get_task_stream(client) as stream:
        y, h_n = client.compute([y, h_n], sync=True)
    assert len({task["worker"] for task in stream.data
                if "_forward_chunk" in str(task["key"])}) == 2
    y_ref, h_ref = model(x)
    np.testing.assert_allclose(y, y_ref, **TOL)
    np.testing.assert_allclose(h_n, h_ref, **TOL)


# ---------------------------------------------------------------------- training

def _regression_problem(n=400, T=10, I=2, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, I))
    y = X[:, -3:, 0].sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


LBFGS = dict(hidden_size=6, solver="lbfgs", dtype="float64", max_epochs=15, tol=0.0,
             random_state=0)


def _relative_difference(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_distributed_lbfgs_equals_in_memory_lbfgs(client):
    estimators = pytest.importorskip("gru_fast.estimators")
    X, y = _regression_problem()
    local = estimators.GRURegressor(**LBFGS).fit(X, y)
    with distributed.get_task_stream(client) as stream:
        spread = estimators.GRURegressor(**LBFGS).fit(da.from_array(X, chunks=(50, 10, 2)),
                                                      da.from_array(y, chunks=50))
    assert spread.n_iter_ == local.n_iter_ == 15
    assert _relative_difference(spread._network.flat, local._network.flat) < 1e-6
    np.testing.assert_allclose(spread.loss_curve_, local.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(spread.predict(X), local.predict(X), rtol=1e-6, atol=1e-9)
    chunk_tasks = [task for task in stream.data if "_chunk_loss_and_grad" in str(task["key"])]
    sum_tasks = [task for task in stream.data if "_add_pairs" in str(task["key"])]
    assert len({task["worker"] for task in chunk_tasks}) == 2
    # The 8 chunks' sums meet on a worker (one 8-way sum per evaluation): one loss and
    # one gradient reach the client per evaluation, never a chunk of the data.
    assert len(chunk_tasks) == 8 * len(sum_tasks) > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_worker_killed_mid_fit_does_not_change_the_result(client, monkeypatch):
    """A worker dies before the third L-BFGS evaluation: its chunks are recomputed."""
    import os
    import signal

    estimators = pytest.importorskip("gru_fast.estimators")
    X, y = _regression_problem(seed=6)
    local = estimators.GRURegressor(**LBFGS).fit(X, y)

    victim_pid = next(iter(client.run(os.getpid).values()))
    original = gru_dask.DaskSequences.full_batch_objective
    evaluations = []

    def objective_that_kills(self, network, targets):
        objective = original(self, network, targets)

        def wrapped(w):
            evaluations.append(1)
            if len(evaluations) == 3:
                os.kill(victim_pid, signal.SIGKILL)
            return objective(w)

        return wrapped

    monkeypatch.setattr(gru_dask.DaskSequences, "full_batch_objective", objective_that_kills)
    try:
        spread = estimators.GRURegressor(**LBFGS).fit(da.from_array(X, chunks=(50, 10, 2)),
                                                      da.from_array(y, chunks=50))
    finally:
        client.wait_for_workers(2, timeout=60)
    assert len(evaluations) > 3
    assert victim_pid not in client.run(os.getpid).values()  # the worker was replaced
    assert _relative_difference(spread._network.flat, local._network.flat) < 1e-6


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_on_univariate_sequences_scores_on_the_workers(client):
    """2-D X (n_samples, T) with early stopping: the validation rows are scored where
    their chunks live, and the restored best parameters score the same in memory."""
    estimators = pytest.importorskip("gru_fast.estimators")
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(7)
    X = rng.standard_normal((240, 8))
    y = X[:, -3:].sum(axis=1)
    model = estimators.GRURegressor(hidden_size=5, learning_rate=0.02, max_epochs=4,
                                    early_stopping=True, n_iter_no_change=10,
                                    random_state=0)
    with distributed.get_task_stream(client) as stream:
        model.fit(da.from_array(X, chunks=(60, 8)), da.from_array(y, chunks=60))
    assert model.n_features_in_ == 8 and len(model.validation_scores_) == 4
    scoring = [task for task in stream.data if "chunk_outputs" in str(task["key"])]
    assert len(scoring) == 4 * 4  # every epoch, one task per chunk of the validation rows
    assert len({task["worker"] for task in scoring}) == 2
    rows = train_test_split(np.arange(240), test_size=0.1, random_state=model._split_seed)[1]
    assert model.score(X[rows], y[rows]) == pytest.approx(model.best_validation_score_,
                                                          rel=1e-9)


# ---------------------------------------------------------------------- stochastic solvers

ADAM = dict(hidden_size=6, solver="adam", dtype="float64", learning_rate=0.01, batch_size=50,
            max_epochs=3, n_iter_no_change=100, random_state=0)


def _bytes_served(dask_worker):
    """On a worker: every byte it has sent to anyone (other workers, scheduler, client)."""
    return dask_worker.transfer_outgoing_bytes_total


def _served(client):
    return sum(client.run(_bytes_served).values())


def _stochastic_problem(client, n=1600, T=30, I=10, rows=200):
    """X and y made and held on the workers (nothing travels from the client)."""
    X = da.random.default_rng(11).standard_normal((n, T, I), chunks=(rows, T, I))
    y = X[:, -3:, 0].sum(axis=1)
    X, y = client.persist([X, y])
    distributed.wait([X, y])
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("epoch", ["chain", "pulling chunks (former)"])
def test_stochastic_fit_trains_where_the_chunks_live(client, monkeypatch, epoch):
    """Adam on 8 chunks on 2 workers: the workers send nothing bigger than the state
    (parameters and Adam's moments) during the fit, and each worker runs the chain
    tasks of its own chunks.  The former epoch, every chunk pulled to the client,
    is run through the same check to show the check catches it."""
    import pickle

    estimators = pytest.importorskip("gru_fast.estimators")
    if epoch != "chain":
        monkeypatch.setattr(gru_dask.DaskSequences, "run_epoch",
                            lambda self, *args: gru_dask._run_epoch_pulling_chunks(self, *args))
    X, y = _stochastic_problem(client)
    holders = [workers[0] for workers in client.who_has(X).values()]
    chunks_per_worker = sorted(holders.count(worker) for worker in set(holders))
    before = _served(client)
    with distributed.get_task_stream(client) as stream:
        model = estimators.GRURegressor(**ADAM).fit(X, y)
    moved = _served(client) - before
    assert model.n_iter_ == 3 and np.all(np.isfinite(model.loss_curve_))

    state = gru_dask._EpochState(model._network, model._optimizer, model._shuffle_rng, 0.0)
    state_bytes = len(pickle.dumps(state))
    if epoch != "chain":
        assert moved >= 3 * X.nbytes  # every chunk, every epoch: the check sees it
        return
    # At most every chain task's state moves (once per task, 8 a epoch, and the final
    # state to the client), which over the whole fit is less than one chunk.
    assert moved <= 3 * 9 * state_bytes < X.nbytes / 8, (moved, state_bytes)
    chain = [task for task in stream.data if "_chunk_epoch" in str(task["key"])]
    assert len(chain) == 3 * 8
    per_worker = sorted([task["worker"] for task in chain].count(worker)
                        for worker in {task["worker"] for task in chain})
    assert per_worker == [3 * count for count in chunks_per_worker], holders


def _kill_at_chain_task(count):
    """On a worker: SIGKILL this process when it starts its `count`-th chain task."""
    import os
    import signal

    import gru_fast.dask as gd

    original, calls = gd._chunk_epoch, []

    def killing(*args, **kwargs):
        calls.append(1)
        if len(calls) == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    gd._chunk_epoch = killing  # tasks look the function up by name when they arrive


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_worker_killed_mid_stochastic_fit_does_not_change_the_result(client):
    """A worker dies inside a chain task of the second epoch: Dask recomputes the lost
    chunks and states from the graph (every task copies its input state), and the fit
    ends exactly as an undisturbed one."""
    import os

    estimators = pytest.importorskip("gru_fast.estimators")
    X, y = _stochastic_problem(client)
    undisturbed = estimators.GRURegressor(**ADAM).fit(X, y)

    holders = [workers[0] for workers in client.who_has(X).values()]
    victim = max(set(holders), key=holders.count)  # holds 4 chunks or more of the 8
    victim_pid = client.run(os.getpid, workers=[victim])[victim]
    # Its first chain task of the second epoch (it runs one per chunk it holds).
    client.run(_kill_at_chain_task, holders.count(victim) + 1, workers=[victim])
    try:
        disturbed = estimators.GRURegressor(**ADAM).fit(X, y)
    finally:
        client.wait_for_workers(2, timeout=60)
    assert victim_pid not in client.run(os.getpid).values()  # the worker was replaced
    np.testing.assert_array_equal(disturbed._network.flat, undisturbed._network.flat)
    assert disturbed.loss_curve_ == undisturbed.loss_curve_
