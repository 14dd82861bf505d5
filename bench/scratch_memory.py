"""Resident memory around one big forward + backward: what gru_fast keeps afterwards.

    flock /tmp/gru_bench.lock python bench/scratch_memory.py --shape 200 256 512 512

Prints the resident set size (RSS, from /proc/self/statm) before the calls,
after them (their results dropped), and after ``gru_fast.release_memory()``,
with the time of a first and a second identical call (the second reuses
whatever scratch was kept).  Linux only.
"""

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np

import gru_fast

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def resident_bytes():
    """This process' resident set size in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def forward_backward(problem, dy, reset_after):
    """One forward with a cache and its backward; returns the seconds taken."""
    start = time.perf_counter()
    _, _, cache = gru_fast.gru_forward(**problem, reset_after=reset_after, return_cache=True)
    gru_fast.gru_backward(cache, dy)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[200, 256, 512, 512],
                        metavar=("T", "B", "I", "H"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--reset-after", action="store_true")
    args = parser.parse_args()
    seq_len, batch_size, input_size, hidden_size = args.shape
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    scale = 1 / np.sqrt(hidden_size)
    problem = {
        "x": rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype),
        "h0": None,
        "weight_ih": rng.uniform(-scale, scale, (3 * hidden_size, input_size)).astype(dtype),
        "weight_hh": rng.uniform(-scale, scale, (3 * hidden_size, hidden_size)).astype(dtype),
    }
    dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(dtype)
    small = {name: value[:2, :2] if name == "x" else value for name, value in problem.items()}
    forward_backward(small, dy[:2, :2], args.reset_after)  # imports, threads, BLAS warmed up
    gc.collect()
    before = resident_bytes()
    first = forward_backward(problem, dy, args.reset_after)
    gc.collect()
    after = resident_bytes()
    second = forward_backward(problem, dy, args.reset_after)
    gc.collect()
    after_second = resident_bytes()
    gru_fast.release_memory()
    released = resident_bytes()
    print(f"shape (T, B, I, H) = {tuple(args.shape)}, {dtype}, reset_after={args.reset_after}")
    print(f"RSS before {before / MIB:.0f} MiB; after the call {after / MIB:.0f} MiB "
          f"(+{(after - before) / MIB:.0f}); after a second call {after_second / MIB:.0f} MiB "
          f"(+{(after_second - before) / MIB:.0f}); after release_memory() "
          f"{released / MIB:.0f} MiB (+{(released - before) / MIB:.0f})")
    print(f"scratch kept: {gru_fast._workspace.kept_bytes() / MIB:.1f} MiB after release; "
          f"cap {gru_fast._workspace.SCRATCH_KEPT_BYTES / MIB:.0f} MiB per thread")
    print(f"forward+backward: first call {first:.2f} s, second call {second:.2f} s")


if __name__ == "__main__":
    main()
