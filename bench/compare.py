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
* ONNX Runtime's ``GRU`` operator, forward float32, ``linear_before_reset`` 0 and 1,
  on the model ``gru_fast.interop.to_onnx`` exports (one GRU node; W, R, B in ONNX
  gate order z, r, h);
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

This file is the driver; the pieces live in ``bench/compare_lib/`` (machine probes,
contestants, timing, memory, targets, report, plot) and the shapes and inputs in
``bench/benchmarks/common.py``, shared with the asv suite.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from compare_lib import machine, report
from compare_lib.machine import LoadMonitor, usable_cores
from compare_lib.measure import add_peak_fractions, measure_shape
from compare_lib.memory import memory_report
from compare_lib.plot import plot
from compare_lib.targets import count, evaluate_targets, memory_targets
from compare_lib.tasks import PEAK_N, SHAPES

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def parse_args(argv):
    """The command-line options, with the defaults --quick changes filled in."""
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
        # Long enough for the worker threads other libraries leave spinning after a
        # call (OpenBLAS: about 2^28 cycles) to go idle; bench/README.md ("Timing")
        # has what a shorter pause did to the measurements.
        args.pause = 0.01 if args.quick else 0.25
    if args.min_time is None:
        args.min_time = 0.01 if args.quick else 0.1
    return args


def find_peers(args, log):
    """The contestants other than gru_fast that can run here, with their versions."""
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
    return peers


def describe_run(args, peers, log):
    """The run's metadata (machine, versions, threads, options), logged as it is found."""
    import gru_fast
    meta = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        cpu=machine.cpu_model(), usable_cores=usable_cores(), threads=args.threads,
        python=platform.python_version(), numpy=np.__version__,
        gru_fast=gru_fast.__version__, peers=peers, blas=machine.blas_info(),
        torch_threads=(__import__("torch").get_num_threads() if "torch" in peers else None),
        repeats=args.repeats, min_time=args.min_time, quick=args.quick,
        pause=args.pause, max_wait=args.max_wait,
        **machine.git_state(REPO))
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
    meta["openblas_kernel_note"] = machine.openblas_kernel_warning(meta["blas"])
    if meta["openblas_kernel_note"]:
        log(meta["openblas_kernel_note"])
    meta["openblas_coretype_env"] = os.environ.get("OPENBLAS_CORETYPE")
    meta["background_cores_before"] = machine.background_load(1.0)
    if meta["background_cores_before"] is not None:
        log(f"other work on the machine before the run: "
            f"{meta['background_cores_before']:.2f} cores busy")
    return meta


def measure(args, peers, meta, t_start, log):
    """Time every shape; return (results, lengths rows, sgemm samples, peak)."""
    run_monitor = LoadMonitor()
    log(f"{args.repeats} repetitions, >= {args.min_time} s per sample, median reported\n")
    sgemm_samples, lengths_rows = [], []
    results = {}  # task -> shape -> contestant -> entry
    background = {}  # shape -> cores busy with other work while it was timed
    waited_total = 0.0
    for shape_name in args.shapes:
        shape_monitor = LoadMonitor()
        shape_results, shape_lengths, shape_sgemm, waited = measure_shape(
            shape_name, peers, args, log)
        for task, entries in shape_results.items():
            results.setdefault(task, {})[shape_name] = entries
        lengths_rows += shape_lengths
        sgemm_samples += shape_sgemm
        waited_total += waited
        other = shape_monitor.other_cores()
        background[shape_name] = other
        log(f" {time.perf_counter() - t_start:.0f} s"
            + ("" if other is None else f" (other work: {other:.2f} cores)"))
    peak = 2 * PEAK_N ** 3 / statistics.median(sgemm_samples)
    add_peak_fractions(results, peak)
    meta["background_cores_during_run"] = run_monitor.other_cores()
    meta["background_cores_per_shape"] = background
    meta["seconds_waited_for_quiet"] = waited_total
    loads = [x for c_task in results.values() for c_shape in c_task.values()
             for entry in c_shape.values() for x in entry["other_load"] if x is not None]
    meta["samples_contended"] = sum(x > 0.25 for x in loads)
    meta["samples_total"] = len(loads)
    return results, lengths_rows, sgemm_samples, peak


def write_outputs(out, args, argv, log):
    """The JSON, Markdown and PNG files the options ask for."""
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1))
        log(f"JSON: {path}")
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        command = report.markdown_command(argv if argv is not None else sys.argv[1:],
                                          os.environ.get("OPENBLAS_CORETYPE"))
        path.write_text(report.markdown_report(out, command))
        log(f"Markdown: {path}")
    if args.png:
        if plot(out["results"], out["sgemm_peak_gflops"] * 1e9, args.shapes, Path(args.png)):
            log(f"PNG: {args.png}")
        else:
            log("matplotlib not installed: no PNG")


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()

    def log(*a, **k):
        print(*a, **k, flush=True)

    from threadpoolctl import threadpool_limits

    peers = find_peers(args, log)
    with threadpool_limits(limits=args.threads):
        meta = describe_run(args, peers, log)
        results, lengths_rows, sgemm_samples, peak = measure(args, peers, meta, t_start, log)
        log("memory (tracemalloc)...", end="")
        memory = memory_report(args.shapes)
        log(" done\n")

    report.print_machine_state(meta, peak, sgemm_samples, args.threads, log)
    report.print_speed_tables(results, args.shapes, log)
    report.print_lengths_table(lengths_rows, log)
    report.print_memory_table(memory, log)
    targets = evaluate_targets(results, lengths_rows, peak, args.shapes)
    targets += memory_targets(memory)
    report.print_targets(targets, log)

    elapsed = time.perf_counter() - t_start
    meta["runtime_seconds"] = elapsed
    out = dict(meta=meta, shapes={s: SHAPES[s] for s in args.shapes},
               sgemm_peak_gflops=peak / 1e9,
               sgemm_samples_seconds=sgemm_samples, results=results,
               lengths=lengths_rows, memory=memory, targets=targets)
    write_outputs(out, args, argv, log)
    log(f"total {elapsed:.0f} s")
    return 1 if args.check and count(targets)[1] else 0


if __name__ == "__main__":
    sys.exit(main())
