"""Accuracy of the core's vectorizable sigmoid and tanh against NumPy, over the whole float range."""

import numpy as np
import pytest

from gru_fast import _core

# Bounds in units of the dtype's machine epsilon.
ULPS = {np.float32: 4, np.float64: 4}


def all_finite_floats_sample(dtype, rng):
    """Every order of magnitude of the dtype, both signs, plus special values."""
    info = np.finfo(dtype)
    exponents = np.arange(np.log2(info.smallest_subnormal), np.log2(info.max), 0.25)
    magnitudes = np.exp2(exponents)
    dense = np.linspace(-30, 30, 200_001)
    near_zero = rng.uniform(-1, 1, 50_000) * 0.625
    values = np.concatenate([magnitudes, -magnitudes, dense, near_zero,
                             [0.0, -0.0, 0.625, -0.625, info.max, -info.max,
                              info.tiny, -info.tiny]])
    return values.astype(dtype)


def reference_sigmoid(values):
    """σ in float64 (or longdouble for float64 inputs), exact to well below the bound."""
    wide = values.astype(np.longdouble)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-wide))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_accuracy_over_float_range(dtype):
    rng = np.random.default_rng(0)
    values = all_finite_floats_sample(dtype, rng)
    sigmoid_out = np.empty_like(values)
    tanh_out = np.empty_like(values)
    _core.activations(values, sigmoid_out, tanh_out)
    eps = np.finfo(dtype).eps

    expected_tanh = np.tanh(values.astype(np.longdouble))
    tanh_error = np.abs(tanh_out - expected_tanh)
    # Relative error where tanh is normal, absolute error for subnormal inputs.
    tiny = np.finfo(dtype).tiny
    scale = np.maximum(np.abs(expected_tanh), tiny)
    assert np.max(tanh_error / scale) <= ULPS[dtype] * eps
    assert np.all(np.abs(tanh_out) <= 1)
    np.testing.assert_array_equal(np.signbit(tanh_out), np.signbit(values))

    expected_sigmoid = reference_sigmoid(values)
    sigmoid_error = np.abs(sigmoid_out - expected_sigmoid)
    # Relative accuracy wherever σ(a) is a normal number of the dtype
    # (the core saturates exp at the dtype's range, so deep in the left tail
    # σ stops shrinking below the smallest normal: absolute error < tiny there).
    normal = expected_sigmoid >= np.exp(np.log(tiny) + 2)
    assert np.max(sigmoid_error[normal] / expected_sigmoid[normal]) <= ULPS[dtype] * eps
    assert np.max(sigmoid_error[~normal], initial=0) <= 2 * tiny
    assert np.all((sigmoid_out >= 0) & (sigmoid_out <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    values = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype=dtype)
    sigmoid_out = np.empty_like(values)
    tanh_out = np.empty_like(values)
    _core.activations(values, sigmoid_out, tanh_out)
    assert sigmoid_out[0] == 1.0
    assert 0.0 <= sigmoid_out[1] <= 2 * np.finfo(dtype).tiny  # saturates at the smallest normal
    np.testing.assert_array_equal(tanh_out[:2], [1.0, -1.0])
    assert np.isnan(sigmoid_out[2]) and np.isnan(tanh_out[2])
    np.testing.assert_array_equal(sigmoid_out[3:], [0.5, 0.5])
    np.testing.assert_array_equal(tanh_out[3:], [0.0, -0.0])
    assert np.signbit(tanh_out[4])
