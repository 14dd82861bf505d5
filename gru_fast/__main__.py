"""`python -m gru_fast`: train a GRU on a real data set; `check` and `bench` subcommands.

``python -m gru_fast`` (the main job) forecasts the yearly sunspot number with
`GRURegressor` and prints its held-out error against persistence and a linear
autoregression, the training time and, where PyTorch is installed, PyTorch's
time for the same model (see `gru_fast._demo`; needs ``pip install ".[demo]"``).

``python -m gru_fast check`` compares forward outputs and every gradient of the
compiled core with the NumPy reference for both GRU variants and both dtypes
(with lengths and reverse); exits 1 if a check fails.

``python -m gru_fast bench`` prints median timings of forward and
forward+backward for the fast path and the reference on a moderate shape.
"""

import argparse
import statistics
import sys
import time

import numpy as np

from . import functional, reference

TOLERANCES = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-9}


def _random_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype):
    scale = 1.0 / np.sqrt(hidden_size)
    arrays = {
        "x": rng.standard_normal((seq_len, batch_size, input_size)),
        "h0": rng.standard_normal((batch_size, hidden_size)) * 0.5,
        "weight_ih": rng.uniform(-scale, scale, (3 * hidden_size, input_size)),
        "weight_hh": rng.uniform(-scale, scale, (3 * hidden_size, hidden_size)),
        "bias_ih": rng.uniform(-scale, scale, 3 * hidden_size),
        "bias_hh": rng.uniform(-scale, scale, 3 * hidden_size),
    }
    return {name: array.astype(dtype) for name, array in arrays.items()}


def _relative_error(actual, expected):
    scale = max(float(np.max(np.abs(expected))), np.finfo(expected.dtype).tiny)
    return float(np.max(np.abs(actual - expected))) / scale


def self_check(rng):
    """Compare fast and reference on every variant; return True if all agree."""
    all_ok = True
    seq_len, batch_size, input_size, hidden_size = 7, 5, 6, 9
    lengths = np.array([7, 0, 3, 7, 1])
    for dtype in (np.float32, np.float64):
        for reset_after in (False, True):
            for reverse in (False, True):
                problem = _random_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype)
                options = dict(reset_after=reset_after, lengths=lengths, reverse=reverse,
                               return_cache=True)
                y, h_n, cache = functional.gru_forward(**problem, **options)
                y_ref, h_n_ref, cache_ref = reference.gru_forward(**problem, **options)
                dy = rng.standard_normal(y.shape).astype(dtype)
                dh_n = rng.standard_normal(h_n.shape).astype(dtype)
                grads = functional.gru_backward(cache, dy, dh_n)
                grads_ref = reference.gru_backward(cache_ref, dy, dh_n)
                errors = {"y": _relative_error(y, y_ref), "h_n": _relative_error(h_n, h_n_ref)}
                errors.update({f"d{name}": _relative_error(grads[name], grads_ref[name])
                               for name in grads})
                worst_name = max(errors, key=errors.get)
                ok = errors[worst_name] <= TOLERANCES[np.dtype(dtype)]
                all_ok &= ok
                print(f"  {np.dtype(dtype).name:7s} reset_after={reset_after!s:5s} "
                      f"reverse={reverse!s:5s}  worst relative error {errors[worst_name]:.1e} "
                      f"({worst_name})  {'ok' if ok else 'FAILED'}")
    return all_ok


def _median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_both(rng, shape, dtype, repeats):
    """Print median forward and forward+backward times of fast and reference."""
    problem = _random_problem(rng, *shape, dtype)
    dy = rng.standard_normal((shape[0], shape[1], shape[3])).astype(dtype)
    print(f"Timings, (T, B, I, H) = {shape}, {np.dtype(dtype).name}, median of {repeats}:")
    for label, module in (("fast", functional), ("reference", reference)):
        def forward():
            module.gru_forward(**problem, reset_after=True)

        def forward_backward():
            _, _, cache = module.gru_forward(**problem, reset_after=True, return_cache=True)
            module.gru_backward(cache, dy)

        forward_time = _median_seconds(forward, repeats)
        train_time = _median_seconds(forward_backward, repeats)
        print(f"  {label:9s}  forward {forward_time * 1e3:9.2f} ms   "
              f"forward+backward {train_time * 1e3:9.2f} ms")


def main(argv=None):
    """Entry point of ``python -m gru_fast [train|check|bench]``."""
    parser = argparse.ArgumentParser(prog="python -m gru_fast",
                                     description=__doc__.splitlines()[0])
    plot_help = "where the main job saves its plot (default gru_fast_sunspots.png; '' for none)"
    parser.add_argument("--plot", default="gru_fast_sunspots.png", help=plot_help)
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="the main job (the default): forecast sunspots")
    train.add_argument("--plot", default=argparse.SUPPRESS, help=plot_help)
    commands.add_parser("check", help="self-check the compiled core against the reference")
    bench = commands.add_parser("bench", help="time the fast path and the reference")
    bench.add_argument("--shape", type=int, nargs=4, default=(100, 32, 128, 256),
                       metavar=("T", "B", "I", "H"), help="timing shape (default 100 32 128 256)")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    bench.add_argument("--repeats", type=int, default=5, help="timing runs per measurement")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.command == "check":
        print("Self-check of the compiled core against the NumPy reference:")
        ok = self_check(rng)
        print("Self-check", "passed" if ok else "FAILED")
        return 0 if ok else 1
    if args.command == "bench":
        time_both(rng, tuple(args.shape), np.dtype(args.dtype), args.repeats)
        return 0
    from . import _demo

    _demo.run(plot_path=args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
