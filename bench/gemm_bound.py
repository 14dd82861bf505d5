#!/usr/bin/env python
"""How close each contestant comes to BLAS's GEMM rate, and which speed-ups that leaves room for.

A GRU call is mostly matrix products, each 2·N·3H·K floating-point operations
over its N = T·B rows (K = I or H):

* forward: the input projection x W_ih^T and the recurrent products h W_hh^T;
* forward+backward: those two and backward's four, dx = dG W_ih, dW_ih = dG^T x,
  dh = dG_h W_hh and dW_hh = dG_h^T h_prev.

The *GEMM bound* of a task is the time this machine's BLAS (NumPy's OpenBLAS,
every core) takes for the same products, each run over all N rows at once: the
shape BLAS runs fastest.  A GRU cannot run its recurrent products that way (step
t needs h_{t-1}), and it also computes its gates, so a contestant beats the bound
only where its own kernels beat BLAS's GEMM.  Then ``peer / bound`` is about the
largest speed-up over that peer an implementation running at BLAS's rate could
show: a target near or above it asks for more than the products' own speed.

Contestants and the bound are timed side by side, interleaved (each repetition in
a rotated order), so the host's slow spells hit them alike.  Quiet (default):
each sample is the fastest of ``--calls`` calls in a row, after ``--pause``
seconds idle (so that no library's workers still spin from the run before).  ``--scenario numpy``
(or ``onnxruntime``, ``torch``, ``idle``: pipeline.py's scenarios) times one call
right after the scenario's work instead, the bound included.

Usage::

    flock /tmp/gru_bench.lock python bench/gemm_bound.py                      # large, wide
    python bench/gemm_bound.py --shapes medium --tasks fb_f64 --repeats 9
    python bench/gemm_bound.py --shapes large --tasks fwd_f32 --scenario numpy
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from benchmarks.common import ALL_SHAPES as SHAPES, make_inputs  # noqa: E402
from benchmarks.pipeline_scenarios import SCENARIOS, make_scenario  # noqa: E402
from compare_lib.contestants import gru_fast_callable, torch_callable  # noqa: E402
from compare_lib.machine import cpu_model, usable_cores  # noqa: E402
from compare_lib.timing import serial_share  # noqa: E402
from compare_lib.targets import (FROZEN_VS_ONNXRUNTIME, FWDBWD_F32_VS_TORCH,  # noqa: E402
                                 FWDBWD_F64_VS_TORCH, ratio_interval)
from pipeline import VS_ONNXRUNTIME as PIPELINE_VS_ONNXRUNTIME  # noqa: E402
from pipeline import VS_TORCH as PIPELINE_VS_TORCH  # noqa: E402
from pipeline import make_contestants as forward_contestants  # noqa: E402

OURS = ("gru_forward", "FrozenGRU", "gru_fast")  # gru_fast's runs (serial shares)

# task -> (title, dtype, pass); forward runs reset_after=True like pipeline.py.
TASKS = {
    "fwd_f32": ("forward float32 reset_after=True", "float32", "fwd"),
    "fb_f32": ("forward+backward float32 reset_after=True", "float32", "fwdbwd"),
    "fb_f64": ("forward+backward float64 reset_after=True", "float64", "fwdbwd"),
}


def targets_of(task, shape_name):
    """{peer: [(threshold, where it comes from)]} of a task on a shape."""
    if task == "fwd_f32":
        return {"onnxruntime": [(FROZEN_VS_ONNXRUNTIME.get(shape_name, 1.0), "compare.py"),
                                (PIPELINE_VS_ONNXRUNTIME, "pipeline.py")],
                "torch": [(PIPELINE_VS_TORCH, "pipeline.py")]}
    table = FWDBWD_F32_VS_TORCH if task == "fb_f32" else FWDBWD_F64_VS_TORCH
    return {"torch": [(table[shape_name], "compare.py")]} if shape_name in table else {}


def product_operands(shape, dtype, pass_, seed=0):
    """[(a, b, out)] for every product of the task, each over all N rows at once.

    Forward: x (N, I) @ W_ih^T (I, 3H) and h (N, H) @ W_hh^T (H, 3H).  Backward adds
    dG (N, 3H) @ W_ih (3H, I), dG^T (3H, N) @ x (N, I), and the same two with W_hh
    and h (dG^T is a transposed view, as a row-major caller passes it to BLAS).
    """
    seq_len, batch_size, input_size, hidden_size = shape
    n_rows, three_h = seq_len * batch_size, 3 * hidden_size
    rng = np.random.default_rng(seed)

    def array(*dims):
        return rng.standard_normal(dims).astype(dtype)

    x, h = array(n_rows, input_size), array(n_rows, hidden_size)
    w_ih_t, w_hh_t = array(input_size, three_h), array(hidden_size, three_h)
    products = [(x, w_ih_t, np.empty((n_rows, three_h), dtype)),
                (h, w_hh_t, np.empty((n_rows, three_h), dtype))]
    if pass_ == "fwdbwd":
        d_gates = array(n_rows, three_h)
        w_ih, w_hh = array(three_h, input_size), array(three_h, hidden_size)
        products += [(d_gates, w_ih, np.empty((n_rows, input_size), dtype)),
                     (d_gates.T, x, np.empty((three_h, input_size), dtype)),
                     (d_gates, w_hh, np.empty((n_rows, hidden_size), dtype)),
                     (d_gates.T, h, np.empty((three_h, hidden_size), dtype))]
    return products


def product_flops(products):
    """2·M·K·N summed over the products."""
    return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products)


def bound_callable(products):
    """Every product on BLAS through np.matmul, into preallocated outputs."""
    def run():
        for a, b, out in products:
            np.matmul(a, b, out=out)
    return run


def contestants_of(shape, task, threads):
    """{name: callable} of the task: gru_fast's entry points and the peers that run it."""
    _, dtype, pass_ = TASKS[task]
    if pass_ == "fwd":  # pipeline.py's: float32, reset_after=True
        return forward_contestants(shape, threads)
    problem = make_inputs(shape, dtype)
    return {"gru_fast": gru_fast_callable(problem, True, "fwdbwd"),
            "torch": torch_callable(problem, "fwdbwd")}


