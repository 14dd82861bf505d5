"""Interleaved timing: every contestant of a shape sampled once per repetition."""

import gc
import statistics
import time

from .machine import LoadMonitor, wait_until_quiet


class Contestant:
    """One callable to time, with its samples (seconds per call, one per repetition)."""

    def __init__(self, task, contestant, fn, flops, shape_name, warm=False, thread_stats=None):
        self.task, self.contestant, self.fn, self.warm = task, contestant, fn, warm
        self.flops, self.shape_name = flops, shape_name
        self.number = 1
        self.follows = None  # a Contestant: sampled right after it, for paired ratios
        self.samples = []  # seconds per call, one per repetition
        self.other_load = []  # cores busy with other work during each sample
        # gru_fast's: _core._thread_stats, read around each sample for serial_shares
        self.thread_stats = thread_stats
        self.serial_shares = []  # of the phases its pace ran on the caller alone, per sample
        self.thread_counts = []  # what the threads did in each sample (_thread_stats differences)

    def calibrate(self, min_time):
        """Choose how many calls make one sample of >= min_time.

        The contestant has been called once already (the equal-work check, or here):
        first-call allocations, ORT's first run and torch's lazy init are behind us.
        """
        if not self.warm:
            self.fn()
        once = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            self.fn()
            once = min(once, time.perf_counter() - start)
            if once >= min_time:
                break
        self.number = max(1, int(round(min_time / max(once, 1e-7))))

    def sample(self):
        """Time `number` back-to-back calls (steady state), after one untimed call.

        The untimed call wakes the contestant's worker threads, which went to sleep
        while the others ran (waking them costs milliseconds on a VM), and lets the
        allocator get back the memory the contestant uses (first-touch page faults
        are expensive in this VM).  Every contestant gets it, whatever its speed.
        """
        self.fn()
        monitor = LoadMonitor()
        before = self.thread_stats() if self.thread_stats else None
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(self.number):
                self.fn()
            elapsed = time.perf_counter() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        self.samples.append(elapsed / self.number)
        self.other_load.append(monitor.other_cores())
        if before is not None:
            after = self.thread_stats()
            self.serial_shares.append(serial_share(before, after))
            self.thread_counts.append({name: after[name] - before[name] for name in after})

    @property
    def median(self):
        return statistics.median(self.samples)


def serial_share(before, after):
    """Share of the phases run on the caller alone between two _core._thread_stats, or None."""
    serial = after["serial_phases"] - before["serial_phases"]
    threaded = after["threaded_phases"] - before["threaded_phases"]
    return serial / (serial + threaded) if serial + threaded else None


def run_round_robin(contestants, repeats, min_time, pause, max_wait, log):
    """Each repetition samples every contestant once, in rotated order.

    `pause` seconds separate two samples, so that the worker threads a library keeps
    spinning after a call (ONNX Runtime, OpenMP, OpenBLAS) have gone idle before the
    next contestant starts; before each repetition we wait (up to `max_wait` s) until
    no other process is using the CPU.  A contestant that `follows` another is
    sampled right after it in every repetition, so that the ratio of the two
    samples of one repetition compares them under the same machine conditions.
    Returns the seconds waited for a quiet machine.
    """
    for contestant in contestants:
        contestant.calibrate(min_time)
        time.sleep(pause)
    leaders = [c for c in contestants if c.follows is None]
    waited = 0.0
    for rep in range(repeats):
        waited += wait_until_quiet(max_wait)
        start = rep % len(leaders)
        for leader in leaders[start:] + leaders[:start]:
            for contestant in [leader] + [c for c in contestants if c.follows is leader]:
                time.sleep(pause)
                contestant.sample()
        log(".", end="")
    return waited
