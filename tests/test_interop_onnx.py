"""gru_fast.interop against ONNX and ONNX Runtime."""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from gru_fast import interop  # noqa: E402

from _helpers import assert_close, assert_same_params, random_layer  # noqa: E402

CONFIGS = [
    # num_layers, bidirectional, batch_first, bias, reset_after
    (1, False, False, True, True),
    (1, False, True, True, False),
    (1, True, False, False, True),
    (1, True, True, True, False),
    (2, False, True, True, True),
    (2, True, False, True, False),
    (3, True, True, False, True),
]
CONFIG_FIELDS = ("num_layers", "bidirectional", "batch_first", "bias", "reset_after")


def session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("config", CONFIGS)
def test_onnxruntime_matches_forward(config):
    """Our exported model in ONNX Runtime, with sequence_lens and initial_h."""
    num_layers, bidirectional, batch_first, bias, reset_after = config
    layer = random_layer(**dict(zip(CONFIG_FIELDS, config)))
    model = interop.to_onnx(layer, sequence_lens=True, initial_h=True)
    run = session(model)
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(7)
    for T, lengths in [(6, [6, 3, 1, 5]), (1, [1, 1, 1, 1]), (9, [2, 9, 9, 4])]:
        B = len(lengths)
        x = rng.standard_normal((B, T, 5) if batch_first else (T, B, 5)).astype(np.float32)
        h0 = rng.standard_normal((num_layers * D, B, 4)).astype(np.float32)
        lengths = np.array(lengths, np.int32)
        y_onnx, h_onnx = run.run(None, {"X": x, "sequence_lens": lengths, "initial_h": h0})
        y, h_n = layer.forward(x, h0, lengths=lengths)
        assert y_onnx.shape == y.shape and h_onnx.shape == h_n.shape
        assert_close(y_onnx, y, "y", kind="peer")
        assert_close(h_onnx, h_n, "h_n", kind="peer")

    # without the optional inputs: full lengths, zero initial state
    plain = session(interop.to_onnx(layer))
    assert [i.name for i in plain.get_inputs()] == ["X"]
    y_onnx, h_onnx = plain.run(None, {"X": x})
    y, h_n = layer.forward(x)
    assert_close(y_onnx, y, "y", kind="peer")
    assert_close(h_onnx, h_n, "h_n", kind="peer")


