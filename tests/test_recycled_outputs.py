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


def test_a_strided_input_is_copied_into_recycled_memory_and_left_as_it_was():
    whole = np.random.default_rng(4).standard_normal((20, 3 * 500, 8)).astype(np.float32)
    chunk = whole[:, 500:1000]  # a batch chunk, as dask.array.from_array hands a task
    before = whole.copy()
    copy = _workspace.contiguous(chunk)
    assert copy.flags.c_contiguous and not np.shares_memory(copy, whole)
    np.testing.assert_array_equal(copy, chunk)
    address = copy.ctypes.data
    del copy
    assert _workspace.contiguous(chunk).ctypes.data == address  # the kept memory, again
    contiguous_input = np.ascontiguousarray(chunk)
    assert _workspace.contiguous(contiguous_input) is contiguous_input
    np.testing.assert_array_equal(whole, before)


@pytest.mark.parametrize("model_kind", ["GRU", "FrozenGRULayer", "FrozenGRU", "gru_forward"])
def test_strided_inputs_give_the_contiguous_results_and_caches_survive_later_calls(model_kind):
    rng = np.random.default_rng(5)
    T, I, H, rows = 12, 40, 24, 300  # x chunk 144 kB in float64: above RECYCLE_MIN_BYTES
    whole = rng.standard_normal((T, 4 * rows, I))
    before = whole.copy()
    chunks = [whole[:, k * rows:(k + 1) * rows] for k in range(4)]
    model = gru_fast.GRU(I, H, reset_after=True, dtype=np.float64, seed=1)
    weights = (model.params["weight_ih_l0"], model.params["weight_hh_l0"],
               model.params["bias_ih_l0"], model.params["bias_hh_l0"])
    if model_kind in ("FrozenGRULayer", "FrozenGRU"):
        frozen = (model.freeze() if model_kind == "FrozenGRULayer"
                  else gru_fast.FrozenGRU(*weights, reset_after=True))
        for chunk in chunks:
            y, h_n = frozen(chunk)
            y_ref, h_ref = reference.gru_forward(np.ascontiguousarray(chunk), None, *weights,
                                                 reset_after=True)
            np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(whole, before)
        return
    if model_kind == "GRU":
        runs = [model.forward(chunk, return_cache=True) for chunk in chunks]
        grads = [model.backward(cache, np.ones_like(y)) for y, _, cache in runs]
        dx = [(dx, params["weight_ih_l0"]) for dx, _, params in grads]
    else:
        runs = [gru_fast.gru_forward(chunk, None, *weights, reset_after=True,
                                     return_cache=True) for chunk in chunks]
        grads = [gru_fast.gru_backward(cache, np.ones_like(y)) for y, _, cache in runs]
        dx = [(g["x"], g["weight_ih"]) for g in grads]
    # every cache kept its own input although each later call copied a chunk of the same shape
    # (dW_ih reads the input the cache kept)
    for chunk, (y, _, _), (grad_x, grad_weight_ih) in zip(chunks, runs, dx):
        contiguous = np.ascontiguousarray(chunk)
        y_ref, _, cache_ref = reference.gru_forward(contiguous, None, *weights,
                                                    reset_after=True, return_cache=True)
        np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
        ref = reference.gru_backward(cache_ref, np.ones_like(y))
        np.testing.assert_allclose(grad_x, ref["x"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grad_weight_ih, ref["weight_ih"], rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(whole, before)