def time_interleaved(runs, repeats, calls, pause, before=None):
    """({name: [seconds per repetition]}, {name: [serial share per repetition]}).

    The runs interleave in rotated orders.  Without `before`: each sample is the
    fastest of `calls` calls in a row, after `pause` seconds idle (the previous run's
    BLAS or OpenMP workers, still spinning for a while after it returns, would take
    the cores from the next).  With it: one call right after `before()` (a pipeline
    scenario).  The serial share (gru_fast's runs only) is the share of the sample's
    phases that its pace ran on the calling thread alone.
    """
    from gru_fast import _core
    names = list(runs)
    samples = {name: [] for name in names}
    shares = {name: [] for name in names if name in OURS}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            stats_before = _core._thread_stats() if name in shares else None
            if before is None:
                time.sleep(pause)
                best = float("inf")
                for _ in range(calls):
                    start = time.perf_counter()
                    runs[name]()
                    best = min(best, time.perf_counter() - start)
            else:
                before()
                start = time.perf_counter()
                runs[name]()
                best = time.perf_counter() - start
            samples[name].append(best)
            if name in shares:
                shares[name].append(serial_share(stats_before, _core._thread_stats()))
    return samples, shares


def measure(shape_name, task, args, scenario=None):
    """Times, rates and ratios of one shape and task."""
    shape = SHAPES[shape_name]
    _, dtype, pass_ = TASKS[task]
    products = product_operands(shape, dtype, pass_)
    runs = {"GEMM bound": bound_callable(products), **contestants_of(shape, task, args.threads)}
    for run in runs.values():  # warm: packing, sessions, first-touch pages
        run()
        run()
    samples, shares = time_interleaved(runs, args.repeats, args.calls, args.pause, scenario)
    return dict(shape=shape, flops=product_flops(products), samples=samples, shares=shares,
                medians={name: statistics.median(v) for name, v in samples.items()})


def _interval_text(interval):
    """' (low-high)' of a ratio's 5-95% interval, '' without one."""
    return f" ({interval[0]:.2f}-{interval[1]:.2f})" if interval else ""


def report(shape_name, task, result, out=print):
    """Print the table of one shape and task."""
    title = TASKS[task][0]
    medians, samples, flops = result["medians"], result["samples"], result["flops"]
    bound = medians["GEMM bound"]
    out(f"\n{shape_name} {result['shape']} (T, B, I, H), {title}: "
        f"{flops / 1e9:.2f} GFLOP of products")
    out(f"  {'':<14}{'median ms':>11}{'GFLOP/s':>9}{'bound / it':>12}   serial share per sample")
    for name, seconds in medians.items():
        shares = " ".join("-" if v is None else f"{100 * v:.0f}%"
                          for v in result["shares"].get(name, []))
        out(f"  {name:<14}{seconds * 1e3:>11.2f}{flops / seconds / 1e9:>9.1f}"
            f"{bound / seconds:>12.3f}   {shares}")
    targets = targets_of(task, shape_name)
    for peer in [name for name in medians if name in ("onnxruntime", "torch")]:
        wanted = ", ".join(f"{threshold}x ({source})" for threshold, source in targets.get(peer, []))
        out(f"  {peer} / bound: {medians[peer] / bound:.2f}x"
            + _interval_text(ratio_interval(samples[peer], samples["GEMM bound"]))
            + "  the speed-up over it at BLAS's rate" + (f"; targets {wanted}" if wanted else ""))
        for name in [name for name in medians if name in OURS]:
            out(f"    {peer} / {name}: {medians[peer] / medians[name]:.2f}x"
                + _interval_text(ratio_interval(samples[peer], samples[name])))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="large,wide",
                        help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--repeats", type=int, default=11, help="samples per contestant")
    parser.add_argument("--calls", type=int, default=3,
                        help="calls per quiet sample (its fastest counts)")
    parser.add_argument("--pause", type=float, default=0.25,
                        help="seconds idle before each quiet sample")
    parser.add_argument("--scenario", choices=SCENARIOS, default=None,
                        help="time one call right after this pipeline.py scenario instead")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads for ONNX Runtime and PyTorch")
    args = parser.parse_args(argv)
    for name in args.shapes.split(","):
        if name not in SHAPES:
            parser.error(f"--shapes: unknown shape {name!r}")
    for name in args.tasks.split(","):
        if name not in TASKS:
            parser.error(f"--tasks: unknown task {name!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    scenario = None
    if args.scenario is not None:
        scenario = make_scenario(args.scenario, args.threads, 0.2)
    print(f"CPU: {cpu_model()}, {usable_cores()} usable cores; threads {args.threads}; "
          + ("quiet: fastest of %d calls a sample" % args.calls if scenario is None
             else f"one call right after the {args.scenario} scenario")
          + f"; {args.repeats} samples each")
    for shape_name in args.shapes.split(","):
        for task in args.tasks.split(","):
            report(shape_name, task, measure(shape_name, task, args, scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
