"""What the memory a thread keeps between calls buys: a forward + backward with two caps.

    flock /tmp/gru_bench.lock python bench/kept_memory_ab.py --shape 50 64 512 512 --dtype float64

The caps (``_workspace.SCRATCH_KEPT_BYTES`` and ``RECYCLED_KEPT_BYTES``, set together)
alternate round by round in one process, each round starting from released memory
(``gru_fast.release_memory()``) and one warm-up call; a round's time is the median of
--calls calls.  Prints the page faults per call under each cap (``ru_minflt``: what
did not fit is faulted in again at every call), the median times and the median of
the per-round ratios (time under the first cap / time under the second).
"""

import argparse
import resource
import statistics
import time

import numpy as np

import gru_fast
from gru_fast import _workspace

MIB = 2**20


def forward_backward(x, h0, weights, dy):
    _, _, cache = gru_fast.gru_forward(x, h0, *weights, reset_after=True, return_cache=True)
    return gru_fast.gru_backward(cache, dy)


def set_caps(cap_bytes):
    _workspace.SCRATCH_KEPT_BYTES = _workspace.RECYCLED_KEPT_BYTES = cap_bytes
    gru_fast.release_memory()


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[50, 64, 512, 512],
                        metavar=("T", "B", "I", "H"))
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--caps-mib", type=int, nargs=2, default=[64, 0],
                        help="the two caps in MiB; 0 is the default of this machine "
                             f"({_workspace.kept_bytes_cap() / MIB:.0f} MiB here)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()

    seq_len, batch, input_size, hidden = args.shape
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((seq_len, batch, input_size)).astype(dtype)
    h0 = rng.standard_normal((batch, hidden)).astype(dtype)
    bound = hidden ** -0.5
    weights = [rng.uniform(-bound, bound, shape).astype(dtype)
               for shape in ((3 * hidden, input_size), (3 * hidden, hidden),
                             (3 * hidden,), (3 * hidden,))]
    dy = rng.standard_normal((seq_len, batch, hidden)).astype(dtype)
    caps = [mib * MIB if mib else _workspace.kept_bytes_cap() for mib in args.caps_mib]
    labels = [f"{cap / MIB:.0f} MiB" for cap in caps]

    for label, cap in zip(labels, caps):
        set_caps(cap)
        forward_backward(x, h0, weights, dy)
        forward_backward(x, h0, weights, dy)
        before = faults()
        for _ in range(3):
            forward_backward(x, h0, weights, dy)
        print(f"cap {label}: {(faults() - before) / 3:.0f} page faults per call, "
              f"{_workspace.kept_bytes() / MIB:.0f} MiB of scratch kept")

    times = {label: [] for label in labels}
    for round_index in range(args.rounds):
        order = list(zip(labels, caps))
        for label, cap in (order if round_index % 2 == 0 else order[::-1]):
            set_caps(cap)
            forward_backward(x, h0, weights, dy)
            samples = []
            for _ in range(args.calls):
                start = time.perf_counter()
                forward_backward(x, h0, weights, dy)
                samples.append(time.perf_counter() - start)
            times[label].append(statistics.median(samples))
    ratios = [a / b for a, b in zip(times[labels[0]], times[labels[1]])]
    print(f"{tuple(args.shape)} {dtype}, forward + backward, {args.rounds} rounds: "
          + ", ".join(f"{label} {statistics.median(values) * 1e3:.1f} ms"
                      for label, values in times.items())
          + f"; {labels[0]} / {labels[1]} median of rounds {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
