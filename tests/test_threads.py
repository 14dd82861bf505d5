"""The core's threads: bitwise the same results for any thread count, no wait for a late worker.

The core splits every phase of a time step into pieces whose boundaries depend
on the shape only (src/_core.pyx, src/_parallel.h); these tests hand every
phase to the workers (``_core._force_threads(True)``) so that pieces really
run on several threads, in an order that changes from run to run.
"""

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import gru_fast
from gru_fast import _core, reference

GRAD_NAMES = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


@pytest.fixture
def set_threads(monkeypatch):
    """A function that makes the next core calls use n threads, every phase on the workers."""
    def set_to(n_threads):
        monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: n_threads)
    _core._force_threads(True)
    yield set_to
    _core._force_threads(None)


def make_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype, bias, lengths):
    scale = 1.0 / np.sqrt(hidden_size)
    problem = dict(
        x=rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype),
        h0=(0.5 * rng.standard_normal((batch_size, hidden_size))).astype(dtype),
        weight_ih=rng.uniform(-scale, scale, (3 * hidden_size, input_size)).astype(dtype),
        weight_hh=rng.uniform(-scale, scale, (3 * hidden_size, hidden_size)).astype(dtype),
    )
    if bias:
        problem["bias_ih"] = rng.uniform(-scale, scale, 3 * hidden_size).astype(dtype)
        problem["bias_hh"] = rng.uniform(-scale, scale, 3 * hidden_size).astype(dtype)
    if lengths:
        problem["lengths"] = rng.integers(0, seq_len + 1, batch_size)
    return problem


def run(problem, reset_after, reverse, dy):
    y, h_n, cache = gru_fast.gru_forward(**problem, reset_after=reset_after, reverse=reverse,
                                         return_cache=True)
    grads = gru_fast.gru_backward(cache, dy, np.ones_like(h_n))
    return y, h_n, grads


# Many small configurations: hidden sizes around the panel width (one piece,
# a piece and a bit, several), batch sizes that hit every tile shape of the
# kernel (1-7 rows take other paths than 8 or more), both variants, both
# dtypes, with and without lengths and bias, both directions.
CONFIGS = [
    # (T, B, I, H)
    (5, 1, 3, 8), (4, 2, 7, 33), (6, 3, 5, 40), (3, 4, 17, 64), (5, 5, 9, 70),
    (4, 6, 40, 96), (3, 7, 11, 100), (4, 8, 6, 128), (3, 9, 33, 65), (2, 13, 70, 130),
    (3, 16, 24, 200), (2, 33, 5, 97), (2, 4, 300, 160), (3, 2, 64, 257),
]


