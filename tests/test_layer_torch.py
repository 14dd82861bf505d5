"""gru_fast.GRU(reset_after=True) loaded from a torch.nn.GRU state_dict behaves like it.

Outputs and every gradient (x, h0, all parameters), padded (full-length) and packed
(``pack_padded_sequence(..., enforce_sorted=False)`` against our ``lengths``), stacked,
bidirectional, batch-first, float64 and float32.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gru_fast  # noqa: E402
from gru_fast import reference  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from _helpers import assert_close, make_layer_inputs  # noqa: E402

T, B, I, H = 6, 4, 3, 5
LENGTHS = np.array([4, 6, 1, 3])  # unsorted; packed sequences need lengths >= 1
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_torch(module, x, h0, dy, dh_n, lengths, batch_first):
    """Forward and backward of nn.GRU; padded y, h_n and the gradients as NumPy."""
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(h0, requires_grad=True)
    module.zero_grad()
    if lengths is None:
        y_t, h_n_t = module(x_t, h0_t)
    else:
        packed = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        y_packed, h_n_t = module(packed, h0_t)
        y_t, _ = pad_packed_sequence(y_packed, batch_first=batch_first,
                                     total_length=T)
    loss = (y_t * torch.tensor(dy)).sum() + (h_n_t * torch.tensor(dh_n)).sum()
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
    return (y_t.detach().numpy(), h_n_t.detach().numpy(), x_t.grad.numpy(),
            h0_t.grad.numpy(), grads)


@pytest.mark.parametrize("cls", [pytest.param(lambda: gru_fast.GRU, id="fast"),
                                 pytest.param(lambda: reference.GRU, id="ref")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_matches_torch(cls, dtype, packed, batch_first, bidirectional, num_layers, bias):
    torch.manual_seed(0)
    module = torch.nn.GRU(I, H, num_layers, bias=bias, batch_first=batch_first,
                          bidirectional=bidirectional, dtype=TORCH_DTYPE[dtype])
    layer = cls()(I, H, num_layers, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional, reset_after=True, dtype=dtype)
    assert list(layer.params) == list(module.state_dict())
    layer.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})

    x, h0, dy, dh_n = make_layer_inputs(layer, np.random.default_rng(1), T, B)
    lengths = LENGTHS if packed else None

    y_ref, h_n_ref, dx_ref, dh0_ref, grads_ref = run_torch(
        module, x, h0, dy, dh_n, lengths, batch_first)
    y, h_n, cache = layer.forward(x, h0, lengths=lengths, return_cache=True)
    dx, dh0, grads = layer.backward(cache, dy, dh_n)

    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n, h_n_ref, "h_n", kind="peer")
    assert_close(dx, dx_ref, "dx", kind="peer")
    assert_close(dh0, dh0_ref, "dh0", kind="peer")
    assert list(grads) == list(grads_ref)
    for name in grads_ref:
        assert_close(grads[name], grads_ref[name], name, kind="peer")


@pytest.mark.parametrize("cls", [pytest.param(lambda: gru_fast.GRU, id="fast"),
                                 pytest.param(lambda: reference.GRU, id="ref")])
def test_step_matches_torch_cell_by_cell(cls):
    """step() after loading nn.GRU weights equals nn.GRU run one step at a time."""
    torch.manual_seed(2)
    module = torch.nn.GRU(I, H, 2, dtype=torch.float64)
    layer = cls()(I, H, 2, reset_after=True, dtype=np.float64)
    layer.load_state_dict(module.state_dict())  # torch tensors are accepted directly
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I))
    h = h_t = np.zeros((2, B, H))
    with torch.no_grad():
        h_t = torch.tensor(h_t)
        for t in range(T):
            h = layer.step(x[t], h)
            _, h_t = module(torch.tensor(x[t : t + 1]), h_t)
            assert_close(h, h_t.numpy(), f"h[{t}]", kind="peer")


def test_torch_default_init_is_in_the_same_range():
    """Both initialise uniformly in +-1/sqrt(H)."""
    torch.manual_seed(0)
    module = torch.nn.GRU(I, H, 2, bidirectional=True)
    layer = gru_fast.GRU(I, H, 2, bidirectional=True, seed=0)
    bound = 1 / np.sqrt(H)
    for name, value in module.state_dict().items():
        assert layer.params[name].shape == tuple(value.shape)
        assert layer.params[name].dtype == np.float32
        assert np.abs(value.numpy()).max() <= bound
        assert np.abs(layer.params[name]).max() <= bound
