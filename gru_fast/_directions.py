"""Both directions of a bidirectional layer at once, where that pays.

The two directions of a layer are independent sequences: run at the same time
(the reverse one on a helper thread; the core releases the GIL for the whole
sequence) they need no meeting at all, where one call's threads meet at every
step.  Whether it pays depends on the machine, the shape and what else runs,
so it is measured: per problem (a key chosen by the caller) the first calls
run once concurrently and once one after the other, later calls take the
faster way and try the other now and then.  Concurrently, each direction gets
half of the core's threads; one after the other, each gets all of them.
"""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from . import functional

# Calls between two trials of the slower way; a trial that wins resets it.
TRIAL_GAP = (4, 64)

_executor = None
_executor_lock = threading.Lock()
_seconds = {}  # key -> [sequential, concurrent, calls since the slower way was tried, gap]


def _reset_after_fork():
    global _executor, _executor_lock
    _executor = None  # its thread did not survive the fork
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _helper():
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gru_fast-direction")
        return _executor


def _choose(key):
    """True to run concurrently this time."""
    record = _seconds.get(key)
    if record is None:
        return True
    sequential, concurrent, since_trial, gap = record
    if sequential is None:
        return False
    if concurrent is None:
        return True
    faster = concurrent < sequential
    if since_trial >= gap:
        record[2] = 0
        return not faster
    record[2] += 1
    return faster


def _record(key, concurrently, seconds):
    record = _seconds.setdefault(key, [None, None, 0, TRIAL_GAP[0]])
    slot = 1 if concurrently else 0
    was_faster = record[0] is not None and record[1] is not None and (
        (record[1] < record[0]) == concurrently)
    record[slot] = seconds if record[slot] is None else 0.5 * (record[slot] + seconds)
    if record[0] is not None and record[1] is not None and record[2] == 0:
        # this was a trial of the slower way: back it off, or come back soon if it won
        now_faster = (record[1] < record[0]) == concurrently
        record[3] = TRIAL_GAP[0] if now_faster and not was_faster else min(TRIAL_GAP[1],
                                                                           2 * record[3])


def run_both(first, second, key):
    """(first(), second()): two independent core calls, concurrently when that is faster.

    Parameters
    ----------
    first, second : callable
        Without arguments; each makes one core call (or a few).
    key : hashable
        What the timing is remembered by (the shapes, dtype and kind of call).

    Returns
    -------
    tuple
        (first(), second()).
    """
    threads = functional.core_threads()
    if threads < 2:
        return first(), second()
    concurrently = _choose(key)
    start = time.perf_counter()
    if concurrently:
        half = max(1, threads // 2)
        stop = np.zeros(1, dtype=np.int32)  # set when the first direction fails (Ctrl-C)

        def second_on_helper():
            with functional.thread_budget(threads - half, stop):
                return second()

        pending = _helper().submit(second_on_helper)
        try:
            with functional.thread_budget(half):
                result_first = first()
        except BaseException:
            stop[0] = 1  # the helper's call stops within a few ms
            wait([pending])
            raise
        result_second = pending.result()  # re-raises the helper's exception
    else:
        result_first, result_second = first(), second()
    _record(key, concurrently, time.perf_counter() - start)
    return result_first, result_second
