"""GRUNetwork: loss_and_grad against finite differences and PyTorch; the flat parameters."""

import pickle

import numpy as np
import pytest

from gru_fast._sequences import SequenceData, pad_sequences
from gru_fast.network import GRUNetwork

CONFIGS = [  # (num_layers, bidirectional, reset_after, loss)
    (1, False, False, "mse"),
    (1, False, True, "cross_entropy"),
    (2, True, False, "mse"),
    (2, False, True, "cross_entropy"),
]


def _batch(rng, loss, batch_size=4, seq_len=5, input_size=3, outputs=2, lengths=True):
    x = rng.standard_normal((batch_size, seq_len, input_size))
    targets = (rng.standard_normal((batch_size, outputs)) if loss == "mse"
               else rng.integers(0, outputs, batch_size))
    row_lengths = np.array([5, 2, 4, 1])[:batch_size] if lengths else None
    return x, targets, row_lengths


@pytest.mark.parametrize("num_layers,bidirectional,reset_after,loss", CONFIGS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_matches_finite_differences(num_layers, bidirectional, reset_after, loss,
                                             reduction):
    rng = np.random.default_rng(0)
    network = GRUNetwork(3, 4, 3, num_layers=num_layers, bidirectional=bidirectional,
                         reset_after=reset_after, loss=loss, dtype=np.float64, seed=1)
    x, targets, lengths = _batch(rng, loss, outputs=3)
    w = network.flat.copy() + 0.3 * rng.standard_normal(network.flat.shape)
    _, grad = network.loss_and_grad(w, x, targets, lengths, reduction)
    eps = 1e-6
    numeric = np.empty_like(w)
    for i in range(w.size):
        step = np.zeros_like(w)
        step[i] = eps
        plus, _ = network.loss_and_grad(w + step, x, targets, lengths, reduction)
        minus, _ = network.loss_and_grad(w - step, x, targets, lengths, reduction)
        numeric[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after,loss", [(False, "mse"), (True, "cross_entropy"),
                                              (True, "mse")])
@pytest.mark.parametrize("lengths", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_layer_step_gives_the_layer_paths_bits(monkeypatch, dtype, reset_after, loss,
                                                    lengths, reduction):
    """GRUNetwork._loss_and_grad_one_layer: the loss and gradient of the path through
    GRU.forward / GRU.backward, bit for bit, leaving x and the targets alone."""
    from gru_fast import network as network_module

    rng = np.random.default_rng(4)
    network = GRUNetwork(3, 20, 2, reset_after=reset_after, loss=loss, dtype=dtype, seed=5)
    x, targets, row_lengths = _batch(rng, loss, outputs=2, lengths=lengths)
    x = x.astype(dtype)
    x_before, targets_before = x.copy(), targets.copy()
    calls = []
    lean = GRUNetwork._loss_and_grad_one_layer
    monkeypatch.setattr(GRUNetwork, "_loss_and_grad_one_layer",
                        lambda self, *args: calls.append(1) or lean(self, *args))
    results = []
    for one_layer_step in (True, False):
        monkeypatch.setattr(network_module, "USE_ONE_LAYER_STEP", one_layer_step)
        results.append(network.loss_and_grad(network.flat, x, targets, row_lengths,
                                             reduction))
    assert calls == [1]  # the first run took the one-layer step, the second did not
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(targets, targets_before)


def test_matches_torch_gru_linear_mse():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    network = GRUNetwork(3, 5, 2, num_layers=2, bidirectional=True, reset_after=True,
                         dtype=np.float64, seed=3)
    x, targets, lengths = _batch(rng, "mse")
    gru = torch.nn.GRU(3, 5, 2, batch_first=True, bidirectional=True, dtype=torch.float64)
    head = torch.nn.Linear(10, 2, dtype=torch.float64)
    gru.load_state_dict({k: torch.tensor(v) for k, v in network.gru.params.items()})
    head.load_state_dict({k: torch.tensor(v) for k, v in network.head.params.items()})
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    _, h_n = gru(packed)
    output = head(torch.cat([h_n[-2], h_n[-1]], dim=1))
    expected_loss = torch.nn.MSELoss()(output, torch.tensor(targets))
    expected_loss.backward()
    loss, grad = network.loss_and_grad(network.flat, x, targets, lengths)
    assert loss == pytest.approx(float(expected_loss.detach()), rel=1e-12)
    views = network.unflatten(grad)
    for name, parameter in gru.named_parameters():
        np.testing.assert_allclose(views[name], parameter.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
    for name, parameter in head.named_parameters():
        np.testing.assert_allclose(views["head." + name], parameter.grad.numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_params_are_views_of_flat_and_survive_pickle():
    network = GRUNetwork(2, 3, 1, dtype=np.float64, seed=0)
    network.flat[:] = 0.25
    assert np.all(network.gru.params["weight_hh_l0"] == 0.25)
    assert np.all(network.head.params["bias"] == 0.25)
    copy = pickle.loads(pickle.dumps(network))
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    np.testing.assert_array_equal(copy.forward(x), network.forward(x))
    copy.loss_and_grad(copy.flat * 0.5, x, np.zeros((3, 1)))   # rebinds the views
    assert np.shares_memory(copy.gru.params["weight_ih_l0"], copy.flat)
    assert np.all(copy.gru.params["weight_ih_l0"] == 0.125)


def test_adopt_takes_replaced_arrays():
    network = GRUNetwork(2, 3, 1, dtype=np.float64, seed=0)
    state = {name: np.full_like(value, 0.5) for name, value in network.gru.params.items()}
    network.gru.load_state_dict(state)
    network.adopt()
    assert np.all(network.unflatten(network.flat)["weight_ih_l0"] == 0.5)
    assert np.shares_memory(network.gru.params["weight_ih_l0"], network.flat)


def test_forward_data_equals_forward_and_ignores_padding():
    rng = np.random.default_rng(5)
    network = GRUNetwork(2, 4, 2, bidirectional=True, dtype=np.float64, seed=0)
    sequences = [rng.standard_normal((length, 2)) for length in (3, 7, 1, 5)]
    data = pad_sequences(sequences, np.float64)
    together = network.forward_data(data)
    for row, sequence in enumerate(sequences):
        alone = network.forward(sequence[None])
        np.testing.assert_allclose(together[row], alone[0], rtol=1e-12, atol=1e-14)
    x = rng.standard_normal((5, 6, 2))
    np.testing.assert_allclose(network.forward_data(SequenceData.from_batch_major(x)),
                               network.forward(x), rtol=1e-13)


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss"):
        GRUNetwork(2, 3, 1, loss="hinge")
    network = GRUNetwork(2, 3, 1, dtype=np.float64)
    with pytest.raises(ValueError, match="params has shape"):
        network.loss_and_grad(np.zeros(3), np.zeros((1, 2, 2)), np.zeros((1, 1)))