def config_problems(rng, configs, dtype):
    """For each (T, B, I, H) of `configs`: its index, sizes, a problem and a direction,
    with and without bias and lengths, forward and reverse, in turn."""
    for index, sizes in enumerate(configs):
        problem = make_problem(rng, *sizes, dtype, bias=index % 3 != 2, lengths=index % 2 == 1)
        yield index, sizes, problem, index % 4 >= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_one_two_three_threads_give_bitwise_equal_results(set_threads, dtype, reset_after):
    rng = np.random.default_rng(1234 + reset_after)
    for index, sizes, problem, reverse in config_problems(rng, CONFIGS, dtype):
        seq_len, batch_size, input_size, hidden_size = sizes
        dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(dtype)
        results = {}
        for n_threads in (1, 2, 3, 2, 3):  # twice: the pieces land on other threads
            set_threads(n_threads)
            results.setdefault(n_threads, []).append(run(problem, reset_after, reverse, dy))
        y1, h1, g1 = results[1][0]
        for n_threads, runs in results.items():
            for y, h_n, grads in runs:
                where = f"config {index} {(seq_len, batch_size, input_size, hidden_size)}, " \
                        f"{n_threads} threads"
                np.testing.assert_array_equal(y, y1, err_msg=f"y, {where}")
                np.testing.assert_array_equal(h_n, h1, err_msg=f"h_n, {where}")
                for name in GRAD_NAMES:
                    if g1[name] is None:
                        assert grads[name] is None
                    else:
                        np.testing.assert_array_equal(grads[name], g1[name],
                                                      err_msg=f"{name}, {where}")
        # and right, not only consistent
        y_ref, h_ref = reference.gru_forward(**problem, reset_after=reset_after,
                                             reverse=reverse)
        rtol = 2e-4 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(y1, y_ref, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(h1, h_ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("reset_after", [False, True])
def test_runs_of_pieces_give_the_bits_of_single_pieces(set_threads, reset_after):
    """A thread that claims a run of pieces does their work in one call
    (_parallel.h, GF_RUN): forward, backward and every gradient must be the
    bits of one call per piece (policy 0), on 1, 2 and 3 threads.  The hidden
    sizes give pieces of 16 units, whose weight-gradient rows fall in other
    kernel tiles when two pieces run as one product (16 = 6 + 6 + 4 rows at
    the avx2 level, 32 = 5 x 6 + 2): backward must keep them piece by piece."""
    rng = np.random.default_rng(77 + reset_after)
    try:
        for index, (seq_len, batch_size, input_size, hidden_size) in enumerate(
                [(4, 9, 7, 200), (3, 33, 5, 257), (5, 6, 20, 160)]):
            for dtype in (np.float32, np.float64):
                problem = make_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype,
                                       bias=True, lengths=index == 1)
                dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(dtype)
                _core._set_piece_runs(0, 0)
                set_threads(1)
                y0, h0, g0 = run(problem, reset_after, index == 2, dy)
                for policy in (1, 2):
                    _core._set_piece_runs(policy, policy)
                    for n_threads in (1, 2, 3):
                        set_threads(n_threads)
                        y, h_n, grads = run(problem, reset_after, index == 2, dy)
                        where = f"config {index}, {dtype.__name__}, policy {policy}, {n_threads} threads"
                        np.testing.assert_array_equal(y, y0, err_msg=where)
                        np.testing.assert_array_equal(h_n, h0, err_msg=where)
                        for name in GRAD_NAMES:
                            np.testing.assert_array_equal(grads[name], g0[name],
                                                          err_msg=f"{name}, {where}")
    finally:
        _core._set_piece_runs(1, 2)
    with pytest.raises(ValueError, match="_set_piece_runs"):
        _core._set_piece_runs(3, 1)


def test_frozen_gru_is_bitwise_equal_on_any_thread_count(set_threads):
    rng = np.random.default_rng(5)
    problem = make_problem(rng, 7, 5, 12, 150, np.float32, bias=True, lengths=True)
    frozen = gru_fast.FrozenGRU(problem["weight_ih"], problem["weight_hh"],
                                problem["bias_ih"], problem["bias_hh"], reset_after=True)
    outputs = []
    for n_threads in (1, 2, 3):
        set_threads(n_threads)
        outputs.append(frozen(problem["x"], problem["h0"], lengths=problem["lengths"]))
    for y, h_n in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0][0])
        np.testing.assert_array_equal(h_n, outputs[0][1])


@pytest.mark.parametrize("call_spin", [0.0, 0.05])
def test_workers_that_sleep_or_spin_between_phases_give_the_same_bits(set_threads, call_spin):
    """The worker's spin between phases of a call (_set_call_spin): 0 makes it sleep
    after GF_SPIN_NS and be woken at the next phase, 50 ms keeps it spinning through
    the call; both give the one-thread bits, with the pace choosing (trials, spells)."""
    rng = np.random.default_rng(11)
    problem = make_problem(rng, 30, 9, 20, 96, np.float32, bias=True, lengths=True)
    dy = rng.standard_normal((30, 9, 96)).astype(np.float32)
    set_threads(1)
    expected = run(problem, True, False, dy)
    previous = _core._set_call_spin(call_spin)
    try:
        assert _core._set_call_spin(call_spin) == pytest.approx(call_spin)
        set_threads(2)
        _core._force_threads(None)  # the pace decides, phases both ways
        for _ in range(3):
            got = run(problem, True, False, dy)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
            for name in GRAD_NAMES:
                np.testing.assert_array_equal(got[2][name], expected[2][name])
    finally:
        _core._set_call_spin(previous)
        _core._force_threads(True)


