"""Independent core calls at the same time, where that pays.

Some work splits into core calls that share nothing: the two directions of a
bidirectional layer, the blocks of rows of a large inference batch.  Such
calls can run on several Python threads at once (the core releases the GIL
for a whole sequence), each with a share of the core's threads, and then need
no meeting at all, where one call's threads meet at every step.  Whether that
beats running them one after the other, each with all the threads, depends on
the machine, the shape and what else runs, so it is measured: per problem (a
key chosen by the caller) the first calls run once each way, later calls take
the faster way and try the other now and then.

Concurrently, the calls are claimed one at a time by the caller and helper
threads: a helper that has not started yet (its core is busy) simply gets no
call, and the caller waits only for calls a helper has started.  A call gives
the same bits on any number of threads, so the results do not depend on the
way chosen.
"""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import functional

# Calls between two trials of the slower way; a trial that wins resets it.
TRIAL_GAP = (4, 64)

_executor = None
_executor_workers = 0
_executor_lock = threading.Lock()
_seconds = {}  # key -> [sequential, concurrent, calls since the slower way was tried, gap]


def _reset_after_fork():
    global _executor, _executor_workers, _executor_lock
    _executor, _executor_workers = None, 0  # its threads did not survive the fork
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _helpers(n_workers):
    """An executor with at least `n_workers` threads (kept for the next call)."""
    global _executor, _executor_workers
    with _executor_lock:
        if _executor is None or _executor_workers < n_workers:
            if _executor is not None:
                _executor.shutdown(wait=False)
            _executor = ThreadPoolExecutor(max_workers=n_workers,
                                           thread_name_prefix="gru_fast-concurrent")
            _executor_workers = n_workers
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


class _Claims:
    """The calls of one concurrent run, claimed one at a time; results by index."""

    def __init__(self, calls, budget, stop=None):
        self.calls = calls
        self.budget = budget
        self.results = [None] * len(calls)
        self.errors = []
        self.next = 0
        self.running = 0
        # set on an error: the other calls stop too (KeyboardInterrupt, then discarded)
        self.stop = np.zeros(1, dtype=np.int32) if stop is None else stop
        self.changed = threading.Condition()

    def _claim(self):
        with self.changed:
            if self.next >= len(self.calls) or self.errors or self.stop[0]:
                return None
            index = self.next
            self.next += 1
            self.running += 1
            return index

    def run(self):
        """Claim and run calls until none is left (on the caller or a helper)."""
        while (index := self._claim()) is not None:
            try:
                with functional.thread_budget(self.budget, self.stop):
                    self.results[index] = self.calls[index]()
            except BaseException as error:  # noqa: B902  (Ctrl-C too: passed on, re-raised)
                with self.changed:
                    self.errors.append(error)
                self.stop[0] = 1
            finally:
                with self.changed:
                    self.running -= 1
                    self.changed.notify_all()

    def wait_started(self):
        """Until no claimed call is running (calls nobody claimed stay unclaimed)."""
        with self.changed:
            while self.running:
                self.changed.wait()


def run_all(calls, key, work=1.0):
    """[call() for call in calls]: independent core calls, concurrently when that is faster.

    Parameters
    ----------
    calls : sequence of callable
        Without arguments; each makes one core call (or a few) and shares
        nothing with the others.
    key : hashable
        What the timing is remembered by (the shapes, dtype and kind of call).
    work : float, default 1.0
        The amount of work (e.g. rows x steps): timings are compared per unit,
        so calls of different sizes under one key compare fairly.

    Returns
    -------
    list
        The results, in the order of `calls`.
    """
    threads = functional._threads_for_call()
    if threads < 2 or len(calls) < 2:
        return [call() for call in calls]
    concurrently = _choose(key)
    start = time.perf_counter()
    if concurrently:
        runners = min(threads, len(calls))
        caller_stop = functional._stop_flag()
        # A stop request for the caller's calls (it is itself a helper of
        # another run) reaches these calls too; an error among them sets it.
        stop = None if caller_stop is functional._NEVER_STOP else caller_stop
        claims = _Claims(calls, max(1, threads // runners), stop)
        helpers = _helpers(runners - 1)
        for _ in range(runners - 1):
            helpers.submit(claims.run)
        try:
            claims.run()
        finally:
            if caller_stop[0]:
                claims.stop[0] = 1
            claims.wait_started()
        if claims.errors:
            raise claims.errors[0]
        results = claims.results
    else:
        results = [call() for call in calls]
    _record(key, concurrently, (time.perf_counter() - start) / work)
    return results
