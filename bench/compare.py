#!/usr/bin/env python
"""gru_fast side by side with its peers, in one process, interleaved.

Contestants, on the same shapes, dtypes, weights, biases, h0 and dy:

* gru_fast (``gru_forward`` / ``gru_backward``), both variants;
* gru_fast's ``FrozenGRU`` (forward only): the weights packed once, when it is
  made, as an ONNX Runtime session prepacks its initializers; ``gru_forward``
  packs them on every call.  The targets against ONNX Runtime are judged on
  this like-for-like contestant, and gru_forward's ratios are printed beside;
* PyTorch ``nn.GRU`` (reset_after=True only: that is its variant), forward under
  ``torch.no_grad()`` and forward+backward via ``torch.autograd.grad`` with a fixed
  ``dy`` (gradients of x, h0 and every parameter, as gru_backward returns);
* ONNX Runtime's ``GRU`` operator, forward float32, ``linear_before_reset`` 0 and 1
  (the model is built here with ``onnx.helper``: W [1,3H,I], R [1,3H,H], B [1,6H] in
  ONNX gate order z, r, h);
* the pure-NumPy reference ``gru_fast.reference``;
* ``scipy.linalg.blas.sgemm`` on 1536x1536 float32, the machine's GEMM peak.

Every contestant of a shape is timed once per repetition, round-robin (the start of
the round rotates each repetition), and the median over repetitions is reported.
Before timing, each peer's output is checked against gru_fast's (``allclose``), so
the comparison is of equal work.  BLAS, PyTorch and ONNX Runtime all get the same
thread count (default: every core this process may run on).

Usage::

    python bench/compare.py                 # full run, all shapes (a few minutes)
    python bench/compare.py --quick         # fewer, shorter repetitions (< 1 minute)
    python bench/compare.py --shapes stream,small --repeats 5 --json out.json

Results: a table on stdout, JSON (default ``bench/results/compare.json``) and, when
matplotlib is installed, a PNG chart (default ``bench/results/compare.png``).
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# (T, B, I, H): time steps, batch, input features, hidden size.
SHAPES = {
    "stream": (100, 1, 64, 64),
    "small": (100, 8, 64, 128),
    "medium": (100, 32, 128, 256),
    "large": (50, 64, 512, 512),
    "wide": (25, 16, 1024, 1024),
}
PEAK_N = 1536  # sgemm peak: (N, N) @ (N, N) float32
QUICK_NO_REFERENCE = ("large", "wide")  # --quick leaves the slow NumPy reference out here
GROWTH_SHAPES = ("stream", "small", "medium")  # memory measured at 4T and 8T steps too
MAX_GROWTH_PER_STEP = 32  # bytes: per-step integers (batch sizes, offsets) are allowed

# Tasks: (key, title, dtype, reset_after, pass).  pass is "fwd" or "fwdbwd".
TASKS = [
    ("fwd_f32_ra0", "forward float32 reset_after=False", "float32", False, "fwd"),
    ("fwd_f32_ra1", "forward float32 reset_after=True", "float32", True, "fwd"),
    ("fwd_f64_ra1", "forward float64 reset_after=True", "float64", True, "fwd"),
    ("fb_f32_ra1", "forward+backward float32 reset_after=True", "float32", True, "fwdbwd"),
    ("fb_f64_ra1", "forward+backward float64 reset_after=True", "float64", True, "fwdbwd"),
]
TASK_TITLES = {key: title for key, title, *_ in TASKS}
CONTESTANT_ORDER = ["gru_fast", "gru_fast_frozen", "torch", "onnxruntime", "reference"]

# Tolerances of the equal-work checks (gru_fast versus each peer).
CHECK_TOL = {"float32": dict(rtol=1e-3, atol=1e-4), "float64": dict(rtol=1e-7, atol=1e-9)}


# --------------------------------------------------------------------- environment
def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def git_state():
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "src", "gru_fast", "setup.py"))
        return {"commit": commit, "core_modified_since_commit": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "core_modified_since_commit": None}


AVX2_CORES = {"haswell", "zen", "sandybridge", "nehalem", "core2", "prescott", "atom"}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_kernel_warning(blas):
    """A note when OpenBLAS runs kernels below what the CPU supports (AVX-512 unused)."""
    if "avx512f" not in cpu_flags():
        return None
    slow = sorted({entry["architecture"] for entry in blas
                   if entry["internal_api"] == "openblas"
                   and str(entry["architecture"]).lower() in AVX2_CORES})
    if not slow:
        return None
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    why = (f"OPENBLAS_CORETYPE={coretype} is set in the environment"
           if coretype else "OpenBLAS chose them")
    return (f"note: the CPU has AVX-512 but OpenBLAS runs its {'/'.join(slow)} (AVX2) "
            f"kernels ({why}), so the sgemm 'peak' below is about half of what the "
            "hardware does, and peers with their own AVX-512 GEMM (ONNX Runtime's MLAS) "
            "can exceed it; unset OPENBLAS_CORETYPE or set it to SkylakeX for the "
            "AVX-512 kernels")


def blas_info():
    from threadpoolctl import threadpool_info
    return [{key: entry.get(key) for key in
             ("internal_api", "version", "num_threads", "threading_layer", "architecture",
              "filepath")} for entry in threadpool_info()]


# --------------------------------------------------------------------- inputs
def make_problem(shape, dtype, seed=0):
    """x, h0, (weight_ih, weight_hh, bias_ih, bias_hh), dy for one shape and dtype."""
    seq_len, batch_size, input_size, hidden_size = shape
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)
    weights = tuple(rng.uniform(-bound, bound, size=s).astype(dtype) for s in (
        (3 * hidden_size, input_size), (3 * hidden_size, hidden_size),
        (3 * hidden_size,), (3 * hidden_size,)))
    x = rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((batch_size, hidden_size))).astype(dtype)
    dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(dtype)
    return x, h0, weights, dy


def spread_lengths(seq_len, batch_size, seed=0):
    """Lengths spread uniformly over 1..T (evenly spaced, shuffled)."""
    lengths = np.linspace(1, seq_len, batch_size).round().astype(np.int64)
    return np.random.default_rng(seed).permutation(lengths)


def forward_flops(shape):
    """Useful FLOPs of one forward pass of one layer-direction: 2*T*B*3H*(I+H)."""
    seq_len, batch_size, input_size, hidden_size = shape
    return 2 * seq_len * batch_size * 3 * hidden_size * (input_size + hidden_size)


def task_flops(shape, pass_):
    return forward_flops(shape) * (3 if pass_ == "fwdbwd" else 1)


# --------------------------------------------------------------------- contestants
def gru_fast_callable(problem, reset_after, pass_, lengths=None):
    import gru_fast
    x, h0, weights, dy = problem
    if pass_ == "fwd":
        return lambda: gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                            lengths=lengths)

    def forward_backward():
        _, _, cache = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                           lengths=lengths, return_cache=True)
        return gru_fast.gru_backward(cache, dy)
    return forward_backward


def frozen_callable(problem, reset_after):
    """gru_fast.FrozenGRU's forward, the weights packed once (here, not in the timing)."""
    import gru_fast
    x, h0, weights, _ = problem
    frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)
    return lambda: frozen(x, h0)