def _stall_problem(set_threads, seed, seq_len, batch_size, hidden_size):
    """A float32 problem, its dy and its one-thread result; then 2 threads, the pool's
    worker started (so that it exists before a test stalls it)."""
    rng = np.random.default_rng(seed)
    problem = make_problem(rng, seq_len, batch_size, 16, hidden_size, np.float32, bias=True,
                           lengths=False)
    dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(np.float32)
    set_threads(1)
    expected = run(problem, True, False, dy)
    set_threads(2)
    run(problem, True, False, dy)
    return problem, dy, expected


def _assert_bitwise_equal(got, expected):
    """Outputs and gradients of run(), bit for bit."""
    np.testing.assert_array_equal(got[0], expected[0])
    for name in GRAD_NAMES:
        np.testing.assert_array_equal(got[2][name], expected[2][name])


def test_a_stalled_worker_does_not_hold_up_the_call(set_threads):
    """Worker 1 sleeps STALL seconds before every claim: the caller runs its pieces.

    A design where a step waits for every worker (a barrier per step) would
    take at least seq_len * STALL = 40 s here; the caller must not wait for a
    worker that has not started a piece, so the call takes about its serial
    time.  The bound is loose (a loaded machine) but far below 40 s.
    """
    stall = 0.2
    seq_len = 200
    problem, dy, expected = _stall_problem(set_threads, 9, seq_len, 4, 256)
    _core._set_worker_stall(1, stall)
    try:
        start = time.perf_counter()
        got = run(problem, True, False, dy)
        elapsed = time.perf_counter() - start
    finally:
        _core._set_worker_stall(-1, 0.0)
    assert elapsed < 0.25 * seq_len * stall, f"took {elapsed:.1f} s with a stalled worker"
    _assert_bitwise_equal(got, expected)


def _stalled_mid_piece(problem, dy, stall):
    """run() with worker 1 losing its core for `stall` s inside its first piece of every phase;
    returns the outputs, the seconds taken and what _thread_stats counted meanwhile."""
    # The worker may still sleep out a stall of an earlier test: wait until it takes pieces.
    deadline = time.perf_counter() + 2.0
    while time.perf_counter() < deadline:
        before = _core._thread_stats()["worker_pieces"]
        run(problem, True, False, dy)
        if _core._thread_stats()["worker_pieces"] > before:
            break
    _core._set_worker_stall(1, stall, mid_piece=True)
    try:
        before = _core._thread_stats()
        start = time.perf_counter()
        got = run(problem, True, False, dy)
        elapsed = time.perf_counter() - start
        after = _core._thread_stats()
    finally:
        _core._set_worker_stall(-1, 0.0)
    return got, elapsed, {key: after[key] - before[key] for key in after}


def test_a_worker_late_mid_piece_is_waited_for_and_its_wait_counted(set_threads):
    """A worker that lost its core after claiming a piece: the caller waits for that piece
    (nothing else could finish it), gets the bits of one thread, and the wait is measured
    (late_wait_ns: the pace sizes its serial spells by it).  Steps of ~0.3 ms, so that
    the worker claims pieces before the caller has taken them all."""
    stall = 0.002
    problem, dy, expected = _stall_problem(set_threads, 10, 10, 32, 512)
    got, _, counted = _stalled_mid_piece(problem, dy, stall)
    _assert_bitwise_equal(got, expected)
    assert counted["late_workers"] >= 1
    # each late phase waited about the stall (the caller's own share takes far less)
    assert counted["late_wait_ns"] >= 0.5 * stall * 1e9 * counted["late_workers"]


