"""Arrays whose values are not on multiples of their size, and what the core accepts.

The core's entry points read their arrays through NumPy's C API and refuse anything but
C-contiguous, aligned, native-order ndarrays of the call's dtype (writable where they
write), with a ValueError naming the argument: never a crash. Unaligned arrays do occur
(protocol-5 pickle buffers at odd offsets of a frame, as between Dask workers, or
``np.frombuffer`` at an offset); the public API realigns them (a copy) before the core
runs, so they give the same bits as aligned ones.
"""

import pickle

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, functional
from _helpers import make_problem, random_layer


def unaligned(array):
    """A copy of `array` whose data starts one byte past an aligned address."""
    array = np.ascontiguousarray(array)
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)
    copy = raw[1:].view(array.dtype).reshape(array.shape)
    copy[...] = array
    assert not copy.flags.aligned
    return copy


def pickled_unaligned(obj):
    """`obj` through a protocol-5 pickle whose out-of-band buffers sit at odd offsets."""
    buffers = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    moved = []
    for buffer in buffers:
        data = buffer.raw()
        frame = bytearray(len(data) + 1)
        frame[1:] = data
        moved.append(memoryview(frame)[1:])
    return pickle.loads(header, buffers=moved)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_unaligned_arguments_give_the_aligned_bits(dtype, reset_after):
    problem = make_problem(np.random.default_rng(0), 6, 3, 5, 4, dtype)
    want = gru_fast.gru_forward(**problem, reset_after=reset_after, return_cache=True)
    moved = {name: unaligned(value) for name, value in problem.items()}
    snapshot = {name: value.copy() for name, value in moved.items()}
    got = gru_fast.gru_forward(**moved, reset_after=reset_after, return_cache=True)
    for a, b in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(a, b)
    dy = np.random.default_rng(1).standard_normal(want[0].shape).astype(dtype)
    grads_want = gru_fast.gru_backward(want[2], dy)
    grads_got = gru_fast.gru_backward(got[2], unaligned(dy))
    for name in grads_want:
        np.testing.assert_array_equal(grads_got[name], grads_want[name], err_msg=name)
    for name, value in moved.items():  # inputs untouched
        np.testing.assert_array_equal(value, snapshot[name], err_msg=name)


@pytest.mark.parametrize("frozen", [False, True])
def test_layer_and_frozen_layer_take_unaligned_inputs(frozen):
    layer = random_layer(2, bidirectional=True, dtype=np.float64, seed=3)
    model = layer.freeze() if frozen else layer
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 4, 5))
    h0 = rng.standard_normal((4, 4, 4))
    want = model.forward(x, h0)
    got = model.forward(unaligned(x), unaligned(h0))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_models_unpickled_onto_unaligned_buffers_run():
    """A GRU, a FrozenGRULayer, a FrozenGRU, a cache and a network whose arrays came back
    from pickle buffers at odd offsets give the bits of the originals."""
    layer = random_layer(dtype=np.float64, reset_after=True, seed=5)
    x = np.random.default_rng(4).standard_normal((6, 3, 5))
    for model in (layer, layer.freeze()):
        again = pickled_unaligned(model)
        for a, b in zip(again.forward(x), model.forward(x)):
            np.testing.assert_array_equal(a, b)
    params = layer.params
    frozen = gru_fast.FrozenGRU(params["weight_ih_l0"], params["weight_hh_l0"],
                                params["bias_ih_l0"], params["bias_hh_l0"], reset_after=True)
    frozen_again = pickled_unaligned(frozen)
    for a, b in zip(frozen_again(x), frozen(x)):
        np.testing.assert_array_equal(a, b)

    y, h_n, cache = gru_fast.gru_forward(x, None, params["weight_ih_l0"],
                                         params["weight_hh_l0"], reset_after=True,
                                         return_cache=True)
    dy = np.ones_like(y)
    want = gru_fast.gru_backward(cache, dy)
    got = gru_fast.gru_backward(pickled_unaligned(cache), dy)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_network_unpickled_onto_unaligned_buffers_trains_the_same():
    from gru_fast.network import GRUNetwork

    rng = np.random.default_rng(6)
    network = GRUNetwork(3, 4, 2, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 5, 3))  # (B, T, I)
    targets = rng.standard_normal((4, 2))
    again = pickled_unaligned(network)
    assert again.flat.flags.aligned
    want = network.loss_and_grad(network.flat, x, targets)
    got = again.loss_and_grad(again.flat, x, targets)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def _forward_arguments(dtype=np.float32):
    """Valid arguments of _core.forward_sequence for T = 2, B = 1, I = 3, H = 4."""
    T, B, I, H = 2, 1, 3, 4
    padded = _core.padded_to_panels(H)

    def zeros(*shape):
        return np.zeros(shape, dtype)
    return dict(
        x=zeros(T * B, I), batch_sizes=np.full(T, B, np.intp),
        offsets=np.arange(T + 1, dtype=np.intp) * B, out_rows=np.empty(0, np.intp),
        order=np.empty(0, np.intp), weight_ih=zeros(3 * H, I), weight_hh=zeros(3 * H, H),
        packed_ih=zeros(3 * padded * I), packed_hh=zeros(3 * padded * H),
        bias_gates=zeros(3 * H), bias_hn=zeros(H), state=zeros(B, H),
        state_scratch=zeros(B, H), y=zeros(T * B, H), gates=zeros(B, 4 * H),
        h_prev=zeros(B, H), input_preact=zeros(B, 3 * H), recurrent_preact=zeros(B, 3 * H),
        reset_after=True, reverse=False, store_history=False, n_threads=1,
        stop=np.zeros(1, np.int32), pack_weights=True)


