"""The compiled checks and bias folding of every forward call (src/_fastpath.pyx).

The compiled check may only say yes to arguments the Python checks return
unchanged: every variant below goes through `validate_forward_args` twice,
with the compiled check and without it, and must give the same arrays or the
same error.
"""

import numpy as np
import pytest

from gru_fast import _fastpath, _validation, functional

T, B, I, H = 5, 3, 4, 6


class Sub(np.ndarray):
    """An ndarray subclass: the Python path turns it into a plain array."""


def misaligned(array):
    """A copy of `array` whose values sit one byte off their natural alignment."""
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)
    view = np.frombuffer(raw.data, dtype=array.dtype, count=array.size, offset=1)
    view = view.reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


def base_args(dtype):
    rng = np.random.default_rng(3)
    make = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    return dict(x=make(T, B, I), h0=make(B, H), weight_ih=make(3 * H, I),
                weight_hh=make(3 * H, H), bias_ih=make(3 * H), bias_hh=make(3 * H),
                reset_after=True, lengths=None, reverse=False)


def variants():
    """(name, kwargs) of plain calls and of calls off the plain path in one way each."""
    for dtype in (np.float32, np.float64):
        other = np.float64 if dtype == np.float32 else np.float32
        name = np.dtype(dtype).name
        yield f"{name} plain", base_args(dtype)
        yield f"{name} no h0", {**base_args(dtype), "h0": None}
        yield f"{name} no biases", {**base_args(dtype), "bias_ih": None, "bias_hh": None}
        yield f"{name} classic", {**base_args(dtype), "reset_after": False}
        yield f"{name} reverse", {**base_args(dtype), "reverse": True}
        yield f"{name} numpy bool", {**base_args(dtype), "reset_after": np.bool_(True)}
        yield f"{name} int flag", {**base_args(dtype), "reverse": 0}
        for how, lengths in {
            "int64": np.array([5, 2, 0]), "int32": np.array([5, 2, 0], np.int32),
            "int16": np.array([5, 2, 0], np.int16), "uint64": np.array([5, 2, 0], np.uint64),
            "float": np.array([5.0, 2.0, 0.0]), "bool": np.array([True, False, True]),
            "list": [5, 2, 0], "negative": np.array([5, -1, 0]), "past T": np.array([6, 2, 0]),
            "short": np.array([5, 2]), "2-D": np.array([[5, 2, 0]]),
            "strided": np.array([5, 9, 2, 9, 0, 9])[::2],
            "byteswapped": np.array([5, 2, 0], ">i8"),
            "misaligned": misaligned(np.array([5, 2, 0])),
        }.items():
            yield f"{name} lengths {how}", {**base_args(dtype), "lengths": lengths}
        yield f"{name} one bias", {**base_args(dtype), "bias_hh": None}
        for key in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            args = base_args(dtype)
            value = args[key]
            changed = {
                "strided": value[..., ::2] if value.ndim > 1 else value[::2],
                "fortran": np.asfortranarray(value),
                "misaligned": misaligned(value),
                "byteswapped": value.astype(value.dtype.newbyteorder()),
                "subclass": value.view(Sub),
                "list": value.tolist(),
                "other dtype": value.astype(other),
                "int": value.astype(np.int32),
                "rank": value[None],
                "short": value[:-1],
                "read-only": value.copy(),
            }
            changed["read-only"].flags.writeable = False
            for how, new in changed.items():
                yield f"{name} {key} {how}", {**args, key: new}
        for empty in ((0, B, I), (T, 0, I), (T, B, 0)):
            args = base_args(dtype)
            args["x"] = np.zeros(empty, dtype)
            if empty[2] == 0:
                args["weight_ih"] = np.zeros((3 * H, 0), dtype)
            yield f"{name} x {empty}", args
        yield f"{name} H 0", {**base_args(dtype), "weight_hh": np.zeros((0, 0), dtype),
                              "weight_ih": np.zeros((0, I), dtype), "h0": None,
                              "bias_ih": None, "bias_hh": None}


def checked(kwargs):
    """validate_forward_args' result, or the error it raised as (type, message)."""
    try:
        return _validation.validate_forward_args(**kwargs)
    except (TypeError, ValueError) as error:
        return type(error), str(error)