def test_the_pace_leaves_a_worker_that_keeps_losing_its_core(set_threads):
    """With the pace choosing (not forced), a worker stalled inside every piece it claims
    sends the caller serial for a while after each wait: far fewer phases wait for it
    than when every phase is forced onto the workers, and the bits are one thread's."""
    stall = 0.002
    seq_len = 40
    problem, dy, expected = _stall_problem(set_threads, 11, seq_len, 32, 512)
    for _ in range(3):  # the worker must claim pieces to be late: a busy host may not let it
        _, _, forced = _stalled_mid_piece(problem, dy, stall)
        if forced["late_workers"] >= 2 * seq_len * 0.5:
            break
    _core._force_threads(None)
    run(problem, True, False, dy)
    got, _, paced = _stalled_mid_piece(problem, dy, stall)
    assert forced["late_workers"] >= 2 * seq_len * 0.5  # forward and backward steps
    assert paced["late_workers"] < 0.5 * forced["late_workers"], (paced, forced)
    _assert_bitwise_equal(got, expected)
    # the pace's decision counters: forced threads decide nothing; paced, every late
    # worker was either let pass or sent the caller serial, and a 2 ms wait in phases
    # of ~0.3 ms cannot be let pass every time
    assert forced["late_spells"] == forced["late_passed"] == 0, forced
    assert paced["late_spells"] + paced["late_passed"] == paced["late_workers"], paced
    assert paced["late_spells"] >= 1, paced


def test_concurrent_calls_from_python_threads(set_threads):
    """Only one call at a time gets the workers; the others run on their own thread, same bits."""
    set_threads(2)
    rng = np.random.default_rng(3)
    problem = make_problem(rng, 30, 6, 20, 96, np.float64, bias=True, lengths=True)
    expected = gru_fast.gru_forward(**problem, reset_after=False)[0]
    results = [None] * 6

    def work(slot):
        for _ in range(5):
            results[slot] = gru_fast.gru_forward(**problem, reset_after=False)[0]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


# A forward of several seconds, interrupted by SIGINT sent from a timer
# thread; prints the latency from the signal to the KeyboardInterrupt, then
# checks that a later call still gives the reference's results.
_INTERRUPT_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import gru_fast
    from gru_fast import reference

    which = sys.argv[1]
    if which == "forward ahead":  # the steps serial, the projection ahead on the worker
        from gru_fast import _core
        _core._force_threads(False)
        _core._set_ahead_projection(True)
        which = "forward"
    rng = np.random.default_rng(0)
    T, B, I, H = (20000 if which == "forward" else 6000), 1, 8, 1024
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = rng.uniform(-0.03, 0.03, (3 * H, I)).astype(np.float32)
    w_hh = rng.uniform(-0.03, 0.03, (3 * H, H)).astype(np.float32)
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    if which == "backward":
        y, h_n, cache = gru_fast.gru_forward(x, None, w_ih, w_hh, reset_after=True,
                                             return_cache=True)
    start = time.perf_counter()
    threading.Timer(0.3, interrupt).start()
    try:
        if which == "forward":
            gru_fast.gru_forward(x, None, w_ih, w_hh, reset_after=True)
        else:
            gru_fast.gru_backward(cache, np.ones_like(y))
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - sent[0])
    else:
        print("finished", time.perf_counter() - start)
        sys.exit(0)
    # later calls are fine
    xs = x[:7, :, :]
    got = gru_fast.gru_forward(xs, None, w_ih, w_hh, reset_after=True)[0]
    want = reference.gru_forward(xs, None, w_ih, w_hh, reset_after=True)[0]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    print("later call ok")
