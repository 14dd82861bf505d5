"""The input projection ahead of serial steps, on and off, side by side in one process.

    python bench/ahead_projection_ab.py [--rounds 20] [--shapes 100,1,64,64 ...]

For each shape (T, B, I, H) and both variants, FrozenGRU float32 forward with the
pace choosing (the default), alternating rounds with `_core._set_ahead_projection`
None (the default: a chunk whose steps run serially is projected ahead by the
workers) and False (the chunk is projected in a phase of its own first).  Each round
times calls in two scenarios: ``warm`` (back to back, median of 30 after 10 untimed)
and ``after numpy`` (each call right after a 512 x 512 float32 ``A @ A``, whose
OpenBLAS workers then spin on the other core; median of 9); the warm calls start 0.3 s
after the last product.  Prints per shape the
medians of each setting, the median of the per-round ratios (ahead / off), and the
phases per call (threaded phases count the projections ahead; worker pieces, the
pieces the workers ran).  The outputs of the two settings are checked bit for bit
first.
"""

import argparse
import statistics
import time

import numpy as np

import gru_fast
from gru_fast import _core

SHAPES = ["100,1,64,64", "100,1,1024,64", "100,2,256,128", "100,4,64,64",
          "100,8,64,128", "60,5,100,200"]


def _frozen(input_size, hidden_size, reset_after):
    params = gru_fast.GRU(input_size, hidden_size, reset_after=reset_after, seed=0).params
    return gru_fast.FrozenGRU(params["weight_ih_l0"], params["weight_hh_l0"],
                              params["bias_ih_l0"], params["bias_hh_l0"],
                              reset_after=reset_after)


def _median_call(fn, calls, before=None):
    times = []
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--shapes", nargs="+", default=SHAPES, help="T,B,I,H each")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((512, 512)).astype(np.float32)

    def numpy_product():
        matrix @ matrix

    print(f"{'shape (T, B, I, H)':<22}{'variant':<9}{'scenario':<13}"
          f"{'ahead us':>10}{'off us':>10}{'ahead/off':>11}  phases per call ahead | off")
    for text in args.shapes:
        seq_len, batch_size, input_size, hidden_size = (int(v) for v in text.split(","))
        x = rng.standard_normal((seq_len, batch_size, input_size)).astype(np.float32)
        for reset_after in (True, False):
            model = _frozen(input_size, hidden_size, reset_after)
            outputs = {}
            for mode in (None, False):
                _core._set_ahead_projection(mode)
                outputs[mode] = model(x)
            for got, expected in zip(outputs[None], outputs[False]):
                np.testing.assert_array_equal(got, expected)
            times = {(mode, scenario): [] for mode in (None, False)
                     for scenario in ("warm", "after numpy")}
            stats = {}
            for round_index in range(args.rounds):
                for mode in ((None, False) if round_index % 2 else (False, None)):
                    _core._set_ahead_projection(mode)
                    time.sleep(0.3)  # NumPy's OpenBLAS workers stop spinning after ~0.1 s
                    for _ in range(10):
                        model(x)
                    before = _core._thread_stats()
                    times[mode, "warm"].append(_median_call(lambda: model(x), 30))
                    after = _core._thread_stats()
                    stats[mode] = {key: (after[key] - before[key]) / 30
                                   for key in ("threaded_phases", "worker_pieces")}
                    times[mode, "after numpy"].append(
                        _median_call(lambda: model(x), 9, before=numpy_product))
            _core._set_ahead_projection(None)
            for scenario in ("warm", "after numpy"):
                ahead, off = times[None, scenario], times[False, scenario]
                ratio = statistics.median(a / b for a, b in zip(ahead, off))
                phases = " | ".join(f"{stats[mode]['threaded_phases']:.1f} threaded, "
                                    f"{stats[mode]['worker_pieces']:.1f} worker pieces"
                                    for mode in (None, False)) if scenario == "warm" else ""
                print(f"{text:<22}{str(reset_after):<9}{scenario:<13}"
                      f"{statistics.median(ahead) * 1e6:>10.1f}{statistics.median(off) * 1e6:>10.1f}"
                      f"{ratio:>11.3f}  {phases}")


if __name__ == "__main__":
    main()
