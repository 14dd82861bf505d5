"""Stochastic epochs over dask chunks (gru_fast.dask.DaskSequences.run_epoch), local schedulers.

An epoch is one chain of tasks, one per chunk: each trains on its chunk and
hands the parameters, the optimizer's state and the RNG to the next.  Its
steps are those of training on the same chunks, in the same order, in memory:
checked here against that loop written out, and against the former
implementation (every chunk pulled to the client).  test_dask_distributed.py
checks where the tasks run on worker processes.
"""


import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import gru_fast.dask as gru_dask  # noqa: E402
from gru_fast._sequences import SequenceData  # noqa: E402
from gru_fast._training import make_optimizer, run_epoch  # noqa: E402
from gru_fast.network import GRUNetwork  # noqa: E402


def _problem(n=150, T=7, I=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, I))
    y = (X[:, -2:, 0].sum(axis=1) + 0.1 * rng.standard_normal(n))[:, None]
    return X, y


def _start(solver, seed=1):
    """A float64 network, its optimizer (after one step, so it has moments) and an RNG."""
    network = GRUNetwork(3, 6, 1, dtype=np.float64, seed=seed)
    optimizer = make_optimizer(solver, {"flat": network.flat}, 0.01)
    X, y = _problem(n=20, seed=9)
    run_epoch(network, optimizer, SequenceData.from_batch_major(X), y, 20,
              np.random.default_rng(0))
    return network, optimizer, np.random.default_rng(seed + 100)


def _in_memory_chunk_by_chunk(network, optimizer, rng, X, y, rows, batch_size):
    """The epoch written out: the chunks in the order the RNG draws, each in memory."""
    bounds = np.cumsum([0] + rows)
    total = 0.0
    for index in rng.permutation(len(rows)):
        lo, hi = bounds[index], bounds[index + 1]
        total += run_epoch(network, optimizer, SequenceData.from_batch_major(X[lo:hi]),
                           y[lo:hi], batch_size, rng) * (hi - lo)
    return total / len(X)


def _state(network, optimizer, rng):
    return network.flat.copy(), optimizer.state_dict(), rng.bit_generator.state


def _assert_same_state(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1]["step_count"] == expected[1]["step_count"]
    for name, buffers in expected[1]["state"].items():
        for key, value in buffers.items():
            np.testing.assert_array_equal(got[1]["state"][name][key], value)
    assert got[2] == expected[2]


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_chain_equals_the_chunks_trained_in_memory_in_the_same_order(solver, scheduler):
    X, y = _problem()
    rows = [40, 40, 40, 30]
    reference = _start(solver)
    expected_losses = [_in_memory_chunk_by_chunk(*reference, X, y, rows, batch_size=16)
                       for _ in range(2)]

    network, optimizer, rng = _start(solver)
    data = gru_dask.DaskSequences(da.from_array(X, chunks=(tuple(rows), 7, 3)))
    targets = da.from_array(y, chunks=(tuple(rows), 1))
    with dask.config.set(scheduler=scheduler):
        losses = [data.run_epoch(network, optimizer, targets, 16, rng) for _ in range(2)]
    assert losses == expected_losses
    _assert_same_state(_state(network, optimizer, rng), _state(*reference))
    # The client's optimizer is still bound to the client's network: it keeps training it.
    assert optimizer.params["flat"] is network.flat


def test_chain_equals_the_former_client_side_streaming():
    X, y = _problem(seed=2)
    X_dask, y_dask = da.from_array(X, chunks=(50, 7, 3)), da.from_array(y, chunks=(50, 1))
    old, new = _start("adam", seed=3), _start("adam", seed=3)
    data = gru_dask.DaskSequences(X_dask)
    old_loss = gru_dask._run_epoch_pulling_chunks(data, *old[:2], y_dask, 10, old[2])
    new_loss = data.run_epoch(*new[:2], y_dask, 10, new[2])
    assert new_loss == old_loss
    _assert_same_state(_state(*new), _state(*old))


def test_one_graph_per_epoch_and_inputs_left_alone(monkeypatch):
    """One compute per epoch, of a chain of one task per chunk; the client's state is
    only written at the end, and every task works on a copy of what it received."""
    X, y = _problem(seed=4)
    network, optimizer, rng = _start("sgd")
    before = _state(network, optimizer, rng)
    graphs = []
    original = dask.base.compute

    def recording(*collections, **kwargs):
        graphs.append(dict(collections[0].__dask_graph__()))
        # The client's parameters and optimizer are untouched while the graph runs (its
        # RNG has drawn the order of the chunks).
        _assert_same_state(_state(network, optimizer, rng)[:2] + (None,),
                           before[:2] + (None,))
        return original(*collections, **kwargs)

    monkeypatch.setattr(dask.base, "compute", recording)
    data = gru_dask.DaskSequences(da.from_array(X, chunks=(30, 7, 3)))
    data.run_epoch(network, optimizer, da.from_array(y, chunks=(30, 1)), 8, rng)
    assert len(graphs) == 1
    chain = [key for key in graphs[0] if str(key).startswith("_chunk_epoch")]
    assert len(chain) == 5
    assert not np.array_equal(network.flat, before[0])


def test_a_task_leaves_its_input_state_unchanged():
    X, y = _problem(n=30, seed=5)
    network, optimizer, rng = _start("adam")
    state = gru_dask._EpochState(network, optimizer, rng, 0.0)
    before = _state(network, optimizer, rng)
    after = gru_dask._chunk_epoch(state, X, y, 8)
    _assert_same_state(_state(network, optimizer, rng), before)
    assert after.optimizer.params["flat"] is after.network.flat
    assert after.loss_sum > 0 and not np.array_equal(after.network.flat, before[0])


def test_nan_in_a_chunk_is_reported_from_its_task():
    X, y = _problem(seed=6)
    X[100, 3, 1] = np.nan
    network, optimizer, rng = _start("adam")
    data = gru_dask.DaskSequences(da.from_array(X, chunks=(50, 7, 3)))
    with pytest.raises(ValueError, match="X contains NaN"):
        data.run_epoch(network, optimizer, da.from_array(y, chunks=(50, 1)), 8, rng)


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_local_epoch_holds_a_few_chunks_at_a_time(monkeypatch, scheduler):
    """Without a distributed client the chunks are loaded as the chain reaches them, not
    all at once (Dask's thread pool, left to itself, loaded all 16 ahead of the chain)."""
    import threading

    lock, alive, most = threading.Lock(), [0], [0]
    n_chunks, rows = 16, 20

    def load(block_info=None):
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        index = block_info[None]["chunk-location"][0]
        return np.random.default_rng(index).standard_normal(block_info[None]["chunk-shape"])

    original = gru_dask._chunk_epoch

    def consuming(*args):
        result = original(*args)
        with lock:
            alive[0] -= 1
        return result

    monkeypatch.setattr(gru_dask, "_chunk_epoch", consuming)
    X = da.map_blocks(load, chunks=((rows,) * n_chunks, (7,), (3,)), dtype=np.float64,
                      meta=np.empty((0, 0, 0)))
    y = da.zeros((rows * n_chunks, 1), chunks=(rows, 1))
    network, optimizer, rng = _start("adam")
    with dask.config.set(scheduler=scheduler):
        gru_dask.DaskSequences(X).run_epoch(network, optimizer, y, 10, rng)
    assert alive[0] == 0 and most[0] <= 2, most[0]
