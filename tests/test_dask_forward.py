"""gru_fast.dask.forward on Dask's local schedulers: equal to the in-memory forward.

Chunks of another batch size take other kernel paths, so results agree to
rounding (rtol 1e-12 in float64, 1e-5 in float32), not bit for bit.  The
distributed scheduler is tested in test_dask_distributed.py.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import gru_fast  # noqa: E402
import gru_fast.dask as gru_dask  # noqa: E402

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _model(kind, dtype, batch_first=False):
    gru = gru_fast.GRU(3, 8, num_layers=2, bidirectional=True, batch_first=batch_first,
                       reset_after=True, dtype=dtype, seed=1)
    if kind == "GRU":
        return gru
    if kind == "FrozenGRULayer":
        return gru.freeze()
    weights = [gru.params[f"{name}_l0"] for name in
               ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return gru_fast.FrozenGRU(*weights, reset_after=False)


def _state_shape(model, batch_size):
    if isinstance(model, gru_fast.FrozenGRU):
        return (batch_size, model.hidden_size)
    return (model.num_layers * model.num_directions, batch_size, model.hidden_size)


@pytest.mark.parametrize("kind", ["GRU", "FrozenGRULayer", "FrozenGRU"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
@pytest.mark.parametrize("dask_inputs", [False, True])
def test_forward_equals_in_memory(kind, dtype, scheduler, dask_inputs):
    rng = np.random.default_rng(2)
    model = _model(kind, dtype)
    T, B = 6, 45
    x = rng.standard_normal((T, B, 3)).astype(dtype)
    lengths = rng.integers(0, T + 1, B)
    h0 = rng.standard_normal(_state_shape(model, B)).astype(dtype)
    # time and features split too: forward rechunks them to one chunk
    X = da.from_array(x, chunks=(4, 10, 2))
    if dask_inputs:
        lengths_in = da.from_array(lengths, chunks=17)
        h0_in = da.from_array(h0, chunks=7)
    else:
        lengths_in, h0_in = lengths, h0

    y, h_n = gru_dask.forward(model, X, lengths_in, h0_in)
    assert isinstance(y, da.Array) and isinstance(h_n, da.Array)
    assert y.chunks[1] == X.chunks[1] == h_n.chunks[-2]
    y, h_n = dask.compute(y, h_n, scheduler=scheduler)
    y_ref, h_ref = model.forward(x, h0, lengths=lengths)
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    np.testing.assert_allclose(h_n, h_ref, **TOL[dtype])

    none, h_only = gru_dask.forward(model, X, lengths_in, h0_in, return_sequences=False)
    assert none is None
    np.testing.assert_allclose(h_only.compute(scheduler=scheduler), h_ref, **TOL[dtype])


def test_batch_first_keeps_the_batch_on_axis_0():
    rng = np.random.default_rng(3)
    model = _model("FrozenGRULayer", np.float64, batch_first=True)
    x = rng.standard_normal((40, 5, 3))
    lengths = rng.integers(0, 6, 40)
    y, h_n = gru_dask.forward(model, da.from_array(x, chunks=(15, 5, 3)), lengths)
    assert y.shape == (40, 5, 16) and y.chunks[0] == (15, 15, 10)
    assert h_n.shape == (4, 40, 8) and h_n.chunks[1] == (15, 15, 10)
    y_ref, h_ref = model(x, lengths=lengths)
    np.testing.assert_allclose(y.compute(), y_ref, **TOL[np.float64])
    np.testing.assert_allclose(h_n.compute(), h_ref, **TOL[np.float64])


class _CountingGRU(gru_fast.GRU):
    calls = []

    def forward(self, *args, **kwargs):
        self.calls.append(args[0].shape)
        return super().forward(*args, **kwargs)


def test_nothing_runs_until_computed_then_one_call_per_chunk():
    model = _CountingGRU(3, 8, seed=0)
    x = da.ones((4, 8, 3), dtype=np.float32, chunks=(4, 2, 3))
    y, h_n = gru_dask.forward(model, x)
    assert model.calls == []
    dask.compute(y, h_n, scheduler="sync")
    assert model.calls == [(4, 2, 3)] * 4  # y and h_n come from the same four calls


@pytest.mark.parametrize("make_call, error, match", [
    (lambda m, X: gru_dask.forward(object(), X), TypeError, "model must be"),
    (lambda m, X: gru_dask.forward(m, X.astype(np.float64)), TypeError, "dtype float64"),
    (lambda m, X: gru_dask.forward(m, X[..., :2]), ValueError, "I=3"),
    (lambda m, X: gru_dask.forward(m, X[0]), ValueError, "shape"),
    (lambda m, X: gru_dask.forward(m, X, lengths=np.full(10, 9)), ValueError, "lengths"),
    (lambda m, X: gru_dask.forward(m, X, lengths=np.ones(3)), ValueError, "lengths"),
    (lambda m, X: gru_dask.forward(m, X, lengths=da.ones(3, dtype=int)), ValueError,
     "lengths"),
    (lambda m, X: gru_dask.forward(m, X, lengths=da.ones(10, dtype=bool)), TypeError,
     "lengths"),
    (lambda m, X: gru_dask.forward(m, X, h0=np.zeros((4, 9, 8), np.float32)), ValueError,
     "h0"),
    (lambda m, X: gru_dask.forward(m, X, h0=np.zeros((4, 10, 8))), TypeError, "h0"),
    (lambda m, X: gru_dask.forward(m, X, return_sequences="yes"), TypeError,
     "return_sequences"),
])
def test_bad_input_raises_before_anything_runs(make_call, error, match):
    model = _model("GRU", np.float32)
    X = da.zeros((5, 10, 3), dtype=np.float32, chunks=(5, 4, 3))
    with pytest.raises(error, match=match):
        make_call(model, X)


def test_dask_lengths_out_of_range_fail_when_computed():
    model = _model("GRU", np.float32)
    X = da.zeros((5, 10, 3), dtype=np.float32, chunks=(5, 4, 3))
    y, _ = gru_dask.forward(model, X, lengths=da.full(10, 6, chunks=5))
    with pytest.raises(ValueError, match="lengths must lie in 0..5"):
        y.compute()


def test_dask_prices_models_by_their_arrays():
    """Dask's sizeof sees the weights: a model sent as one key is not priced as free."""
    from dask.sizeof import sizeof

    layer = gru_fast.GRU(16, 32, num_layers=2, bidirectional=True, seed=0)
    params_bytes = sum(value.nbytes for value in layer.params.values())
    assert sizeof(layer) == params_bytes

    frozen_layer = layer.freeze()
    packed_bytes = sum(part.nbytes for part in frozen_layer._frozen.values())
    assert packed_bytes >= params_bytes // 2  # the packed copies hold every weight once
    assert sizeof(frozen_layer) == params_bytes + packed_bytes

    rng = np.random.default_rng(0)
    weight_ih = rng.standard_normal((96, 16)).astype(np.float32)
    weight_hh = rng.standard_normal((96, 32)).astype(np.float32)
    frozen = gru_fast.FrozenGRU(weight_ih, weight_hh, reset_after=True)
    assert sizeof(frozen) == frozen.nbytes >= weight_ih.nbytes + weight_hh.nbytes
