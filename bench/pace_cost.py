#!/usr/bin/env python
"""What the pace (src/_parallel.h, gf_pace_*) costs against fixed thread choices, in-process.

For each shape, one process alternates, call by call, the pace's own choice with
every phase forced onto the workers (``_core._force_threads(True)``) and every phase
forced serial (``_force_threads(False)``), in rounds of ``--calls`` calls of each,
and reports the medians over rounds of the per-round time ratios pace / forced
threads and pace / serial, plus the share of the pace's phases that ran serially.
Ratios of neighbouring calls survive a host whose speed drifts; a ratio above 1 is
what the pace's trials and its serial spells after late workers cost where threads
win (or, pace / serial, where they lose).  With ``--confirm-ab`` a fourth mode, the pace
without measuring threads again when slow blocks take their lead
(``_core._set_confirm_lead(False)``), is timed too, and the ratio pace / that mode
reported (below 1: the rule pays), with its serial share and the leads confirmed.

    python bench/pace_cost.py [--shapes large,medium,small] [--rounds 15] [--calls 4] [--confirm-ab]
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
# mode name -> (_force_threads, _set_confirm_lead)
MODES = {"pace": (None, True), "threads": (True, True), "serial": (False, True)}
UNCONFIRMED = {"unconfirmed": (None, False)}


def measure(name, rounds, calls, modes=MODES):
    """Per-round medians of pace/each other mode, and each paced mode's serial share."""
    from benchmarks.common import make_inputs
    from compare_lib.contestants import gru_fast_callable
    from gru_fast import _core as core  # the chosen level's module itself

    seq_len, batch, inputs, hidden, reset_after, pass_ = SHAPES[name]
    call = gru_fast_callable(make_inputs((seq_len, batch, inputs, hidden), "float32"),
                             reset_after, pass_)

    def timed(mode):
        forced, confirm = modes[mode]
        core._force_threads(forced)
        core._set_confirm_lead(confirm)
        try:
            call()  # the call before sets the workers' state alike for each mode
            start = time.perf_counter()
            for _ in range(calls):
                call()
            return (time.perf_counter() - start) / calls
        finally:
            core._force_threads(None)
            core._set_confirm_lead(True)

    for mode in modes:
        timed(mode)
    times = {mode: [] for mode in modes}
    counts = {mode: dict.fromkeys(("serial_phases", "threaded_phases", "late_workers",
                                   "leads_confirmed"), 0) for mode in modes}
    for round_ in range(rounds):
        order = list(modes) if round_ % 2 == 0 else list(modes)[::-1]
        for mode in order:
            before = core._thread_stats()
            times[mode].append(timed(mode))
            after = core._thread_stats()
            for key in counts[mode]:
                counts[mode][key] += after[key] - before[key]
    row = {f"{mode}_ms": statistics.median(times[mode]) * 1e3 for mode in modes}
    row.update({f"pace_over_{mode}": statistics.median(p / o for p, o in zip(times["pace"],
                                                                           times[mode]))
                for mode in modes if mode != "pace"})
    row.update({f"{mode}_serial_share": counts[mode]["serial_phases"]
                / max(1, counts[mode]["serial_phases"] + counts[mode]["threaded_phases"])
                for mode in modes})
    row["late_per_call"] = counts["pace"]["late_workers"] / (rounds * calls)
    row["leads_confirmed"] = counts["pace"]["leads_confirmed"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="large,large_classic,medium,small,wide_recurrent")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--confirm-ab", action="store_true",
                        help="also time the pace without confirming lost thread leads")
    args = parser.parse_args()
    modes = {**MODES, **UNCONFIRMED} if args.confirm_ab else MODES
    import gru_fast
    print(f"gru_fast from {Path(gru_fast.__file__).parent}")
    print(f"{'shape':16s} {'pace ms':>8s} {'threads':>8s} {'serial':>8s} "
          f"{'pace/thr':>9s} {'pace/ser':>9s} {'serial %':>9s} {'late/call':>9s}"
          + (f" {'pace/uncf':>9s} {'uncf ser%':>9s} {'confirmed':>9s}" if args.confirm_ab
             else ""))
    for name in args.shapes.split(","):
        row = measure(name, args.rounds, args.calls, modes)
        print(f"{name:16s} {row['pace_ms']:8.2f} {row['threads_ms']:8.2f} {row['serial_ms']:8.2f} "
              f"{row['pace_over_threads']:9.3f} {row['pace_over_serial']:9.3f} "
              f"{100 * row['pace_serial_share']:8.1f}% {row['late_per_call']:9.2f}"
              + (f" {row['pace_over_unconfirmed']:9.3f} "
                 f"{100 * row['unconfirmed_serial_share']:8.1f}% {row['leads_confirmed']:9d}"
                 if args.confirm_ab else ""), flush=True)


if __name__ == "__main__":
    main()
