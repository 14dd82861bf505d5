#!/usr/bin/env python
"""GRU calls inside a busy pipeline: each contestant timed right after another library ran.

In a scientific pipeline NumPy, ONNX Runtime or PyTorch run in the same
process just before the GRU, and their worker threads keep spinning on the
cores for a while after they return (OpenBLAS for up to ~0.1 s).  A GRU whose
threads wait for one another at every step then waits for those cores.  This
script times one forward call (float32, reset_after=True) at a time, right
after one of these scenarios:

* ``idle``: nothing for 0.2 s before the call;
* ``numpy``: ``A @ A``, A float32 512 x 512 (OpenBLAS, all cores);
* ``onnxruntime``: a run of another ONNX Runtime session (a 512 x 512 MatMul);
* ``torch``: ``torch.mm`` of 512 x 512 float32 (PyTorch's OpenMP threads).

Contestants: ``gru_forward`` (packs its weights every call), ``FrozenGRU``
(packed once), ONNX Runtime's GRU operator and PyTorch's ``nn.GRU`` (under
``no_grad``), each with every core.  Shapes: those of compare.py and two that
no tuning saw.  Each repetition visits the scenarios in a rotating order and,
within a scenario, the contestants in an order that puts each right after every
other equally often (the previous contestant's threads may still spin when the
scenario starts); medians are reported.

Per shape the report gives each contestant's time per scenario, its slowest
over fastest scenario, and per scenario the ratio of every peer's time to each
gru_fast contestant's (above 1: gru_fast is faster).  Targets (issue 12): in
every scenario gru_fast at least as fast as ONNX Runtime and 1.3x as fast as
PyTorch; gru_fast's slowest scenario at most max(1.5, 1.2 x ONNX Runtime's
slowest/fastest) of its fastest.

Usage::

    flock /tmp/gru_bench.lock python bench/pipeline.py            # all shapes (~4 min)
    python bench/pipeline.py --shapes stream,small --repeats 5 --json out.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from benchmarks.common import ALL_SHAPES as SHAPES, make_inputs  # noqa: E402
from compare_lib.contestants import (frozen_callable, onnxruntime_callable,  # noqa: E402
                                     torch_callable)
from benchmarks.pipeline_scenarios import SCENARIOS, make_scenario  # noqa: E402
from compare_lib.machine import cpu_model, usable_cores  # noqa: E402
from compare_lib.targets import ratio_interval  # noqa: E402

# Shapes no tuning of gru_fast saw: a long thin sequence (the third
# example) and an odd one (5 rows take the kernel's few-rows path; H is not a
# multiple of any panel width).
UNSEEN_SHAPES = {
    "long_thin": (1000, 16, 8, 64),
    "odd": (60, 5, 100, 200),
}
ALL_SHAPES = {**SHAPES, **UNSEEN_SHAPES}
CONTESTANTS = ("gru_forward", "FrozenGRU", "onnxruntime", "torch")
OURS = ("gru_forward", "FrozenGRU")
PEERS = ("onnxruntime", "torch")
IDLE_SECONDS = 0.2
# The targets (issue 12): gru_fast's speed-up over each peer in every scenario.
VS_ONNXRUNTIME = 1.0
VS_TORCH = 1.3


def gru_forward_callable(problem):
    import gru_fast
    x, h0, weights, _ = problem
    return lambda: gru_fast.gru_forward(x, h0, *weights, reset_after=True)


def make_scenarios(threads):
    """name -> a function that runs the scenario's work (or waits, for idle)."""
    return {name: make_scenario(name, threads, IDLE_SECONDS) for name in SCENARIOS}


def make_contestants(shape, threads):
    problem = make_inputs(shape, "float32")
    return {
        "gru_forward": gru_forward_callable(problem),
        "FrozenGRU": frozen_callable(problem, True),
        "onnxruntime": onnxruntime_callable(problem, True, threads),
        "torch": torch_callable(problem, "fwd"),
    }


THREAD_COUNTS = ("serial_phases", "threaded_phases", "late_workers", "late_wait_ns",
                 "late_spells", "thread_trials", "thread_trials_won", "serial_blocks_chosen",
                 "fresh_paces", "serial_remeasured", "leads_confirmed")


