"""compare.py's results as text tables (stdout) and as Markdown (bench/README.md)."""

from .machine import usable_cores
from .targets import count, target_value, within_noise
from .tasks import CONTESTANT_ORDER, PEAK_N, SHAPES, TASKS


def fmt_time(seconds):
    """Seconds in s, ms or us."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n):
    """Bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def table(headers, rows):
    """A plain-text table: the first two columns left-aligned, the others right."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in
              enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


# --------------------------------------------------------------------- text
def print_machine_state(meta, peak, sgemm_samples, threads, log):
    """Other work during the run, contended samples, the sgemm peak."""
    other = meta["background_cores_during_run"]
    if other is not None:
        log(f"other work on the machine during the run: {other:.2f} cores on average"
            + (f" of {usable_cores()} -- timings with {threads} threads are "
               "distorted; rerun on a quiet machine" if other > 0.1 else "") + "\n")
    if meta["samples_total"]:
        log(f"{meta['samples_contended']} of {meta['samples_total']} timed samples ran while "
            f"other work used > 0.25 cores; waited {meta['seconds_waited_for_quiet']:.0f} s "
            "for a quiet machine\n")
    log(f"sgemm peak ({PEAK_N}x{PEAK_N} float32, {threads} threads): "
        f"{peak / 1e9:.1f} GFLOP/s (median of {len(sgemm_samples)}; "
        f"max {2 * PEAK_N ** 3 / min(sgemm_samples) / 1e9:.1f})\n")


def print_speed_tables(results, shape_names, log):
    """One table per task: every contestant's median, GFLOP/s, % peak and speed-ups."""
    log("Each row: median time, GFLOP/s (useful GRU FLOPs: forward 2*T*B*3H*(I+H), "
        "forward+backward 3x), fraction of the sgemm peak,\n'serial' = the share of "
        "gru_fast's phases its pace ran on the calling thread alone (median of the samples),"
        "\nand 'vs X' = time of X / time of this row (> 1: this row is faster than X).\n")
    for task, title, *_ in TASKS:
        names = [c for c in CONTESTANT_ORDER
                 if any(c in results.get(task, {}).get(s, {}) for s in shape_names)]
        rows = []
        for shape_name in shape_names:
            shape_results = results.get(task, {}).get(shape_name, {})
            for name in names:
                if name not in shape_results:
                    continue
                entry = shape_results[name]
                share = entry.get("serial_share")
                rows.append([shape_name, name, fmt_time(entry["median"]),
                             f"{entry['gflops']:.1f}", f"{100 * entry['fraction_of_peak']:.1f}%",
                             "-" if share is None else f"{100 * share:.0f}%"]
                            + [("" if other == name or other not in shape_results else
                                f"{entry['speedup_vs'][other]:.2f}x") for other in names])
        log(f"== {title}")
        log(table(["shape", "contestant", "median", "GFLOP/s", "%peak", "serial"]
                  + [f"vs {n}" for n in names], rows))
        log("")


def print_lengths_table(lengths_rows, log):
    """Spread lengths versus the full-length batch."""
    if not lengths_rows:
        return
    log("== variable lengths: float32 reset_after=True, lengths spread over 1..T "
        "vs the full-length batch")
    log(table(["shape", "pass", "full length", "spread", "ratio", "ideal"],
              [[r["shape"], r["pass"], fmt_time(r["full_median"]),
                fmt_time(r["spread_median"]), f"{r['ratio']:.3f}",
                f"{r['mean_length_fraction']:.3f}"] for r in lengths_rows]))
    log("")


def print_memory_table(memory, log):
    """Extra bytes of forward without a cache, at T, 4T and 8T, and the cache."""
    log("== memory: gru_fast.gru_forward without cache, bytes NumPy allocates beyond "
        "y and h_n (tracemalloc);\n   at 4T and 8T steps (float32) to see whether it "
        "grows with T; and the cache kept for backward")
    log(table(["shape", "dtype/variant", "extra", "extra / (B*H*itemsize)",
               "extra at 4T", "extra at 8T", "growth/step", "cache (fwd+bwd)"],
              [[m["shape"], f"{m['dtype']} ra={int(m['reset_after'])}",
                fmt_bytes(m["extra_bytes"]), f"{m['extra_in_BH']:.1f}",
                fmt_bytes(m["extra_bytes_4T"]) if "extra_bytes_4T" in m else "",
                fmt_bytes(m["extra_bytes_8T"]) if "extra_bytes_8T" in m else "",
                f"{m['growth_per_step']:.0f} B" if "growth_per_step" in m else "",
                fmt_bytes(m["cache_bytes"])] for m in memory]))
    log("")


def print_targets(targets, log):
    """Every target with its status, then the counts."""
    log("== targets (issue 5)")
    for t in targets:
        value = target_value(t)
        if t["ratio"] is not None and t.get("note"):
            value += f"; {t['note']}"
        log(f"  [{t['status']:>12}] {t['target']}, {t['shape']}: {value}")
    met, missed, not_measured, info = count(targets)
    log(f"\n{met} met, {missed} missed, {not_measured} not measured "
        f"(and {info} rows for information)")
    near = [t for t in targets if t["status"] in ("met", "MISSED") and within_noise(t)]
    if near:
        log(f"within noise (the repetitions' interval holds the target): "
            f"{sum(t['status'] == 'MISSED' for t in near)} missed, "
            f"{sum(t['status'] == 'met' for t in near)} met")


