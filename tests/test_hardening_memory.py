"""Scratch kept between calls is capped, and gru_fast.release_memory() frees it (by RSS).

Each measurement runs in a fresh child process: a forward and backward whose
scratch is about 230 MB, then the resident set size once the results are
dropped.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gru_fast

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20

CHILD = textwrap.dedent("""
    import gc, json, os, sys
    import numpy as np
    import gru_fast
    from gru_fast import _workspace

    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def forward_backward(seq_len, batch_size, size):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((seq_len, batch_size, size)).astype(np.float32)
        weights = rng.uniform(-0.1, 0.1, (2, 3 * size, size)).astype(np.float32)
        y, _, cache = gru_fast.gru_forward(x, None, weights[0], weights[1],
                                           reset_after=True, return_cache=True)
        gru_fast.gru_backward(cache, np.ones_like(y))

    _workspace.SCRATCH_KEPT_BYTES = _workspace.RECYCLED_KEPT_BYTES = float(sys.argv[1])
    forward_backward(2, 2, 64)  # imports, BLAS and OpenMP threads started
    gc.collect()
    before = resident()
    # N = 300,000 (step, row) pairs, H = I = 64: ~230 MB of backward scratch
    # (gate gradients N x 3H, float32).
    forward_backward(600, 500, 64)
    gc.collect()
    after = resident()
    kept = _workspace.kept_bytes()
    gru_fast.release_memory()
    gc.collect()
    print(json.dumps({"before": before, "after": after, "kept": kept,
                      "released": resident(), "kept_released": _workspace.kept_bytes()}))
""")


def measure(cap_bytes):
    result = subprocess.run([sys.executable, "-c", CHILD, str(cap_bytes)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(),
                                reason="reads the resident set size from /proc")


def test_scratch_of_a_big_call_is_given_back():
    """With caps of 64 MiB (the default's floor), ~230 MB of scratch mostly goes back."""
    cap = 64 * MIB
    memory = measure(cap)
    assert memory["kept"] <= cap
    grown = (memory["after"] - memory["before"]) / MIB
    assert grown < 128, f"RSS grew by {grown:.0f} MiB and stayed"


@pytest.mark.parametrize("memory_gib, cap_mib", [(2, 64), (8, 64), (24, 192), (64, 256),
                                                  (1024, 256), (0, 64)])
def test_kept_bytes_follow_the_machines_memory(monkeypatch, memory_gib, cap_mib):
    """1/128 of the memory, within 64 and 256 MiB; 0 (unknown) gives the floor."""
    from gru_fast import _workspace
    monkeypatch.setattr(_workspace, "_memory_bytes", lambda: memory_gib * 2**30)
    assert _workspace.kept_bytes_cap() == cap_mib * MIB


def test_memory_bytes_is_this_machines():
    from gru_fast import _workspace
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])  # MemTotal
    assert 0 < _workspace._memory_bytes() <= total_kib * 1024 + 2**20
    assert MIB * 64 <= _workspace.SCRATCH_KEPT_BYTES == _workspace.RECYCLED_KEPT_BYTES <= MIB * 256


def test_release_memory_frees_what_was_kept():
    """Without the cap the big call's scratch stays (so the measurement can see it);
    release_memory() gives it back."""
    memory = measure(float("inf"))
    assert memory["kept"] > 200 * MIB
    assert (memory["after"] - memory["before"]) / MIB > 150
    assert memory["kept_released"] == 0
    released = (memory["released"] - memory["before"]) / MIB
    assert released < 128, f"RSS still {released:.0f} MiB above the start"


def test_release_memory_is_public_and_documented():
    assert "release_memory" in gru_fast.__all__
    assert "Free the memory" in gru_fast.release_memory.__doc__
    gru_fast.release_memory()
    assert gru_fast._workspace.kept_bytes() == 0


def test_scratch_views_follow_their_buffer():
    """A view handed out again is of the buffer kept now: never of one replaced or released."""
    from gru_fast import _workspace
    dtype = np.dtype(np.float64)
    first = _workspace.scratch("test_views", (3, 4), dtype)
    assert _workspace.scratch("test_views", (3, 4), dtype) is first  # ready, not sliced again
    other_shape = _workspace.scratch("test_views", (2, 6), dtype)
    assert other_shape.shape == (2, 6) and np.shares_memory(other_shape, first)
    grown = _workspace.scratch("test_views", (100, 100), dtype)  # a new, larger buffer
    again = _workspace.scratch("test_views", (3, 4), dtype)
    assert np.shares_memory(again, grown) and not np.shares_memory(again, first)
    assert again.flags.c_contiguous and again.ctypes.data % _workspace.ALIGNMENT == 0
    gru_fast.release_memory()
    after_release = _workspace.scratch("test_views", (3, 4), dtype)
    assert not np.shares_memory(after_release, grown)
    for index in range(2 * _workspace.MAX_KEPT_VIEWS):  # many shapes: the views stay few
        _workspace.scratch("test_views", (index + 1,), dtype)
    assert len(_workspace._this_threads_pool().views) <= _workspace.MAX_KEPT_VIEWS
    gru_fast.release_memory()


def test_scratch_groups_follow_their_buffers(monkeypatch):
    """A group handed out again holds the buffers kept now; a temporary is never cached."""
    from gru_fast import _workspace
    dtype = np.dtype(np.float32)
    specs = (("test_group_a", (2, 3)), ("test_group_b", (5,)))
    first = _workspace.scratch_group(specs, dtype)
    assert [view.shape for view in first] == [(2, 3), (5,)]
    assert not np.shares_memory(first[0], first[1])
    assert _workspace.scratch_group(specs, dtype) is first  # one lookup
    assert np.shares_memory(_workspace.scratch("test_group_a", (2, 3), dtype), first[0])
    grown = _workspace.scratch("test_group_b", (1000,), dtype)  # b's buffer replaced
    again = _workspace.scratch_group(specs, dtype)
    assert again is not first
    assert np.shares_memory(again[1], grown) and not np.shares_memory(again[1], first[1])
    assert np.shares_memory(again[0], first[0])  # a's buffer stayed
    gru_fast.release_memory()
    released = _workspace.scratch_group(specs, dtype)
    assert not any(np.shares_memory(new, old) for new, old in zip(released, again))
    # over the kept cap the buffer is a temporary: a fresh one at every call
    monkeypatch.setattr(_workspace, "SCRATCH_KEPT_BYTES", 0)
    big = (("test_group_big", (64,)),)
    one, two = _workspace.scratch_group(big, dtype), _workspace.scratch_group(big, dtype)
    assert not np.shares_memory(one[0], two[0])
    gru_fast.release_memory()
