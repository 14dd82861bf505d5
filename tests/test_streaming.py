"""The lean step path (issue 16): bitwise gru_forward, out=, change detection, bad input."""

import pickle
import threading

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, _stepping, reference

RTOL = {np.float32: 2e-4, np.float64: 1e-9}

# (B, I, H): one partial panel; the three shapes of the issue; rows over the
# 8-row tiles with a partial last panel; several panels in float64 tiles.
SHAPES = [(1, 3, 5), (1, 64, 64), (1, 32, 256), (8, 64, 128), (13, 40, 70), (7, 9, 33)]
STEPS = 19


def weights_for(rng, input_size, hidden_size, dtype, bias=True):
    scale = 1.0 / np.sqrt(hidden_size)

    def uniform(*shape):
        return rng.uniform(-2 * scale, 2 * scale, shape).astype(dtype)

    weights = [uniform(3 * hidden_size, input_size), uniform(3 * hidden_size, hidden_size)]
    weights += [uniform(3 * hidden_size), uniform(3 * hidden_size)] if bias else [None, None]
    return weights


def assert_close(actual, expected, dtype):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def forward_one_step(x_t, h, weights, reset_after):
    """gru_forward on a sequence of one step: the numbers a step must equal, bit for bit."""
    _, h_new = gru_fast.gru_forward(x_t[None], h, *weights, reset_after=reset_after)
    return h_new


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_frozen_step_is_bitwise_gru_forward(dtype, reset_after, bias, shape):
    batch_size, input_size, hidden_size = shape
    rng = np.random.default_rng(sum(shape) + 2 * reset_after + bias)
    weights = weights_for(rng, input_size, hidden_size, dtype, bias)
    frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)
    xs = rng.standard_normal((STEPS, batch_size, input_size)).astype(dtype)
    h = None
    h_ref = None  # the reference state, carried in float64 of its own
    out = np.empty((batch_size, hidden_size), dtype)
    for t, x_t in enumerate(xs):
        expected = forward_one_step(x_t, h, weights, reset_after)
        if t % 2:  # the new array, and out= (here out is h itself after the first step)
            h = frozen.step(x_t, h)
        else:
            h = frozen.step(x_t, h, out=out)
            assert h is out
        np.testing.assert_array_equal(h, expected, err_msg=f"step {t}")
        _, h_ref = reference.gru_forward(x_t[None], None if t == 0 else h_ref, *weights,
                                         reset_after=reset_after)
        assert_close(h, h_ref, dtype)
        h_ref = h.copy()  # follow the fast path's state, so errors do not compound


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("forced", [True, False, None], ids=["workers", "caller", "measured"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_every_thread_count_gives_the_same_bits(threads, forced, reset_after):
    """step_layers on at most 1, 2, 3 threads, the workers forced on, off, or measured."""
    rng = np.random.default_rng(3 + threads)
    weights = weights_for(rng, 24, 100, np.float32)
    frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)
    h = np.zeros((1, 5, 100), np.float32)
    _core._force_threads(forced)
    try:
        for t in range(STEPS):
            x_t = rng.standard_normal((5, 24)).astype(np.float32)
            expected = forward_one_step(x_t, h[0], weights, reset_after)
            assert _core.step_layers((frozen.step_kernel,), x_t, h, h, threads)
            np.testing.assert_array_equal(h[0], expected, err_msg=f"step {t}")
    finally:
        _core._force_threads(None)


def test_thread_budget_limits_steps():
    with gru_fast.functional.thread_budget(1):
        assert _stepping.max_threads() == 1
    assert _stepping.max_threads() == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_layer_steps_are_bitwise_forward(dtype, reset_after, num_layers):
    """GRU.step and FrozenGRULayer.step equal forward() on each step, bit for bit."""
    rng = np.random.default_rng(10 * num_layers + reset_after)
    layer = gru_fast.GRU(6, 20, num_layers, reset_after=reset_after, dtype=dtype, seed=1)
    frozen = layer.freeze()
    xs = rng.standard_normal((STEPS, 4, 6)).astype(dtype)
    h = frozen_h = None
    out = np.empty((num_layers, 4, 20), dtype)
    for t, x_t in enumerate(xs):
        _, expected = layer.forward(x_t[None], h)
        h = layer.step(x_t, h)
        frozen_h = frozen.step(x_t, frozen_h, out=out)
        np.testing.assert_array_equal(h, expected, err_msg=f"GRU.step {t}")
        np.testing.assert_array_equal(frozen_h, expected, err_msg=f"FrozenGRULayer.step {t}")
    # Step by step ends where the sequence does; not bitwise, as the sequence's input
    # projection is one product over all T*B rows, which the kernel sums in another order.
    _, h_n = layer.forward(xs)
    assert_close(h, h_n, dtype)


def test_reference_layer_step_takes_out():
    layer = reference.GRU(3, 5, 2, seed=2)
    x_t = np.ones((2, 3), np.float32)
    out = np.full((2, 2, 5), np.nan, np.float32)
    assert layer.step(x_t, out=out) is out
    np.testing.assert_array_equal(out, layer.step(x_t))


def test_gru_step_sees_parameters_changed_in_place():
    rng = np.random.default_rng(4)
    layer = gru_fast.GRU(5, 12, 2, reset_after=True, seed=3)
    x_t = rng.standard_normal((2, 5)).astype(np.float32)
    h = layer.step(x_t)
    changes = [
        lambda: layer.params["weight_hh_l1"].__setitem__((3, 4), 0.5),  # in place, layer 1
        lambda: layer.params["bias_hh_l0"].__imul__(-1),                 # in place, a bias
        lambda: layer.params.__setitem__("weight_ih_l0",                 # a new array
                                         layer.params["weight_ih_l0"] + 1e-7),
        lambda: layer.load_state_dict(gru_fast.GRU(5, 12, 2, reset_after=True,
                                                   seed=5).state_dict()),
        lambda: layer.params["weight_ih_l0"].__setitem__((0, 0), -0.0),  # a bit: 0.0 -> -0.0
    ]
    layer.params["weight_ih_l0"][0, 0] = 0.0
    for number, change in enumerate(changes):
        layer.step(x_t, h)  # packs the current params
        change()
        _, expected = layer.forward(x_t[None], h)
        np.testing.assert_array_equal(layer.step(x_t, h), expected, err_msg=f"change {number}")


def test_gru_step_reuses_its_packing_while_params_are_unchanged():
    layer = gru_fast.GRU(4, 8, seed=6)
    x_t = np.ones((1, 4), np.float32)
    layer.step(x_t)
    steps = layer._step_cache
    layer.step(x_t)
    layer.params = {name: value.copy() for name, value in layer.params.items()}  # same values
    layer.step(x_t)
    assert layer._step_cache is steps
    layer.params["weight_hh_l0"][0, 0] += 1
    layer.step(x_t)
    assert layer._step_cache is not steps


def test_slow_path_converts_what_forward_converts():
    """Non-contiguous arrays and (for GRU) lists take the checked path, same bits."""
    rng = np.random.default_rng(5)
    layer = gru_fast.GRU(6, 10, 2, seed=7)
    frozen = gru_fast.FrozenGRU(layer.params["weight_ih_l0"], layer.params["weight_hh_l0"],
                                layer.params["bias_ih_l0"], layer.params["bias_hh_l0"])
    x_wide = rng.standard_normal((3, 12)).astype(np.float32)
    x_t = x_wide[:, ::2]  # not contiguous
    h = np.asfortranarray(rng.standard_normal((3, 10)).astype(np.float32))
    expected = frozen.step(np.ascontiguousarray(x_t), np.ascontiguousarray(h))
    np.testing.assert_array_equal(frozen.step(x_t, h), expected)
    states = layer.step(x_t)
    np.testing.assert_array_equal(layer.step(x_t.tolist()), states)
    np.testing.assert_array_equal(frozen.step(np.zeros((0, 6), np.float32)),
                                  np.zeros((0, 10), np.float32))


def test_inputs_are_not_modified_and_out_may_be_h():
    rng = np.random.default_rng(6)
    frozen = gru_fast.GRU(4, 9, 2, seed=8).freeze()
    x_t = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((2, 3, 9)).astype(np.float32)
    x_before, h_before = x_t.copy(), h.copy()
    new = frozen.step(x_t, h)
    np.testing.assert_array_equal(x_t, x_before)
    np.testing.assert_array_equal(h, h_before)
    assert frozen.step(x_t, h, out=h) is h
    np.testing.assert_array_equal(h, new)


def test_batch_size_may_change_between_steps():
    rng = np.random.default_rng(7)
    weights = weights_for(rng, 5, 40, np.float64)
    frozen = gru_fast.FrozenGRU(*weights, reset_after=True)
    for batch_size in (1, 9, 2, 16, 1):
        x_t = rng.standard_normal((batch_size, 5))
        np.testing.assert_array_equal(frozen.step(x_t),
                                      forward_one_step(x_t, None, weights, True))


def test_concurrent_steps_from_threads():
    """One FrozenGRU stepped from four Python threads at once: each gets its own scratch."""
    rng = np.random.default_rng(8)
    weights = weights_for(rng, 16, 64, np.float32)
    frozen = gru_fast.FrozenGRU(*weights, reset_after=True)
    xs = rng.standard_normal((4, 200, 2, 16)).astype(np.float32)
    results = [None] * 4

    def stream(index):
        h = np.zeros((2, 64), np.float32)
        for x_t in xs[index]:
            frozen.step(x_t, h, out=h)
        results[index] = h

    workers = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for index in range(4):
        h = None
        for x_t in xs[index]:
            h = forward_one_step(x_t, h, weights, True)
        np.testing.assert_array_equal(results[index], h)


def test_pickled_layers_step_again():
    rng = np.random.default_rng(9)
    layer = gru_fast.GRU(3, 7, 2, seed=9)
    x_t = rng.standard_normal((2, 3)).astype(np.float32)
    expected = layer.step(x_t)  # makes the packed cache, which pickling leaves out
    for obj in (layer, layer.freeze(),
                gru_fast.FrozenGRU(*(layer.params[n] for n in layer._names(0, 0)))):
        copy = pickle.loads(pickle.dumps(obj))
        result = copy.step(x_t)
        np.testing.assert_array_equal(result, expected if result.ndim == 3 else expected[0])


OUT_ERRORS = [
    (lambda shape: [[0.0] * shape[-1]] * shape[-2], TypeError, "out must be a numpy.ndarray"),
    (lambda shape: np.zeros(shape, np.float64), TypeError, "out has dtype float64"),
    (lambda shape: np.zeros(shape[:-1] + (shape[-1] + 1,), np.float32), ValueError,
     "out must have shape"),
    (lambda shape: np.zeros(shape[::-1], np.float32).T, ValueError, "C-contiguous"),
    (lambda shape: read_only(np.zeros(shape, np.float32)), ValueError, "writeable"),
]


def read_only(array):
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("make_out, error, match", OUT_ERRORS)
@pytest.mark.parametrize("kind", ["frozen", "layer", "frozen_layer"])
def test_bad_out_raises(kind, make_out, error, match):
    layer = gru_fast.GRU(3, 4, 2, seed=10)
    model = {"frozen": gru_fast.FrozenGRU(*(layer.params[n] for n in layer._names(0, 0))),
             "layer": layer, "frozen_layer": layer.freeze()}[kind]
    shape = (3, 4) if kind == "frozen" else (2, 3, 4)
    with pytest.raises(error, match=match):
        model.step(np.zeros((3, 3), np.float32), out=make_out(shape))


def test_out_overlapping_x_or_part_of_h_raises():
    frozen = gru_fast.GRU(4, 4, 2, seed=11).freeze()
    memory = np.zeros((3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="out must not share memory with x_t"):
        frozen.step(memory[1], out=memory[1:])
    h = np.zeros((3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="out may be h itself"):
        frozen.step(np.zeros((3, 4), np.float32), h[:2], out=h[1:])


def test_core_entries_refuse_anything_unexpected():
    """The core returns False (does nothing) for whatever it cannot run on safely."""
    frozen = gru_fast.FrozenGRU(*weights_for(np.random.default_rng(1), 3, 4, np.float32))
    kernel = frozen.step_kernel
    x_t = np.ones((2, 3), np.float32)
    h = np.ones((2, 4), np.float32)
    out = np.full((2, 4), 7.0, np.float32)
    bad_calls = [
        ([[1.0, 2.0, 3.0]], h, out), (x_t.astype(np.float64), h, out), (x_t, h.T.copy(), out),
        (np.ones((2, 3), ">f4"), h, out), (np.ones((3, 2), np.float32).T, h, out),
        (np.ones((0, 3), np.float32), h[:0], out[:0]), (x_t[None], h, out),
        (x_t, h, read_only(out.copy())), (x_t, h, None), (x_t, h, out.ravel()),
        (x_t, "h", out),
    ]
    for x_bad, h_bad, out_bad in bad_calls:
        assert kernel.step(x_bad, h_bad, out_bad) is False
    np.testing.assert_array_equal(out, 7.0)
    assert kernel.step(out.reshape(-1)[:6].reshape(2, 3), h, out) is False  # x_t inside out
    states = np.ones((3, 4), np.float32)
    assert kernel.step(x_t, states[:2], states[1:]) is False  # out overlaps part of h
    assert kernel.step(x_t, states[1:], states[1:]) is True  # out is h
    assert kernel.step(x_t, h, out) is True
    assert _core.step_layers((kernel,), x_t, None, out) is False  # 2-D out for a stack
    assert _core.step_layers((kernel, kernel), x_t, None, np.empty((2, 2, 4), np.float32)) \
        is False  # layer 1's input size is not H
    assert _core.step_layers((), x_t, None, out) is False
    with pytest.raises(TypeError):
        _core.step_layers(("not a kernel",), x_t, None, out)
    with pytest.raises(ValueError, match="packed_hh must be a contiguous"):
        _core.StepKernel(frozen._packed_ih, frozen._packed_hh[:-1], frozen._bias_gates,
                         frozen._bias_hn, 3, 4, False)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(kernel)


def test_same_bytes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _core.same_bytes((a, None), (a.copy(), None))
    assert not _core.same_bytes((a,), (a.reshape(3, 2).copy(),))  # shape
    assert not _core.same_bytes((a,), (a.astype(np.float64),))  # dtype
    assert not _core.same_bytes((a.T,), (a.T.copy(),))  # not C-contiguous
    assert not _core.same_bytes((None,), (a,))
    assert not _core.same_bytes(([1.0],), (a,))
    b = a.copy()
    b[1, 2] = np.nextafter(b[1, 2], np.float32(10))
    assert not _core.same_bytes((a,), (b,))
    zeros = np.zeros(3, np.float32)
    assert not _core.same_bytes((zeros,), (-zeros,))  # 0.0 and -0.0 differ in a bit
    big = np.random.default_rng(0).standard_normal(100_000)
    assert _core.same_bytes((big,), (big.copy(),))  # the memcmp without the GIL


def explicit_little_endian(array):
    """The same array, its dtype marked little-endian: buffer format "<f" or "<d"."""
    return array.view(array.dtype.newbyteorder("<"))


@pytest.mark.skipif(np.little_endian is False, reason="little-endian formats are native here")
def test_explicitly_native_formats_take_the_lean_path():
    """Arrays rebuilt by pickle or Dask can export "<d" or "=d": the same native float."""
    rng = np.random.default_rng(12)
    weights = weights_for(rng, 3, 8, np.float64)
    frozen = gru_fast.FrozenGRU(*weights)
    kernel = _core.StepKernel(*(explicit_little_endian(getattr(frozen, name)) for name in
                                ("_packed_ih", "_packed_hh", "_bias_gates", "_bias_hn")),
                              3, 8, False)
    x_t = rng.standard_normal((2, 3))
    out = explicit_little_endian(np.empty((2, 8)))
    assert memoryview(out).format == "<d"
    assert kernel.step(explicit_little_endian(x_t), None, out)
    np.testing.assert_array_equal(out, forward_one_step(x_t, None, weights, False))
    assert _core.same_bytes((explicit_little_endian(x_t),), (x_t,))
    assert not kernel.step(x_t.astype(">f8"), None, out)  # really another byte order
