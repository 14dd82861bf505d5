"""Row tiles on and off, side by side in one process: forward (INPUT_TILES) and backward (WEIGHT_TILES).

For each shape (T, B, I, H) and dtype, alternates calls with the flag at its
rule (None) and off (False), and prints the median time of each and the
median of the per-round ratios off / on (with the quartiles): above 1 means
the tiles pay. ``--pass fwd`` times gru_forward (flag INPUT_TILES), ``bwd``
gru_backward alone after a forward with a cache (flag WEIGHT_TILES).
``--threads`` caps the core's threads (default: its own count).

    python bench/row_tiles_ab.py --pass bwd --shapes 50,64,512,512 100,8,64,128
"""

import argparse
import time

import numpy as np

import gru_fast
from gru_fast import functional


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pass", dest="which", choices=("fwd", "bwd"), default="fwd")
    parser.add_argument("--shapes", nargs="+", default=["50,64,512,512", "25,16,1024,1024",
                                                        "100,32,128,256", "100,8,64,128"])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    flag = "INPUT_TILES" if args.which == "fwd" else "WEIGHT_TILES"
    if args.threads:
        functional.core_threads = lambda: args.threads
    for shape in args.shapes:
        seq_len, batch, inputs, hidden = map(int, shape.split(","))
        for dtype in map(np.dtype, args.dtypes):
            rng = np.random.default_rng(1)
            x = rng.standard_normal((seq_len, batch, inputs)).astype(dtype)
            weight_ih = rng.uniform(-.1, .1, (3 * hidden, inputs)).astype(dtype)
            weight_hh = rng.uniform(-.1, .1, (3 * hidden, hidden)).astype(dtype)
            dy = rng.standard_normal((seq_len, batch, hidden)).astype(dtype)
            times = {False: [], None: []}
            for index in range(args.rounds):
                for value in ((False, None) if index % 2 == 0 else (None, False)):
                    setattr(functional, flag, value)
                    if args.which == "fwd":
                        start = time.perf_counter()
                        gru_fast.gru_forward(x, None, weight_ih, weight_hh, reset_after=True)
                    else:
                        _, _, cache = gru_fast.gru_forward(x, None, weight_ih, weight_hh,
                                                           reset_after=True, return_cache=True)
                        start = time.perf_counter()
                        gru_fast.gru_backward(cache, dy)
                    times[value].append(time.perf_counter() - start)
            setattr(functional, flag, None)
            ratios = np.array(times[False]) / np.array(times[None])
            print(f"{shape} {dtype} {args.which}: off {np.median(times[False]) * 1e3:.2f} ms, "
                  f"rule {np.median(times[None]) * 1e3:.2f} ms, off/rule "
                  f"{np.median(ratios):.3f} (quartiles {np.quantile(ratios, .25):.3f}, "
                  f"{np.quantile(ratios, .75):.3f})", flush=True)


if __name__ == "__main__":
    main()
