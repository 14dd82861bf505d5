#!/usr/bin/env python
"""Workers kept off the caller's CPU, or left where the kernel wakes them: A/B in one process.

`_core._set_keep_off_caller(on)` switches gf_keep_workers_off (src/_parallel.h):
before waking its sleeping workers, the caller narrows their affinity to every
CPU but its own.  Rounds alternate the two settings; each round times, per
shape, FrozenGRU forward calls (float32, reset_after=True, the pace choosing
threads) right after `--idle` seconds of sleep (the workers asleep, their
virtual CPU halted), then a loop of warm calls right after that one.  Reports
the medians per setting, their ratio (keep / off; < 1: keeping them off is
faster) and the workers' pieces per call after the sleep (0: the caller ran
every piece itself).

    flock /tmp/gru_bench.lock python bench/worker_placement_ab.py [--shapes odd,small]
        [--idle 0.2] [--rounds 30]

The busy scenarios (after NumPy, ONNX Runtime, PyTorch) are bench/pipeline.py's;
run it with the setting off by calling `_core._set_keep_off_caller(False)` first.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchmarks.common import ALL_SHAPES, make_inputs  # noqa: E402
from compare_lib.contestants import frozen_callable  # noqa: E402
from pipeline import UNSEEN_SHAPES  # noqa: E402

SHAPES = {**ALL_SHAPES, **UNSEEN_SHAPES}
WARM_CALLS = 20


def time_round(call, idle):
    """(seconds of the call after `idle` s of sleep, its worker pieces, median warm call)."""
    from gru_fast import _core
    time.sleep(idle)
    pieces = _core._thread_stats()["worker_pieces"]
    start = time.perf_counter()
    call()
    after_idle = time.perf_counter() - start
    pieces = _core._thread_stats()["worker_pieces"] - pieces
    warm = []
    for _ in range(WARM_CALLS):
        start = time.perf_counter()
        call()
        warm.append(time.perf_counter() - start)
    return after_idle, pieces, statistics.median(warm)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="stream,small,medium,long_thin,odd")
    parser.add_argument("--idle", type=float, default=0.2, help="seconds of sleep before a call")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    from gru_fast import _core
    from compare_lib.machine import cpu_model
    print(f"CPU: {cpu_model()}; {args.rounds} rounds, {args.idle} s idle before each call")
    print(f"{'shape':10s} {'after idle off / keep (ms)':>27s} {'keep/off':>9s} "
          f"{'pieces off / keep':>18s} {'warm off / keep (ms)':>22s} {'keep/off':>9s}")
    for name in args.shapes.split(","):
        call = frozen_callable(make_inputs(SHAPES[name], "float32"), True)
        for _ in range(WARM_CALLS):
            call()
        samples = {False: [], True: []}
        for round_ in range(args.rounds):
            for keep in ((False, True) if round_ % 2 else (True, False)):
                _core._set_keep_off_caller(keep)
                samples[keep].append(time_round(call, args.idle))
        _core._set_keep_off_caller(True)
        idle_ms = {k: statistics.median(s[0] for s in v) * 1e3 for k, v in samples.items()}
        pieces = {k: statistics.median(s[1] for s in v) for k, v in samples.items()}
        warm_ms = {k: statistics.median(s[2] for s in v) * 1e3 for k, v in samples.items()}
        print(f"{name:10s} {idle_ms[False]:>13.3f} / {idle_ms[True]:<11.3f} "
              f"{idle_ms[True] / idle_ms[False]:>9.3f} {pieces[False]:>8.0f} / {pieces[True]:<7.0f} "
              f"{warm_ms[False]:>10.3f} / {warm_ms[True]:<9.3f} {warm_ms[True] / warm_ms[False]:>9.3f}",
              flush=True)


if __name__ == "__main__":
    main()
