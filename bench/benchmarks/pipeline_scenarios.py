"""What runs just before a GRU call in a pipeline: the scenarios of bench/pipeline.py and
of the asv benchmark bench_pipeline.py.

Each scenario leaves another library's worker threads as that library leaves them
after a call (OpenBLAS's spin for a while, so do ONNX Runtime's and PyTorch's).
"""

import time

import numpy as np

SCENARIOS = ("idle", "numpy", "onnxruntime", "torch")
MATRIX = 512  # the scenarios multiply MATRIX x MATRIX float32 matrices


def _onnx_matmul_session(matrix, threads):
    """An ONNX Runtime session of one MatMul by `matrix` (an initializer)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    size = matrix.shape[0]
    node = helper.make_node("MatMul", ["A", "W"], ["C"])
    graph = helper.make_graph(
        [node], "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [size, size])],
        initializer=[numpy_helper.from_array(matrix, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def make_scenario(name, threads, idle_seconds=0.2):
    """A function that runs scenario `name` once.

    Parameters
    ----------
    name : str
        ``idle`` (sleep `idle_seconds`), ``numpy`` (``A @ A``, OpenBLAS),
        ``onnxruntime`` (a run of a MatMul session) or ``torch`` (``torch.mm``).
    threads : int
        Threads of the ONNX Runtime session (NumPy and PyTorch keep their own settings).

    Raises
    ------
    ImportError
        When the scenario's library is not installed.
    """
    a = np.random.default_rng(0).standard_normal((MATRIX, MATRIX)).astype(np.float32)
    if name == "idle":
        return lambda: time.sleep(idle_seconds)
    if name == "numpy":
        return lambda: a @ a
    if name == "onnxruntime":
        session = _onnx_matmul_session(a, threads)
        return lambda: session.run(["C"], {"A": a})
    if name == "torch":
        import torch
        a_torch = torch.from_numpy(a)
        return lambda: torch.mm(a_torch, a_torch)
    raise ValueError(f"unknown scenario {name!r}; one of {SCENARIOS}")
