"""Arguments are checked once per public call: GRU.forward checks x, h0, lengths and its
params once, and its core calls (one per layer and direction) skip gru_forward's checks."""

import numpy as np
import pytest

import gru_fast
from gru_fast import functional, reference

from _helpers import assert_close, make_layer_inputs


@pytest.fixture
def forward_checks(monkeypatch):
    """The calls of gru_forward's argument check, recorded."""
    calls = []
    check = functional.validate_forward_args

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return check(*args, **kwargs)

    monkeypatch.setattr(functional, "validate_forward_args", counted)
    return calls


def test_layer_checks_once_gru_forward_every_call(forward_checks):
    layer = gru_fast.GRU(3, 4, 2, bidirectional=True, reset_after=True, dtype=np.float64,
                         seed=0)
    x, h0, dy, dh_n = make_layer_inputs(layer, np.random.default_rng(0), 5, 2)
    layer(x, h0, [5, 2])
    _, _, cache = layer.forward(x, h0, return_cache=True)
    layer.backward(cache, dy, dh_n)
    assert forward_checks == []  # four core calls per forward, none re-checked
    p = layer.params
    gru_fast.gru_forward(x, h0[0], p["weight_ih_l0"], p["weight_hh_l0"])
    assert forward_checks == [x.shape]


def test_layer_still_refuses_what_gru_forward_refuses():
    layer = gru_fast.GRU(3, 4, 2, dtype=np.float64, seed=0)
    x = np.zeros((5, 2, 3))
    with pytest.raises(TypeError, match=r"params\['weight_hh_l1'\] has dtype float32"):
        layer.params["weight_hh_l1"] = layer.params["weight_hh_l1"].astype(np.float32)
        layer(x)


@pytest.mark.parametrize("reset_after", [False, True])
def test_non_contiguous_params_and_a_cache_independent_of_them(reset_after):
    """Params replaced by strided views still work; the cache keeps its own weights."""
    layer = gru_fast.GRU(3, 4, 2, bidirectional=True, reset_after=reset_after,
                         dtype=np.float64, seed=1)
    oracle = reference.GRU(3, 4, 2, bidirectional=True, reset_after=reset_after,
                           dtype=np.float64)
    oracle.load_state_dict(layer.state_dict())
    for name, value in layer.params.items():  # same values, Fortran order or strided
        if value.ndim == 2:
            layer.params[name] = np.asfortranarray(value)
        else:
            layer.params[name] = np.repeat(value, 2)[::2]
    assert not layer.params["weight_ih_l0"].flags.c_contiguous
    x, h0, dy, dh_n = make_layer_inputs(layer, np.random.default_rng(2), 6, 3)
    y, h_n, cache = layer.forward(x, h0, return_cache=True)
    y_ref, h_n_ref, cache_ref = oracle.forward(x, h0, return_cache=True)
    assert_close(y, y_ref, "y", kind="gradient")
    assert_close(h_n, h_n_ref, "h_n", kind="gradient")
    for value in layer.params.values():
        value *= 2.0  # an optimiser steps in place before backward runs
    dx, dh0, grads = layer.backward(cache, dy, dh_n)
    dx_ref, dh0_ref, grads_ref = oracle.backward(cache_ref, dy, dh_n)
    assert_close(dx, dx_ref, "dx", kind="gradient")
    assert_close(dh0, dh0_ref, "dh0", kind="gradient")
    for name in grads_ref:
        assert_close(grads[name], grads_ref[name], name, kind="gradient")