@pytest.mark.parametrize("name,kwargs", list(variants()), ids=[n for n, _ in variants()])
def test_the_compiled_check_agrees_with_the_python_checks(monkeypatch, name, kwargs):
    fast = checked(kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(_validation, "plain_forward_arrays", lambda *arrays: False)
        slow = checked(kwargs)
    if not isinstance(slow, _validation.ForwardArgs):  # an error: the same one
        assert fast == slow
        return
    assert isinstance(fast, _validation.ForwardArgs)
    if kwargs["lengths"] is not None:
        assert not np.shares_memory(fast.lengths, np.asarray(kwargs["lengths"]))
    for field, fast_value, slow_value in zip(slow._fields, fast, slow):
        if isinstance(slow_value, np.ndarray):
            assert type(fast_value) is np.ndarray, field
            assert fast_value.dtype == slow_value.dtype, field
            assert fast_value.shape == slow_value.shape, field
            assert fast_value.flags.c_contiguous == slow_value.flags.c_contiguous, field
            assert fast_value.flags.aligned and slow_value.flags.aligned, field
            np.testing.assert_array_equal(fast_value, slow_value, err_msg=field)
        else:
            assert fast_value == slow_value and type(fast_value) is type(slow_value), field


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("drop", [None, "h0", "biases"])
def test_plain_calls_take_the_compiled_path_and_keep_the_callers_arrays(dtype, drop):
    args = base_args(dtype)
    if drop == "h0":
        args["h0"] = None
    if drop == "biases":
        args["bias_ih"] = args["bias_hh"] = None
    arrays = [args[k] for k in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert _fastpath.plain_forward_arrays(*arrays)
    result = _validation.validate_forward_args(**args)
    for field in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert getattr(result, field) is args[field]


def test_the_compiled_check_refuses_rows_past_the_core_index():
    # a broadcast view: T*B = 2**31 rows without the memory (strides 0 are not
    # C-contiguous, so make the sizes alone too large on a tiny contiguous x)
    x = np.zeros((1, 1, 1), np.float32)
    assert _fastpath.plain_forward_arrays(x, None, np.zeros((3, 1), np.float32),
                                          np.zeros((3, 1), np.float32), None, None)
    big = np.lib.stride_tricks.as_strided(x, shape=(2**16, 2**15 + 1, 1), strides=(0, 0, 4))
    assert not _fastpath.plain_forward_arrays(big, None, np.zeros((3, 1), np.float32),
                                              np.zeros((3, 1), np.float32), None, None)


def numpy_fold(bias_ih, bias_hh, hidden_size, reset_after):
    """The fold as NumPy computes it (the Python path of functional.fold_biases)."""
    if not reset_after:
        return bias_ih + bias_hh, np.zeros(hidden_size, bias_ih.dtype)
    gates = bias_ih.copy()
    gates[:2 * hidden_size] += bias_hh[:2 * hidden_size]
    return gates, bias_hh[2 * hidden_size:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("hidden_size", [1, 7, 64])
def test_compiled_bias_folding_gives_numpys_bits(dtype, reset_after, hidden_size):
    rng = np.random.default_rng(hidden_size)
    bias_ih = (rng.standard_normal(3 * hidden_size) * 10.0 ** rng.integers(-8, 8, 3 * hidden_size)
               ).astype(dtype)
    bias_hh = rng.standard_normal(3 * hidden_size).astype(dtype)
    kept = bias_ih.copy(), bias_hh.copy()
    gates, hn = functional.fold_biases(bias_ih, bias_hh, hidden_size, reset_after,
                                       np.dtype(dtype))
    expected_gates, expected_hn = numpy_fold(bias_ih, bias_hh, hidden_size, reset_after)
    for got, expected in ((gates, expected_gates), (hn, expected_hn)):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()
    np.testing.assert_array_equal(bias_ih, kept[0])  # inputs untouched
    np.testing.assert_array_equal(bias_hh, kept[1])
    assert not np.shares_memory(gates, bias_ih) and not np.shares_memory(hn, bias_hh)


def test_fold_of_biases_off_the_plain_path_uses_numpy():
    bias_ih = np.arange(6.0)[::-1]  # strided: NumPy's fold
    bias_hh = np.ones(6)
    gates, hn = functional.fold_biases(bias_ih, bias_hh, 2, True, np.dtype(np.float64))
    np.testing.assert_array_equal(gates, [6.0, 5.0, 4.0, 3.0, 1.0, 0.0])
    np.testing.assert_array_equal(hn, [1.0, 1.0])
    assert _fastpath.fold_plain_biases(bias_ih, bias_hh, 2, True) is None


@pytest.mark.parametrize("int_type", [np.int64, np.int32])
def test_plain_lengths_are_checked_in_c_and_copied(int_type):
    lengths = np.array([5, 0, 3], int_type)
    checked = _fastpath.plain_lengths(lengths, 3, 5)
    assert checked.dtype == np.int64 and not np.shares_memory(checked, lengths)
    np.testing.assert_array_equal(checked, lengths)
    assert _fastpath.plain_lengths(lengths, 3, 4) is False  # 5 > T: the Python path says so
    assert _fastpath.plain_lengths(lengths, 2, 5) is False
    assert _fastpath.plain_lengths(lengths.astype(np.int16), 3, 5) is False
    assert _fastpath.plain_lengths(None, 3, 5) is None  # no lengths: nothing to check


# -- FrozenGRU and the layer: the same outputs, or the same error, both ways -------------

import gru_fast  # noqa: E402
from gru_fast import frozen, layer  # noqa: E402


def _model_variants():
    """(name, model factory, kwargs of forward) for FrozenGRU, GRU and FrozenGRULayer."""
    T_, B_, I_, H_ = 6, 3, 5, 4
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(11)
        name = np.dtype(dtype).name
        x = rng.standard_normal((T_, B_, I_)).astype(dtype)
        other = np.float64 if dtype == np.float32 else np.float32

        def frozen_gru(dtype=dtype):
            net = gru_fast.GRU(I_, H_, reset_after=True, dtype=dtype, seed=1)
            return gru_fast.FrozenGRU(*(net.params[n] for n in net._names(0, 0)),
                                      reset_after=True)

        h0_2d = rng.standard_normal((B_, H_)).astype(dtype)
        for how, kwargs in {
            "plain": {"x": x}, "h0": {"x": x, "h0": h0_2d},
            "reverse": {"x": x, "reverse": True}, "lean": {"x": x, "return_sequences": False},
            "lengths": {"x": x, "lengths": np.array([6, 0, 3])},
            "lengths int32": {"x": x, "lengths": np.array([6, 1, 3], np.int32)},
            "lengths past T": {"x": x, "lengths": np.array([7, 1, 3])},
            "int flag": {"x": x, "reverse": 1},
            "x other dtype": {"x": x.astype(other)}, "x strided": {"x": x[:, :, ::1][::2]},
            "x byteswapped": {"x": x.astype(x.dtype.newbyteorder())},
            "x misaligned": {"x": misaligned(x)}, "x list": {"x": x.tolist()},
            "x wrong I": {"x": x[:, :, :-1].copy()}, "x empty": {"x": x[:0]},
            "x 2-D": {"x": x[0]}, "h0 wrong B": {"x": x, "h0": h0_2d[:-1]},
            "h0 3-D": {"x": x, "h0": h0_2d[None]}, "h0 fortran": {"x": x, "h0": np.asfortranarray(h0_2d)},
        }.items():
            yield f"FrozenGRU {name} {how}", frozen_gru, kwargs

        for bidirectional in (False, True):
            for batch_first in (False, True):
                D = 2 if bidirectional else 1

                def gru(dtype=dtype, bidirectional=bidirectional, batch_first=batch_first):
                    return gru_fast.GRU(I_, H_, num_layers=2, bidirectional=bidirectional,
                                        batch_first=batch_first, reset_after=True,
                                        dtype=dtype, seed=2)

                def frozen_layer(make=gru):
                    return make().freeze()

                xb = x.transpose(1, 0, 2).copy() if batch_first else x
                h0 = rng.standard_normal((2 * D, B_, H_)).astype(dtype)
                tag = f"{name} bi={bidirectional} bf={batch_first}"
                for how, kwargs in {
                    "plain": {"x": xb}, "h0": {"x": xb, "h0": h0},
                    "lengths": {"x": xb, "lengths": np.array([6, 0, 3])},
                    "lean": {"x": xb, "return_sequences": False},
                    "int flag": {"x": xb, "return_sequences": 0},
                    "x other dtype": {"x": xb.astype(other)},
                    "x strided": {"x": xb[::2] if batch_first else xb[:, ::2]},
                    "x misaligned": {"x": misaligned(xb)},
                    "x wrong I": {"x": xb[:, :, :-1].copy()},
                    "h0 wrong states": {"x": xb, "h0": h0[:-1]},
                    "h0 2-D": {"x": xb, "h0": h0[0]},
                    "lengths float": {"x": xb, "lengths": np.array([6.0, 0.0, 3.0])},
                    "lengths short": {"x": xb, "lengths": np.array([6, 0])},
                }.items():
                    yield f"GRU {tag} {how}", gru, kwargs
                    yield f"FrozenGRULayer {tag} {how}", frozen_layer, kwargs


def _outcome(model, kwargs):
    try:
        return model.forward(**kwargs)
    except (TypeError, ValueError) as error:
        return type(error), str(error)


MODEL_VARIANTS = list(_model_variants())


@pytest.mark.parametrize("name,make,kwargs", MODEL_VARIANTS,
                         ids=[name for name, _, _ in MODEL_VARIANTS])
def test_models_give_the_same_outputs_or_errors_with_and_without_the_compiled_checks(
        monkeypatch, name, make, kwargs):
    model = make()
    kept = {k: np.array(v, copy=True) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    fast = _outcome(model, kwargs)
    with monkeypatch.context() as patch:
        for module in (frozen, layer):
            patch.setattr(module, "plain_sequence_input", lambda *args: False)
        slow = _outcome(model, kwargs)
    if isinstance(slow[0], type):  # an error: the same one
        assert fast == slow
    else:
        for got, expected in zip(fast, slow):
            if expected is None:
                assert got is None
            else:
                assert got.dtype == expected.dtype and got.shape == expected.shape
                assert got.tobytes() == expected.tobytes()
    for key, value in kept.items():  # no input modified
        np.testing.assert_array_equal(kwargs[key], value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_layers_params_are_checked_in_c_only_when_plain(dtype):
    net = gru_fast.GRU(5, 4, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    items = net._shape_items()
    num = np.dtype(dtype).num
    assert _fastpath.plain_params(net.params, items, num)
    assert not _fastpath.plain_params(dict(net.params, weight_hh_l1=None), items, num)
    wrong = dict(net.params, bias_hh_l0=net.params["bias_hh_l0"][:-1])
    assert not _fastpath.plain_params(wrong, items, num)
    swapped = net.params["weight_ih_l0"].astype(np.dtype(dtype).newbyteorder())
    assert not _fastpath.plain_params(dict(net.params, weight_ih_l0=swapped), items, num)
    assert not _fastpath.plain_params(dict(net.params, weight_ih_l0=net.params[
        "weight_ih_l0"].view(Sub)), items, num)
    assert not _fastpath.plain_params(list(net.params.items()), items, num)
    # and a forward with broken params still says what is wrong
    net.params["weight_hh_l1"] = net.params["weight_hh_l1"][:, :-1]
    with pytest.raises(ValueError, match="weight_hh_l1"):
        net.forward(np.zeros((3, 2, 5), dtype))


@pytest.mark.parametrize("kind", ["FrozenGRU", "GRU", "FrozenGRULayer"])
def test_plain_model_calls_skip_the_python_checks(monkeypatch, kind):
    def python_check(*args, **kwargs):
        raise AssertionError("a plain call reached the Python checks")

    monkeypatch.setattr(layer, "check_layer_input", python_check)
    monkeypatch.setattr(frozen, "check_input_features", python_check)
    monkeypatch.setattr(layer, "as_lengths", python_check)
    net = gru_fast.GRU(5, 4, num_layers=1, reset_after=True, seed=3)
    model = {"GRU": net, "FrozenGRULayer": net.freeze(),
             "FrozenGRU": gru_fast.FrozenGRU(*(net.params[n] for n in net._names(0, 0)),
                                             reset_after=True)}[kind]
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    y, h_n = model.forward(x, lengths=np.array([6, 2, 0]))
    assert y.shape[:2] == (6, 3) and np.all(y[2:, 1] == 0)
