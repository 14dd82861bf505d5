"""FrozenGRULayer: built by its own constructor (GRU.freeze calls it), next to FrozenGRU."""

import pickle

import numpy as np
import pytest

import gru_fast
from gru_fast import frozen, layer

from _helpers import make_layer_inputs


def test_constructor_equals_freeze_and_snapshots_params():
    gru = gru_fast.GRU(3, 5, 2, bidirectional=True, batch_first=True, reset_after=True,
                       dtype=np.float64, seed=0)
    params = gru.state_dict()
    direct = frozen.FrozenGRULayer(3, 5, 2, bidirectional=True, batch_first=True,
                                   reset_after=True, dtype=np.float64, params=params)
    x, h0, _, _ = make_layer_inputs(gru, np.random.default_rng(1), 4, 2)
    for a, b, c in zip(direct(x, h0, [4, 1]), gru.freeze()(x, h0, [4, 1]), gru(x, h0, [4, 1])):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    for name, value in direct.params.items():
        assert not value.flags.writeable and not np.shares_memory(value, params[name])
    params["weight_hh_l0"][...] = 0  # the caller's arrays are not the layer's
    np.testing.assert_array_equal(direct(x, h0)[0], gru(x, h0)[0])
    assert (direct.input_size, direct.num_layers, direct.bidirectional, direct.dtype) == (
        3, 2, True, np.float64)


def test_constructor_checks_like_gru():
    params = gru_fast.GRU(3, 5, dtype=np.float32, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'\]"):
        frozen.FrozenGRULayer(3, 5, params={k: v for k, v in params.items()
                                            if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match=r"'weight_ih_l0' has shape \(15, 3\), expected \(15, 4\)"):
        frozen.FrozenGRULayer(4, 5, params=params)
    with pytest.raises(TypeError, match="bias must be True or False"):
        frozen.FrozenGRULayer(3, 5, bias="yes", params=params)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        frozen.FrozenGRULayer(3, 5, dtype=np.int32, params=params)
    cast = frozen.FrozenGRULayer(3, 5, dtype=np.float64, params=params)  # cast, as load_state_dict
    assert all(value.dtype == np.float64 for value in cast.params.values())


def test_one_class_wherever_it_is_imported_from():
    assert layer.FrozenGRULayer is frozen.FrozenGRULayer is gru_fast.FrozenGRULayer
    restored = pickle.loads(pickle.dumps(gru_fast.GRU(2, 3, seed=0).freeze()))
    assert type(restored) is frozen.FrozenGRULayer
