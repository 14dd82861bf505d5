"""dy=None in backward means a loss on the final states only: the same gradients as dy = 0.

The compiled core then reads no dy at all (nothing is allocated for it); the
gradients must equal those of an explicit zero dy, and the reference's.
"""

import numpy as np
import pytest

import gru_fast
from gru_fast import reference

RTOL = {np.float32: 2e-4, np.float64: 1e-10}


def _problem(dtype, reset_after, lengths, hidden_size=37, seed=0):
    rng = np.random.default_rng(seed)
    T, B, I, H = 9, 5, 3, hidden_size
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    weights = [rng.uniform(-0.4, 0.4, shape).astype(dtype)
               for shape in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))]
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    return x, h0, weights, dh_n, lengths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("lengths", [None, [9, 0, 4, 9, 1]])
@pytest.mark.parametrize("reverse", [False, True])
def test_none_equals_zeros_and_the_reference(dtype, reset_after, lengths, reverse):
    x, h0, weights, dh_n, lengths = _problem(dtype, reset_after, lengths)
    kwargs = dict(reset_after=reset_after, lengths=lengths, reverse=reverse,
                  return_cache=True)
    y, _, cache = gru_fast.gru_forward(x, h0, *weights, **kwargs)
    without = gru_fast.gru_backward(cache, None, dh_n)
    with_zeros = gru_fast.gru_backward(cache, np.zeros_like(y), dh_n)
    _, _, ref_cache = reference.gru_forward(x, h0, *weights, **kwargs)
    expected = reference.gru_backward(ref_cache, None, dh_n)
    for name in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(without[name], with_zeros[name], err_msg=name)
        np.testing.assert_allclose(without[name], expected[name], rtol=RTOL[dtype],
                                   atol=RTOL[dtype], err_msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_backward_with_none_dy(bidirectional):
    layer = gru_fast.GRU(3, 20, num_layers=2, bidirectional=bidirectional,
                         reset_after=True, dtype=np.float64, seed=1)
    x = np.random.default_rng(2).standard_normal((7, 4, 3))
    y, h_n, cache = layer.forward(x, lengths=[7, 3, 5, 1], return_cache=True)
    dh_n = np.random.default_rng(3).standard_normal(h_n.shape)
    dx, dh0, grads = layer.backward(cache, None, dh_n)
    dx_zeros, dh0_zeros, grads_zeros = layer.backward(cache, np.zeros_like(y), dh_n)
    np.testing.assert_array_equal(dx, dx_zeros)
    np.testing.assert_array_equal(dh0, dh0_zeros)
    assert list(grads) == list(grads_zeros)
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads_zeros[name], err_msg=name)


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("lengths", [None, [9, 0, 4, 9, 1]])
def test_without_input_gradient_the_rest_is_the_same(reset_after, lengths):
    """input_grad=False (what training a first layer needs) skips dx, changes nothing else."""
    x, h0, weights, dh_n, lengths = _problem(np.float64, reset_after, lengths)
    y, _, cache = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                       lengths=lengths, return_cache=True)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    full = gru_fast.gru_backward(cache, dy, dh_n)
    without = gru_fast.gru_backward(cache, dy, dh_n, input_grad=False)
    assert without["x"] is None and full["x"] is not None
    for name in ("h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(without[name], full[name], err_msg=name)
    _, _, ref_cache = reference.gru_forward(x, h0, *weights, reset_after=reset_after,
                                            lengths=lengths, return_cache=True)
    assert reference.gru_backward(ref_cache, dy, dh_n, input_grad=False)["x"] is None
    with pytest.raises(TypeError, match="input_grad"):
        gru_fast.gru_backward(cache, dy, dh_n, input_grad="no")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_backward_without_input_gradient(bidirectional):
    layer = gru_fast.GRU(3, 12, num_layers=2, bidirectional=bidirectional, batch_first=True,
                         dtype=np.float64, seed=4)
    x = np.random.default_rng(6).standard_normal((4, 7, 3))
    y, h_n, cache = layer.forward(x, return_cache=True)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx, dh0, grads = layer.backward(cache, dy)
    none, dh0_without, grads_without = layer.backward(cache, dy, input_grad=False)
    assert none is None and dx.shape == x.shape
    np.testing.assert_array_equal(dh0_without, dh0)
    for name in grads:
        np.testing.assert_array_equal(grads_without[name], grads[name], err_msg=name)
