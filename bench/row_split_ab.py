"""Row pieces against hidden-unit pieces, interleaved in one process (bench/README.md, "Row pieces").

For each shape and dtype: forward (with a cache) and backward, once with the rule's
split (`_core.row_split`) and once with hidden pieces forced (`_core._set_row_split`),
alternating, the pace choosing threads as usual.  Prints the median time ratios
rows/hidden (below 1: rows faster) and the hidden split's median time.  Where the rule
says hidden units anyway, the ratio is ~1 by construction.

    python bench/row_split_ab.py [--repeats 21]
"""

import argparse

import numpy as np

import gru_fast
from gru_fast import _core

SHAPES = {  # (T, B, I, H)
    "small": (100, 8, 64, 128),
    "medium": (100, 32, 128, 256),
    "train T=20": (20, 32, 1, 128),
    "train T=100": (100, 32, 1, 128),
    "B=16 H=64": (100, 16, 16, 64),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    import time

    rng = np.random.default_rng(0)
    print("shape        dtype    forward rows/hidden (hidden ms)   backward rows/hidden (hidden ms)")
    for name, (T, B, I, H) in SHAPES.items():
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((T, B, I)).astype(dtype)
            weight_ih = rng.uniform(-0.1, 0.1, (3 * H, I)).astype(dtype)
            weight_hh = rng.uniform(-0.1, 0.1, (3 * H, H)).astype(dtype)
            bias = np.zeros(3 * H, dtype)
            dh_n = np.ones((B, H), dtype)
            times = {}
            try:
                for _ in range(args.repeats):
                    for mode in (None, False):  # the rule, hidden pieces
                        _core._set_row_split(mode)
                        start = time.perf_counter()
                        _, _, cache = gru_fast.gru_forward(x, None, weight_ih, weight_hh, bias,
                                                           bias, reset_after=True,
                                                           return_cache=True)
                        middle = time.perf_counter()
                        gru_fast.gru_backward(cache, None, dh_n, input_grad=False)
                        end = time.perf_counter()
                        times.setdefault((mode, "forward"), []).append(middle - start)
                        times.setdefault((mode, "backward"), []).append(end - middle)
            finally:
                _core._set_row_split(None)
            med = {key: float(np.median(value)) for key, value in times.items()}
            print(f"{name:12s} {np.dtype(dtype).name:8s}"
                  f" {med[(None, 'forward')] / med[(False, 'forward')]:6.2f}"
                  f" ({med[(False, 'forward')] * 1e3:7.2f})                 "
                  f" {med[(None, 'backward')] / med[(False, 'backward')]:6.2f}"
                  f" ({med[(False, 'backward')] * 1e3:7.2f})")


if __name__ == "__main__":
    main()