""")


@pytest.mark.parametrize("which", ["forward", "backward", "forward ahead"])
def test_ctrl_c_interrupts_a_long_call_within_half_a_second(which, tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(_INTERRUPT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), which], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path),
                          env={**__import__("os").environ,
                               "PYTHONPATH": str(__import__("pathlib").Path(gru_fast.__file__)
                                                 .resolve().parent.parent)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0].startswith("interrupted"), \
        f"the call was not interrupted (too short on this machine?): {done.stdout}"
    latency = float(lines[0].split()[1])
    assert latency < 0.5, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
    assert "later call ok" in done.stdout


def _serial_by_estimates_then_probe(problem, probe, stale):
    """Worker 1 sleeps before every claim while calls of `problem` run, paced: its
    threaded blocks are the caller's work plus the hand-off, so the estimates come to
    prefer serial (no late worker, so no spell).  Then the stall ends, 30 ms pass with
    the staleness bound at `stale` seconds, and one call of `probe` (the same shape,
    one step) runs: whether it handed any phase to the workers."""
    _core._set_worker_stall(1, 0.0003)
    try:
        for _ in range(60):  # until a whole call ran serially
            before = _core._thread_stats()["threaded_phases"]
            gru_fast.gru_forward(**problem, reset_after=True)
            if _core._thread_stats()["threaded_phases"] == before:
                break
    finally:
        _core._set_worker_stall(-1, 0)
    previous = _core._set_pace_stale(stale)
    try:
        time.sleep(0.03)
        before = _core._thread_stats()["threaded_phases"]
        gru_fast.gru_forward(**probe, reset_after=True)
        return _core._thread_stats()["threaded_phases"] > before
    finally:
        _core._set_pace_stale(previous)


def test_the_pace_tries_threads_again_once_its_estimate_is_stale(monkeypatch):
    """A call that starts serial on estimates an earlier disturbance left tries threads
    when they were last measured longer ago than the staleness bound: every probe with
    a 1 ms bound hands phases to the workers; with the rule off most probes stay serial
    (only a trial an earlier call left unfinished starts a call threaded)."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: 2)
    _core._force_threads(None)
    rng = np.random.default_rng(17)
    problem = make_problem(rng, 60, 8, 16, 64, np.float32, bias=True, lengths=False)
    probe = dict(problem, x=problem["x"][:1])
    # One round first, not counted: the pace of this shape starts from what earlier
    # tests left in the process (CI's clang build once had its first probe serial).
    _serial_by_estimates_then_probe(problem, probe, 0.001)
    with_rule = [_serial_by_estimates_then_probe(problem, probe, 0.001) for _ in range(8)]
    without = [_serial_by_estimates_then_probe(problem, probe, 0) for _ in range(8)]
    assert all(with_rule), with_rule
    assert sum(without) <= 4, without


