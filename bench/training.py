#!/usr/bin/env python
"""Training time per epoch: GRURegressor against the same model in PyTorch.

The same model (GRU, reset_after=True, float32, linear head on the final state,
MSE), optimizer (Adam), batch size (32) and data (512 univariate noisy sines of
length T) in both, on the same number of threads (default: every core the
process may use), for hidden sizes 16-128 and lengths 20-200; see
``bench/benchmarks/training_tasks.py``.  Epochs alternate between the two
(so each runs right after the other's calls, the busy case), the median of
``--repeats`` epochs is reported with the ratio PyTorch / gru_fast (above 1:
gru_fast faster).  With ``--torch-one-thread`` PyTorch is also timed on one
thread, which on a machine shared with other work is often its faster setting.

Usage (under the benchmark lock on a shared machine)::

    flock /tmp/gru_bench.lock python bench/training.py
    python bench/training.py --hidden 16,128 --lengths 20,200 --repeats 5 --json out.json
    python bench/training.py --hidden 128 --lengths 100 --breakdown   # where the time goes
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # this checkout's gru_fast (built in place)

from benchmarks.training_tasks import (BATCH_SIZE, HIDDEN_SIZES, N_SAMPLES,  # noqa: E402
                                       SEQ_LENGTHS, gru_fast_epoch, make_data, torch_epoch)
from compare_lib.contestants import sgemm_callable  # noqa: E402
from compare_lib.machine import LoadMonitor, cpu_model, git_state, usable_cores  # noqa: E402
from compare_lib.tasks import PEAK_N  # noqa: E402

TARGET = 3.0


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def sgemm_control(samples=9):
    """Median GFLOP/s of SciPy's sgemm on (PEAK_N, PEAK_N) float32, on the threads BLAS has.

    Printed before and after the epochs: on a virtual machine the host may give the
    VM a fraction of its CPU for minutes (this control at half its usual rate, and
    both contestants' epochs moving by up to 1.7x, unevenly); such a run is not a
    measurement of either library.
    """
    run = sgemm_callable()
    run()
    times = [_seconds(run) for _ in range(samples)]
    return 2 * PEAK_N ** 3 / statistics.median(times) / 1e9


def measure(hidden_size, seq_len, threads, repeats, torch_one_thread, pause=0.0):
    """Median seconds per epoch of each contestant, epochs interleaved.

    `pause` seconds of sleep before each epoch: without it every epoch starts while
    the previous contestant's threads still spin (PyTorch's OpenMP threads spin for
    ~7 ms after its epoch here, and slow the next ~15 ms of gru_fast's), which is
    the busy case; with it, each starts on a quiet machine.
    """
    X, y = make_data(seq_len)
    contestants = {"gru_fast": gru_fast_epoch(hidden_size, X, y)}
    contestants["torch"] = torch_epoch(hidden_size, X, y, threads)
    if torch_one_thread and threads > 1:
        contestants["torch_1_thread"] = torch_epoch(hidden_size, X, y, 1)
    import torch
    samples = {name: [] for name in contestants}
    for repeat in range(repeats):
        names = list(contestants)
        names = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in names:
            # torch's thread count is process-wide: set it before each of its epochs
            torch.set_num_threads(1 if name == "torch_1_thread" else threads)
            if pause:
                time.sleep(pause)
            samples[name].append(_seconds(contestants[name]))
    return {name: statistics.median(times) for name, times in samples.items()}


def breakdown(hidden_size, seq_len, repeats=20):
    """Median ms per minibatch of gru_fast's training step, by part.

    forward (GRU with cache), backward (GRU), and the rest of
    ``GRUNetwork.loss_and_grad`` plus the Adam step and the batch gather.
    """
    import numpy as np

    from gru_fast._sequences import SequenceData
    from gru_fast.network import GRUNetwork
    from gru_fast.optim import Adam

    X, y = make_data(seq_len)
    data = SequenceData(np.ascontiguousarray(X.T[:, :, None]))
    network = GRUNetwork(1, hidden_size, 1, reset_after=True, dtype=np.float32, seed=0)
    optimizer = Adam({"flat": network.flat}, lr=1e-3)
    rows = np.arange(BATCH_SIZE)
    x, _ = data.batch(rows)
    _, h_n, cache = network.gru.forward(x, return_cache=True)
    dh_n = np.ones_like(h_n)

    def forward():
        network.gru.forward(x, return_cache=True)

    def backward():
        network.gru.backward(cache, None, dh_n)

    def whole_step():
        batch, lengths = data.batch(rows)
        _, grad = network.loss_and_grad(network.flat, batch, y[rows, None], lengths)
        optimizer.step({"flat": grad})

    parts = {}
    for name, function in (("forward", forward), ("backward", backward),
                           ("step", whole_step)):
        function()
        parts[name] = 1e3 * statistics.median(_seconds(function) for _ in range(repeats))
    parts["rest"] = parts["step"] - parts["forward"] - parts["backward"]
    return parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default=",".join(map(str, HIDDEN_SIZES)))
    parser.add_argument("--lengths", default=",".join(map(str, SEQ_LENGTHS)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--torch-one-thread", action="store_true")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of sleep before each epoch, so that it does not start "
                             "while the other contestant's threads still spin (default 0: "
                             "they do, the busy case)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print gru_fast's ms per minibatch by part (forward, "
                             "backward, the rest)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install torch==2.13.0")
        return 1
    from threadpoolctl import threadpool_limits

    hidden_sizes = [int(v) for v in args.hidden.split(",")]
    lengths = [int(v) for v in args.lengths.split(",")]
    monitor = LoadMonitor()
    print(f"CPU: {cpu_model()}, {usable_cores()} usable cores; {args.threads} thread(s) for "
          f"both; torch {torch.__version__}; {N_SAMPLES} sequences, batch {BATCH_SIZE}, "
          f"float32, Adam; median of {args.repeats} interleaved epochs"
          + (f", {args.pause} s pause before each" if args.pause else ""))
    header = (f"{'H':>4} {'T':>4}  {'gru_fast ms':>11}  {'torch ms':>9}  {'ratio':>6}")
    if args.torch_one_thread:
        header += f"  {'torch 1-thr ms':>14}  {'ratio':>6}"
    print(header)
    rows = []
    with threadpool_limits(args.threads):
        control_before = sgemm_control()
        for hidden_size in hidden_sizes:
            for seq_len in lengths:
                times = measure(hidden_size, seq_len, args.threads, args.repeats,
                                args.torch_one_thread, args.pause)
                ratio = times["torch"] / times["gru_fast"]
                row = {"hidden_size": hidden_size, "seq_len": seq_len,
                       "seconds_per_epoch": times, "ratio": ratio}
                line = (f"{hidden_size:4d} {seq_len:4d}  {1e3 * times['gru_fast']:11.2f}  "
                        f"{1e3 * times['torch']:9.2f}  {ratio:6.2f}")
                if "torch_1_thread" in times:
                    row["ratio_1_thread"] = times["torch_1_thread"] / times["gru_fast"]
                    line += (f"  {1e3 * times['torch_1_thread']:14.2f}  "
                             f"{row['ratio_1_thread']:6.2f}")
                print(line, flush=True)
                rows.append(row)
        if args.breakdown:
            print(f"gru_fast per minibatch of {BATCH_SIZE} (ms): forward with cache, "
                  f"backward, rest (head, loss, gathering, Adam), whole step")
            for hidden_size in hidden_sizes:
                for seq_len in lengths:
                    parts = breakdown(hidden_size, seq_len)
                    print(f"{hidden_size:4d} {seq_len:4d}  {parts['forward']:8.3f} "
                          f"{parts['backward']:8.3f} {parts['rest']:8.3f} "
                          f"{parts['step']:8.3f}", flush=True)
        control_after = sgemm_control()
    worst = min(rows, key=lambda row: row["ratio"])
    met = sum(row["ratio"] >= TARGET for row in rows)
    load = monitor.other_cores()
    print(f"target >= {TARGET}x: met on {met} of {len(rows)}; lowest ratio "
          f"{worst['ratio']:.2f} (H={worst['hidden_size']}, T={worst['seq_len']})")
    if load is not None:
        print(f"other work on the machine meanwhile: {load:.2f} cores on average")
    print(f"sgemm control ({PEAK_N}^2 float32, {args.threads} thread(s)): "
          f"{control_before:.0f} GFLOP/s before, {control_after:.0f} after (a drop means "
          f"the host took CPU from the VM: rerun)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
             "sgemm_gflops_before": control_before, "sgemm_gflops_after": control_after,
             "git": git_state(HERE.parent), "other_cores_busy": load, "results": rows},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
