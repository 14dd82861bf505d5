#!/usr/bin/env python
"""What the pace (src/_parallel.h, gf_pace_*) costs against fixed thread choices, in-process.

For each shape, one process alternates, call by call, the pace's own choice with
every phase forced onto the workers (``_core._force_threads(True)``) and every phase
forced serial (``_force_threads(False)``), in rounds of ``--calls`` calls of each,
and reports the medians over rounds of the per-round time ratios pace / forced
threads and pace / serial, plus the share of the pace's phases that ran serially.
Ratios of neighbouring calls survive a host whose speed drifts; a ratio above 1 is
what the pace's trials and its serial spells after late workers cost where threads
win (or, pace / serial, where they lose).

    python bench/pace_cost.py [--shapes large,medium,small] [--rounds 15] [--calls 4]
    PYTHONPATH=/path/to/other/checkout python bench/pace_cost.py ...   # another build

Run under the bench lock; nothing else should run.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES = {  # (T, B, I, H, reset_after, pass)
    "stream": (100, 1, 64, 64, True, "fwd"),
    "small": (100, 8, 64, 128, True, "fwd"),
    "medium": (100, 32, 128, 256, True, "fwd"),
    "large": (50, 64, 512, 512, True, "fwd"),
    "large_classic": (50, 64, 512, 512, False, "fwd"),
    "wide_recurrent": (25, 16, 16, 1024, True, "fwd"),
    "medium_fb": (100, 32, 128, 256, True, "fwdbwd"),
    "small_fb": (100, 8, 64, 128, True, "fwdbwd"),
    "large_fb": (50, 64, 512, 512, True, "fwdbwd"),
}


def measure(name, rounds, calls):
    """Per-round medians of pace/forced-threads and pace/serial, and the serial share."""
    from benchmarks.common import make_inputs
    from compare_lib.contestants import gru_fast_callable
    from gru_fast import _core as core  # the chosen level's module itself

    seq_len, batch, inputs, hidden, reset_after, pass_ = SHAPES[name]
    call = gru_fast_callable(make_inputs((seq_len, batch, inputs, hidden), "float32"),
                             reset_after, pass_)

    def timed(mode):
        core._force_threads(mode)
        try:
            call()  # the call before sets the workers' state alike for each mode
            start = time.perf_counter()
            for _ in range(calls):
                call()
            return (time.perf_counter() - start) / calls
        finally:
            core._force_threads(None)

    for mode in (None, True, False):
        timed(mode)
    times = {None: [], True: [], False: []}
    serial = threaded = late = 0
    for round_ in range(rounds):
        order = (None, True, False) if round_ % 2 == 0 else (False, True, None)
        for mode in order:
            before = core._thread_stats()
            times[mode].append(timed(mode))
            if mode is None:
                after = core._thread_stats()
                serial += after["serial_phases"] - before["serial_phases"]
                threaded += after["threaded_phases"] - before["threaded_phases"]
                late += after["late_workers"] - before["late_workers"]
    return dict(
        pace_ms=statistics.median(times[None]) * 1e3,
        threads_ms=statistics.median(times[True]) * 1e3,
        serial_ms=statistics.median(times[False]) * 1e3,
        pace_over_threads=statistics.median(p / t for p, t in zip(times[None], times[True])),
        pace_over_serial=statistics.median(p / s for p, s in zip(times[None], times[False])),
        serial_share=serial / max(1, serial + threaded),
        late_per_call=late / (rounds * calls))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="large,large_classic,medium,small,wide_recurrent")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=4)
    args = parser.parse_args()
    import gru_fast
    print(f"gru_fast from {Path(gru_fast.__file__).parent}")
    print(f"{'shape':16s} {'pace ms':>8s} {'threads':>8s} {'serial':>8s} "
          f"{'pace/thr':>9s} {'pace/ser':>9s} {'serial %':>9s} {'late/call':>9s}")
    for name in args.shapes.split(","):
        row = measure(name, args.rounds, args.calls)
        print(f"{name:16s} {row['pace_ms']:8.2f} {row['threads_ms']:8.2f} {row['serial_ms']:8.2f} "
              f"{row['pace_over_threads']:9.3f} {row['pace_over_serial']:9.3f} "
              f"{100 * row['serial_share']:8.1f}% {row['late_per_call']:9.2f}", flush=True)


if __name__ == "__main__":
    main()
