"""load_state_dict of a torch state dict: the documented recipe reproduces torch; the
classic variant (the default) warns instead of silently giving other numbers."""

import warnings

import numpy as np
import pytest

import gru_fast

torch = pytest.importorskip("torch")


def test_recipe_reproduces_torch_and_the_default_variant_warns():
    torch.manual_seed(0)
    torch_gru = torch.nn.GRU(3, 5, 2, batch_first=True, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((4, 6, 3))
    expected = torch_gru(torch.tensor(x))[0].detach().numpy()

    layer = gru_fast.GRU(torch_gru.input_size, torch_gru.hidden_size, torch_gru.num_layers,
                         bias=torch_gru.bias, batch_first=torch_gru.batch_first,
                         bidirectional=torch_gru.bidirectional, reset_after=True,
                         dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.load_state_dict({name: value.detach().numpy()
                               for name, value in torch_gru.state_dict().items()})
        layer.load_state_dict(torch_gru.state_dict())
    np.testing.assert_allclose(layer(x)[0], expected, rtol=1e-12, atol=1e-14)

    classic = gru_fast.GRU(3, 5, 2, batch_first=True, dtype=np.float64)
    with pytest.warns(UserWarning, match="reset_after=True"):
        classic.load_state_dict(torch_gru.state_dict())
    assert np.max(np.abs(classic(x)[0] - expected)) > 1e-3   # why it warns
