"""return_sequences=False: final states only, without allocating the last layer's y.

The final states must be those of the full forward pass (bit for bit: the core
runs the same arithmetic and only skips the writes of y) and of the NumPy
reference; y comes back as None; memory beyond the input stays O(B*H).
"""

import tracemalloc

import numpy as np
import pytest

import gru_fast
from gru_fast import reference

RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _weights(rng, input_size, hidden_size, dtype, bias=True):
    scale = 1 / np.sqrt(hidden_size)
    shapes = [(3 * hidden_size, input_size), (3 * hidden_size, hidden_size)]
    if bias:
        shapes += [(3 * hidden_size,), (3 * hidden_size,)]
    return [rng.uniform(-scale, scale, shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_functional_final_state_matches_full_forward(dtype, reset_after, reverse,
                                                      with_lengths):
    rng = np.random.default_rng(1)
    T, B, I, H = 7, 5, 3, 40
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    weights = _weights(rng, I, H, dtype)
    lengths = np.array([7, 0, 3, 7, 1]) if with_lengths else None
    kwargs = dict(reset_after=reset_after, lengths=lengths, reverse=reverse)

    y_full, h_full = gru_fast.gru_forward(x, h0, *weights, **kwargs)
    y_lean, h_lean = gru_fast.gru_forward(x, h0, *weights, return_sequences=False, **kwargs)
    _, h_ref = reference.gru_forward(x, h0, *weights, **kwargs)

    assert y_lean is None
    np.testing.assert_array_equal(h_lean, h_full)
    np.testing.assert_allclose(h_lean, h_ref, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_functional_lean_with_cache_gives_the_same_gradients():
    rng = np.random.default_rng(2)
    T, B, I, H = 6, 4, 3, 8
    x = rng.standard_normal((T, B, I))
    weights = _weights(rng, I, H, np.float64)
    lengths = np.array([6, 2, 0, 5])
    dh_n = rng.standard_normal((B, H))
    _, _, cache_full = gru_fast.gru_forward(x, None, *weights, lengths=lengths,
                                            return_cache=True)
    y, _, cache_lean = gru_fast.gru_forward(x, None, *weights, lengths=lengths,
                                            return_cache=True, return_sequences=False)
    assert y is None
    zeros = np.zeros((T, B, H))
    full = gru_fast.gru_backward(cache_full, zeros, dh_n)
    lean = gru_fast.gru_backward(cache_lean, zeros, dh_n)
    for name in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(lean[name], full[name])


@pytest.mark.parametrize("cls", [gru_fast.GRU, reference.GRU])
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layer_final_states_stacked_bidirectional(cls, frozen, batch_first):
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 5, 4, 8
    gru = cls(I, H, num_layers=2, bidirectional=True, batch_first=batch_first,
              reset_after=True, dtype=np.float64, seed=4)
    model = gru.freeze() if frozen else gru
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0 = rng.standard_normal((4, B, H))
    lengths = np.array([6, 1, 0, 4, 6])

    y_full, h_full = model(x, h0, lengths)
    y_lean, h_lean = model(x, h0, lengths, return_sequences=False)
    assert y_lean is None
    np.testing.assert_array_equal(h_lean, h_full)
    oracle = reference.GRU(I, H, num_layers=2, bidirectional=True, batch_first=batch_first,
                           reset_after=True, dtype=np.float64)
    oracle.load_state_dict(gru.state_dict())
    _, h_ref = oracle(x, h0, lengths)
    np.testing.assert_allclose(h_lean, h_ref, rtol=1e-12, atol=1e-12)
    if not frozen:
        _, _, cache = model.forward(x, h0, lengths, return_cache=True, return_sequences=False)
        dx, dh0, grads = model.backward(cache, None, np.ones_like(h_full))
        _, _, cache_full = model.forward(x, h0, lengths, return_cache=True)
        dx_full, dh0_full, grads_full = model.backward(cache_full, None, np.ones_like(h_full))
        np.testing.assert_array_equal(dx, dx_full)
        np.testing.assert_array_equal(dh0, dh0_full)
        for name in grads:
            np.testing.assert_array_equal(grads[name], grads_full[name])


@pytest.mark.parametrize("reset_after", [False, True])
def test_frozen_gru_final_state(reset_after):
    rng = np.random.default_rng(5)
    T, B, I, H = 9, 3, 2, 33
    weights = _weights(rng, I, H, np.float32)
    frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([9, 4, 0])
    y, h_n = frozen(x, lengths=lengths, reverse=True, return_sequences=False)
    assert y is None
    np.testing.assert_array_equal(h_n, frozen(x, lengths=lengths, reverse=True)[1])


@pytest.mark.parametrize("call", [
    lambda x, w: gru_fast.gru_forward(x, None, *w, return_sequences=1),
    lambda x, w: gru_fast.FrozenGRU(*w)(x, return_sequences="no"),
    lambda x, w: gru_fast.GRU(2, 4, seed=0)(x, return_sequences=None),
    lambda x, w: reference.gru_forward(x, None, *w, return_sequences=0),
])
def test_return_sequences_must_be_boolean(call):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 2)).astype(np.float32)
    with pytest.raises(TypeError, match="return_sequences"):
        call(x, _weights(rng, 2, 4, np.float32))


def test_lean_forward_does_not_allocate_outputs():
    """Peak memory of a lean call stays far below the y it does not return."""
    rng = np.random.default_rng(7)
    T, B, I, H = 200, 256, 4, 64
    gru = gru_fast.GRU(I, H, seed=0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(0, T + 1, B)
    y_bytes = T * B * H * 4
    gru(x[:2], lengths=np.minimum(lengths, 2), return_sequences=False)  # scratch exists
    for kwargs in ({}, {"lengths": lengths}):
        tracemalloc.start()
        try:
            _, h_n = gru(x, return_sequences=False, **kwargs)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Beyond the packed input (x.nbytes with lengths): O(B*H) scratch.
        assert peak < x.nbytes + 32 * B * H * 4 < y_bytes / 2, (kwargs, peak)
        assert h_n.shape == (1, B, H)
