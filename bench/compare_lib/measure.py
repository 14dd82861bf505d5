"""One shape of compare.py: build every contestant, check equal work, time them all."""

import statistics

from benchmarks.common import make_inputs, spread_lengths

from .contestants import (check_close, frozen_callable, gru_fast_callable,
                          onnxruntime_callable, reference_callable, sgemm_callable,
                          torch_callable)
from .targets import ratio_interval
from .timing import Contestant, run_round_robin
from .tasks import PEAK_N, QUICK_NO_REFERENCE, SHAPES, TASKS, task_flops


def task_contestants(problem, task, shape_name, peers, args):
    """Every contestant of one task, each checked against gru_fast's result."""
    key, _title, dtype, reset_after, pass_ = task
    ours = gru_fast_callable(problem, reset_after, pass_)
    want = ours()
    entries = [("gru_fast", ours)]
    if pass_ == "fwd":
        entries.append(("gru_fast_frozen", frozen_callable(problem, reset_after)))
    if "torch" in peers and reset_after:
        entries.append(("torch", torch_callable(problem, pass_)))
    if "onnxruntime" in peers and pass_ == "fwd" and dtype == "float32":
        entries.append(("onnxruntime", onnxruntime_callable(problem, reset_after, args.threads)))
    if "reference" in peers and not (args.quick and shape_name in QUICK_NO_REFERENCE):
        entries.append(("reference", reference_callable(problem, reset_after, pass_)))
    for name, fn in entries[1:]:
        got = fn()
        if pass_ == "fwd":
            check_close(f"{name} {key} {shape_name}", tuple(got[:2]), tuple(want[:2]), dtype)
        else:
            check_close(f"{name} {key} {shape_name}", got, want, dtype)
    flops = task_flops(SHAPES[shape_name], pass_)
    return [Contestant(key, name, fn, flops, shape_name, warm=True,
                       thread_stats=_thread_stats(name)) for name, fn in entries]


def _thread_stats(contestant):
    """gru_fast's _core._thread_stats for gru_fast's contestants (the pace's serial share), else None."""
    if not contestant.startswith("gru_fast"):
        return None
    from gru_fast import _core
    return _core._thread_stats


def _median_share(shares):
    """The median of the samples' serial shares (None: no phase ran), or None."""
    known = [share for share in shares if share is not None]
    return statistics.median(known) if known else None


def spread_lengths_contestants(problem, contestants, shape_name, lengths):
    """gru_fast with lengths spread over 1..T, each sampled right after its full batch."""
    spread = []
    for pass_, task in (("fwd", "fwd_f32_ra1"), ("fwdbwd", "fb_f32_ra1")):
        fn = gru_fast_callable(problem, True, pass_, lengths)
        contestant = Contestant(task, "gru_fast_spread_lengths", fn, None, shape_name)
        contestant.follows = next(c for c in contestants
                                  if c.task == task and c.contestant == "gru_fast")
        spread.append(contestant)
    return spread


def _lengths_row(contestant, shape_name, lengths, seq_len):
    """The spread-lengths result: the median of the per-repetition ratios to full length.

    Each spread sample is taken right after its full-length sample.
    """
    full = contestant.follows
    return {
        "shape": shape_name,
        "task": contestant.task,
        "pass": "forward" if contestant.task.startswith("fwd_") else "forward+backward",
        "full_median": full.median,
        "spread_median": contestant.median,
        "ratio": statistics.median(s / f for s, f in zip(contestant.samples, full.samples)),
        "interval": ratio_interval(contestant.samples, full.samples, "median ratio"),
        "mean_length_fraction": float(lengths.mean() / seq_len),
    }


def measure_shape(shape_name, peers, args, log):
    """Check and time every contestant of one shape, interleaved.

    Returns (results: task -> contestant -> entry, lengths rows, sgemm samples,
    seconds waited for a quiet machine).
    """
    shape = SHAPES[shape_name]
    seq_len, batch_size = shape[:2]
    log(f"{shape_name} {shape}: checking", end="")
    problems = {dtype: make_inputs(shape, dtype) for dtype in ("float32", "float64")}
    contestants = []
    for task in TASKS:
        contestants += task_contestants(problems[task[2]], task, shape_name, peers, args)
    lengths = spread_lengths(seq_len, batch_size) if batch_size > 1 else None
    if lengths is not None:
        contestants += spread_lengths_contestants(problems["float32"], contestants,
                                                  shape_name, lengths)
    peak_contestant = Contestant("sgemm", "sgemm", sgemm_callable(), 2 * PEAK_N ** 3,
                                 shape_name)
    contestants.append(peak_contestant)
    log(" ok; timing", end="")
    waited = run_round_robin(contestants, args.repeats, args.min_time, args.pause,
                             args.max_wait, log)

    results, lengths_rows = {}, []
    for c in contestants:
        if c.task == "sgemm":
            continue
        if c.contestant == "gru_fast_spread_lengths":
            lengths_rows.append(_lengths_row(c, shape_name, lengths, seq_len))
            continue
        results.setdefault(c.task, {})[c.contestant] = dict(
            median=c.median, samples=c.samples, number=c.number,
            other_load=c.other_load, gflops=c.flops / c.median / 1e9,
            serial_share=_median_share(c.serial_shares),
            **({"thread_counts": c.thread_counts} if c.thread_counts else {}))
    return results, lengths_rows, peak_contestant.samples, waited


def add_peak_fractions(results, peak):
    """Every entry's fraction of the sgemm peak and its speed-up over the others."""
    for task_results in results.values():
        for shape_results in task_results.values():
            for entry in shape_results.values():
                entry["fraction_of_peak"] = entry["gflops"] * 1e9 / peak
                entry["speedup_vs"] = {
                    other: shape_results[other]["median"] / entry["median"]
                    for other in shape_results if other is not None}
