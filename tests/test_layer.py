"""gru_fast.GRU against the reference GRU on every option; gradients, step, errors.

The oracle is ``gru_fast.reference.GRU`` (the same layer code bound to the NumPy
reference functions); the reference layer itself is checked by central finite
differences, and against ``torch.nn.GRU`` in ``test_layer_torch.py``.
"""

import numpy as np
import pytest

import gru_fast
from gru_fast import reference
from gru_fast.layer import GRU as LayerBase

from _helpers import assert_close, make_layer_inputs, numeric_gradient

T, B, I, H = 5, 4, 3, 4
# Unsorted, with an empty row (0) and a full one (T).
LENGTHS = np.array([3, 0, T, 1])


def fast_class():
    return gru_fast.GRU


def reference_class():
    return reference.GRU


def both_classes():
    return [pytest.param(fast_class, id="fast"), pytest.param(reference_class, id="ref")]


def fast_and_reference(num_layers, *, seed, **options):
    """gru_fast.GRU and reference.GRU of the same options, holding the same weights."""
    fast = fast_class()(I, H, num_layers, seed=seed, **options)
    ref = reference_class()(I, H, num_layers, seed=seed + 1, **options)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def padded_mask(layer, lengths):
    """(T, B) or (B, T) boolean: True at valid steps."""
    valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    return valid.T if layer.batch_first else valid


