"""The validation gaps of issue 11: flags, dtype, sizes, and lists, the same in GRU and gru_forward."""

import numpy as np
import pytest

import gru_fast
from gru_fast import reference


def problem(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((3, 2, 4)).astype(dtype),
        "h0": rng.standard_normal((2, 5)).astype(dtype),
        "weight_ih": rng.uniform(-0.5, 0.5, (15, 4)).astype(dtype),
        "weight_hh": rng.uniform(-0.5, 0.5, (15, 5)).astype(dtype),
        "bias_ih": rng.uniform(-0.5, 0.5, 15).astype(dtype),
        "bias_hh": rng.uniform(-0.5, 0.5, 15).astype(dtype),
    }


@pytest.mark.parametrize("num_layers", [2**31, 2**40])
def test_a_layer_too_big_for_memory_fails_before_building(num_layers):
    with pytest.raises(ValueError, match=rf"num_layers={num_layers}.* GiB, more than"):
        gru_fast.GRU(1, 1, num_layers=num_layers)


def test_too_wide_a_layer_fails_before_building():
    with pytest.raises(ValueError, match=r"GRU\(1, 2000000, .* GiB, more than"):
        gru_fast.GRU(1, 2_000_000)
    gru_fast.GRU(1, 1, num_layers=300)  # many small layers are fine


@pytest.mark.parametrize("flag", ["bias", "batch_first", "bidirectional", "reset_after"])
@pytest.mark.parametrize("value", ["False", "True", 0, 1, None, 1.0])
def test_layer_flags_must_be_booleans(flag, value):
    with pytest.raises(TypeError, match=rf"{flag} must be True or False, got"):
        gru_fast.GRU(2, 3, **{flag: value})


@pytest.mark.parametrize("value", ["False", 0, 1, None])
def test_gru_forward_refuses_the_flags_the_layer_refuses(value):
    with pytest.raises(TypeError, match="reset_after must be True or False"):
        gru_fast.gru_forward(**problem(), reset_after=value)
    with pytest.raises(TypeError, match="reset_after must be True or False"):
        gru_fast.FrozenGRU(problem()["weight_ih"], problem()["weight_hh"], reset_after=value)


def test_numpy_booleans_are_flags():
    layer = gru_fast.GRU(2, 3, reset_after=np.True_, bias=np.False_)
    assert layer.reset_after is True and layer.bias is False


@pytest.mark.parametrize("dtype", [None, "int32", np.float16, "nonsense", object])
def test_layer_dtype_must_be_float32_or_float64(dtype):
    with pytest.raises(TypeError, match="dtype must be"):
        gru_fast.GRU(2, 3, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, "float32", np.dtype("f8"), "float64"])
def test_layer_dtype_spellings(dtype):
    assert gru_fast.GRU(2, 3, dtype=dtype).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lists_are_converted_alike_by_the_layer_and_gru_forward(dtype):
    """A list carries no dtype: both APIs convert it to the weights' (the layer's) dtype."""
    args = problem(dtype)
    expected = gru_fast.gru_forward(**args)
    for name in ("x", "h0"):
        got = gru_fast.gru_forward(**{**args, name: args[name].tolist()})
        for value, wanted in zip(got, expected):
            assert value.dtype == dtype
            np.testing.assert_array_equal(value, wanted)
    layer = gru_fast.GRU(4, 5, dtype=dtype, seed=0)
    y_array, _ = layer(args["x"])
    y_list, _ = layer(args["x"].tolist())
    assert y_list.dtype == dtype
    np.testing.assert_array_equal(y_list, y_array)
    layer_args = {"x": args["x"], "h0": None, "weight_ih": layer.params["weight_ih_l0"],
                  "weight_hh": layer.params["weight_hh_l0"],
                  "bias_ih": layer.params["bias_ih_l0"], "bias_hh": layer.params["bias_hh_l0"]}
    np.testing.assert_array_equal(gru_fast.gru_forward(**{**layer_args, "x": args["x"].tolist()})[0],
                                  y_array)


def test_weights_as_lists_take_the_dtype_of_x():
    args = problem(np.float32)
    expected = gru_fast.gru_forward(**args)
    as_lists = {name: (value.tolist() if name not in ("x", "h0") else value)
                for name, value in args.items()}
    got = gru_fast.gru_forward(**as_lists)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], expected[0])
    ref = reference.gru_forward(**as_lists)
    np.testing.assert_allclose(ref[0], got[0], rtol=2e-4, atol=1e-6)


def test_everything_as_lists_is_float64():
    args = {name: value.tolist() for name, value in problem(np.float64).items()}
    y, h_n = gru_fast.gru_forward(**args)
    assert y.dtype == h_n.dtype == np.float64


def test_a_mismatch_blames_the_argument_and_says_where_the_dtype_came_from():
    args = problem(np.float32)
    with pytest.raises(TypeError, match=r"weight_ih has dtype float64 but the weights are float32"):
        gru_fast.gru_forward(**{**args, "weight_ih": args["weight_ih"].astype(np.float64)})
    # Weights given as lists take x's dtype; h0 must then match x, and the message says so.
    lists = {name: (value.tolist() if name.startswith(("weight", "bias")) else value)
             for name, value in args.items()}
    with pytest.raises(TypeError, match=r"h0 has dtype float64 but x is float32"):
        gru_fast.gru_forward(**{**lists, "h0": args["h0"].astype(np.float64)})


@pytest.mark.parametrize("bad, match", [
    ([["a", "b", "c", "d"]] * 2, r"list holding <U1 values"),
    ([[1.0, 2.0], [3.0]], r"not a rectangular array of numbers"),
    ([[True, False, True, False]] * 2, r"list holding bool values"),
])
def test_lists_that_are_not_numbers_name_the_argument(bad, match):
    args = problem()
    with pytest.raises(TypeError, match=rf"x .*{match}"):
        gru_fast.gru_forward(**{**args, "x": [bad] * 3})
    with pytest.raises(TypeError, match=rf"x .*{match}"):
        gru_fast.GRU(4, 5)([bad] * 3)