def thread_counts():
    """gru_fast's thread counts now (_core._thread_stats, the keys of THREAD_COUNTS)."""
    from gru_fast import _core
    stats = _core._thread_stats()
    return {key: stats.get(key, 0) for key in THREAD_COUNTS}


def balanced_orders(n):
    """n orders of range(n) in which every contestant comes right after every other
    exactly once (a Williams square; n even, or n <= 2).

    A call is timed right after its scenario, but the scenario itself comes right after
    the previous contestant's call, whose threads may still spin (PyTorch's OpenMP
    workers for milliseconds): orders that rotate as a cycle put each contestant after
    the same one every time, and it alone meets that residue.
    """
    if n > 2 and n % 2:
        raise ValueError(f"balanced_orders: n must be even or at most 2, got {n}")
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    return [[(i + shift) % n for i in first] for shift in range(n)]


def time_shape(contestants, scenarios, repeats, counts=None):
    """{contestant: {scenario: [seconds of each repetition]}}: calls timed right after
    each scenario.

    The contestants take the orders of `balanced_orders` in turn, so with `repeats` a
    multiple of their number each comes first, and right after every other, equally
    often in every scenario's blocks.  `counts`, if given, receives {ours: {scenario:
    {count: total}}}: what gru_fast's threads did in its contestants' timed calls
    (thread_counts differences)."""
    samples = {c: {s: [] for s in scenarios} for c in contestants}
    if counts is not None:
        counts.update({c: {s: dict.fromkeys(THREAD_COUNTS, 0) for s in scenarios}
                       for c in contestants if c in OURS})
    names = list(contestants)
    scenario_names = list(scenarios)
    orders = balanced_orders(len(names))
    for name in names:  # warm up: weights packed, sessions and pools started
        contestants[name]()
        contestants[name]()
    for repeat in range(repeats):
        for i in range(len(scenario_names)):
            which = (i + repeat) % len(scenario_names)
            scenario = scenario_names[which]
            for j in orders[(repeat + which) % len(orders)]:
                name = names[j]
                scenarios[scenario]()
                before = thread_counts() if counts is not None and name in OURS else None
                start = time.perf_counter()
                contestants[name]()
                samples[name][scenario].append(time.perf_counter() - start)
                if before is not None:
                    after, total = thread_counts(), counts[name][scenario]
                    for key in THREAD_COUNTS:
                        total[key] += after[key] - before[key]
    return samples


def ort_intervals(samples):
    """{ours: {scenario: (low, high)}}: the interval of ONNX Runtime's time over ours,
    repetitions resampled in pairs (compare_lib.targets.ratio_interval)."""
    return {ours: {s: ratio_interval(samples["onnxruntime"][s], samples[ours][s])
                   for s in samples[ours]} for ours in OURS}


def ort_miss_within_noise(result, ours):
    """Whether every scenario where `ours` is slower than ONNX Runtime has an interval
    that reaches 1 (so one more run may meet the target)."""
    intervals = result.get("ort_intervals", {}).get(ours)
    if not intervals:
        return False
    return all(intervals[s] is not None and intervals[s][1] >= 1.0
               for s, ratio in result["ratios"][ours]["onnxruntime"].items() if ratio < 1.0)


def evaluate(times):
    """Spreads, per-scenario ratios and the targets of one shape."""
    spread = {c: max(by.values()) / min(by.values()) for c, by in times.items()}
    ratios = {ours: {peer: {s: times[peer][s] / times[ours][s] for s in times[ours]}
                     for peer in PEERS} for ours in OURS}
    spread_limit = max(1.5, 1.2 * spread["onnxruntime"])
    targets = {}
    for ours in OURS:
        targets[ours] = {
            "vs_onnxruntime": min(ratios[ours]["onnxruntime"].values()) >= VS_ONNXRUNTIME,
            "vs_torch_1.3x": min(ratios[ours]["torch"].values()) >= VS_TORCH,
            "spread": spread[ours] <= spread_limit,
        }
    return spread, ratios, spread_limit, targets


def serial_share(total):
    """The share of a contestant's phases that ran on the caller alone, or None."""
    phases = total["serial_phases"] + total["threaded_phases"]
    return total["serial_phases"] / phases if phases else None


