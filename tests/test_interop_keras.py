"""gru_fast.interop against real Keras GRU layers (Keras 3 with the torch backend)."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from gru_fast import interop  # noqa: E402
from gru_fast.layer import GRU  # noqa: E402

from _helpers import assert_close  # noqa: E402

# Keras' own variables trip NumPy 2's __array__ copy-keyword deprecation; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

I, H, B, T = 5, 4, 3, 6


def numpy_of(tensors):
    return [keras.ops.convert_to_numpy(t) for t in tensors]


def random_weights(keras_layer, seed):
    """Give every weight (the bias included) distinct random values."""
    rng = np.random.default_rng(seed)
    keras_layer.set_weights(
        [rng.standard_normal(w.shape).astype(w.dtype) for w in keras_layer.get_weights()])


def inputs(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, I)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("reset_after", [True, False])
def test_from_keras_matches_keras(reset_after, use_bias):
    keras_layer = keras.layers.GRU(H, reset_after=reset_after, use_bias=use_bias,
                                   return_sequences=True, return_state=True)
    x, h0 = inputs()
    keras_layer(x)  # build
    random_weights(keras_layer, 1)
    y_ref, h_ref = numpy_of(keras_layer(x, initial_state=[h0]))

    layer = interop.from_keras(keras_layer)
    assert (layer.batch_first, layer.reset_after, layer.bias, layer.num_layers) == (
        True, reset_after, use_bias, 1)
    y, h_n = layer.forward(x, h0[None])
    assert_close(y, y_ref, "y", kind="peer")  # return_sequences=True  <->  y
    assert_close(h_n[0], h_ref, "h_n[0]", kind="peer")  # return_state  <->  h_n[0]

    # keras -> gru_fast -> keras is exact
    for a, b in zip(keras_layer.get_weights(), interop.to_keras_weights(layer)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # the weight list converts the same way as the layer
    from_list = interop.from_keras(keras_layer.get_weights(), reset_after=reset_after)
    for name, value in layer.params.items():
        np.testing.assert_array_equal(from_list.params[name], value)


@pytest.mark.parametrize("reset_after", [True, False])
def test_to_keras_weights_reproduces_layer(reset_after):
    """A gru_fast layer with nonzero bias_hh, moved into a fresh Keras GRU."""
    layer = GRU(I, H, batch_first=True, reset_after=reset_after, seed=5)
    rng = np.random.default_rng(6)
    layer.load_state_dict(
        {n: rng.standard_normal(v.shape).astype(np.float32) for n, v in layer.params.items()})
    keras_layer = keras.layers.GRU(H, reset_after=reset_after, return_sequences=True,
                                   return_state=True)
    keras_layer.build((None, None, I))
    keras_layer.set_weights(interop.to_keras_weights(layer))
    x, h0 = inputs(2)
    y_ref, h_ref = numpy_of(keras_layer(x, initial_state=[h0]))
    y, h_n = layer.forward(x, h0[None])
    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n[0], h_ref, "h_n[0]", kind="peer")


@pytest.mark.parametrize("reset_after", [True, False])
def test_bidirectional_and_stack(reset_after):
    """Bidirectional(GRU) stacked on Bidirectional(GRU) becomes one 2-layer layer."""
    first = keras.layers.Bidirectional(
        keras.layers.GRU(H, reset_after=reset_after, return_sequences=True))
    second = keras.layers.Bidirectional(
        keras.layers.GRU(H, reset_after=reset_after, return_sequences=True, return_state=True))
    x, _ = inputs(3)
    y_ref, h_forward, h_backward = numpy_of(second(first(x)))
    layer = interop.from_keras([first, second])
    assert (layer.num_layers, layer.bidirectional, layer.reset_after) == (2, True, reset_after)
    y, h_n = layer.forward(x)
    assert_close(y, y_ref, "y", kind="peer")  # merge_mode="concat"  <->  y
    assert_close(h_n[2], h_forward, "h_n[2]", kind="peer")
    assert_close(h_n[3], h_backward, "h_n[3]", kind="peer")

    # back into fresh Keras layers through the weight lists, exactly
    weights = [interop.to_keras_weights(layer, k) for k in range(2)]
    for keras_layer, w in zip([first, second], weights):
        for a, b in zip(keras_layer.get_weights(), w):
            np.testing.assert_array_equal(a, b)
    assert interop.from_keras(weights).params.keys() == layer.params.keys()


def test_mask_final_state_matches_lengths():
    keras_layer = keras.layers.GRU(H, return_state=True)
    x, _ = inputs(4)
    lengths = np.array([6, 2, 4])
    mask = np.arange(T)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    _, h_ref = numpy_of(keras_layer(x, mask=mask))
    _, h_n = interop.from_keras(keras_layer).forward(x, lengths=lengths)
    assert_close(h_n[0], h_ref, "h_n[0]", kind="peer")


def test_float64_layer():
    keras_layer = keras.layers.GRU(H, dtype="float64", return_sequences=True)
    x, _ = inputs(5, np.float64)
    y_ref = numpy_of([keras_layer(x)])[0]
    layer = interop.from_keras(keras_layer)
    assert np.dtype(layer.dtype) == np.float64
    assert_close(layer.forward(x)[0], y_ref, "y", kind="peer")


def test_from_keras_rejects_what_it_cannot_express():
    with pytest.raises(ValueError, match="build"):
        interop.from_keras(keras.layers.GRU(H))
    x, _ = inputs()
    relu = keras.layers.GRU(H, activation="relu")
    relu(x)
    with pytest.raises(ValueError, match="tanh"):
        interop.from_keras(relu)
    backwards = keras.layers.GRU(H, go_backwards=True)
    backwards(x)
    with pytest.raises(ValueError, match="go_backwards"):
        interop.from_keras(backwards)
    plain = keras.layers.GRU(H, reset_after=True)
    plain(x)
    with pytest.raises(ValueError, match="reset_after"):
        interop.from_keras(plain, reset_after=False)
    with pytest.raises(TypeError, match="keras.layers.GRU"):
        interop.from_keras(keras.layers.Dense(3))
