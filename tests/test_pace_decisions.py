"""The pace's decisions on block times the test chooses (`_core._pace_decisions`).

The pace (gf_pace in src/_parallel.h) times blocks of steps serially or threaded and
runs each block in the mode that measured faster.  `_pace_decisions` feeds a fresh
pace given block lengths on a clock of its own and returns the mode it chose for each
block ('T' threaded, 'S' serial by the estimates, 't'/'s' blocks of a trial), so these
tests check the rules on any machine, quiet or busy, without timing anything.
"""

import numpy as np
import pytest

from gru_fast import _core

SERIAL_NS, THREADED_NS = 200_000, 110_000  # threads 1.8x faster, as at medium
BLOCKS = 600


def block_times(serial_ns=SERIAL_NS, threaded_ns=THREADED_NS, blocks=BLOCKS):
    """(blocks, 2) int64: every block lasts serial_ns serially, threaded_ns threaded."""
    times = np.empty((blocks, 2), np.int64)
    times[:, 0] = serial_ns
    times[:, 1] = threaded_ns
    return times


def decisions(times, confirm):
    """The pace's modes for `times`, with or without the confirmation of a lost lead,
    and how many leads it confirmed."""
    previous = _core._set_confirm_lead(confirm)
    try:
        before = _core._thread_stats()["leads_confirmed"]
        modes = _core._pace_decisions(times)
        return modes, _core._thread_stats()["leads_confirmed"] - before
    finally:
        _core._set_confirm_lead(previous)


def first_serial_trial(modes, after):
    """Index of the first block of a serial trial at or after `after`."""
    return modes.index("ssss", after)


def test_a_steady_pace_measures_both_modes_then_runs_threads():
    modes, confirmed = decisions(block_times(), confirm=True)
    assert modes[:2] == "TS", modes[:20]  # the unknown modes measured, threads first
    assert modes == _core._pace_decisions(block_times())  # no hidden state between runs
    assert confirmed == 0
    # threads lead by 1.8x: the serial mode is only tried now and then, 4 blocks a trial
    assert set(modes[2:]) == {"T", "s"}, modes
    assert modes.count("s") <= 12, modes


def test_a_hiccup_that_takes_the_threads_lead_is_measured_again():
    """Four threaded blocks 3.7x slower (the hypervisor took a core for a millisecond
    or so) soon after a serial trial: the smoothed estimate loses threads their lead.
    They are measured again (4 blocks, the fastest counts) and go on; before, the
    caller ran serially until the next trial of threads, dozens of blocks later."""
    steady, _ = decisions(block_times(), confirm=True)
    hiccup = first_serial_trial(steady, 100) + 20  # well inside the gap to the next trial
    times = block_times()
    times[hiccup:hiccup + 4, 1] = 410_000
    modes, confirmed = decisions(times, confirm=True)
    window = modes[hiccup:hiccup + 100]
    assert confirmed == 1, window
    assert "S" not in window, window
    assert "tttt" in window[:10], window
    assert window[window.index("tttt") + 4:].startswith("TTTTTTTT"), window
    # the same without the confirmation: serial by the estimates until a trial
    unconfirmed, confirmed = decisions(times, confirm=False)
    assert confirmed == 0
    assert unconfirmed[hiccup:hiccup + 100].count("S") >= 10, unconfirmed[hiccup:hiccup + 100]


def test_threads_that_really_lose_still_go_serial():
    """Soon after a serial trial threads start to take 400 us a block (another program
    holds a core): the confirmation measures them again, they lose, and serial goes on,
    threads tried now and then."""
    steady, _ = decisions(block_times(), confirm=True)
    change = first_serial_trial(steady, 100) + 20
    times = block_times()
    times[change:, 1] = 400_000
    for confirm in (True, False):
        modes, confirmed = decisions(times, confirm)
        later = modes[change + 20:]
        assert later.count("S") >= 0.85 * len(later), (confirm, later)
        assert confirmed == (1 if confirm else 0), (confirm, modes[change:change + 40])


def test_threads_come_back_soon_after_a_disturbance_ends():
    """Threads lose for 100 blocks (another library's threads spin on the second core),
    then win again: the trials of threads, whose gap doubled while they lost, find it
    within GF_MAX_GAP (64) blocks plus a trial, and threads run from then on."""
    steady, _ = decisions(block_times(), confirm=True)
    start = first_serial_trial(steady, 100) + 20
    end = start + 100
    times = block_times()
    times[start:end, 1] = 400_000
    modes, _ = decisions(times, confirm=True)
    during = modes[start + 20:end]
    assert during.count("S") >= 0.85 * len(during), during
    back = modes.find("TTTTTTTT", end)
    assert 0 <= back - end <= 64 + 4 + 6, modes[end:end + 100]
    assert "S" not in modes[back:], modes[back:]


def test_a_serial_lead_lost_to_a_hiccup_is_not_confirmed():
    """Serial leads (threads 2x slower) and serial blocks are slowed: threads take the
    lead and run at once (a trial of them for free), with or without the rule."""
    times = block_times(serial_ns=100_000, threaded_ns=200_000)
    times[300:306, 0] = 400_000
    with_rule, confirmed = decisions(times, confirm=True)
    without_rule, _ = decisions(times, confirm=False)
    assert with_rule == without_rule
    assert confirmed == 0
    assert "T" in with_rule[300:320], with_rule[290:340]


@pytest.mark.parametrize("shape", [(0, 2), (5, 3), (4, 1)])
def test_block_times_of_the_wrong_shape_are_refused(shape):
    with pytest.raises(ValueError, match="block_times_ns"):
        _core._pace_decisions(np.zeros(shape, np.int64))
