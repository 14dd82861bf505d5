"""gru_fast.interop against the real torch.nn.GRU."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gru_fast import interop  # noqa: E402
from gru_fast.layer import GRU  # noqa: E402

from _helpers import assert_close  # noqa: E402

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

CONFIGS = [
    # num_layers, bidirectional, batch_first, bias
    (1, False, False, True),
    (1, True, True, True),
    (2, False, True, False),
    (2, True, False, True),
    (3, True, True, True),
]


def torch_forward(module, x, h0, lengths):
    """The module's own output for padded input x and per-row lengths."""
    with torch.no_grad():
        x_t, h0_t = torch.from_numpy(x), torch.from_numpy(h0)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.from_numpy(lengths), batch_first=module.batch_first, enforce_sorted=False)
        y_packed, h_n = module(packed, h0_t)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(
            y_packed, batch_first=module.batch_first,
            total_length=x.shape[1 if module.batch_first else 0])
    return y.numpy(), h_n.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS)
def test_from_torch_matches_torch(config, dtype):
    num_layers, bidirectional, batch_first, bias = config
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 4, num_layers, bias=bias, batch_first=batch_first,
                          bidirectional=bidirectional, dtype=TORCH_DTYPE[dtype]).eval()
    layer = interop.from_torch(module)
    assert (layer.input_size, layer.hidden_size, layer.num_layers, layer.bias, layer.batch_first,
            layer.bidirectional, layer.reset_after) == (5, 4, num_layers, bias, batch_first,
                                                        bidirectional, True)
    assert np.dtype(layer.dtype) == np.dtype(dtype)
    state = module.state_dict()
    assert set(layer.params) == set(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(layer.params[name], tensor.numpy(), err_msg=name)

    rng = np.random.default_rng(1)
    T, B, D = 6, 3, 2 if bidirectional else 1
    x = rng.standard_normal((B, T, 5) if batch_first else (T, B, 5)).astype(dtype)
    h0 = rng.standard_normal((num_layers * D, B, 4)).astype(dtype)
    lengths = np.array([4, 6, 1])
    y_ref, h_ref = torch_forward(module, x, h0, lengths)
    y, h_n = layer.forward(x, h0, lengths=lengths)
    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n, h_ref, "h_n", kind="peer")
    # full-length sequences, default initial state
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in module(torch.from_numpy(x)))
    y, h_n = layer.forward(x)
    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n, h_ref, "h_n", kind="peer")


@pytest.mark.parametrize("config", CONFIGS)
def test_torch_round_trips_are_exact(config):
    num_layers, bidirectional, batch_first, bias = config
    module = torch.nn.GRU(3, 2, num_layers, bias=bias, batch_first=batch_first,
                          bidirectional=bidirectional)
    back = interop.to_torch(interop.from_torch(module))
    assert isinstance(back, torch.nn.GRU)
    assert (back.num_layers, back.bidirectional, back.batch_first, back.bias) == (
        num_layers, bidirectional, batch_first, bias)
    for (name, a), (name_b, b) in zip(module.state_dict().items(), back.state_dict().items()):
        assert name == name_b and a.dtype == b.dtype
        assert torch.equal(a, b), name

    layer = GRU(3, 2, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                reset_after=True, dtype=np.float64, seed=4)
    again = interop.from_torch(interop.to_torch(layer))
    assert np.dtype(again.dtype) == np.float64
    for name, value in layer.params.items():
        np.testing.assert_array_equal(again.params[name], value, err_msg=name)


def test_to_torch_output_matches_layer():
    layer = GRU(3, 5, 2, batch_first=True, bidirectional=True, reset_after=True, seed=2)
    module = interop.to_torch(layer)
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in module(torch.from_numpy(x)))
    y, h_n = layer.forward(x)
    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n, h_ref, "h_n", kind="peer")


def test_to_torch_rejects_classic_gru():
    layer = GRU(3, 2, reset_after=False, seed=0)
    with pytest.raises(ValueError, match="reset_after=True"):
        interop.to_torch(layer)


def test_from_torch_errors_and_warnings():
    with pytest.raises(TypeError, match="torch.nn.GRU"):
        interop.from_torch(torch.nn.LSTM(3, 2))
    with pytest.raises(TypeError, match="float16"):
        interop.from_torch(torch.nn.GRU(3, 2).half())
    with pytest.warns(UserWarning, match="dropout"):
        layer = interop.from_torch(torch.nn.GRU(3, 2, num_layers=2, dropout=0.5))
    assert layer.num_layers == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interop.from_torch(torch.nn.GRU(3, 2))
