#!/usr/bin/env python
"""The pace with and without measuring threads again when slow blocks take their lead.

When a few threaded blocks in a row run slow (the hypervisor takes a core for a
millisecond or two), the smoothed threaded estimate can fall behind the serial one.
The pace then measures the threads again first (`_core._set_confirm_lead(True)`, the
default; gf_pace_choose in src/_parallel.h) instead of running serially until its next
trial of threads.  One process alternates, round by round, the pace with the rule
("on"), without it ("off") and every phase forced onto the workers ("threads"), and
reports per shape the medians over rounds of the per-round ratios on/threads,
off/threads and on/off (below 1: "on" faster), the share of the pace's phases run
serially, and how many leads it confirmed.  Ratios of neighbouring samples survive a
host whose speed drifts.

    python bench/confirm_lead_ab.py [--shapes medium_fb,small_fb,medium] [--rounds 25] [--calls 4]

Run under the bench lock; nothing else should run.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

SHAPES = {  # (T, B, I, H, pass), float32, reset_after=True
    "stream": (100, 1, 64, 64, "fwd"),
    "small": (100, 8, 64, 128, "fwd"),
    "medium": (100, 32, 128, 256, "fwd"),
    "wide": (25, 16, 1024, 1024, "fwd"),
    "small_fb": (100, 8, 64, 128, "fwdbwd"),
    "medium_fb": (100, 32, 128, 256, "fwdbwd"),
    "large_fb": (50, 64, 512, 512, "fwdbwd"),
}
MODES = {"on": (None, True), "off": (None, False), "threads": (True, True)}
COUNTS = ("serial_phases", "threaded_phases", "leads_confirmed")


def measure(name, rounds, calls):
    """{mode: [seconds per call of each round]} and {mode: {count: total}}."""
    from benchmarks.common import make_inputs
    from compare_lib.contestants import gru_fast_callable
    from gru_fast import _core

    seq_len, batch, inputs, hidden, pass_ = SHAPES[name]
    call = gru_fast_callable(make_inputs((seq_len, batch, inputs, hidden), "float32"),
                             True, pass_)
    times = {mode: [] for mode in MODES}
    counts = {mode: dict.fromkeys(COUNTS, 0) for mode in MODES}
    try:
        for _ in range(rounds):
            for mode, (forced, confirm) in MODES.items():
                _core._force_threads(forced)
                _core._set_confirm_lead(confirm)
                call()
                before = _core._thread_stats()
                start = time.perf_counter()
                for _ in range(calls):
                    call()
                times[mode].append((time.perf_counter() - start) / calls)
                after = _core._thread_stats()
                for key in COUNTS:
                    counts[mode][key] += after[key] - before[key]
    finally:
        _core._force_threads(None)
        _core._set_confirm_lead(True)
    return times, counts


def paired(times, mode, other):
    """Median over rounds of times[mode] / times[other]."""
    return statistics.median(a / b for a, b in zip(times[mode], times[other]))


def serial_percent(count):
    phases = count["serial_phases"] + count["threaded_phases"]
    return 100 * count["serial_phases"] / phases if phases else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="medium_fb,small_fb,medium,small,stream",
                        help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--calls", type=int, default=4)
    args = parser.parse_args(argv)
    import gru_fast
    print(f"gru_fast from {Path(gru_fast.__file__).parent}; {args.rounds} rounds of "
          f"{args.calls} calls per mode")
    print(f"{'shape':<10} {'on/thr':>7} {'off/thr':>8} {'on/off':>7} {'on ms':>8} "
          f"{'off ms':>8} {'thr ms':>8} {'serial% on':>11} {'off':>5} {'confirmed':>10}")
    for name in args.shapes.split(","):
        times, counts = measure(name, args.rounds, args.calls)
        print(f"{name:<10} {paired(times, 'on', 'threads'):>7.3f} "
              f"{paired(times, 'off', 'threads'):>8.3f} {paired(times, 'on', 'off'):>7.3f} "
              + "".join(f"{statistics.median(times[m]) * 1e3:>9.2f}" for m in MODES)
              + f" {serial_percent(counts['on']):>10.1f} {serial_percent(counts['off']):>5.1f}"
              f" {counts['on']['leads_confirmed']:>10}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