# --------------------------------------------------------------------------- fast == ref

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["classic", "reset_after"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_fast_matches_reference(num_layers, bidirectional, batch_first, bias,
                                reset_after, use_lengths, dtype):
    fast, ref = fast_and_reference(num_layers, bias=bias, batch_first=batch_first,
                                   bidirectional=bidirectional, reset_after=reset_after,
                                   dtype=dtype, seed=1)
    rng = np.random.default_rng(3)
    x, h0, dy, dh_n = make_layer_inputs(fast, rng, T, B)
    lengths = LENGTHS if use_lengths else None

    y, h_n, cache = fast.forward(x, h0, lengths=lengths, return_cache=True)
    y_ref, h_n_ref, cache_ref = ref.forward(x, h0, lengths=lengths, return_cache=True)
    assert_close(y, y_ref, "y")
    assert_close(h_n, h_n_ref, "h_n")

    dx, dh0, grads = fast.backward(cache, dy, dh_n)
    dx_ref, dh0_ref, grads_ref = ref.backward(cache_ref, dy, dh_n)
    assert_close(dx, dx_ref, "dx", kind="gradient")
    assert_close(dh0, dh0_ref, "dh0", kind="gradient")
    assert list(grads) == list(fast.params) == list(grads_ref)
    for name in grads:
        assert_close(grads[name], grads_ref[name], name, kind="gradient")

    if use_lengths:
        mask = padded_mask(fast, lengths)
        assert np.all(y[~mask] == 0)
        assert np.all(dx[~mask] == 0)
        # Rows of length 0 keep their initial state in every layer and direction.
        np.testing.assert_array_equal(h_n[:, lengths == 0], h0[:, lengths == 0])


@pytest.mark.parametrize("cls", both_classes())
def test_defaults_and_call(cls):
    """h0=None is zeros, __call__ is forward, dy=None / dh_n=None are zeros."""
    layer = cls()(I, H, 2, bidirectional=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, h0, dy, dh_n = make_layer_inputs(layer, rng, T, B)
    zeros = np.zeros_like(h0)
    y, h_n = layer(x)
    y2, h_n2, cache = layer.forward(x, zeros, return_cache=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h_n, h_n2)
    _, _, cache_none = layer.forward(x, return_cache=True)

    dx, dh0, grads = layer.backward(cache, None, dh_n)
    dx2, dh02, grads2 = layer.backward(cache_none, np.zeros_like(y), dh_n)
    np.testing.assert_array_equal(dx, dx2)
    np.testing.assert_array_equal(dh0, dh02)
    assert dh0.shape == h0.shape and np.any(dh0 != 0)
    dx3, _, _ = layer.backward(cache, dy)
    dx4, _, _ = layer.backward(cache, dy, np.zeros_like(dh_n))
    np.testing.assert_array_equal(dx3, dx4)


@pytest.mark.parametrize("cls", both_classes())
def test_bidirectional_layout(cls):
    """y[..., :H] is the forward direction, y[..., H:] the reverse (reverse=True)."""
    layer = cls()(I, H, 1, bidirectional=True, reset_after=True, dtype=np.float64,
                  seed=4)
    rng = np.random.default_rng(1)
    x, h0, _, _ = make_layer_inputs(layer, rng, T, B)
    y, h_n = layer(x, h0, LENGTHS)
    p = layer.params
    y_f, h_f = reference.gru_forward(x, h0[0], p["weight_ih_l0"], p["weight_hh_l0"],
                                     p["bias_ih_l0"], p["bias_hh_l0"], reset_after=True,
                                     lengths=LENGTHS)
    y_r, h_r = reference.gru_forward(x, h0[1], p["weight_ih_l0_reverse"],
                                     p["weight_hh_l0_reverse"], p["bias_ih_l0_reverse"],
                                     p["bias_hh_l0_reverse"], reset_after=True,
                                     lengths=LENGTHS, reverse=True)
    assert_close(y, np.concatenate([y_f, y_r], axis=2), "y", kind="reordered")
    assert_close(h_n, np.stack([h_f, h_r]), "h_n", kind="reordered")


class _CountingGRU(LayerBase):
    calls = []

    @staticmethod
    def _forward_fn(x, h0, *args, **kwargs):
        _CountingGRU.calls.append(("forward", x.shape))
        return reference.gru_forward(x, h0, *args, **kwargs)

    @staticmethod
    def _backward_fn(cache, dy, dh_n=None):
        _CountingGRU.calls.append(("backward", dy.shape))
        return reference.gru_backward(cache, dy, dh_n)


def test_one_core_call_per_layer_and_direction():
    """Time never loops in Python: one functional call per (layer, direction)."""
    layer = _CountingGRU(I, H, 3, bidirectional=True, dtype=np.float64, seed=0)
    x, h0, dy, dh_n = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    _CountingGRU.calls.clear()
    _, _, cache = layer.forward(x, h0, LENGTHS, return_cache=True)
    assert _CountingGRU.calls == [("forward", (T, B, I))] * 2 + [
        ("forward", (T, B, 2 * H))] * 4
    _CountingGRU.calls.clear()
    layer.backward(cache, dy, dh_n)
    assert _CountingGRU.calls == [("backward", (T, B, H))] * 6

    uni = _CountingGRU(I, H, 3, dtype=np.float64, seed=0)
    _CountingGRU.calls.clear()
    uni.step(x[0])
    assert _CountingGRU.calls == [("forward", (1, B, I))] + [("forward", (1, B, H))] * 2


# --------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("reset_after", [False, True], ids=["classic", "reset_after"])
def test_reference_layer_finite_differences(reset_after):
    """Central differences of a stacked bidirectional reference layer with lengths."""
    t_len, batch, n_in, n_hid = 4, 3, 2, 2
    lengths = np.array([2, 4, 0])
    layer = reference.GRU(n_in, n_hid, 2, bidirectional=True, batch_first=True,
                          reset_after=reset_after, dtype=np.float64, seed=5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, t_len, n_in))
    h0 = rng.standard_normal((4, batch, n_hid))
    w_y = rng.standard_normal((batch, t_len, 2 * n_hid))
    w_h = rng.standard_normal((4, batch, n_hid))

    def loss():
        y, h_n = layer(x, h0, lengths)
        return float(np.sum(y * w_y) + np.sum(h_n * w_h))

    _, _, cache = layer.forward(x, h0, lengths, return_cache=True)
    dx, dh0, grads = layer.backward(cache, w_y, w_h)

    assert_close(dx, numeric_gradient(loss, x), "dx", kind="finite_difference")
    assert_close(dh0, numeric_gradient(loss, h0), "dh0", kind="finite_difference")
    for name, value in layer.params.items():
        assert_close(grads[name], numeric_gradient(loss, value), name, kind="finite_difference")


# --------------------------------------------------------------------------------- step

@pytest.mark.parametrize("cls", both_classes())
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("reset_after", [False, True], ids=["classic", "reset_after"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_step_matches_forward(cls, num_layers, reset_after, dtype):
    layer = cls()(I, H, num_layers, batch_first=True, reset_after=reset_after,
                  dtype=dtype, seed=7)
    rng = np.random.default_rng(8)
    x, h0, _, _ = make_layer_inputs(layer, rng, T, B)
    y, h_n = layer(x, h0)
    h = h0
    for t in range(T):
        h = layer.step(x[:, t], h)
        assert h.shape == (num_layers, B, H) and h.dtype == dtype
        assert_close(h[-1], y[:, t], f"y[{t}]")
    assert_close(h, h_n, "h_n")
    # h=None starts from zeros.
    np.testing.assert_array_equal(layer.step(x[:, 0]),
                                  layer.step(x[:, 0], np.zeros_like(h0)))


# ------------------------------------------------------------- params / state_dict

@pytest.mark.parametrize("cls", both_classes())
def test_params_names_shapes_and_init(cls):
    layer = cls()(I, H, 2, bidirectional=True, seed=0)
    names = []
    for k in range(2):
        for suffix in ("", "_reverse"):
            names += [f"{kind}_l{k}{suffix}"
                      for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(layer.params) == names
    assert layer.params["weight_ih_l0"].shape == (3 * H, I)
    assert layer.params["weight_ih_l1_reverse"].shape == (3 * H, 2 * H)
    assert layer.params["weight_hh_l1"].shape == (3 * H, H)
    assert layer.params["bias_hh_l0_reverse"].shape == (3 * H,)
    bound = 1 / np.sqrt(H)
    for value in layer.params.values():
        assert value.dtype == np.float32
        assert np.all(np.abs(value) <= bound) and np.abs(value).max() > 0.5 * bound
    same = cls()(I, H, 2, bidirectional=True, seed=0)
    other = cls()(I, H, 2, bidirectional=True, seed=1)
    for name in names:
        np.testing.assert_array_equal(layer.params[name], same.params[name])
        assert not np.array_equal(layer.params[name], other.params[name])
    no_bias = cls()(I, H, 1, bias=False, dtype=np.float64)
    assert list(no_bias.params) == ["weight_ih_l0", "weight_hh_l0"]
    assert no_bias.params["weight_ih_l0"].dtype == np.float64


@pytest.mark.parametrize("cls", both_classes())
def test_state_dict_round_trip(cls):
    layer = cls()(I, H, 2, bidirectional=True, dtype=np.float64, seed=0)
    state = layer.state_dict()
    assert list(state) == list(layer.params)
    for name in state:
        assert state[name] is not layer.params[name]
        assert not np.shares_memory(state[name], layer.params[name])
    state["weight_ih_l0"][...] = 0  # a copy: the layer is unaffected
    assert np.any(layer.params["weight_ih_l0"] != 0)

    other = cls()(I, H, 2, bidirectional=True, dtype=np.float64, seed=1)
    source = layer.state_dict()
    other.load_state_dict(source)
    for name in source:
        np.testing.assert_array_equal(other.params[name], layer.params[name])
        assert not np.shares_memory(other.params[name], source[name])
    x, h0, _, _ = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    for a, b in zip(layer(x, h0, LENGTHS), other(x, h0, LENGTHS)):
        np.testing.assert_array_equal(a, b)

    # Float arrays of another float dtype are cast, like torch's load_state_dict.
    single = cls()(I, H, 2, bidirectional=True, dtype=np.float32, seed=3)
    single.load_state_dict(source)
    for name in source:
        assert single.params[name].dtype == np.float32
        np.testing.assert_array_equal(single.params[name],
                                      source[name].astype(np.float32))
    # Lists are accepted too.
    single.load_state_dict({k: v.tolist() for k, v in source.items()})
    assert single.params["bias_hh_l1"].dtype == np.float32


@pytest.mark.parametrize("cls", both_classes())
def test_load_state_dict_errors(cls):
    layer = cls()(I, H, 2, dtype=np.float64, seed=0)
    before = layer.state_dict()
    good = layer.state_dict()

    missing = dict(good)
    del missing["bias_hh_l1"]
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1'\]"):
        layer.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l2'\]"):
        layer.load_state_dict({**good, "weight_ih_l2": good["weight_ih_l1"]})
    wrong_shape = {**good, "weight_hh_l1": np.zeros((3 * H, H + 1))}
    with pytest.raises(ValueError, match=r"'weight_hh_l1' has shape \(12, 5\), "
                                         r"expected \(12, 4\)"):
        layer.load_state_dict(wrong_shape)
    wrong_dtype = {**good, "bias_ih_l0": np.zeros(3 * H, dtype=np.int64)}
    with pytest.raises(TypeError, match=r"'bias_ih_l0' has dtype int64"):
        layer.load_state_dict(wrong_dtype)
    with pytest.raises(TypeError, match="mapping"):
        layer.load_state_dict([1, 2])
    # A failed load changes nothing, even when earlier entries were fine.
    for name in before:
        np.testing.assert_array_equal(layer.params[name], before[name])
    # Damaged params are reported by forward, naming the key.
    layer.params["weight_hh_l0"] = layer.params["weight_hh_l0"].astype(np.float32)
    x = np.zeros((T, B, I))
    with pytest.raises(TypeError, match=r"params\['weight_hh_l0'\] has dtype float32"):
        layer(x)
    layer.params["weight_hh_l0"] = np.zeros((3 * H, 2))
    with pytest.raises(ValueError, match=r"params\['weight_hh_l0'\] has shape \(12, 2\)"):
        layer(x)
    del layer.params["weight_hh_l0"]
    with pytest.raises(ValueError, match=r"params is missing 'weight_hh_l0'"):
        layer(x)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("cls", both_classes())
def test_constructor_errors(cls):
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        cls()(I, 0)
    with pytest.raises(TypeError, match="input_size must be an integer"):
        cls()(2.5, H)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        cls()(I, H, 0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got float16"):
        cls()(I, H, dtype=np.float16)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        cls()(I, H, dtype="not a dtype")


@pytest.mark.parametrize("cls", both_classes())
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
def test_forward_input_errors(cls, batch_first):
    layer = cls()(I, H, 2, bidirectional=True, batch_first=batch_first, seed=0)
    x, h0, _, _ = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    with pytest.raises(ValueError, match=r"x must be 3-D .*got shape \(5, 3\)"):
        layer(np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"x must be 3-D"):
        layer(np.zeros((1, 5, 4, 3), dtype=np.float32))
    bad_features = np.zeros(x.shape[:2] + (I + 1,), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"x has {I + 1} features .*input_size={I}"):
        layer(bad_features)
    empty_time = np.zeros((B, 0, I) if batch_first else (0, B, I), dtype=np.float32)
    with pytest.raises(ValueError, match="at least one time step and one batch row"):
        layer(empty_time)
    empty_batch = np.zeros((0, T, I) if batch_first else (T, 0, I), dtype=np.float32)
    with pytest.raises(ValueError, match="at least one time step and one batch row"):
        layer(empty_batch)
    with pytest.raises(TypeError, match="x has dtype float64, but the layer's dtype "
                                        "is float32"):
        layer(x.astype(np.float64))
    with pytest.raises(TypeError, match="x has dtype int64"):
        layer(np.zeros(x.shape, dtype=np.int64))
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 4, 4\), expected "
                                         r"\(4, 4, 4\)"):
        layer(x, h0[:2])
    with pytest.raises(ValueError, match=r"h0 has shape \(4, 4\)"):
        layer(x, h0[0])
    with pytest.raises(TypeError, match="h0 has dtype float64"):
        layer(x, h0.astype(np.float64))
    with pytest.raises(ValueError, match=r"lengths must have shape \(4,\).*got \(3,\)"):
        layer(x, h0, [1, 2, 3])
    with pytest.raises(ValueError, match=r"lengths must have shape \(4,\)"):
        layer(x, h0, np.ones((4, 1), dtype=int))
    with pytest.raises(ValueError, match=r"lengths must lie in 0..5"):
        layer(x, h0, [1, 2, 6, 3])
    with pytest.raises(ValueError, match=r"lengths must lie in 0..5"):
        layer(x, h0, [1, -1, 2, 3])
    with pytest.raises(ValueError, match="lengths must be finite"):
        layer(x, h0, [1.0, np.nan, 2.0, 3.0])
    with pytest.raises(ValueError, match="lengths must be finite"):
        layer(x, h0, [1.0, np.inf, 2.0, 3.0])
    with pytest.raises(ValueError, match="lengths must be whole numbers"):
        layer(x, h0, [1.5, 1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="lengths must hold integers, got dtype"):
        layer(x, h0, ["1", "2", "3", "4"])
    with pytest.raises(TypeError, match="lengths must hold integers, got dtype bool"):
        layer(x, h0, [True, False, True, True])


@pytest.mark.parametrize("cls", both_classes())
def test_accepted_input_forms(cls):
    """Lists/tuples take the layer dtype; integral float lengths; non-contiguous x."""
    layer = cls()(I, H, 2, dtype=np.float64, seed=0)
    x, h0, _, _ = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    y, h_n = layer(x, h0, LENGTHS)
    y_list, h_n_list = layer(x.tolist(), tuple(h0.tolist()), tuple(LENGTHS.tolist()))
    np.testing.assert_array_equal(y, y_list)
    np.testing.assert_array_equal(h_n, h_n_list)
    y_float_len, _ = layer(x, h0, LENGTHS.astype(np.float64))
    np.testing.assert_array_equal(y, y_float_len)
    wide = np.zeros((T, B, 2 * I))
    wide[:, :, ::2] = x
    y_strided, _ = layer(wide[:, :, ::2], h0, LENGTHS)
    np.testing.assert_array_equal(y, y_strided)
    assert y.dtype == h_n.dtype == np.float64
    # The inputs are not modified.
    x2, h02, _, _ = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(h0, h02)


@pytest.mark.parametrize("cls", both_classes())
def test_backward_errors(cls):
    layer = cls()(I, H, 2, bidirectional=True, seed=0)
    x, h0, dy, dh_n = make_layer_inputs(layer, np.random.default_rng(0), T, B)
    _, _, cache = layer.forward(x, h0, return_cache=True)
    with pytest.raises(ValueError, match=r"dy has shape \(5, 4, 4\), expected "
                                         r"\(5, 4, 8\)"):
        layer.backward(cache, dy[:, :, :H], dh_n)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 5, 8\)"):
        layer.backward(cache, dy.transpose(1, 0, 2), dh_n)
    with pytest.raises(TypeError, match="dy has dtype float64"):
        layer.backward(cache, dy.astype(np.float64), dh_n)
    with pytest.raises(ValueError, match=r"dh_n has shape \(2, 4, 4\), expected "
                                         r"\(4, 4, 4\)"):
        layer.backward(cache, dy, dh_n[:2])
    with pytest.raises(TypeError, match="cache must be the object returned by "
                                        r"forward\(..., return_cache=True\), got "
                                        "NoneType"):
        layer.backward(None, dy, dh_n)
    with pytest.raises(TypeError, match="got tuple"):
        layer.backward(layer(x, h0), dy, dh_n)
    twin = cls()(I, H, 2, bidirectional=True, seed=0)  # same shapes, same weights
    with pytest.raises(ValueError, match="cache was made by the forward of another "
                                         "GRU layer"):
        twin.backward(cache, dy, dh_n)
    other = (reference_class if cls is fast_class else fast_class)()(
        I, H, 2, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match="another GRU layer"):
        other.backward(cache, dy, dh_n)
    # The cache still works for its own layer, and more than once.
    first = layer.backward(cache, dy, dh_n)
    second = layer.backward(cache, dy, dh_n)
    np.testing.assert_array_equal(first[0], second[0])


@pytest.mark.parametrize("cls", both_classes())
def test_step_errors(cls):
    bi = cls()(I, H, 1, bidirectional=True)
    with pytest.raises(ValueError, match="step\\(\\) needs a unidirectional GRU"):
        bi.step(np.zeros((B, I), dtype=np.float32))
    layer = cls()(I, H, 2)
    with pytest.raises(ValueError, match=r"x_t must be \(B, I\) with I=input_size=3, "
                                         r"got shape \(5, 4, 3\)"):
        layer.step(np.zeros((T, B, I), dtype=np.float32))
    with pytest.raises(ValueError, match=r"x_t must be \(B, I\).*got shape \(4, 2\)"):
        layer.step(np.zeros((B, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"h has shape \(4, 4\), expected \(2, 4, 4\)"):
        layer.step(np.zeros((B, I), dtype=np.float32), np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match="x_t must have at least one batch row"):
        layer.step(np.zeros((0, I), dtype=np.float32))
    with pytest.raises(TypeError, match="x_t has dtype float64"):
        layer.step(np.zeros((B, I)))


def test_options_are_exposed():
    layer = fast_class()(I, H, 3, bias=False, batch_first=True, bidirectional=True,
                         reset_after=True, dtype=np.float64)
    assert (layer.input_size, layer.hidden_size, layer.num_layers) == (I, H, 3)
    assert (layer.bias, layer.batch_first, layer.bidirectional, layer.reset_after) == (
        False, True, True, True)
    assert layer.dtype == np.float64 and layer.num_directions == 2
    assert "num_layers=3" in repr(layer) and "float64" in repr(layer)
    with pytest.raises(AttributeError):
        layer.hidden_size = 5
    assert isinstance(layer, LayerBase) and isinstance(reference_class()(I, H), LayerBase)



# --------------------------------------------------------------------------- freeze

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["classic", "reset_after"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_frozen_layer_matches_reference_and_layer(num_layers, bidirectional, batch_first,
                                                  bias, reset_after, dtype):
    layer, ref = fast_and_reference(num_layers, bias=bias, batch_first=batch_first,
                                    bidirectional=bidirectional, reset_after=reset_after,
                                    dtype=dtype, seed=4)
    frozen = layer.freeze()
    assert isinstance(frozen, gru_fast.FrozenGRULayer)
    rng = np.random.default_rng(6)
    x, h0, _, _ = make_layer_inputs(layer, rng, T, B)
    for lengths in (None, LENGTHS):
        for state in (None, h0):
            y, h_n = frozen(x, state, lengths=lengths)
            y_ref, h_n_ref = ref(x, state, lengths=lengths)
            assert_close(y, y_ref, "y")
            assert_close(h_n, h_n_ref, "h_n")
            # The same kernel on the same weights: the very same numbers.
            y_layer, h_n_layer = layer(x, state, lengths=lengths)
            np.testing.assert_array_equal(y, y_layer)
            np.testing.assert_array_equal(h_n, h_n_layer)


def test_frozen_layer_step_and_snapshot():
    layer = gru_fast.GRU(I, H, 2, reset_after=True, dtype=np.float64, seed=7)
    frozen = layer.freeze()
    x = np.random.default_rng(8).standard_normal((T, B, I))
    y_before, h_n_before = frozen(x)
    h = None
    for t in range(T):
        h = frozen.step(x[t], h)
    assert_close(h, h_n_before, "step")
    for value in layer.params.values():
        value *= 2  # the source layer is trained on
    y_after, h_n_after = frozen(x)
    np.testing.assert_array_equal(y_after, y_before)
    np.testing.assert_array_equal(h_n_after, h_n_before)
    assert not np.allclose(layer(x)[0], y_before)
    for name, value in frozen.params.items():
        with pytest.raises(ValueError, match="read-only"):
            value[...] = 0
    frozen_again = reference.GRU(I, H, 2, reset_after=True, dtype=np.float64, seed=7).freeze()
    np.testing.assert_array_equal(frozen_again(x)[0], y_before)


def test_frozen_layer_refuses_training():
    frozen = gru_fast.GRU(I, H, dtype=np.float64, seed=9).freeze()
    x = np.zeros((T, B, I))
    with pytest.raises(ValueError, match="no cache"):
        frozen.forward(x, return_cache=True)
    with pytest.raises(TypeError, match="no backward"):
        frozen.backward(None, np.zeros((T, B, H)))
    with pytest.raises(TypeError, match="freeze"):
        frozen.load_state_dict(frozen.state_dict())
    with pytest.raises(TypeError, match="dtype"):
        frozen(np.zeros((T, B, I), np.float32))
    with pytest.raises(ValueError, match="features"):
        frozen(np.zeros((T, B, I + 1)))
    assert repr(frozen).startswith("FrozenGRULayer(")