# --------------------------------------------------------------------- Markdown
def markdown_command(argv, coretype):
    """The command line that reproduces the run, less where its outputs went."""
    given, kept = list(argv), []
    while given:
        arg = given.pop(0)
        if arg.split("=")[0] in ("--markdown", "--json", "--png"):
            if "=" not in arg and given:
                given.pop(0)
            continue
        kept.append(arg)
    return ((f"OPENBLAS_CORETYPE={coretype} " if coretype is not None else "")
            + " ".join(["python bench/compare.py", *kept]))


def _markdown_header(out, command):
    """Machine, command, peers, BLAS and peak, in one paragraph."""
    meta = out["meta"]
    return (
        f"Measured {meta['date']} at commit `{(meta['commit'] or 'unknown')[:10]}`"
        + (" (plus uncommitted core changes)" if meta["core_modified_since_commit"] else "")
        + f" with `{command}`: {meta['cpu']}, {meta['usable_cores']} cores, "
        f"{meta['threads']} threads for every contestant; Python {meta['python']}, "
        f"NumPy {meta['numpy']}, "
        + ", ".join(f"{name} {version}" for name, version in meta["peers"].items()
                    if name != "reference")
        + "; BLAS " + ", ".join(sorted({f"{b['internal_api']} {b['version']} "
                                        f"({b['architecture']})" for b in meta["blas"]
                                        if b["internal_api"] == "openblas"}))
        + f". sgemm peak ({PEAK_N}x{PEAK_N} float32) {out['sgemm_peak_gflops']:.0f} GFLOP/s. "
        f"Median of {meta['repeats']} interleaved repetitions; other work on the machine "
        f"during the run: {meta['background_cores_during_run'] or 0:.2f} cores."
    )


def _markdown_speed_rows(results, shape_names):
    """One row per (task, shape): gru_fast's time, the peers' ratios, FrozenGRU's."""
    lines = []
    for task, title, *_ in TASKS:
        for shape in shape_names:
            entries = results.get(task, {}).get(shape, {})
            if "gru_fast" not in entries:
                continue
            ours = entries["gru_fast"]
            ratios = [f"{entries[p]['median'] / ours['median']:.2f}x" if p in entries else "-"
                      for p in ("torch", "onnxruntime", "reference")]
            frozen = entries.get("gru_fast_frozen")
            frozen_cells = ["-", "-"] if frozen is None else [
                fmt_time(frozen["median"]),
                f"{entries['onnxruntime']['median'] / frozen['median']:.2f}x"
                if "onnxruntime" in entries else "-"]
            lines.append(f"| {title} | {shape} {tuple(SHAPES[shape])} | "
                         f"{fmt_time(ours['median'])} | " + " | ".join(ratios)
                         + f" | {100 * ours['fraction_of_peak']:.0f}% | "
                         + " | ".join(frozen_cells) + " |")
    return lines


def markdown_report(out, command):
    """The results as Markdown: machine, command, the table of ratios, the targets."""
    lines = [
        _markdown_header(out, command),
        "",
        "Times are medians; `x PyTorch` etc. is the peer's time divided by gru_fast's "
        "(above 1: gru_fast is faster); % peak is gru_fast's useful FLOP rate over the "
        "sgemm peak.",
        "",
        "| task | shape (T, B, I, H) | gru_fast | x PyTorch | x ONNX Runtime | "
        "x NumPy ref. | % peak | FrozenGRU | FrozenGRU x ONNX Runtime |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += _markdown_speed_rows(out["results"], list(out["shapes"]))
    if out["lengths"]:
        lines += ["", "Variable lengths (float32, reset_after=True): lengths spread evenly "
                  "over 1..T versus the full-length batch (ideal: mean length / T).", "",
                  "| shape | pass | full length | spread | ratio | ideal |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['shape']} | {r['pass']} | {fmt_time(r['full_median'])} | "
                  f"{fmt_time(r['spread_median'])} | {r['ratio']:.2f} | "
                  f"{r['mean_length_fraction']:.2f} |" for r in out["lengths"]]
    lines += ["", "Memory of `gru_forward` without a cache: bytes NumPy allocates beyond "
              "`y` and `h_n` (tracemalloc), and the cache `return_cache=True` keeps.", "",
              "| shape | dtype | extra | extra / (B·H·itemsize) | growth per step (4T→8T) "
              "| cache |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {m['shape']} | {m['dtype']} | {fmt_bytes(m['extra_bytes'])} | "
              f"{m['extra_in_BH']:.0f} | "
              + (f"{m['growth_per_step']:.0f} B" if "growth_per_step" in m else "-")
              + f" | {fmt_bytes(m['cache_bytes'])} |"
              for m in out["memory"] if m["reset_after"]]
    lines += ["", "Targets of issue 5:", ""]
    for t in out["targets"]:
        value = target_value(t)
        if t.get("interval") is not None:
            value += f"; {t['note']}"
        mark = {"met": "met", "MISSED": "**missed**"}.get(t["status"], f"({t['status']})")
        lines.append(f"- {mark}: {t['target']}, {t['shape']}: {value}")
    return "\n".join(lines) + "\n"
