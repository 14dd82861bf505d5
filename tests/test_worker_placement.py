"""Where the core's worker threads run: never woken onto the caller's own CPU.

A worker woken by the caller may be put on the caller's CPU although another
is idle (virtual machines); there it runs only when the caller waits, which a
caller running unstarted pieces itself never does.  So the pool keeps its
workers' affinity off the CPU the caller wakes them from (gf_keep_workers_off
in src/_parallel.h).  Each check runs in a subprocess: it pins its own main
thread, and a pinned pytest process would change every later test.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gru_fast

_SCRIPT = textwrap.dedent("""
    import os, time
    import numpy as np
    import gru_fast
    from gru_fast import _core, reference

    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 8, 16)).astype(np.float32)
    w_ih = rng.uniform(-0.1, 0.1, (384, 16)).astype(np.float32)
    w_hh = rng.uniform(-0.1, 0.1, (384, 128)).astype(np.float32)
    want = reference.gru_forward(x, None, w_ih, w_hh, reset_after=True)[0]
    _core._force_threads(True)

    def call():
        y = gru_fast.gru_forward(x, None, w_ih, w_hh, reset_after=True)[0]
        np.testing.assert_allclose(y, want, rtol=2e-4, atol=2e-5)

    call()  # starts the workers, with the process's affinity
    tasks = os.listdir("/proc/self/task")
    workers = [int(t) for t in tasks
               if open(f"/proc/self/task/{t}/comm").read().strip() == "gru_fast"]
    assert workers, ("no thread named gru_fast", _core.max_threads(), tasks)
    allowed = os.sched_getaffinity(0)
    for cpu in sorted(allowed)[:2]:
        os.sched_setaffinity(0, {cpu})  # pid 0: this (the main) thread only
        time.sleep(0.05)  # the workers sleep after 50 us without a phase
        call()  # wakes them from `cpu`
        for worker in workers:
            worker_cpus = os.sched_getaffinity(worker)
            assert cpu not in worker_cpus, (cpu, worker_cpus)
            assert worker_cpus == allowed - {cpu}, (worker_cpus, allowed)
    assert _core._set_keep_off_caller(False) is True
    for worker in workers:
        assert os.sched_getaffinity(worker) == allowed  # given back
    os.sched_setaffinity(0, allowed)
    time.sleep(0.05)
    call()
    for worker in workers:
        assert os.sched_getaffinity(worker) == allowed  # left alone while off
    print("ok", len(workers))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity is Linux's")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs two CPUs to keep a worker off one")
def test_workers_woken_from_a_cpu_are_kept_off_it():
    root = Path(gru_fast.__file__).resolve().parent.parent
    # every CPU (a distributed.LocalCluster earlier in the session leaves
    # OMP_NUM_THREADS=1 in os.environ, for the processes it spawns)
    env = {**os.environ, "PYTHONPATH": str(root),
           "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0)))}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok"), done.stdout
