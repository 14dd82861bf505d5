#!/usr/bin/env python
"""Two builds of gru_fast side by side: this checkout's against another, interleaved.

Each build runs in a worker process of its own (two builds of one package cannot
share a process); the parent asks the two in turn to time one case, round-robin
over the cases and alternating which build goes first, and reports per case the
median time of each build and the median of the paired ratios.  The cases are
compare.py's: every shape and task for ``gru_forward``/``gru_backward``,
FrozenGRU's forward, and the forward with spread lengths; plus scipy's sgemm
peak and the large float32 forward as a fraction of it.

Usage (under the bench lock)::

    flock /tmp/gru_bench.lock python bench/compare_builds.py /tmp/native_build \\
        [--shapes stream,small] [--repeats 7] [--min-time 0.1] [--pace threads]

The other root must hold a built checkout (``python setup.py build_ext --inplace``),
e.g. one built with ``-march=native``.  Set GRU_FAST_CPU_LEVEL to force a level in
both workers.  The ratio column is this checkout's time over the other's (< 1:
this checkout is faster).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _level(gru_fast):
    """The CPU level the build runs at ("single" for builds from before the levels)."""
    if not hasattr(gru_fast, "show_config"):
        return "single"
    return gru_fast.show_config("dicts")["cpu"]["level"]


PACES = {"auto": None, "threads": True, "serial": False}


def worker(root, shapes, min_time, pace="auto"):
    """Serve timing requests on stdin/stdout with the gru_fast of `root`.

    `pace` ("auto", "threads" or "serial") fixes how many threads run each phase
    (``_core._force_threads``), so that the builds' code is compared apart from
    the pace's decisions, which differ from process to process on a busy host.
    """
    sys.path[:0] = [str(root), str(HERE)]
    import gru_fast
    from benchmarks.common import ALL_SHAPES, make_inputs, spread_lengths
    from compare_lib.contestants import frozen_callable, gru_fast_callable, sgemm_callable
    from compare_lib.tasks import TASKS, task_flops, PEAK_N
    from compare_lib.timing import serial_share

    assert Path(gru_fast.__file__).resolve().is_relative_to(Path(root).resolve()), gru_fast.__file__
    if pace != "auto":
        from gru_fast import _core
        _core._force_threads(PACES[pace])
    cases = {"sgemm": (sgemm_callable(), 2 * PEAK_N ** 3)}
    for shape_name in shapes:
        shape = ALL_SHAPES[shape_name]
        for key, _, dtype, reset_after, pass_ in TASKS:
            problem = make_inputs(shape, dtype)
            flops = task_flops(shape, pass_)
            cases[f"{shape_name}/{key}"] = (gru_fast_callable(problem, reset_after, pass_), flops)
            if pass_ == "fwd":
                cases[f"{shape_name}/{key}/frozen"] = (frozen_callable(problem, reset_after),
                                                       flops)
                lengths = spread_lengths(shape[0], shape[1])
                cases[f"{shape_name}/{key}/spread"] = (
                    gru_fast_callable(problem, reset_after, pass_, lengths), None)
    numbers = {}
    for name, (fn, _) in cases.items():
        fn()
        start = time.perf_counter()
        fn()
        numbers[name] = max(1, round(min_time / max(time.perf_counter() - start, 1e-7)))
    print(json.dumps({"cases": list(cases), "flops": {k: v[1] for k, v in cases.items()},
                      "level": _level(gru_fast)}), flush=True)
    from gru_fast import _core  # the chosen level's module itself
    stats = getattr(_core, "_thread_stats", None)
    for line in sys.stdin:
        name = line.strip()
        fn, number = cases[name][0], numbers[name]
        fn()
        before = stats() if stats else None
        start = time.perf_counter()
        for _ in range(number):
            fn()
        seconds = (time.perf_counter() - start) / number
        print(json.dumps([seconds, serial_share(before, stats()) if stats else None]),
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="root of the other built checkout")
    parser.add_argument("--shapes", default="stream,small,medium,large,wide")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.1)
    parser.add_argument("--pause", type=float, default=0.05,
                        help="seconds between samples: the idle worker's OpenMP and "
                             "BLAS threads stop spinning before the other one runs")
    parser.add_argument("--cases", default="",
                        help="only the cases whose name contains one of these (comma-separated)")
    parser.add_argument("--pace", choices=list(PACES), default="auto",
                        help="auto: each call measures whether threads pay (the default); "
                             "threads / serial: every phase on all threads / on the caller, "
                             "in both builds (their code compared apart from the pace)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shapes = args.shapes.split(",")
    if args.worker:
        return worker(args.worker, shapes, args.min_time, args.pace)

    roots = {"this": REPO, "other": Path(args.other).resolve()}
    workers = {}
    for label, root in roots.items():
        command = [sys.executable, __file__, str(root), "--worker", str(root),
                   "--shapes", args.shapes, "--min-time", str(args.min_time),
                   "--pace", args.pace]
        workers[label] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, cwd=root)
    hello = {label: json.loads(process.stdout.readline()) for label, process in workers.items()}
    cases, flops = hello["this"]["cases"], hello["this"]["flops"]
    if args.cases:
        cases = ["sgemm"] + [case for case in cases
                             if any(part in case for part in args.cases.split(","))]
    print(f"this: {REPO} (level {hello['this']['level']}); other: {roots['other']} "
          f"(level {hello['other']['level']}); pace {args.pace}", flush=True)
    samples = {label: {case: [] for case in cases} for label in workers}
    serial_shares = {label: {case: [] for case in cases} for label in workers}
    for repeat in range(args.repeats):
        order = list(workers) if repeat % 2 == 0 else list(workers)[::-1]
        for case in cases:
            for label in order:
                time.sleep(args.pause)
                workers[label].stdin.write(case + "\n")
                workers[label].stdin.flush()
                seconds, serial = json.loads(workers[label].stdout.readline())
                samples[label][case].append(seconds)
                serial_shares[label][case].append(serial)
    for process in workers.values():
        process.stdin.close()
        process.wait()

    def mean_share(label, case):
        shares = [share for share in serial_shares[label][case] if share is not None]
        return statistics.mean(shares) if shares else None

    rows, worst = [], 0.0
    for case in cases:
        ours, theirs = samples["this"][case], samples["other"][case]
        ratio = statistics.median(a / b for a, b in zip(ours, theirs))
        if case != "sgemm":
            worst = max(worst, ratio)
        rows.append((case, statistics.median(ours), statistics.median(theirs), ratio,
                     mean_share("this", case), mean_share("other", case),
                     min(ours) / min(theirs)))
    # serial %: the share of the phases each build's pace ran on the caller alone
    # this/other: the median of the paired ratios; of minima: the fastest sample of
    # each build, the statistic least moved by noise (which only adds time)
    print(f"{'case':32s} {'this':>10s} {'other':>10s} {'this/other':>10s} {'of minima':>10s} "
          f"{'serial %':>13s}")
    for case, ours, theirs, ratio, share_ours, share_theirs, of_minima in rows:
        shares = " / ".join("-" if share is None else f"{100 * share:.0f}"
                            for share in (share_ours, share_theirs))
        print(f"{case:32s} {ours * 1e6:8.1f}us {theirs * 1e6:8.1f}us {ratio:10.3f} "
              f"{of_minima:10.3f} {shares:>13s}")
    print(f"worst ratio (this/other): {worst:.3f}")
    summary = {}
    for column, label in ((3, "median of paired ratios"), (6, "ratio of minima")):
        ratios = [row[column] for row in rows if row[0] != "sgemm"]
        within = sum(abs(ratio - 1) <= 0.05 for ratio in ratios)
        geometric = statistics.geometric_mean(ratios)
        summary[label] = {"within_5_percent": within, "cases": len(ratios),
                          "range": [min(ratios), max(ratios)], "geometric_mean": geometric}
        print(f"{label}: within 5% in {within} of {len(ratios)} cases; range "
              f"{min(ratios):.3f}-{max(ratios):.3f}; geometric mean {geometric:.3f}")
    results = {"rows": rows, "worst": worst, "summary": summary, "pace": args.pace}
    if any(case.startswith("large/fwd_f32") for case in cases):
        for label in workers:
            peak = flops["sgemm"] / statistics.median(samples[label]["sgemm"])
            for key in ("large/fwd_f32_ra0", "large/fwd_f32_ra1", "large/fwd_f32_ra1/frozen"):
                if key not in cases:
                    continue
                rate = flops[key] / statistics.median(samples[label][key])
                print(f"{label}: {key} {rate / 1e9:.0f} GFLOP/s = {100 * rate / peak:.0f}% "
                      f"of sgemm {peak / 1e9:.0f} GFLOP/s")
                results[f"{label}:{key}:peak_fraction"] = rate / peak
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
