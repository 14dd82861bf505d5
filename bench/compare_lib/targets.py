"""The targets of issue 5, judged on compare.py's results.

A target is a dict: ``target`` (what), ``shape``, ``threshold``, ``ratio`` (the measured
value, None when not measured), ``comparison`` (">=" or "<="), ``status`` ("met",
"MISSED", "not measured", or "info: ..." for rows printed beside a judged one).
"""

import numpy as np

from .tasks import MAX_GROWTH_PER_STEP, SHAPES, forward_flops

# Speed-up thresholds: (task, peer, threshold of each shape).
FROZEN_VS_ONNXRUNTIME = {s: 1.3 if s in ("stream", "small") else 1.0 for s in SHAPES}
FWDBWD_F32_VS_TORCH = {s: 2.0 if s in ("stream", "small", "medium") else 1.15 for s in SHAPES}
FWDBWD_F64_VS_TORCH = {s: 1.5 for s in SHAPES}
PEAK_FRACTION = 0.85  # forward float32 on "large", of the sgemm peak
SPREAD_LENGTHS_RATIO = 0.6  # lengths spread over 1..T versus the full-length batch


BOOTSTRAP_RESAMPLES = 2000
INTERVAL = (5, 95)  # percentiles of the resampled ratios


def ratio_interval(numerators, denominators, statistic="ratio of medians", seed=0):
    """The 5th-95th percentile interval of a ratio over resampled repetitions.

    numerators[i] and denominators[i] are samples of one repetition (taken side by
    side, so the host's slow spells hit both): repetitions are drawn with replacement,
    pairs kept together, and each draw gives median(numerators) / median(denominators)
    ("ratio of medians") or the median of the pairs' ratios ("median ratio").  A
    target whose interval holds its threshold is within the repetitions' spread: one
    more run may land on either side.  Returns (low, high), or None for fewer than 3
    repetitions.
    """
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    if num.shape != den.shape or num.size < 3:
        return None
    draws = np.random.default_rng(seed).integers(0, num.size,
                                                 (BOOTSTRAP_RESAMPLES, num.size))
    if statistic == "ratio of medians":
        ratios = np.median(num[draws], axis=1) / np.median(den[draws], axis=1)
    elif statistic == "median ratio":
        ratios = np.median(num[draws] / den[draws], axis=1)
    else:
        raise ValueError(f"ratio_interval: unknown statistic {statistic!r}")
    low, high = np.percentile(ratios, INTERVAL)
    return float(low), float(high)


def within_noise(target):
    """Whether a target's interval (if it has one) holds its threshold."""
    interval = target.get("interval")
    return interval is not None and interval[0] <= target["threshold"] <= interval[1]


def interval_note(interval, threshold):
    """How a target's interval reads beside its value ('' without one)."""
    if interval is None:
        return ""
    low, high = interval
    where = "holds the target: within noise" if low <= threshold <= high else (
        "clear of the target")
    return f"repetitions {low:.2f}-{high:.2f} ({INTERVAL[0]}-{INTERVAL[1]}%, {where})"


def _speedup_targets(results, shape_names, label, task, peer, thresholds,
                     ours_name="gru_fast", judged=True):
    """One target per shape: the peer's median time over ours, at least the threshold."""
    targets = []
    for shape, threshold in thresholds.items():
        entries = results.get(task, {}).get(shape, {})
        ours, theirs = entries.get(ours_name), entries.get(peer)
        if shape not in shape_names or ours is None or theirs is None:
            targets.append(dict(target=label, shape=shape, threshold=threshold,
                                ratio=None, comparison=">=", status="not measured"))
            continue
        ratio = theirs["median"] / ours["median"]
        status = "met" if ratio >= threshold else "MISSED"
        interval = ratio_interval(theirs["samples"], ours["samples"])
        targets.append(dict(target=label, shape=shape, threshold=threshold,
                            ratio=ratio, comparison=">=", interval=interval,
                            note=interval_note(interval, threshold),
                            status=status if judged else f"info: {status.lower()}"))
    return targets


