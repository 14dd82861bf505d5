"""Outputs and caches on recycled memory (_workspace.recycled_empty).

The memory of an array a call returned is reused only once nothing refers to
it: an array the caller keeps, a view or a memoryview of it must never be
overwritten by a later call.
"""

import subprocess
import sys

import numpy as np
import pytest

import gru_fast
from gru_fast import _workspace, reference

SHAPE = (1000, 100)  # 400 kB in float32: above RECYCLE_MIN_BYTES


def test_memory_is_reused_once_nothing_refers_to_it():
    first = _workspace.recycled_empty(SHAPE, np.float32)
    address = first.ctypes.data
    assert address % _workspace.ALIGNMENT == 0
    assert first.shape == SHAPE and first.dtype == np.float32 and first.flags.c_contiguous
    busy = _workspace.recycled_empty(SHAPE, np.float32)
    assert busy.ctypes.data != address  # `first` still lives
    del first
    again = _workspace.recycled_empty(SHAPE, np.float32)
    assert again.ctypes.data == address


@pytest.mark.parametrize("keep", ["view", "memoryview", "reshaped", "transposed"])
def test_memory_a_view_refers_to_is_not_reused(keep):
    array = _workspace.recycled_empty(SHAPE, np.float64)
    address = array.ctypes.data
    held = {"view": lambda a: a[3:7], "memoryview": memoryview,
            "reshaped": lambda a: a.reshape(-1), "transposed": lambda a: a.T}[keep](array)
    del array
    for _ in range(3):
        other = _workspace.recycled_empty(SHAPE, np.float64)
        assert other.ctypes.data != address
    del held, other
    assert any(_workspace.recycled_empty(SHAPE, np.float64).ctypes.data == address
               for _ in range(1))


def test_small_arrays_are_plain_numpy_and_the_kept_bytes_are_capped(monkeypatch):
    small = _workspace.recycled_empty((10, 10), np.float32)
    assert small.base is None  # np.empty's own
    monkeypatch.setattr(_workspace, "RECYCLED_KEPT_BYTES", 3 * 400_000)
    _workspace.release_memory()
    arrays = [_workspace.recycled_empty(SHAPE, np.float32) for _ in range(6)]
    assert len({a.ctypes.data for a in arrays}) == 6
    kept = _workspace._this_threads_pool().recycled
    assert sum(raw.nbytes for raw, _ in kept) <= 3 * 400_000 + 3 * _workspace.ALIGNMENT
    del arrays
    _workspace.release_memory()
    assert _workspace._this_threads_pool().recycled == []


def test_outputs_the_caller_keeps_are_never_overwritten():
    rng = np.random.default_rng(3)
    T, B, I, H = 20, 16, 64, 128  # float64: y and dx 320 and 160 kB, dW_hh 384 kB
    weights = (rng.uniform(-.2, .2, (3 * H, I)), rng.uniform(-.2, .2, (3 * H, H)))
    xs = [rng.standard_normal((T, B, I)) for _ in range(4)]
    kept = []
    for x in xs:
        y, h_n, cache = gru_fast.gru_forward(x, None, *weights, reset_after=True,
                                             return_cache=True)
        kept.append((y, y.copy(), cache))
        gru_fast.gru_forward(x[::-1].copy(), None, *weights, reset_after=True,
                             return_cache=True)  # dropped at once: its memory is reused
    kept_grads = []
    for x, (y, y_copy, cache) in zip(xs, kept):
        np.testing.assert_array_equal(y, y_copy)
        y_ref, _ = reference.gru_forward(x, None, *weights, reset_after=True)
        np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
        grads = gru_fast.gru_backward(cache, np.ones_like(y))
        ref = reference.gru_backward(reference.gru_forward(x, None, *weights, reset_after=True,
                                                           return_cache=True)[2], np.ones_like(y))
        for name in ("x", "weight_ih", "weight_hh"):
            np.testing.assert_allclose(grads[name], ref[name], rtol=1e-9, atol=1e-12)
        kept_grads.append({name: (grads[name], grads[name].copy()) for name in grads
                           if grads[name] is not None})
        gru_fast.gru_backward(cache, -np.ones_like(y))  # dropped at once
    for grads in kept_grads:  # the returned gradients, kept, are never overwritten either
        for name, (grad, grad_copy) in grads.items():
            np.testing.assert_array_equal(grad, grad_copy, err_msg=name)


def test_training_does_not_fault_its_outputs_in_again_under_a_fixed_malloc_threshold():
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set: glibc then
    # unmaps every large block on free, and fresh arrays fault their pages in.
    script = """
import resource, numpy as np, gru_fast
from gru_fast.estimators import GRURegressor
rng = np.random.default_rng(0)
X = rng.standard_normal((640, 50)).astype(np.float32); y = X[:, -1]
model = GRURegressor(hidden_size=32, max_epochs=1, batch_size=32, random_state=0)
model.partial_fit(X, y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
model.partial_fit(X, y)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    env = {"MALLOC_TRIM_THRESHOLD_": "65536", "PATH": "/usr/bin:/bin"}
    import os
    env = dict(os.environ, **env)
    faults = int(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                capture_output=True, text=True).stdout.split()[-1])
    # 20 minibatches; each forward's y, gates and h_prev are 1.2 MB, ~300 pages:
    # ~6,000 faults when each is a fresh block
    assert faults < 1500, faults