def test_a_trial_of_threads_lost_to_a_stale_serial_estimate_measures_serial_again(
        monkeypatch):
    """While threads lose (worker 1 sleeps before every claim) a call that starts
    serial on old estimates tries threads (the stale rule), loses, and, its serial
    estimate being as old, measures serial again before deciding (serial_remeasured);
    with the staleness rule off neither happens.  Results stay those of the
    reference.  Threads with a sleeping worker lose only by the hand-off (the caller
    runs every piece), so a serial estimate the host's noise inflated lets a trial win
    now and then: up to 8 calls with the rule, until two re-measured."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: 2)
    _core._force_threads(None)
    rng = np.random.default_rng(41)
    problem = make_problem(rng, 60, 8, 16, 64, np.float32, bias=True, lengths=False)
    long_call = make_problem(rng, 400, 8, 16, 64, np.float32, bias=True, lengths=False)
    expected = reference.gru_forward(**long_call, reset_after=True)
    counts = {}
    for stale, attempts in ((0.001, 8), (0, 3)):
        remeasured = []
        while len(remeasured) < attempts and not (stale and sum(remeasured) >= 2):
            _serial_by_estimates_then_probe(problem, dict(problem, x=problem["x"][:1]), 0)
            _core._set_worker_stall(1, 0.0003)
            previous = _core._set_pace_stale(stale)
            try:
                time.sleep(0.03)
                before = _core._thread_stats()["serial_remeasured"]
                y, _ = gru_fast.gru_forward(**long_call, reset_after=True)
                remeasured.append(_core._thread_stats()["serial_remeasured"] - before)
            finally:
                _core._set_pace_stale(previous)
                _core._set_worker_stall(-1, 0)
            np.testing.assert_allclose(y, expected[0], rtol=1e-4, atol=1e-5)
        counts[stale] = remeasured
    assert sum(counts[0.001]) >= 2, counts
    assert counts[0] == [0, 0, 0], counts


def test_a_phase_timed_once_a_call_is_not_tried_serially_right_after_its_first_measure(
        monkeypatch):
    """The projection phase of a chunk of steps is one block of its own pace a call.  Its
    serial mode is measured once (the second call), and threads win by about 2x; the old
    pace then tried serial again two blocks later, a trial of 4 blocks: 4 more calls with
    a serial projection (wide: 27 ms instead of 13.5).  Now that first measure counts as
    a lost trial, so the calls after it run threaded (a few serial phases allowed for
    the host's noise, fewer than the old trial's 4)."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: 2)
    _core._force_threads(None)
    rng = np.random.default_rng(23)
    attempts = []
    # Fresh shapes (their own pace keys) where threads win by ~2x; 64 rows x 1024
    # projected in one phase.  The old pace chose 5 to 6 blocks serial in calls 3-8 at
    # every attempt; a busy host may add some to one attempt, so up to three shapes.
    for hidden_size in (1021, 1019, 1017):
        problem = make_problem(rng, 4, 16, 1024, hidden_size, np.float32, bias=True,
                               lengths=False)
        chosen = []  # blocks run serially by the estimates or a trial (not after a late worker)
        for _ in range(8):
            before = _core._thread_stats()["serial_blocks_chosen"]
            gru_fast.gru_forward(**problem, reset_after=True)
            chosen.append(_core._thread_stats()["serial_blocks_chosen"] - before)
        attempts.append(chosen)
        # the serial measures (the pace chose, not forced), then no early serial trial
        if sum(chosen[:2]) >= 1 and sum(chosen[2:]) < 4:
            break
    assert sum(attempts[-1][:2]) >= 1 and sum(attempts[-1][2:]) < 4, attempts


def _fresh_paces_per_round(input_sizes, rounds=6):
    """Shapes (T = 20, B = 64, H = 256, one per input size) called in turn: per round,
    the paces that found no estimates kept for their key (`fresh_paces`)."""
    rng = np.random.default_rng(31)
    shapes = [make_problem(rng, 20, 64, input_size, 256, np.float32, bias=True, lengths=False)
              for input_size in input_sizes]
    fresh = []
    for _ in range(rounds):
        before = _core._thread_stats()["fresh_paces"]
        for problem in shapes:
            gru_fast.gru_forward(**problem, reset_after=True)
        fresh.append(_core._thread_stats()["fresh_paces"] - before)
    return fresh


def test_shapes_that_take_turns_keep_their_own_pace_estimates(monkeypatch):
    """Two shapes called in turn (as the layers of a network are) keep each their
    paces' estimates between their calls.  The table of estimates used to put a key
    in slot key % 256, which depends on the low 8 bits of B, H and I alone: shapes
    whose sizes differ by multiples of 256 shared a slot and evicted each other, so
    every call started afresh and ran a block serially to measure the serial mode
    again (in the steps' pace and in the projection's).  Counted: paces that found
    nothing kept, after the first round (which finds the shapes new)."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: 2)
    _core._force_threads(None)
    fresh = _fresh_paces_per_round((256, 512))
    assert fresh[0] > 0, fresh  # the shapes' first calls: the count sees them
    assert fresh[1:] == [0] * (len(fresh) - 1), fresh


def test_keys_of_one_set_keep_their_estimates(monkeypatch):
    """Keys that share a set of the table keep their estimates while no more of them
    than its ways take turns: with one set in use, the two shapes' four paces (steps
    and projection of each) all live in it.  With one way per set (a table of
    single slots) every call found its keys evicted."""
    monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: 2)
    _core._force_threads(None)
    previous = _core._set_pace_sets(1)
    try:
        fresh = _fresh_paces_per_round((96, 160))
    finally:
        _core._set_pace_sets(previous)
    assert previous == 256
    assert fresh[0] > 0, fresh
    assert fresh[1:] == [0] * (len(fresh) - 1), fresh
