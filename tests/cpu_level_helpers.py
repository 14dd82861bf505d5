"""Running Python with another CPU level of the core forced (GRU_FAST_CPU_LEVEL)."""

import os
import subprocess
import sys
from pathlib import Path

import gru_fast
from gru_fast import _core

REPO = Path(__file__).resolve().parent.parent
CONFIG = gru_fast.show_config(mode="dicts")


def other_levels():
    """Levels this CPU runs and this build has, except the one in use, wider panels first."""
    levels = [level for level in CONFIG["cpu"]["runnable"]
              if level in CONFIG["cpu"]["built"] and level != _core.CPU_LEVEL]
    return levels


def level_env(level):
    """os.environ with GRU_FAST_CPU_LEVEL=level (None: unset) and the repository importable."""
    env = dict(os.environ)
    env.pop("GRU_FAST_CPU_LEVEL", None)
    if level is not None:
        env["GRU_FAST_CPU_LEVEL"] = level
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def run_python(code, level, *args, timeout=600):
    """Run `python -c code *args` at CPU level `level` (None: chosen at import), in the repo."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=level_env(level),
                          capture_output=True, text=True, timeout=timeout)
