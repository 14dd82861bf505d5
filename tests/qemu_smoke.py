"""Smoke check of the default build on an emulated CPU (run by test_qemu_smoke.py).

Usage: qemu-x86_64 -cpu MODEL python tests/qemu_smoke.py EXPECTED_LEVEL HOST_PICKLE

Imports gru_fast, checks that the core chose EXPECTED_LEVEL, runs forward
and backward of both variants in both dtypes against the NumPy reference,
Adam's one-pass update against its NumPy code (the same bits), and runs a FrozenGRU and a frozen GRU layer pickled on the host (with the
weights and outputs the host computed).  Prints "smoke ok" at the end.
"""

import pickle
import sys

import numpy as np

import gru_fast
from gru_fast import _core, reference

expected_level, host_pickle = sys.argv[1], sys.argv[2]
assert _core.CPU_LEVEL == expected_level, (_core.CPU_LEVEL, expected_level)
print("level", _core.CPU_LEVEL, "panel", _core.PANEL_WIDTH, flush=True)

rng = np.random.default_rng(0)
for dtype, rtol in ((np.float32, 2e-4), (np.float64, 1e-9)):
    for reset_after in (False, True):
        T, B, I, H = 6, 5, 7, 37  # H over panels of 16 and 32, a partial last one
        x = rng.standard_normal((T, B, I)).astype(dtype)
        h0 = rng.standard_normal((B, H)).astype(dtype)
        weights = [rng.uniform(-0.4, 0.4, shape).astype(dtype)
                   for shape in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))]
        lengths = np.array([6, 2, 0, 5, 6])
        y, h_n, cache = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                             lengths=lengths, return_cache=True)
        y_ref, h_ref, cache_ref = reference.gru_forward(
            x, h0, *weights, reset_after=reset_after, lengths=lengths, return_cache=True)
        np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(h_n, h_ref, rtol=rtol, atol=rtol)
        dy = rng.standard_normal(y.shape).astype(dtype)
        grads = gru_fast.gru_backward(cache, dy)
        grads_ref = reference.gru_backward(cache_ref, dy)
        for name, value in grads.items():
            np.testing.assert_allclose(value, grads_ref[name], rtol=10 * rtol, atol=10 * rtol,
                                       err_msg=name)

# Adam's one-pass update, compiled per level like the core: the NumPy code's bits
from gru_fast import _optim_kernels, optim

assert _optim_kernels.__name__.endswith("_" + expected_level), _optim_kernels.__name__
for dtype in (np.float32, np.float64):
    start = rng.standard_normal(1001).astype(dtype)
    runs = []
    for fused in (True, False):
        optim.USE_FUSED_UPDATES = fused
        params = {"w": start.copy()}
        optimizer = optim.Adam(params, lr=0.01)
        for step in range(3):
            optimizer.step({"w": np.sin(params["w"] * (step + 1)).astype(dtype)})
        runs.append(params["w"])
    np.testing.assert_array_equal(runs[0], runs[1])
optim.USE_FUSED_UPDATES = True

with open(host_pickle, "rb") as file:
    frozen, layer, x, weights, y_host, layer_y_host = pickle.load(file)
assert frozen._panel_width == _core.PANEL_WIDTH
y, _ = frozen(x)
y_ref, _ = reference.gru_forward(x, None, **weights, reset_after=frozen.reset_after)
np.testing.assert_allclose(y, y_ref, rtol=2e-4, atol=2e-5)
np.testing.assert_allclose(y, y_host, rtol=2e-4, atol=2e-5)
np.testing.assert_allclose(layer(x)[0], layer_y_host, rtol=2e-4, atol=2e-5)
print("smoke ok", flush=True)
