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
    with pytest.raises(ValueError, match="plain"):
        _fastpath.fold_plain_biases(bias_ih, bias_hh, 2, True)


@pytest.mark.parametrize("int_type", [np.int64, np.int32])
def test_plain_lengths_are_checked_in_c_and_copied(int_type):
    lengths = np.array([5, 0, 3], int_type)
    checked = _fastpath.plain_lengths(lengths, 3, 5)
    assert checked.dtype == np.int64 and not np.shares_memory(checked, lengths)
    np.testing.assert_array_equal(checked, lengths)
    assert _fastpath.plain_lengths(lengths, 3, 4) is None  # 5 > T: the Python path says so
    assert _fastpath.plain_lengths(lengths, 2, 5) is None