def reference_callable(problem, reset_after, pass_):
    from gru_fast import reference
    x, h0, weights, dy = problem
    if pass_ == "fwd":
        return lambda: reference.gru_forward(x, h0, *weights, reset_after=reset_after)

    def forward_backward():
        _, _, cache = reference.gru_forward(x, h0, *weights, reset_after=reset_after,
                                            return_cache=True)
        return reference.gru_backward(cache, dy)
    return forward_backward


def torch_callable(problem, pass_):
    """nn.GRU with our weights (torch's gate order is ours: r, z, n)."""
    import torch
    x, h0, (w_ih, w_hh, b_ih, b_hh), dy = problem
    hidden_size, input_size = w_hh.shape[1], w_ih.shape[1]
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    module = torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True, dtype=dtype)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh),
                            ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            getattr(module, name).copy_(torch.from_numpy(value))
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
        return dict(zip(["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], grads))
    return forward_backward


def _onnx_gate_order(array):
    """Rows r, z, n (ours) -> z, r, h (ONNX)."""
    r, z, n = np.split(array, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def onnx_gru_model(weights, reset_after, opset=17):
    """A one-node ONNX model: GRU with W, R, B as initializers; X and initial_h inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w_ih, w_hh, b_ih, b_hh = weights
    hidden_size, input_size = w_hh.shape[1], w_ih.shape[1]
    initializers = [
        numpy_helper.from_array(_onnx_gate_order(w_ih)[None], "W"),
        numpy_helper.from_array(_onnx_gate_order(w_hh)[None], "R"),
        numpy_helper.from_array(
            np.concatenate([_onnx_gate_order(b_ih), _onnx_gate_order(b_hh)])[None], "B"),
    ]
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                            hidden_size=hidden_size, linear_before_reset=int(reset_after))
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", input_size]),
         helper.make_tensor_value_info("initial_h", TensorProto.FLOAT,
                                       [1, "B", hidden_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", hidden_size]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", hidden_size])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnxruntime_callable(problem, reset_after, threads):
    import onnxruntime as ort
    x, h0, weights, _ = problem
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        onnx_gru_model(weights, reset_after).SerializeToString(), options,
        providers=["CPUExecutionProvider"])
    feeds = {"X": x, "initial_h": h0[None]}

    def forward():
        y, h_n = session.run(["Y", "Y_h"], feeds)
        return y[:, 0], h_n[0]
    return forward


def sgemm_callable():
    from scipy.linalg.blas import sgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32))
    c = np.zeros((PEAK_N, PEAK_N), dtype=np.float32, order="F")
    return lambda: sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)


# --------------------------------------------------------------------- checks
def check_close(name, got, want, dtype):
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


# --------------------------------------------------------------------- timing
class Contestant:
    def __init__(self, task, contestant, fn, flops, shape_name, warm=False):
        self.task, self.contestant, self.fn, self.warm = task, contestant, fn, warm
        self.flops, self.shape_name = flops, shape_name
        self.number = 1
        self.follows = None  # a Contestant: sampled right after it, for paired ratios
        self.samples = []  # seconds per call, one per repetition
        self.other_load = []  # cores busy with other work during each sample

    def calibrate(self, min_time):
        """Choose how many calls make one sample of >= min_time.

        The contestant has been called once already (the equal-work check, or here):
        first-call allocations, ORT's first run and torch's lazy init are behind us.
        """
        if not self.warm:
            self.fn()
        once = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            self.fn()
            once = min(once, time.perf_counter() - start)
            if once >= min_time:
                break
        self.number = max(1, int(round(min_time / max(once, 1e-7))))

    def sample(self):
        """Time `number` back-to-back calls (steady state), after one untimed call.

        The untimed call wakes the contestant's worker threads, which went to sleep
        while the others ran (waking them costs milliseconds on a VM), and lets the
        allocator get back the memory the contestant uses (first-touch page faults
        are expensive in this VM).  Every contestant gets it, whatever its speed.
        """
        self.fn()
        monitor = LoadMonitor()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(self.number):
                self.fn()
            elapsed = time.perf_counter() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        self.samples.append(elapsed / self.number)
        self.other_load.append(monitor.other_cores())

    @property
    def median(self):
        return statistics.median(self.samples)


def wait_until_quiet(max_wait, threshold=0.1, window=0.25):
    """Sleep until other work uses < threshold cores over `window` s; give up after max_wait.

    Returns the seconds waited.
    """
    waited = 0.0
    while waited < max_wait:
        load = background_load(window)
        waited += window
        if load is None or load < threshold:
            break
    return waited


def run_round_robin(contestants, repeats, min_time, pause, max_wait, log):
    """Each repetition samples every contestant once, in rotated order.

    `pause` seconds separate two samples, so that the worker threads a library keeps
    spinning after a call (ONNX Runtime, OpenMP, OpenBLAS) have gone idle before the
    next contestant starts; before each repetition we wait (up to `max_wait` s) until
    no other process is using the CPU.  A contestant that `follows` another is
    sampled right after it in every repetition, so that the ratio of the two
    samples of one repetition compares them under the same machine conditions.
    """
    for contestant in contestants:
        contestant.calibrate(min_time)
        time.sleep(pause)
    leaders = [c for c in contestants if c.follows is None]
    waited = 0.0
    for rep in range(repeats):
        waited += wait_until_quiet(max_wait)
        start = rep % len(leaders)
        for leader in leaders[start:] + leaders[:start]:
            for contestant in [leader] + [c for c in contestants if c.follows is leader]:
                time.sleep(pause)
                contestant.sample()
        log(".", end="")
    return waited


# --------------------------------------------------------------------- memory
def forward_extra_bytes(shape, dtype, reset_after):
    """Bytes NumPy allocates inside gru_forward (no cache) beyond y and h_n.

    tracemalloc sees NumPy's data buffers (NumPy reports them to it); the compiled core
    allocates nothing itself.  Returns (peak bytes during the call, output bytes).
    """
    import gru_fast
    x, h0, weights, _ = make_problem(shape, dtype)
    gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after)  # warm caches
    # gru_fast keeps its scratch between calls (gru_fast._workspace); free it so
    # that the measured call allocates, and counts, all of it.
    workspace = getattr(gru_fast, "_workspace", None)
    if workspace is not None:
        workspace.release()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        y, h_n = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, y.nbytes + h_n.nbytes


def memory_report(shape_names):
    """Extra bytes of forward without cache, per shape/dtype/variant, and the cache size.

    ``extra_bytes_4T`` / ``extra_bytes_8T``: the same at 4x and 8x the sequence length
    (float32, GROWTH_SHAPES); O(B*H) memory means these two are equal (the input
    projection is done a bounded chunk of steps at a time, so short sequences may use
    less), up to MAX_GROWTH_PER_STEP bytes per step for per-step scalars.
    """
    import gru_fast
    rows = []
    for name in shape_names:
        shape = SHAPES[name]
        seq_len, batch_size, input_size, hidden_size = shape
        for dtype in ("float32", "float64"):
            itemsize = np.dtype(dtype).itemsize
            for reset_after in (False, True):
                peak, outputs = forward_extra_bytes(shape, dtype, reset_after)
                row = dict(shape=name, dtype=dtype, reset_after=reset_after,
                           peak_bytes=peak, output_bytes=outputs, extra_bytes=peak - outputs,
                           extra_in_BH=(peak - outputs) / (batch_size * hidden_size * itemsize))
                if dtype == "float32" and name in GROWTH_SHAPES:
                    for factor in (4, 8):
                        longer = (factor * seq_len, batch_size, input_size, hidden_size)
                        peak_n, outputs_n = forward_extra_bytes(longer, dtype, reset_after)
                        row[f"extra_bytes_{factor}T"] = peak_n - outputs_n
                    row["growth_per_step"] = ((row["extra_bytes_8T"] - row["extra_bytes_4T"])
                                              / (4 * seq_len))
                    row["grows_with_T"] = row["growth_per_step"] > MAX_GROWTH_PER_STEP
                x, h0, weights, _ = make_problem(shape, dtype)
                cache = gru_fast.gru_forward(x, h0, *weights, reset_after=reset_after,
                                             return_cache=True)[2]
                row["cache_bytes"] = int(cache.nbytes)
                rows.append(row)
    return rows


class LoadMonitor:
    """CPU time the rest of the machine used while we ran (Linux /proc/stat), in cores.

    Other processes on a small machine distort multi-threaded timings badly (a BLAS
    thread that loses its core stalls every step), so the run reports it.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = sum(fields[:8]) - idle
        own = sum(os.times()[:2])  # this process, every thread (children excluded)
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own

    def other_cores(self, since=None):
        """Average number of cores busy with other work since `since` (or the start)."""
        start, end = since or self.start, self._sample()
        if start is None or end is None or end[0] <= start[0]:
            return None
        return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def background_load(seconds=1.0):
    """Cores busy with other work during `seconds` of our idling."""
    monitor = LoadMonitor()
    time.sleep(seconds)
    return monitor.other_cores()


# --------------------------------------------------------------------- report
def fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in
              enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def evaluate_targets(results, lengths_rows, peak, shape_names):
    """The targets of issue 5, each (description, shape, ratio, threshold, status)."""
    def median(task, shape, contestant):
        entry = results.get(task, {}).get(shape, {}).get(contestant)
        return None if entry is None else entry["median"]

    targets = []

    def speedup_target(label, task, peer, shapes_thresholds, ours_name="gru_fast",
                       judged=True):
        for shape, threshold in shapes_thresholds:
            ours, theirs = median(task, shape, ours_name), median(task, shape, peer)
            if shape not in shape_names or ours is None or theirs is None:
                targets.append(dict(target=label, shape=shape, threshold=threshold,
                                    ratio=None, comparison=">=", status="not measured"))
                continue
            ratio = theirs / ours
            status = "met" if ratio >= threshold else "MISSED"
            targets.append(dict(target=label, shape=shape, threshold=threshold,
                                ratio=ratio, comparison=">=",
                                status=status if judged else f"info: {status.lower()}"))

    # Against ONNX Runtime, whose session prepacks the weights once, the target
    # is judged on FrozenGRU (also packed once); gru_forward, which packs on
    # every call, is listed beside it for information.
    for ra, task in ((False, "fwd_f32_ra0"), (True, "fwd_f32_ra1")):
        thresholds = [(s, 1.3 if s in ("stream", "small") else 1.0) for s in SHAPES]
        speedup_target(f"forward float32 reset_after={ra}: FrozenGRU vs ONNX Runtime "
                       f"(linear_before_reset={int(ra)})", task, "onnxruntime", thresholds,
                       ours_name="gru_fast_frozen")
        speedup_target(f"forward float32 reset_after={ra}: gru_forward (packs per call) "
                       f"vs ONNX Runtime", task, "onnxruntime", thresholds, judged=False)
    speedup_target("forward+backward float32 reset_after=True vs PyTorch", "fb_f32_ra1",
                   "torch", [(s, 2.0 if s in ("stream", "small", "medium") else 1.15)
                             for s in SHAPES])
    speedup_target("forward+backward float64 vs PyTorch", "fb_f64_ra1", "torch",
                   [(s, 1.5) for s in SHAPES])
    for ra, task in ((False, "fwd_f32_ra0"), (True, "fwd_f32_ra1")):
        label = f"forward float32 reset_after={ra}: fraction of sgemm peak"
        ours = median(task, "large", "gru_fast")
        if ours is None:
            targets.append(dict(target=label, shape="large", threshold=0.85, ratio=None,
                                comparison=">=", status="not measured"))
        else:
            frac = forward_flops(SHAPES["large"]) / ours / peak
            targets.append(dict(target=label, shape="large", threshold=0.85, ratio=frac,
                                comparison=">=", status="met" if frac >= 0.85 else "MISSED"))
    for row in lengths_rows:
        targets.append(dict(
            target=f"{row['pass']} float32, lengths spread over 1..T / full length",
            shape=row["shape"], threshold=0.6, ratio=row["ratio"], comparison="<=",
            status="met" if row["ratio"] <= 0.6 else "MISSED"))
    return targets


def target_value(target):
    """The measured value of one target and its threshold, as printed and in Markdown."""
    if target["ratio"] is None:
        return "not measured"
    if "peak" in target["target"]:
        return f"{100 * target['ratio']:.1f}% (target >= {100 * target['threshold']:.0f}%)"
    if target["target"].startswith("memory"):
        return f"{target['ratio']:.0f} B/step (target <= {target['threshold']})"
    digits = 3 if "lengths" in target["target"] else 2
    return (f"{target['ratio']:.{digits}f}x "
            f"(target {target['comparison']} {target['threshold']}x)")


def markdown_report(out, command):
    """The results as Markdown: machine, command, the table of ratios, the targets."""
    meta, results = out["meta"], out["results"]
    shape_names = list(out["shapes"])
    lines = [
        f"Measured {meta['date']} at commit `{(meta['commit'] or 'unknown')[:10]}`"
        + (" (plus uncommitted core changes)" if meta["core_modified_since_commit"] else "")
        + f" with `{command}`: {meta['cpu']}, {meta['usable_cores']} cores, "
        f"{meta['threads']} threads for every contestant; Python {meta['python']}, "
        f"NumPy {meta['numpy']}, "
        + ", ".join(f"{name} {version}" for name, version in meta["peers"].items()
                    if name != "reference")
        + "; BLAS " + ", ".join(sorted({f"{b['internal_api']} {b['version']} "
                                        f"({b['architecture']})" for b in meta["blas"]
                                        if b["internal_api"] == "openblas"}))
        + f". sgemm peak ({PEAK_N}x{PEAK_N} float32) {out['sgemm_peak_gflops']:.0f} GFLOP/s. "
        f"Median of {meta['repeats']} interleaved repetitions; other work on the machine "
        f"during the run: {meta['background_cores_during_run'] or 0:.2f} cores.",
        "",
        "Times are medians; `x PyTorch` etc. is the peer's time divided by gru_fast's "
        "(above 1: gru_fast is faster); % peak is gru_fast's useful FLOP rate over the "
        "sgemm peak.",
        "",
        "| task | shape (T, B, I, H) | gru_fast | x PyTorch | x ONNX Runtime | "
        "x NumPy ref. | % peak | FrozenGRU | FrozenGRU x ONNX Runtime |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, title, *_ in TASKS:
        for shape in shape_names:
            entries = results.get(task, {}).get(shape, {})
            if "gru_fast" not in entries:
                continue
            ours = entries["gru_fast"]
            ratios = [f"{entries[p]['median'] / ours['median']:.2f}x" if p in entries else "-"
                      for p in ("torch", "onnxruntime", "reference")]
            frozen = entries.get("gru_fast_frozen")
            frozen_cells = ["-", "-"] if frozen is None else [
                fmt_time(frozen["median"]),
                f"{entries['onnxruntime']['median'] / frozen['median']:.2f}x"
                if "onnxruntime" in entries else "-"]
            lines.append(f"| {title} | {shape} {tuple(SHAPES[shape])} | "
                         f"{fmt_time(ours['median'])} | " + " | ".join(ratios)
                         + f" | {100 * ours['fraction_of_peak']:.0f}% | "
                         + " | ".join(frozen_cells) + " |")
    if out["lengths"]:
        lines += ["", "Variable lengths (float32, reset_after=True): lengths spread evenly "
                  "over 1..T versus the full-length batch (ideal: mean length / T).", "",
                  "| shape | pass | full length | spread | ratio | ideal |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['shape']} | {r['pass']} | {fmt_time(r['full_median'])} | "
                  f"{fmt_time(r['spread_median'])} | {r['ratio']:.2f} | "
                  f"{r['mean_length_fraction']:.2f} |" for r in out["lengths"]]
    lines += ["", "Memory of `gru_forward` without a cache: bytes NumPy allocates beyond "
              "`y` and `h_n` (tracemalloc), and the cache `return_cache=True` keeps.", "",
              "| shape | dtype | extra | extra / (B·H·itemsize) | growth per step (4T→8T) "
              "| cache |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {m['shape']} | {m['dtype']} | {fmt_bytes(m['extra_bytes'])} | "
              f"{m['extra_in_BH']:.0f} | "
              + (f"{m['growth_per_step']:.0f} B" if "growth_per_step" in m else "-")
              + f" | {fmt_bytes(m['cache_bytes'])} |"
              for m in out["memory"] if m["reset_after"]]
    lines += ["", "Targets of issue 5:", ""]
    for t in out["targets"]:
        value = target_value(t)
        mark = {"met": "met", "MISSED": "**missed**"}.get(t["status"], f"({t['status']})")
        lines.append(f"- {mark}: {t['target']}, {t['shape']}: {value}")
    return "\n".join(lines) + "\n"


def plot(results, peak, shape_names, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colors = {"gru_fast": "tab:blue", "gru_fast_frozen": "tab:cyan", "torch": "tab:orange",
              "onnxruntime": "tab:green", "reference": "tab:gray"}
    fig, axes = plt.subplots(len(TASKS), 1, figsize=(9, 3.0 * len(TASKS)), sharex=True)
    for ax, (task, title, *_rest) in zip(np.atleast_1d(axes), TASKS):
        width = 0.8 / len(CONTESTANT_ORDER)
        for k, contestant in enumerate(CONTESTANT_ORDER):
            xs, ys = [], []
            for i, shape in enumerate(shape_names):
                entry = results.get(task, {}).get(shape, {}).get(contestant)
                if entry is not None:
                    xs.append(i + (k - (len(CONTESTANT_ORDER) - 1) / 2) * width)
                    ys.append(entry["gflops"])
            if xs:
                ax.bar(xs, ys, width, label=contestant, color=colors[contestant])
        ax.axhline(peak / 1e9, color="k", linestyle="--", linewidth=0.8,
                   label="sgemm peak")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("GFLOP/s")
        ax.legend(fontsize=7, ncol=5, loc="upper left")
    axes[-1].set_xticks(range(len(shape_names)))
    axes[-1].set_xticklabels([f"{s}\n{SHAPES[s]}" for s in shape_names], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions per contestant (median taken); default 7, "
                             "3 with --quick")
    parser.add_argument("--min-time", type=float, default=None,
                        help="minimum seconds per timed sample (calls are repeated "
                             "within a sample); default 0.1, 0.01 with --quick")
    parser.add_argument("--pause", type=float, default=None,
                        help="seconds of idle between two samples (lets spinning worker "
                             "threads of the previous contestant go to sleep); default "
                             "0.25, 0.01 with --quick")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="before each repetition, wait up to this many seconds for "
                             "other processes to leave the CPU; default 20, 0 with --quick")
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help=f"comma-separated subset of {','.join(SHAPES)}")
    parser.add_argument("--quick", action="store_true",
                        help="short run: fewer repetitions, shorter samples")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads for BLAS, PyTorch and ONNX Runtime "
                             "(default: all usable cores)")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out the NumPy reference")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a target is missed")
    parser.add_argument("--json", default=str(HERE / "results" / "compare.json"),
                        help="where to write the JSON results ('' for none)")
    parser.add_argument("--markdown", default="",
                        help="also write the results as Markdown tables to this path")
    parser.add_argument("--png", default=str(HERE / "results" / "compare.png"),
                        help="where to write the PNG chart ('' for none)")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.max_wait is None:
        args.max_wait = 0.0 if args.quick else 20.0
    if args.pause is None:
        # OpenBLAS's workers spin for about 2^28 cycles (~70 ms here) after a call;
        # with 0.05 s, gru_fast's spread-lengths forward on medium measured 0.79 of
        # the full batch after the sgemm sample, 0.56 with 0.25 s or alone.
        args.pause = 0.01 if args.quick else 0.25
    if args.min_time is None:
        args.min_time = 0.01 if args.quick else 0.1
    return args


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()

    def log(*a, **k):
        print(*a, **k, flush=True)

    from threadpoolctl import threadpool_limits
    import gru_fast

    peers = {}
    try:
        import torch
        torch.set_num_threads(args.threads)
        peers["torch"] = torch.__version__
    except ImportError:
        log("PyTorch not installed: its rows are skipped")
    try:
        import onnx  # noqa: F401
        import onnxruntime
        peers["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        log("onnx/onnxruntime not installed: its rows are skipped")
    if not args.no_reference:
        peers["reference"] = "gru_fast.reference"

    with threadpool_limits(limits=args.threads):
        meta = dict(
            date=datetime.datetime.now().isoformat(timespec="seconds"),
            cpu=cpu_model(), usable_cores=usable_cores(), threads=args.threads,
            python=platform.python_version(), numpy=np.__version__,
            gru_fast=gru_fast.__version__, peers=peers, blas=blas_info(),
            torch_threads=(__import__("torch").get_num_threads()
                           if "torch" in peers else None),
            repeats=args.repeats, min_time=args.min_time, quick=args.quick,
            pause=args.pause, max_wait=args.max_wait,
            **git_state())
        log(f"gru_fast {meta['gru_fast']} at commit {meta['commit']}"
            + (" (+ uncommitted core changes)" if meta["core_modified_since_commit"] else ""))
        log(f"CPU: {meta['cpu']}, {meta['usable_cores']} usable cores; "
            f"threads: BLAS {args.threads}, torch {meta['torch_threads']}, "
            f"ONNX Runtime intra-op {args.threads}")
        for entry in meta["blas"]:
            log(f"threadpool: {entry['internal_api']} {entry['version'] or ''} "
                f"({entry['num_threads']} threads"
                + (f", {entry['architecture']} kernels" if entry['architecture'] else "")
                + f") {Path(entry['filepath']).name}")
        log(f"peers: {peers}")
        meta["openblas_kernel_note"] = openblas_kernel_warning(meta["blas"])
        if meta["openblas_kernel_note"]:
            log(meta["openblas_kernel_note"])
        meta["openblas_coretype_env"] = os.environ.get("OPENBLAS_CORETYPE")
        meta["background_cores_before"] = background_load(1.0)
        if meta["background_cores_before"] is not None:
            log(f"other work on the machine before the run: "
                f"{meta['background_cores_before']:.2f} cores busy")
        run_monitor = LoadMonitor()
        log(f"{args.repeats} repetitions, >= {args.min_time} s per sample, "
            f"median reported\n")

        sgemm_samples = []
        results = {}  # task -> shape -> contestant -> entry
        lengths_rows = []
        background = {}  # shape -> cores busy with other work while it was timed
        waited_total = 0.0
        for shape_name in args.shapes:
            shape = SHAPES[shape_name]
            shape_monitor = LoadMonitor()
            log(f"{shape_name} {shape}: checking", end="")
            contestants = []
            problems = {dtype: make_problem(shape, dtype) for dtype in ("float32", "float64")}
            for task, _title, dtype, reset_after, pass_ in TASKS:
                problem = problems[dtype]
                flops = task_flops(shape, pass_)
                ours = gru_fast_callable(problem, reset_after, pass_)
                want = ours()
                entries = [("gru_fast", ours)]
                if pass_ == "fwd":
                    entries.append(("gru_fast_frozen", frozen_callable(problem, reset_after)))
                if "torch" in peers and reset_after:
                    entries.append(("torch", torch_callable(problem, pass_)))
                if "onnxruntime" in peers and pass_ == "fwd" and dtype == "float32":
                    entries.append(("onnxruntime",
                                    onnxruntime_callable(problem, reset_after, args.threads)))
                if "reference" in peers and not (args.quick
                                                 and shape_name in QUICK_NO_REFERENCE):
                    entries.append(("reference",
                                    reference_callable(problem, reset_after, pass_)))
                for name, fn in entries[1:]:
                    got = fn()
                    if pass_ == "fwd":
                        check_close(f"{name} {task} {shape_name}", tuple(got[:2]),
                                    tuple(want[:2]), dtype)
                    else:
                        check_close(f"{name} {task} {shape_name}", got, want, dtype)
                contestants += [Contestant(task, name, fn, flops, shape_name, warm=True)
                                for name, fn in entries]
            # Variable lengths spread over 1..T versus the full-length batch.
            seq_len, batch_size = shape[:2]
            if batch_size > 1:
                lengths = spread_lengths(seq_len, batch_size)
                for pass_, task in (("fwd", "fwd_f32_ra1"), ("fwdbwd", "fb_f32_ra1")):
                    fn = gru_fast_callable(problems["float32"], True, pass_, lengths)
                    spread = Contestant(task, "gru_fast_spread_lengths", fn, None, shape_name)
                    spread.follows = next(c for c in contestants
                                          if c.task == task and c.contestant == "gru_fast")
                    contestants.append(spread)
            peak_contestant = Contestant("sgemm", "sgemm", sgemm_callable(),
                                         2 * PEAK_N ** 3, shape_name)
            contestants.append(peak_contestant)
            log(" ok; timing", end="")
            waited = run_round_robin(contestants, args.repeats, args.min_time, args.pause,
                                     args.max_wait, log)
            waited_total += waited
            sgemm_samples += peak_contestant.samples
            for c in contestants:
                if c.task == "sgemm":
                    continue
                if c.contestant == "gru_fast_spread_lengths":
                    full = c.follows
                    pass_ = "forward" if c.task.startswith("fwd_") else "forward+backward"
                    # The median of the per-repetition ratios: each spread sample
                    # is taken right after its full-length sample.
                    lengths_rows.append(dict(
                        shape=shape_name, pass_=pass_, task=c.task,
                        full_median=full.median, spread_median=c.median,
                        ratio=statistics.median(
                            s / f for s, f in zip(c.samples, full.samples)),
                        mean_length_fraction=float(lengths.mean() / seq_len)))
                    continue
                results.setdefault(c.task, {}).setdefault(shape_name, {})[c.contestant] = dict(
                    median=c.median, samples=c.samples, number=c.number,
                    other_load=c.other_load, gflops=c.flops / c.median / 1e9)
            other = shape_monitor.other_cores()
            background[shape_name] = other
            log(f" {time.perf_counter() - t_start:.0f} s"
                + ("" if other is None else f" (other work: {other:.2f} cores)"))

        peak = 2 * PEAK_N ** 3 / statistics.median(sgemm_samples)
        for task_results in results.values():
            for shape_results in task_results.values():
                for entry in shape_results.values():
                    entry["fraction_of_peak"] = entry["gflops"] * 1e9 / peak
                    entry["speedup_vs"] = {
                        other: shape_results[other]["median"] / entry["median"]
                        for other in shape_results if other is not None}
        for row in lengths_rows:
            row["pass"] = row.pop("pass_")

        log("memory (tracemalloc)...", end="")
        memory = memory_report(args.shapes)
        log(" done\n")
        meta["background_cores_during_run"] = run_monitor.other_cores()
        meta["background_cores_per_shape"] = background
        meta["seconds_waited_for_quiet"] = waited_total
        loads = [x for c_task in results.values() for c_shape in c_task.values()
                 for entry in c_shape.values() for x in entry["other_load"] if x is not None]
        meta["samples_contended"] = sum(x > 0.25 for x in loads)
        meta["samples_total"] = len(loads)

    # ---------------------------------------------------------------- print
    other = meta["background_cores_during_run"]
    if other is not None:
        log(f"other work on the machine during the run: {other:.2f} cores on average"
            + (f" of {usable_cores()} -- timings with {args.threads} threads are "
               "distorted; rerun on a quiet machine" if other > 0.1 else "") + "\n")
    if meta["samples_total"]:
        log(f"{meta['samples_contended']} of {meta['samples_total']} timed samples ran while "
            f"other work used > 0.25 cores; waited {meta['seconds_waited_for_quiet']:.0f} s "
            "for a quiet machine\n")
    log(f"sgemm peak ({PEAK_N}x{PEAK_N} float32, {args.threads} threads): "
        f"{peak / 1e9:.1f} GFLOP/s (median of {len(sgemm_samples)}; "
        f"max {2 * PEAK_N ** 3 / min(sgemm_samples) / 1e9:.1f})\n")
    log("Each row: median time, GFLOP/s (useful GRU FLOPs: forward 2*T*B*3H*(I+H), "
        "forward+backward 3x), fraction of the sgemm peak,\nand 'vs X' = time of X / "
        "time of this row (> 1: this row is faster than X).\n")
    for task, title, *_ in TASKS:
        names = [c for c in CONTESTANT_ORDER
                 if any(c in results.get(task, {}).get(s, {}) for s in args.shapes)]
        rows = []
        for shape_name in args.shapes:
            shape_results = results.get(task, {}).get(shape_name, {})
            for name in names:
                if name not in shape_results:
                    continue
                entry = shape_results[name]
                rows.append([shape_name, name, fmt_time(entry["median"]),
                             f"{entry['gflops']:.1f}", f"{100 * entry['fraction_of_peak']:.1f}%"]
                            + [("" if other == name or other not in shape_results else
                                f"{entry['speedup_vs'][other]:.2f}x") for other in names])
        log(f"== {title}")
        log(table(["shape", "contestant", "median", "GFLOP/s", "%peak"]
                  + [f"vs {n}" for n in names], rows))
        log("")

    if lengths_rows:
        log("== variable lengths: float32 reset_after=True, lengths spread over 1..T "
            "vs the full-length batch")
        log(table(["shape", "pass", "full length", "spread", "ratio", "ideal"],
                  [[r["shape"], r["pass"], fmt_time(r["full_median"]),
                    fmt_time(r["spread_median"]), f"{r['ratio']:.3f}",
                    f"{r['mean_length_fraction']:.3f}"] for r in lengths_rows]))
        log("")

    log("== memory: gru_fast.gru_forward without cache, bytes NumPy allocates beyond "
        "y and h_n (tracemalloc);\n   at 4T and 8T steps (float32) to see whether it "
        "grows with T; and the cache kept for backward")
    log(table(["shape", "dtype/variant", "extra", "extra / (B*H*itemsize)",
               "extra at 4T", "extra at 8T", "growth/step", "cache (fwd+bwd)"],
              [[m["shape"], f"{m['dtype']} ra={int(m['reset_after'])}",
                fmt_bytes(m["extra_bytes"]), f"{m['extra_in_BH']:.1f}",
                fmt_bytes(m["extra_bytes_4T"]) if "extra_bytes_4T" in m else "",
                fmt_bytes(m["extra_bytes_8T"]) if "extra_bytes_8T" in m else "",
                f"{m['growth_per_step']:.0f} B" if "growth_per_step" in m else "",
                fmt_bytes(m["cache_bytes"])] for m in memory]))
    log("")

    targets = evaluate_targets(results, lengths_rows, peak, args.shapes)
    for m in memory:
        if "growth_per_step" not in m:
            continue
        seq_len, batch_size, _, hidden_size = SHAPES[m["shape"]]
        targets.append(dict(
            target=f"memory: forward float32 ra={int(m['reset_after'])} without cache, extra "
                   f"bytes beyond outputs: growth per time step (4T->8T)",
            shape=m["shape"], threshold=MAX_GROWTH_PER_STEP, ratio=m["growth_per_step"],
            comparison="<=", status="MISSED" if m["grows_with_T"] else "met",
            note=f"{m['extra_in_BH']:.0f} x B*H*itemsize extra at T={seq_len}; "
                 f"{m['growth_per_step'] / batch_size:.1f} B per (step, row)"))
    log("== targets (issue 5)")
    for t in targets:
        value = target_value(t)
        if t["ratio"] is not None and t.get("note"):
            value += f"; {t['note']}"
        log(f"  [{t['status']:>12}] {t['target']}, {t['shape']}: {value}")
    n_met = sum(t["status"] == "met" for t in targets)
    n_missed = sum(t["status"] == "MISSED" for t in targets)
    n_info = sum(t["status"].startswith("info") for t in targets)
    log(f"\n{n_met} met, {n_missed} missed, "
        f"{len(targets) - n_met - n_missed - n_info} not measured "
        f"(and {n_info} rows for information)")

    elapsed = time.perf_counter() - t_start
    meta["runtime_seconds"] = elapsed
    out = dict(meta=meta, shapes={s: SHAPES[s] for s in args.shapes},
               sgemm_peak_gflops=peak / 1e9,
               sgemm_samples_seconds=sgemm_samples, results=results,
               lengths=lengths_rows, memory=memory, targets=targets)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        log(f"JSON: {path}")
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        given, kept = list(argv if argv is not None else sys.argv[1:]), []
        while given:  # the command, less where its outputs went
            arg = given.pop(0)
            if arg.split("=")[0] in ("--markdown", "--json", "--png"):
                if "=" not in arg and given:
                    given.pop(0)
                continue
            kept.append(arg)
        coretype = os.environ.get("OPENBLAS_CORETYPE")
        command = ((f"OPENBLAS_CORETYPE={coretype} " if coretype is not None else "")
                   + " ".join(["python bench/compare.py", *kept]))
        path.write_text(markdown_report(out, command))
        log(f"Markdown: {path}")
    if args.png:
        if plot(results, peak, args.shapes, Path(args.png)):
            log(f"PNG: {args.png}")
        else:
            log("matplotlib not installed: no PNG")
    log(f"total {elapsed:.0f} s")
    return 1 if args.check and n_missed else 0


if __name__ == "__main__":
    sys.exit(main())
