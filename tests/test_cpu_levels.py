"""The core is built per CPU level; every level this machine runs passes the fast-path tests.

The suite itself runs on the level chosen at import (the best, or the one
GRU_FAST_CPU_LEVEL forces).  Here the fast-path tests (forward, backward,
frozen inference, activations, the optimizers' one-pass updates: everything
compared to the NumPy reference) run again in a subprocess per other level
the CPU can run, forced through GRU_FAST_CPU_LEVEL.  Tests of input validation, which never reach the
compiled core, are left out there (see NOT_PER_LEVEL).
"""

import os
from pathlib import Path

import pytest

import gru_fast
from gru_fast import _core, _cpu

from cpu_level_helpers import CONFIG, other_levels, run_python

TESTS = Path(__file__).resolve().parent
FAST_PATH_TESTS = ["test_functional.py", "test_frozen.py", "test_activations.py",
                   "test_optim.py", "test_over_rows.py",  # its BLAS rule depends on the level
                   # the kernel's paths, whose row tiles and panels differ per level (the
                   # avx2 level's 3-row double tile once met a bug that avx512's 6 hid)
                   "test_row_tiles.py", "test_row_split.py", "test_forward_blocks.py",
                   "test_ahead_projection.py", "test_narrow_inputs.py",
                   "test_weight_hh_over_rows.py", "test_projection_blas.py",
                   "test_directions.py", "test_streaming.py", "test_recycled_outputs.py",
                   "test_unaligned.py", "test_return_sequences.py",
                   "test_backward_without_dy.py"]
# Left out per level: validation and fork tests (Python only) and the three-thread
# runs (the split of the units over threads depends on the panel width, which
# one and two threads already exercise).
NOT_PER_LEVEL = "not bad and not raise and not forked and not three_threads and not 3_threads"


def test_chosen_level_is_the_best_runnable_or_the_forced_one():
    cpu = CONFIG["cpu"]
    assert cpu["level"] == _core.CPU_LEVEL
    assert _core.__name__ == f"gru_fast._core_{cpu['level']}"
    assert cpu["runnable"][-1] == "baseline" and "baseline" in cpu["built"]
    forced = os.environ.get("GRU_FAST_CPU_LEVEL")
    if forced:
        assert cpu["forced"] and cpu["level"] == forced
    else:
        best = next(level for level in cpu["runnable"] if level in cpu["built"])
        assert not cpu["forced"] and cpu["level"] == best
    assert cpu["panel_width"] == (32 if cpu["level"] == "avx512" else 16)
    if cpu["machine"] in ("x86_64", "AMD64") and _cpu.is_x86():
        assert set(cpu["built"]) == {"baseline", "avx2", "avx512"}


def test_show_config_prints_and_reports_threads_and_blas(capsys):
    assert gru_fast.show_config() is None
    printed = capsys.readouterr().out
    assert f'"level": "{_core.CPU_LEVEL}"' in printed
    threads = CONFIG["threads"]
    assert threads["openmp"] == (threads["openmp_version"] is not None)
    assert threads["max_threads"] >= 1
    assert CONFIG["blas"], "no BLAS reported"
    with pytest.raises(ValueError, match="mode"):
        gru_fast.show_config(mode="json")


@pytest.mark.parametrize("value, message", [
    ("sse9", "not a CPU level"),
    ("", None),  # empty: chosen automatically
])
def test_level_variable_is_checked(value, message):
    result = run_python("import gru_fast; print(gru_fast._core.CPU_LEVEL)", value)
    if message is None:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[-1] == CONFIG["cpu"]["runnable"][0]
    else:
        assert result.returncode != 0
        assert "ImportError" in result.stderr and message in result.stderr


@pytest.mark.parametrize("level", other_levels())
def test_fast_path_tests_pass_on_every_level(level):
    code = ("import sys, pytest\n"
            "from gru_fast import _core\n"
            "assert _core.CPU_LEVEL == sys.argv[1], _core.CPU_LEVEL\n"
            "sys.exit(pytest.main(sys.argv[2:]))\n")
    result = run_python(code, level, level, "-q", "-x", "-p", "no:cacheprovider",
                        "-k", NOT_PER_LEVEL, *[str(TESTS / name) for name in FAST_PATH_TESTS])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