def _peak_target(results, peak, reset_after, task):
    """gru_fast's forward on "large" as a fraction of the sgemm peak."""
    label = f"forward float32 reset_after={reset_after}: fraction of sgemm peak"
    ours = results.get(task, {}).get("large", {}).get("gru_fast")
    if ours is None:
        return dict(target=label, shape="large", threshold=PEAK_FRACTION, ratio=None,
                    comparison=">=", status="not measured")
    fraction = forward_flops(SHAPES["large"]) / ours["median"] / peak
    return dict(target=label, shape="large", threshold=PEAK_FRACTION, ratio=fraction,
                comparison=">=", status="met" if fraction >= PEAK_FRACTION else "MISSED")


def evaluate_targets(results, lengths_rows, peak, shape_names):
    """The speed targets: versus ONNX Runtime and PyTorch, the peak, variable lengths."""
    targets = []
    # Against ONNX Runtime, whose session prepacks the weights once, the target
    # is judged on FrozenGRU (also packed once); gru_forward, which packs on
    # every call, is listed beside it for information.
    for ra, task in ((False, "fwd_f32_ra0"), (True, "fwd_f32_ra1")):
        targets += _speedup_targets(
            results, shape_names, f"forward float32 reset_after={ra}: FrozenGRU vs ONNX "
            f"Runtime (linear_before_reset={int(ra)})", task, "onnxruntime",
            FROZEN_VS_ONNXRUNTIME, ours_name="gru_fast_frozen")
        targets += _speedup_targets(
            results, shape_names, f"forward float32 reset_after={ra}: gru_forward (packs "
            "per call) vs ONNX Runtime", task, "onnxruntime", FROZEN_VS_ONNXRUNTIME,
            judged=False)
    targets += _speedup_targets(results, shape_names,
                                "forward+backward float32 reset_after=True vs PyTorch",
                                "fb_f32_ra1", "torch", FWDBWD_F32_VS_TORCH)
    targets += _speedup_targets(results, shape_names, "forward+backward float64 vs PyTorch",
                                "fb_f64_ra1", "torch", FWDBWD_F64_VS_TORCH)
    for ra, task in ((False, "fwd_f32_ra0"), (True, "fwd_f32_ra1")):
        targets.append(_peak_target(results, peak, ra, task))
    for row in lengths_rows:
        targets.append(dict(
            target=f"{row['pass']} float32, lengths spread over 1..T / full length",
            shape=row["shape"], threshold=SPREAD_LENGTHS_RATIO, ratio=row["ratio"],
            comparison="<=", interval=row.get("interval"),
            note=interval_note(row.get("interval"), SPREAD_LENGTHS_RATIO),
            status="met" if row["ratio"] <= SPREAD_LENGTHS_RATIO else "MISSED"))
    return targets


def memory_targets(memory):
    """Forward without a cache must not grow with T (beyond per-step integers)."""
    targets = []
    for m in memory:
        if "growth_per_step" not in m:
            continue
        seq_len, batch_size = SHAPES[m["shape"]][:2]
        targets.append(dict(
            target=f"memory: forward float32 ra={int(m['reset_after'])} without cache, extra "
                   f"bytes beyond outputs: growth per time step (4T->8T)",
            shape=m["shape"], threshold=MAX_GROWTH_PER_STEP, ratio=m["growth_per_step"],
            comparison="<=", status="MISSED" if m["grows_with_T"] else "met",
            note=f"{m['extra_in_BH']:.0f} x B*H*itemsize extra at T={seq_len}; "
                 f"{m['growth_per_step'] / batch_size:.1f} B per (step, row)"))
    return targets


def count(targets):
    """(met, missed, not measured, for information) among ``targets``."""
    met = sum(t["status"] == "met" for t in targets)
    missed = sum(t["status"] == "MISSED" for t in targets)
    info = sum(t["status"].startswith("info") for t in targets)
    return met, missed, len(targets) - met - missed - info, info


def target_value(target):
    """The measured value of one target and its threshold, as printed and in Markdown."""
    if target["ratio"] is None:
        return "not measured"
    if "peak" in target["target"]:
        return f"{100 * target['ratio']:.1f}% (target >= {100 * target['threshold']:.0f}%)"
    if target["target"].startswith("memory"):
        return f"{target['ratio']:.0f} B/step (target <= {target['threshold']})"
    digits = 3 if "lengths" in target["target"] else 2
    return (f"{target['ratio']:.{digits}f}x "
            f"(target {target['comparison']} {target['threshold']}x)")
