"""Contenders of the step-latency benchmarks (bench/step_latency.py and bench_step.py).

Each builder returns zero-argument callables that run one time step of the
same GRU layer (float32, reset_after=True) and return the new state, so
their results can be checked against one another before they are timed.
"""

import numpy as np

import gru_fast
from gru_fast import interop

# (B, I, H) of issue 16: one stream of a small model, a wide state, a small batch.
SHAPES = {"stream": (1, 64, 64), "wide": (1, 32, 256), "small": (8, 64, 128)}


def make_problem(shape, seed=0):
    """A GRU layer (reset_after=True, float32), its weights, and x_t, h of `shape` (B, I, H)."""
    batch_size, input_size, hidden_size = shape
    layer = gru_fast.GRU(input_size, hidden_size, reset_after=True, seed=seed)
    weights = [layer.params[name] for name in layer._names(0, 0)]
    rng = np.random.default_rng(seed + 1)
    x_t = rng.standard_normal((batch_size, input_size)).astype(np.float32)
    h = (0.5 * rng.standard_normal((batch_size, hidden_size))).astype(np.float32)
    return layer, weights, x_t, h


def gru_fast_contenders(layer, weights, x_t, h):
    """name -> one-step callable for gru_fast's paths."""
    frozen = gru_fast.FrozenGRU(*weights, reset_after=True)
    h_layers = h[None].copy()
    out = np.empty_like(h)
    out_layers = np.empty_like(h_layers)
    x_seq = x_t[None].copy()
    return {
        "FrozenGRU.step": lambda: frozen.step(x_t, h),
        "FrozenGRU.step out=": lambda: frozen.step(x_t, h, out=out),
        "GRU.step": lambda: layer.step(x_t, h_layers)[0],
        "GRU.step out=": lambda: layer.step(x_t, h_layers, out=out_layers)[0],
        "gru_forward T=1": lambda: gru_fast.gru_forward(x_seq, h, *weights,
                                                        reset_after=True)[1],
    }


def onnxruntime_contender(layer, x_t, h, threads):
    """ONNX Runtime running the layer's ONNX export on one step, or None if absent."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    model = interop.to_onnx(layer, initial_h=True)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feeds = {"X": x_t[None].copy(), "initial_h": h[None].copy()}
    return lambda: session.run(["Y_h"], feeds)[0][0]


def torch_contenders(layer, x_t, h, threads):
    """torch GRUCell and nn.GRU (T=1) with the layer's weights, or {} if torch is absent."""
    try:
        import torch
    except ImportError:
        return {}
    if threads:
        torch.set_num_threads(threads)
    batch_size, input_size = x_t.shape
    hidden_size = h.shape[1]
    module = interop.to_torch(layer).eval()
    cell = torch.nn.GRUCell(input_size, hidden_size).eval()
    with torch.no_grad():
        cell.weight_ih.copy_(module.weight_ih_l0)
        cell.weight_hh.copy_(module.weight_hh_l0)
        cell.bias_ih.copy_(module.bias_ih_l0)
        cell.bias_hh.copy_(module.bias_hh_l0)
    x_tensor = torch.from_numpy(x_t)
    h_tensor = torch.from_numpy(h)
    x_seq = x_tensor[None]
    h_seq = h_tensor[None]

    def cell_step():
        with torch.inference_mode():
            return cell(x_tensor, h_tensor)

    def gru_step():
        with torch.inference_mode():
            return module(x_seq, h_seq)[1][0]

    return {"torch GRUCell": cell_step, "torch nn.GRU T=1": gru_step}


def all_contenders(shape, threads=0):
    """name -> one-step callable for every contender installed, and gru_forward's state."""
    layer, weights, x_t, h = make_problem(shape)
    calls = gru_fast_contenders(layer, weights, x_t, h)
    onnx_call = onnxruntime_contender(layer, x_t, h, threads)
    if onnx_call is not None:
        calls["ONNX Runtime T=1"] = onnx_call
    calls.update(torch_contenders(layer, x_t, h, threads))
    _, expected = gru_fast.gru_forward(x_t[None], h, *weights, reset_after=True)
    return calls, expected
