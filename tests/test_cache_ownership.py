"""What a layer's cache copies and what it shares.

The public `GRU.forward` cache never depends on arrays the caller can change:
changing x or the params in place after the forward leaves backward's
gradients as they were.  It copies only those: an input the layer already
copied (batch-first x made time-major) is not copied again.  The training
path (`GRU._forward(..., borrow_params=True)`, used by
`GRUNetwork.loss_and_grad`, which runs backward at once) reads the params
in place: no copy, the params stay writable, the same gradients; and its
backward (`GRU._backward(..., grads_out=...)`) writes the parameter
gradients into the caller's arrays (views of one flat gradient).
"""

import numpy as np
import pytest

import gru_fast
import gru_fast.reference

LAYERS = [  # (num_layers, bidirectional, batch_first, lengths)
    (1, False, False, None),
    (1, False, True, [5, 3, 4]),
    (2, True, True, None),
    (2, False, False, [2, 5, 1]),
]


def _problem(num_layers, bidirectional, batch_first, seed=0):
    rng = np.random.default_rng(seed)
    layer = gru_fast.GRU(3, 4, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=batch_first, dtype=np.float64, seed=seed)
    x = rng.standard_normal((3, 5, 3) if batch_first else (5, 3, 3))
    dh_n = rng.standard_normal((num_layers * layer.num_directions, 3, 4))
    return layer, x, dh_n


def _gradients(layer, cache, dh_n):
    dx, dh0, grads = layer.backward(cache, None, dh_n)
    return {"x": dx, "h0": dh0, **grads}


def _public_gradients(layer, x, lengths, dh_n):
    """h_n and the gradients of the public forward and backward."""
    _, h_n, cache = layer.forward(x, lengths=lengths, return_cache=True)
    return h_n, _gradients(layer, cache, dh_n)


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths", LAYERS)
def test_changing_x_and_params_after_forward_leaves_backward_alone(
        num_layers, bidirectional, batch_first, lengths):
    layer, x, dh_n = _problem(num_layers, bidirectional, batch_first)
    _, expected = _public_gradients(layer, x, lengths, dh_n)
    _, _, cache = layer.forward(x, lengths=lengths, return_cache=True)
    x[...] = 7.0
    for value in layer.params.values():
        value *= -3.0
    _assert_same(_gradients(layer, cache, dh_n), expected)


def test_an_input_the_layer_copied_is_not_copied_again():
    layer, x, _ = _problem(1, False, batch_first=True)
    _, _, cache = layer.forward(x, return_cache=True)  # x (B, T, I): made time-major
    kept = cache.run_caches[0].x_packed
    assert not np.shares_memory(kept, x)
    assert kept.base is not None  # a view of the layer's time-major copy, not a new array
    time_major = np.ascontiguousarray(x.transpose(1, 0, 2))
    plain = gru_fast.GRU(3, 4, dtype=np.float64, seed=0)
    _, _, cache = plain.forward(time_major, return_cache=True)  # the caller's own array
    assert not np.shares_memory(cache.run_caches[0].x_packed, time_major)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths", LAYERS)
def test_borrowed_params_give_the_same_gradients_and_stay_writable(
        num_layers, bidirectional, batch_first, lengths):
    layer, x, dh_n = _problem(num_layers, bidirectional, batch_first)
    h_n, expected = _public_gradients(layer, x, lengths, dh_n)
    _, h_n_borrowed, cache = layer._forward(x, None, lengths, True, True, borrow_params=True)
    np.testing.assert_array_equal(h_n_borrowed, h_n)
    for run_cache in cache.run_caches:  # the params themselves, read-only views
        assert not run_cache.weight_hh.flags.writeable
        assert any(np.shares_memory(run_cache.weight_hh, value)
                   for value in layer.params.values())
    assert all(value.flags.writeable for value in layer.params.values())
    _assert_same(_gradients(layer, cache, dh_n), expected)
    for value in layer.params.values():
        value += 0.0  # still writable after backward


@pytest.mark.parametrize("layer_class", [gru_fast.GRU, gru_fast.reference.GRU])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,lengths", LAYERS)
def test_gradients_written_into_given_arrays(layer_class, bias, num_layers, bidirectional,
                                             batch_first, lengths):
    """GRU._backward(grads_out=...): the gradients of backward, in the caller's arrays."""
    _, x, dh_n = _problem(num_layers, bidirectional, batch_first)
    layer = layer_class(3, 4, num_layers=num_layers, bidirectional=bidirectional,
                        batch_first=batch_first, bias=bias, dtype=np.float64, seed=1)
    width = 4 * layer.num_directions
    dy = np.random.default_rng(2).standard_normal((3, 5, width) if batch_first
                                                  else (5, 3, width))
    _, _, cache = layer.forward(x, lengths=lengths, return_cache=True)
    expected = layer.backward(cache, dy, dh_n)
    out = {name: np.full_like(value, np.nan) for name, value in layer.params.items()}
    dx, dh0, grads = layer._backward(cache, dy, dh_n, True, grads_out=out)
    np.testing.assert_array_equal(dx, expected[0])
    np.testing.assert_array_equal(dh0, expected[1])
    assert list(grads) == list(expected[2]) == list(layer.params)
    for name, value in grads.items():
        assert value is out[name]
        np.testing.assert_array_equal(value, expected[2][name], err_msg=name)