def test_core_entry_point_runs_on_valid_arguments():
    arguments = _forward_arguments()
    arguments["x"][...] = 1
    arguments["weight_ih"][...] = 0.5
    _core.forward_sequence(**arguments)
    y, h_n = functional.gru_forward(np.ones((2, 1, 3), np.float32), None,
                                    arguments["weight_ih"], arguments["weight_hh"],
                                    reset_after=True)
    np.testing.assert_array_equal(arguments["y"].reshape(2, 1, 4), y)


@pytest.mark.parametrize("name, bad, problem", [
    ("bias_hn", [0.0] * 4, "not a NumPy array"),
    ("bias_gates", np.zeros(12, np.float64), "another dtype"),
    ("batch_sizes", np.full(2, 1, np.int32), "another dtype"),
    ("y", np.zeros(8, np.float32), "another number of axes"),
    ("gates", np.zeros((1, 32), np.float32)[:, ::2], "not C-contiguous"),
    ("weight_hh", unaligned(np.zeros((12, 4), np.float32)), "not C-contiguous, aligned"),
    ("stop", np.zeros(1, np.int64), "another dtype"),
])
def test_core_refuses_arrays_it_cannot_read_with_a_clear_error(name, bad, problem):
    arguments = _forward_arguments()
    arguments[name] = bad
    with pytest.raises(ValueError, match=f"{name} .*{problem}"):
        _core.forward_sequence(**arguments)


def test_core_refuses_read_only_outputs_and_a_non_float_x():
    arguments = _forward_arguments()
    arguments["y"].flags.writeable = False
    with pytest.raises(ValueError, match="y is read-only"):
        _core.forward_sequence(**arguments)
    for bad_x in (arguments["x"].astype(np.int32), arguments["x"].tolist()):
        arguments = _forward_arguments()
        arguments["x"] = bad_x
        with pytest.raises(TypeError, match="x must be a float32 or float64 ndarray"):
            _core.forward_sequence(**arguments)


@pytest.mark.parametrize("frozen", [False, True])
def test_steps_take_unaligned_inputs_and_refuse_an_unaligned_out(frozen):
    """FrozenGRU.step and GRU.step: unaligned x_t and h give the aligned bits (the lean
    path refuses them, the checked path copies); an unaligned out is a clear error."""
    layer = random_layer(dtype=np.float64, reset_after=True, seed=7)
    params = layer.params
    model = (gru_fast.FrozenGRU(params["weight_ih_l0"], params["weight_hh_l0"],
                                params["bias_ih_l0"], params["bias_hh_l0"],
                                reset_after=True) if frozen else layer)
    rng = np.random.default_rng(8)
    x_t = rng.standard_normal((3, 5))
    h = rng.standard_normal((3, 4) if frozen else (1, 3, 4))
    want = model.step(x_t, h)
    np.testing.assert_array_equal(model.step(unaligned(x_t), unaligned(h)), want)
    with pytest.raises(ValueError, match="out must hold its values .*aligned"):
        model.step(x_t, h, out=unaligned(np.zeros_like(want)))
