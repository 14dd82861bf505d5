"""Peak memory of GRU.forward with and without return_sequences (issue 15).

Each case runs in a fresh child process (spawn) so that no scratch or freed
pages of another case count; the child reports tracemalloc's peak (NumPy's
allocations are traced) and the growth of its peak RSS (ru_maxrss) over the
call.  Run:  python bench/lean_memory.py [B T I H]
"""

import multiprocessing
import resource
import sys
import tracemalloc

import numpy as np


def _measure(shape, return_sequences, with_lengths, queue):
    import gru_fast

    batch, seq_len, input_size, hidden = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((seq_len, batch, input_size), dtype=np.float32)
    lengths = rng.integers(1, seq_len + 1, batch) if with_lengths else None
    gru = gru_fast.GRU(input_size, hidden, reset_after=True, seed=0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    _, h_n = gru(x, lengths=lengths, return_sequences=return_sequences)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    queue.put((peak / 2**20, rss_growth / 2**10, x.nbytes / 2**20, h_n.nbytes / 2**20))


def main():
    shape = tuple(int(v) for v in sys.argv[1:5]) or (20000, 100, 16, 64)
    context = multiprocessing.get_context("spawn")
    print(f"B, T, I, H = {shape}, float32, reset_after=True")
    print(f"{'case':<34}{'tracemalloc peak':>18}{'peak RSS growth':>18}")
    for with_lengths in (False, True):
        for return_sequences in (True, False):
            queue = context.Queue()
            child = context.Process(target=_measure,
                                    args=(shape, return_sequences, with_lengths, queue))
            child.start()
            peak, rss, x_mb, h_mb = queue.get()
            child.join()
            case = f"return_sequences={return_sequences}" + (", lengths" if with_lengths else "")
            print(f"{case:<34}{peak:>15.1f} MB{rss:>15.1f} MB")
    print(f"(input x: {x_mb:.1f} MB, h_n: {h_mb:.2f} MB)")


if __name__ == "__main__":
    main()
