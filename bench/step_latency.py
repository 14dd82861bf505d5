"""Latency of one GRU time step, call by call: gru_fast against ONNX Runtime and PyTorch.

Streaming users (signal processing, online detection, control) run one step
per sample, so what counts is the cost of a call.  For each shape (B, I, H),
float32, reset_after=True (PyTorch's variant), this times

    FrozenGRU.step              gru_fast.FrozenGRU(...).step(x_t, h)
    FrozenGRU.step out=         the same writing into a preallocated state
    GRU.step                    gru_fast.GRU(I, H, reset_after=True).step(x_t, h)
    GRU.step out=               the same with out=
    gru_forward T=1             gru_fast.gru_forward on a sequence of one step
    ONNX Runtime T=1            InferenceSession.run of the GRU exported by
                                gru_fast.interop.to_onnx, T=1, initial_h fed
    torch GRUCell               torch.nn.GRUCell(x_t, h) under inference_mode
    torch nn.GRU T=1            torch.nn.GRU on a sequence of one step

with the same weights, and reports per contender the median over --rounds of
the mean time per call of --calls calls; the contenders take turns within
each round (interleaved), so a slow spell of the machine hits all of them.
The times include Python's loop and lambda call (~0.05 us), the same for all.
With --busy each call comes right after a 256 x 256 NumPy matmul (its BLAS
threads then spin, competing for the cores), and only the step is timed.

Before timing, every contender's new state is checked against gru_fast's;
gru_fast's own paths must agree bitwise with gru_forward.

Usage (under the bench lock, as every benchmark here)::

    flock /tmp/gru_bench.lock python bench/step_latency.py [--calls 2000] [--rounds 7]
        [--busy] [--threads N] [--json results.json]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gru_fast of this checkout

from bench.benchmarks.step_contenders import SHAPES, all_contenders  # noqa: E402

TARGETS = [  # (ours, theirs, factor): ours must be `factor` times faster
    ("FrozenGRU.step", "ONNX Runtime T=1", 2.0),
    ("GRU.step", "torch GRUCell", 2.0),
]
BUSY_MATMUL = 256


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_results(calls, expected):
    """Every contender's new state matches gru_forward's: gru_fast's bitwise, peers closely."""
    for name, call in calls.items():
        result = call()
        result = np.asarray(result.numpy() if hasattr(result, "numpy") else result)
        if name.startswith(("FrozenGRU", "GRU.", "gru_forward")):
            if not np.array_equal(result, expected):
                raise AssertionError(f"{name}: not bitwise gru_forward's state")
        else:
            np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5, err_msg=name)


def time_calls(call, n_calls, busy):
    """Mean seconds per call over n_calls calls (busy: each right after a matmul)."""
    if not busy:
        start = time.perf_counter()
        for _ in range(n_calls):
            call()
        return (time.perf_counter() - start) / n_calls
    a = np.ones((BUSY_MATMUL, BUSY_MATMUL), np.float32)
    total = 0
    for _ in range(n_calls):
        a @ a
        start = time.perf_counter_ns()
        call()
        total += time.perf_counter_ns() - start
    return total * 1e-9 / n_calls


def measure(calls, n_calls, rounds, busy):
    """name -> median over rounds of the mean us per call, contenders interleaved."""
    names = list(calls)
    samples = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            calls[name]()  # wake whatever the contender keeps asleep
            samples[name].append(time_calls(calls[name], n_calls, busy) * 1e6)
    return {name: float(np.median(values)) for name, values in samples.items()}


def run(shapes, n_calls, rounds, busy, threads, log=print):
    """Measure every shape; return {shape name: {contender: median us}}."""
    results = {}
    for shape_name, shape in shapes.items():
        calls, expected = all_contenders(shape, threads)
        check_results(calls, expected)
        results[shape_name] = measure(calls, n_calls, rounds, busy)
        log(f"  {shape_name} {shape}: " + ", ".join(
            f"{name} {value:.2f}" for name, value in results[shape_name].items()))
    return results


def table(results, shapes):
    """A Markdown table, us per call, and the target ratios."""
    names = list(next(iter(results.values())))
    lines = ["| (B, I, H) | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for shape_name, row in results.items():
        lines.append(f"| {shapes[shape_name]} | "
                     + " | ".join(f"{row[name]:.2f} us" for name in names) + " |")
    lines.append("")
    for ours, theirs, factor in TARGETS:
        if theirs not in names:
            continue
        ratios = [results[s][theirs] / results[s][ours] for s in results]
        verdicts = ", ".join(f"{shapes[s]} {r:.2f}x" for s, r in zip(results, ratios))
        met = all(r >= factor for r in ratios)
        lines.append(f"- {ours} vs {theirs} (target {factor:g}x faster): {verdicts} "
                     f"-> {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block")
    parser.add_argument("--rounds", type=int, default=7, help="timed blocks per contender")
    parser.add_argument("--busy", action="store_true",
                        help="time each call right after a NumPy matmul")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every library (default: each library's own)")
    parser.add_argument("--shapes", nargs="*", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    shapes = {name: SHAPES[name] for name in args.shapes}

    limits = None
    if args.threads:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=args.threads)
    print(f"step latency, float32, reset_after=True, {args.rounds} rounds of {args.calls} "
          f"calls{' (busy: after a NumPy matmul)' if args.busy else ''}; "
          f"CPU {cpu_model()}; threads: {args.threads or 'library defaults'}")
    results = run(shapes, args.calls, args.rounds, args.busy, args.threads)
    if limits is not None:
        limits.restore_original_limits()
    print()
    print(table(results, shapes))
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_model(), "calls": args.calls, "rounds": args.rounds,
            "busy": args.busy, "threads": args.threads,
            "shapes": {name: list(shape) for name, shape in shapes.items()},
            "median_us": results}, indent=2))


if __name__ == "__main__":
    main()
