"""gru_fast and each peer as a callable on one problem, and the equal-work check.

A problem is ``(x, h0, (weight_ih, weight_hh, bias_ih, bias_hh), dy)`` from
``benchmarks.common.make_inputs``. Each ``*_callable`` does its set-up (packing, a
session, a module) outside the returned function, which runs one pass and returns what
gru_fast returns: ``(y, h_n)`` for a forward, the gradient dict for forward+backward.
"""

import numpy as np

from .tasks import PEAK_N

# Tolerances of the equal-work checks (gru_fast versus each peer).
CHECK_TOL = {"float32": dict(rtol=1e-3, atol=1e-4), "float64": dict(rtol=1e-7, atol=1e-9)}
GRADIENT_NAMES = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def _forward_backward(module, x, h0, weights, dy, reset_after, lengths=None):
    """gru_forward + gru_backward of ``module`` (gru_fast or gru_fast.reference)."""
    def forward_backward():
        _, _, cache = module.gru_forward(x, h0, *weights, reset_after=reset_after,
                                         lengths=lengths, return_cache=True)
        return module.gru_backward(cache, dy)
    return forward_backward


def gru_fast_callable(problem, reset_after, pass_, lengths=None):
    """gru_fast.gru_forward (packs the weights on every call), or it and gru_backward."""
    import gru_fast
    x, h0, weights, dy = problem
    if pass_ == "fwd":
        return lambda: gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                            lengths=lengths)
    return _forward_backward(gru_fast, x, h0, weights, dy, reset_after, lengths)


def frozen_callable(problem, reset_after):
    """gru_fast.FrozenGRU's forward, the weights packed once (here, not in the timing)."""
    import gru_fast
    x, h0, weights, _ = problem
    frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)
    return lambda: frozen(x, h0)


def reference_callable(problem, reset_after, pass_):
    """The pure-NumPy reference, forward or forward+backward."""
    from gru_fast import reference
    x, h0, weights, dy = problem
    if pass_ == "fwd":
        return lambda: reference.gru_forward(x, h0, *weights, reset_after=reset_after)
    return _forward_backward(reference, x, h0, weights, dy, reset_after)


def _one_layer(weights, reset_after):
    """A one-layer gru_fast.GRU holding ``weights``, for the interop converters."""
    import gru_fast
    w_ih, w_hh, b_ih, b_hh = weights
    layer = gru_fast.GRU(w_ih.shape[1], w_hh.shape[1], reset_after=reset_after,
                         dtype=w_ih.dtype)
    layer.load_state_dict({"weight_ih_l0": w_ih, "weight_hh_l0": w_hh,
                           "bias_ih_l0": b_ih, "bias_hh_l0": b_hh})
    return layer


def torch_callable(problem, pass_):
    """nn.GRU with our weights (gru_fast.interop.to_torch; reset_after=True only).

    Forward under ``torch.no_grad()``; forward+backward through ``torch.autograd.grad``
    with the fixed ``dy``, for the gradients of x, h0 and every parameter.
    """
    import torch
    from gru_fast import interop
    x, h0, weights, dy = problem
    module = interop.to_torch(_one_layer(weights, reset_after=True))
    x_t = torch.from_numpy(x.copy())
    h0_t = torch.from_numpy(h0.copy())[None]
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                y, h_n = module(x_t, h0_t)
            return y.numpy(), h_n[0].numpy()
        return forward

    x_t.requires_grad_(True)
    h0_t.requires_grad_(True)
    dy_t = torch.from_numpy(dy.copy())
    inputs = [x_t, h0_t, module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0,
              module.bias_hh_l0]

    def forward_backward():
        y, _ = module(x_t, h0_t)
        grads = [g.numpy() for g in torch.autograd.grad(y, inputs, grad_outputs=dy_t)]
        grads[1] = grads[1][0]  # h0 is (1, B, H) in torch
        return dict(zip(GRADIENT_NAMES, grads))
    return forward_backward


def onnxruntime_callable(problem, reset_after, threads):
    """ONNX Runtime on the model gru_fast.interop.to_onnx exports (with initial_h)."""
    import onnxruntime as ort
    from gru_fast import interop
    x, h0, weights, _ = problem
    model = interop.to_onnx(_one_layer(weights, reset_after), initial_h=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feeds = {"X": x, "initial_h": h0[None]}

    def forward():
        y, h_n = session.run(["Y", "Y_h"], feeds)
        return y, h_n[0]
    return forward


def sgemm_callable():
    """scipy's sgemm on (PEAK_N, PEAK_N) float32: the machine's GEMM peak."""
    from scipy.linalg.blas import sgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32))
    c = np.zeros((PEAK_N, PEAK_N), dtype=np.float32, order="F")
    return lambda: sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)


def check_close(name, got, want, dtype):
    """Raise AssertionError unless a peer's result equals gru_fast's within CHECK_TOL."""
    tol = CHECK_TOL[dtype]
    if isinstance(want, dict):
        for key in want:
            if want[key] is not None:
                check_close(f"{name}[{key}]", got[key], want[key], dtype)
        return
    if isinstance(want, tuple):
        for i, (g, w) in enumerate(zip(got, want)):
            check_close(f"{name}[{i}]", g, w, dtype)
        return
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.allclose(got, want, **tol):
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "shape"
        raise AssertionError(f"equal-work check failed: {name} differs from gru_fast "
                             f"(max abs diff {err}, tolerance {tol})")
