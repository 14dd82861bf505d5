#!/usr/bin/env python
"""What a call costs beyond its arithmetic: the core's entry point and the Python around it.

Times, in microseconds per call (medians of --rounds loops of --calls calls):

* core, T = 0:  ``_core.forward_sequence`` on a sequence of no steps, which returns at
  once: the price of taking its 18 arrays and flags;
* core, T = 1:  the same entry point running one step (B = 1, I = H = 64, float32);
* FrozenGRU, T = 1 and T = 100 (B = 1, I = H = 64): the public call, checks included;
* Python around FrozenGRU, T = 1: the public call with the core call replaced by a
  no-op, i.e. the checks, the workspace and the packing.

Compare two checkouts by running it under each (``PYTHONPATH=/path/to/other python
bench/call_overhead.py``), alternating, under the bench lock.
"""

import argparse
import statistics
import time

import numpy as np


def _per_call_us(call, calls):
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def _core_arguments(seq_len, x, weights, hidden_size):
    from gru_fast import _core

    batch, input_size = 1, x.shape[-1]
    padded = _core.padded_to_panels(hidden_size)
    packed_ih = np.zeros(3 * padded * input_size, np.float32)
    packed_hh = np.zeros(3 * padded * hidden_size, np.float32)
    _core.pack_forward_weights(*weights, packed_ih, packed_hh)

    def zeros(*shape):
        return np.zeros(shape, np.float32)
    return (x[:seq_len].reshape(seq_len * batch, input_size),
            np.full(seq_len, batch, np.intp), np.arange(seq_len + 1, dtype=np.intp) * batch,
            np.empty(0, np.intp), np.empty(0, np.intp), None, None, packed_ih, packed_hh,
            zeros(3 * hidden_size), zeros(hidden_size), zeros(batch, hidden_size),
            zeros(batch, hidden_size), zeros(max(seq_len, 1) * batch, hidden_size),
            zeros(batch, 4 * hidden_size), zeros(batch, hidden_size),
            zeros(batch, 3 * hidden_size), zeros(batch, 3 * hidden_size),
            True, False, False, 1, np.zeros(1, np.int32), False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import gru_fast
    from gru_fast import _core, functional

    rng = np.random.default_rng(0)
    size = 64
    x = rng.standard_normal((100, 1, size)).astype(np.float32)
    weights = [rng.uniform(-0.1, 0.1, (3 * size, size)).astype(np.float32) for _ in range(2)]
    frozen = gru_fast.FrozenGRU(*weights, reset_after=True)
    empty = _core_arguments(0, x, weights, size)
    one_step = _core_arguments(1, x, weights, size)
    forward_sequence = _core.forward_sequence

    def python_only():
        functional._core.forward_sequence = lambda *arguments: None
        try:
            frozen(x[:1])
        finally:
            functional._core.forward_sequence = forward_sequence

    cases = {"core, T = 0": lambda: forward_sequence(*empty),
             "core, T = 1": lambda: forward_sequence(*one_step),
             "FrozenGRU, T = 1": lambda: frozen(x[:1]),
             "FrozenGRU, T = 100": lambda: frozen(x),
             "Python around FrozenGRU, T = 1": python_only}
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, call in cases.items():
            calls = args.calls // 20 if name.endswith("T = 100") else args.calls
            call()
            times[name].append(_per_call_us(call, calls))
    print(f"gru_fast {gru_fast.__file__}")
    for name, values in times.items():
        print(f"{name:<32} {statistics.median(values):8.2f} us  "
              f"(rounds {min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