def test_zero_length_rows():
    """len_b = 0: gru_fast keeps h0 and writes zeros; check what ONNX Runtime does."""
    layer = random_layer(bidirectional=True, bias=True, reset_after=True)
    run = session(interop.to_onnx(layer, sequence_lens=True, initial_h=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    h0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    lengths = np.array([4, 0, 2], np.int32)
    y_onnx, h_onnx = run.run(None, {"X": x, "sequence_lens": lengths, "initial_h": h0})
    y, h_n = layer.forward(x, h0, lengths=lengths)
    assert_close(y_onnx, y, "y", kind="peer")
    assert_close(h_onnx, h_n, "h_n", kind="peer")
    np.testing.assert_array_equal(h_n[:, 1], h0[:, 1])
    np.testing.assert_array_equal(y_onnx[:, 1], 0.0)
    # without initial_h both start from zeros, and the bare GRU node already agrees
    run = session(interop.to_onnx(layer, sequence_lens=True))
    y_onnx, h_onnx = run.run(None, {"X": x, "sequence_lens": lengths})
    y, h_n = layer.forward(x, lengths=lengths)
    assert_close(y_onnx, y, "y", kind="peer")
    assert_close(h_onnx, h_n, "h_n", kind="peer")


def test_onnxruntime_gru_zeroes_state_of_empty_rows():
    """Why to_onnx adds a Where: a bare ONNX Runtime GRU node ignores initial_h at len 0."""
    from onnx import TensorProto, helper

    model, _, _ = gru_model()
    node = model.graph.node[0]
    node.input.extend(["", "sequence_lens", "initial_h"])
    node.output[:] = ["Y", "Y_h"]
    model.graph.input.extend([
        helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]),
        helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [1, "B", 2])])
    model.graph.output.append(helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None))
    h0 = np.ones((1, 2, 2), np.float32)
    _, h_onnx = session(model).run(None, {"X": np.ones((3, 2, 3), np.float32), "initial_h": h0,
                                          "sequence_lens": np.array([3, 0], np.int32)})
    if not np.array_equal(h_onnx[0, 1], np.zeros(2)):  # harmless for to_onnx's models
        pytest.skip(f"this ONNX Runtime keeps initial_h for an empty row ({h_onnx[0, 1]})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS)
def test_onnx_round_trip_is_exact(config, dtype, tmp_path):
    layer = random_layer(**dict(zip(CONFIG_FIELDS, config)), dtype=dtype)
    path = tmp_path / "gru.onnx"
    model = interop.to_onnx(layer, path, initial_h=True)
    for source in (model, path, str(path)):
        back = interop.from_onnx(source)
        assert (back.input_size, back.hidden_size, back.num_layers, back.bidirectional,
                back.batch_first, back.bias, back.reset_after) == (
            5, 4, *config[:2], *config[2:])
        assert np.dtype(back.dtype) == np.dtype(dtype)
        assert_same_params(layer, back)


def test_onnx_layout():
    """W [D, 3H, I], R [D, 3H, H], B [D, 6H] = [Wb; Rb], rows z, r, h."""
    layer = random_layer(bidirectional=True, bias=True, reset_after=True)
    model = interop.to_onnx(layer)
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    W, R, Bias = arrays["W_l0"], arrays["R_l0"], arrays["B_l0"]
    p, H = layer.params, 4
    assert W.shape == (2, 12, 5) and R.shape == (2, 12, 4) and Bias.shape == (2, 24)
    np.testing.assert_array_equal(W[0, :H], p["weight_ih_l0"][H:2 * H])  # z
    np.testing.assert_array_equal(W[1, H:2 * H], p["weight_ih_l0_reverse"][:H])  # r
    np.testing.assert_array_equal(R[0, 2 * H:], p["weight_hh_l0"][2 * H:])  # h
    np.testing.assert_array_equal(Bias[1, 3 * H:4 * H], p["bias_hh_l0_reverse"][H:2 * H])
    (gru,) = [n for n in model.graph.node if n.op_type == "GRU"]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}
    assert attributes["linear_before_reset"] == 1 and attributes["direction"] == b"bidirectional"


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_torch_onnx_export(num_layers, bidirectional, batch_first, tmp_path):
    """torch.onnx.export (TorchScript exporter) of an nn.GRU loads with from_onnx."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 4, num_layers, batch_first=batch_first,
                          bidirectional=bidirectional).eval()
    D = 2 if bidirectional else 1
    x = torch.randn((3, 6, 5) if batch_first else (6, 3, 5))
    h0 = torch.randn(num_layers * D, 3, 4)
    path = tmp_path / "torch_gru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x, h0), str(path), dynamo=False,
                              input_names=["x", "h0"], output_names=["y", "h_n"])
        except (ImportError, ModuleNotFoundError) as error:  # exporter not available
            pytest.skip(f"torch.onnx.export unavailable: {error}")
    layer = interop.from_onnx(path)
    assert (layer.num_layers, layer.bidirectional, layer.batch_first, layer.reset_after) == (
        num_layers, bidirectional, batch_first, True)
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(layer.params[name], tensor.numpy(), err_msg=name)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in module(x, h0))
    y, h_n = layer.forward(x.numpy(), h0.numpy())
    assert_close(y, y_ref, "y", kind="peer")
    assert_close(h_n, h_ref, "h_n", kind="peer")


def gru_model(direction="forward", weights_as_inputs=False, **attributes):
    """A one-node GRU model built by hand."""
    from onnx import TensorProto, helper, numpy_helper

    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    W = rng.standard_normal((D, 6, 3)).astype(np.float32)
    R = rng.standard_normal((D, 6, 2)).astype(np.float32)
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y", "Y_h"], hidden_size=2,
                            direction=direction, **attributes)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3])]
    initializers = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info("W", TensorProto.FLOAT, list(W.shape)),
                   helper.make_tensor_value_info("R", TensorProto.FLOAT, list(R.shape))]
        initializers = []
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), W, R


def test_from_onnx_foreign_single_node():
    """A hand-made node without B: bias=False, classic variant, layout read as time-major."""
    model, W, R = gru_model()
    layer = interop.from_onnx(model)
    assert (layer.bias, layer.reset_after, layer.batch_first, layer.bidirectional) == (
        False, False, False, False)
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], interop._swap_r_z(W[0]))
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    (y_onnx,) = session(model).run(["Y"], {"X": x})
    assert_close(layer.forward(x)[0], y_onnx[:, 0], kind="peer")


def test_from_onnx_errors():
    with pytest.raises(ValueError, match="reverse"):
        interop.from_onnx(gru_model("reverse")[0])
    with pytest.raises(ValueError, match="activations"):
        interop.from_onnx(gru_model(activations=["HardSigmoid", "Tanh"])[0])
    with pytest.raises(ValueError, match="clip"):
        interop.from_onnx(gru_model(clip=1.0)[0])
    with pytest.raises(ValueError, match="initializer"):
        interop.from_onnx(gru_model(weights_as_inputs=True)[0])
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    with pytest.raises(ValueError, match="no GRU node"):
        interop.from_onnx(empty)
    with pytest.raises(TypeError, match="ModelProto"):
        interop.from_onnx(42)
    with pytest.raises(ValueError, match="opset"):
        interop.to_onnx(random_layer(bias=True, reset_after=True), opset=13)


def test_reference_layer_exports_too():
    """Any gru_fast-style layer converts, e.g. the NumPy reference GRU."""
    from gru_fast import reference

    layer = reference.GRU(5, 4, 2, bidirectional=True, batch_first=True, seed=3)
    x = np.random.default_rng(2).standard_normal((2, 7, 5)).astype(np.float32)
    (y_onnx, h_onnx) = session(interop.to_onnx(layer)).run(None, {"X": x})
    y, h_n = layer.forward(x)
    assert_close(y_onnx, y, "y", kind="peer")
    assert_close(h_onnx, h_n, "h_n", kind="peer")
    assert_same_params(layer, interop.from_onnx(interop.to_onnx(layer)))
