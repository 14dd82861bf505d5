"""gru_fast.interop without any peer library: layouts, Keras weight lists, errors.

The peer-specific tests (real PyTorch, Keras and ONNX Runtime) live in
test_interop_torch.py, test_interop_keras.py and test_interop_onnx.py.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gru_fast
from gru_fast import interop

from _helpers import assert_close, assert_same_params, random_layer

CONFIGS = [
    # num_layers, bidirectional, bias, reset_after
    (1, False, True, True),
    (1, False, True, False),
    (1, False, False, True),
    (1, True, True, False),
    (2, True, True, True),
    (3, False, False, False),
]


def test_import_without_peers():
    """gru_fast and gru_fast.interop import with torch, keras and onnx unavailable."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("torch", "keras", "onnx", "onnxruntime", "tensorflow", "jax"):
            sys.modules[name] = None  # makes `import name` raise ImportError
        import gru_fast, gru_fast.interop
        assert not {"torch", "keras", "onnx"} & {m for m, v in sys.modules.items() if v}
        """
    )
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(gru_fast.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=package_root)


def test_swap_r_z_is_an_exact_involution():
    blocks = np.arange(12.0).reshape(6, 2)
    swapped = interop._swap_r_z(blocks)
    np.testing.assert_array_equal(swapped[:2], blocks[2:4])
    np.testing.assert_array_equal(swapped[2:4], blocks[:2])
    np.testing.assert_array_equal(swapped[4:], blocks[4:])
    np.testing.assert_array_equal(interop._swap_r_z(swapped), blocks)
    with pytest.raises(ValueError, match="multiple of 3"):
        interop._swap_r_z(np.zeros(4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS)
def test_keras_weights_round_trip_is_exact(config, dtype):
    num_layers, bidirectional, bias, reset_after = config
    layer = random_layer(num_layers, bidirectional=bidirectional, bias=bias,
                         reset_after=reset_after, dtype=dtype, batch_first=True)
    if not reset_after and bias:
        # Keras' classic GRU has one bias: only a zero bias_hh survives bit for bit.
        layer.load_state_dict(
            {n: (0 * v if n.startswith("bias_hh") else v) for n, v in layer.params.items()}
        )
    per_layer = [interop.to_keras_weights(layer, k) for k in range(num_layers)]
    flag = None if bias else reset_after  # inferred from the bias shape when there is one
    back = interop.from_keras(per_layer if num_layers > 1 else per_layer[0], reset_after=flag)
    config_back = (back.num_layers, back.bidirectional, back.bias, back.reset_after)
    assert config_back == (num_layers, bidirectional, bias, reset_after) and back.batch_first
    assert np.dtype(back.dtype) == np.dtype(dtype)
    assert_same_params(layer, back)
    again = [interop.to_keras_weights(back, k) for k in range(num_layers)]
    for w_first, w_again in zip(per_layer, again):
        for a, b in zip(w_first, w_again):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_keras_weight_layout():
    """kernel (I, 3H), recurrent_kernel (H, 3H), gate columns z, r, h."""
    layer = random_layer(bias=True, reset_after=True)
    kernel, recurrent_kernel, bias = interop.to_keras_weights(layer)
    H = layer.hidden_size
    p = layer.params
    assert kernel.shape == (layer.input_size, 3 * H) and kernel.flags.c_contiguous
    assert recurrent_kernel.shape == (H, 3 * H) and bias.shape == (2, 3 * H)
    np.testing.assert_array_equal(kernel[:, :H], p["weight_ih_l0"][H:2 * H].T)  # z
    np.testing.assert_array_equal(kernel[:, H:2 * H], p["weight_ih_l0"][:H].T)  # r
    np.testing.assert_array_equal(recurrent_kernel[:, 2 * H:], p["weight_hh_l0"][2 * H:].T)
    np.testing.assert_array_equal(bias[1, :H], p["bias_hh_l0"][H:2 * H])


def test_keras_classic_bias_folds_bias_hh():
    layer = random_layer(bias=True, reset_after=False, batch_first=True)
    (bias,) = interop.to_keras_weights(layer)[2:]
    p = layer.params
    np.testing.assert_array_equal(
        bias, interop._swap_r_z(p["bias_ih_l0"] + p["bias_hh_l0"]))
    back = interop.from_keras(interop.to_keras_weights(layer))
    x = np.random.default_rng(3).standard_normal((2, 6, 5)).astype(np.float32)
    for a, b in zip(layer.forward(x), back.forward(x)):
        assert_close(a, b, kind="float32_rounding")


def test_to_keras_weights_needs_layer_index_for_a_stack():
    layer = random_layer(2, bias=True, reset_after=True)
    with pytest.raises(ValueError, match="layer_index"):
        interop.to_keras_weights(layer)
    with pytest.raises(ValueError, match="out of range"):
        interop.to_keras_weights(layer, 2)
    assert interop.to_keras_weights(layer, 1)[0].shape == (4, 12)


def test_from_keras_weight_errors():
    layer = random_layer(bias=False, reset_after=True)
    weights = interop.to_keras_weights(layer)
    with pytest.raises(ValueError, match="reset_after"):
        interop.from_keras(weights)  # no bias: the flag cannot be inferred
    with_bias = interop.to_keras_weights(random_layer(bias=True, reset_after=True))
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.from_keras(with_bias, reset_after=False)
    with pytest.raises(ValueError, match=r"\(2, 12\)"):
        interop.from_keras(with_bias[:2] + [np.zeros((3, 12), np.float32)])
    with pytest.raises(ValueError, match="recurrent_kernel"):
        interop.from_keras([with_bias[0], with_bias[1][:, :-1]], reset_after=True)
    with pytest.raises(ValueError, match="5 arrays"):
        interop.from_keras(with_bias + with_bias[:2])
    with pytest.raises(TypeError, match="float16"):
        interop.from_keras([w.astype(np.float16) for w in with_bias])
    with pytest.raises(ValueError, match="input size"):  # not a stack: layer 1 gets I=5
        interop.from_keras([with_bias, with_bias])


def test_layer_argument_is_checked():
    with pytest.raises(TypeError, match="gru_fast GRU"):
        interop.to_keras_weights(object())