def short(ratio):
    """A ratio in at most 4 characters."""
    return f"{ratio:.2f}" if ratio < 9.995 else f"{ratio:.0f}"


def report(shape_name, shape, times, counts=None, out=print, samples=None):
    spread, ratios, spread_limit, targets = evaluate(times)
    intervals = ort_intervals(samples) if samples else None
    out(f"\n{shape_name} {shape} (T, B, I, H), float32 forward, reset_after=True; "
        f"median ms per call")
    out(f"  {'contestant':<13}" + "".join(f"{s:>13}" for s in SCENARIOS)
        + f"{'slow/fast':>11}  slowest / fastest")
    for name, by in times.items():
        slowest = max(by, key=by.get)
        fastest = min(by, key=by.get)
        out(f"  {name:<13}" + "".join(f"{by[s] * 1e3:>13.3f}" for s in SCENARIOS)
            + f"{spread[name]:>10.2f}x  {slowest} / {fastest}")
    for ours in OURS:
        for peer in PEERS:
            out(f"  {peer + ' / ' + ours:<28}" + "".join(
                f"{ratios[ours][peer][s]:>9.2f}x" for s in SCENARIOS))
            if peer == "onnxruntime" and intervals:
                out(f"  {'  5-95% of repetitions':<28}" + "".join(
                    f"{'-' if v is None else f'{short(v[0])}-{short(v[1])}':>10}"
                    for v in intervals[ours].values()))
    for ours in (counts or {}):
        shares = {s: serial_share(counts[ours][s]) for s in SCENARIOS}
        out(f"  {'serial share, ' + ours:<28}" + "".join(
            f"{'-' if v is None else f'{100 * v:.0f}%':>10}" for v in shares.values())
            + "   (phases the caller ran alone)")
    for ours in OURS:
        met = targets[ours]
        out(f"  targets {ours}: >= ORT every scenario {'met' if met['vs_onnxruntime'] else 'MISSED'}"
            f"; >= {VS_TORCH}x torch {'met' if met['vs_torch_1.3x'] else 'MISSED'}"
            f"; spread {spread[ours]:.2f}x <= {spread_limit:.2f}x "
            f"{'met' if met['spread'] else 'MISSED'}")
    return dict(shape=shape, times_ms={c: {s: v * 1e3 for s, v in by.items()}
                                       for c, by in times.items()},
                spread=spread, ratios=ratios, spread_limit=spread_limit, targets=targets,
                **({"ort_intervals": intervals} if intervals else {}),
                **({"thread_counts": counts} if counts else {}))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(ALL_SHAPES),
                        help=f"comma-separated, from {', '.join(ALL_SHAPES)}")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed calls per contestant and scenario (a multiple of 4 "
                        "puts each contestant after each other equally often)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads for ONNX Runtime and PyTorch (gru_fast: OpenMP's count)")
    parser.add_argument("--json", default="", help="also write the results here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import gru_fast
    import onnxruntime
    import torch
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}, {usable_cores()} usable cores; threads {args.threads}; "
          f"gru_fast {gru_fast.__file__}, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}")
    scenarios = make_scenarios(args.threads)
    results = {}
    for shape_name in args.shapes.split(","):
        shape = ALL_SHAPES[shape_name]
        contestants = make_contestants(shape, args.threads)
        counts = {}
        samples = time_shape(contestants, scenarios, args.repeats, counts)
        times = {c: {s: statistics.median(v) for s, v in by.items()} for c, by in samples.items()}
        results[shape_name] = report(shape_name, shape, times, counts, samples=samples)
    misses = [f"{shape} {ours} {target}" + (" (within noise)" if target == "vs_onnxruntime"
                                             and ort_miss_within_noise(result, ours) else "")
              for shape, result in results.items()
              for ours, met in result["targets"].items() for target, ok in met.items() if not ok]
    print(f"\n{sum(len(m) for r in results.values() for m in r['targets'].values()) - len(misses)}"
          f" of {sum(len(m) for r in results.values() for m in r['targets'].values())} "
          f"targets met" + (": missed " + "; ".join(misses) if misses else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(cpu=cpu_model(), results=results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
