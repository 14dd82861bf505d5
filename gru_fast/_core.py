"""The compiled core, in the build for the best CPU level this machine runs.

setup.py compiles the Cython core (src/_core.pyx) once per CPU level, as the
extension modules ``gru_fast._core_baseline``, ``_core_avx2`` and
``_core_avx512`` (the last two on x86-64 only).  Importing this module
imports the best level that the CPU reports it can run (``gru_fast._cpu``,
CPUID and the OS's register state, as NumPy's dispatch does) and puts that
extension module in its place: ``gru_fast._core`` *is* the chosen module, so
``_core.forward_sequence`` and the other entry points cost nothing extra per
call.  The environment variable GRU_FAST_CPU_LEVEL (``baseline``, ``avx2`` or
``avx512``) forces a level, for tests and comparisons; a level the CPU cannot
run is refused with ImportError rather than dying later with SIGILL.

The chosen module carries two attributes set here: ``CPU_LEVEL`` (its level)
and ``FORCED`` (whether GRU_FAST_CPU_LEVEL chose it).  ``PANEL_WIDTH``, the
columns per packed panel, depends on the level (32 with AVX-512, 16 below).
"""

import importlib
import os
import sys

from . import _caches, _cpu

LEVEL_VARIABLE = "GRU_FAST_CPU_LEVEL"


def _import_level(level):
    """The extension module of `level`, or None when this build does not have it."""
    try:
        return importlib.import_module(f"{__package__}._core_{level}")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}._core_{level}":
            raise  # the module exists but something it needs does not
        return None


def _load():
    """Import the level GRU_FAST_CPU_LEVEL names, else the best this CPU runs."""
    runnable = _cpu.runnable_levels()
    forced = os.environ.get(LEVEL_VARIABLE, "").strip().lower()
    if forced:
        if forced not in _cpu.LEVELS:
            raise ImportError(f"{LEVEL_VARIABLE}={forced!r} is not a CPU level of gru_fast; "
                              f"use one of {', '.join(_cpu.LEVELS)} (or unset it)")
        if forced not in runnable:
            raise ImportError(f"{LEVEL_VARIABLE}={forced!r}: this CPU cannot run that level "
                              f"(it runs {', '.join(runnable)}); unset it to choose "
                              f"automatically")
        module = _import_level(forced)
        if module is None:
            raise ImportError(f"{LEVEL_VARIABLE}={forced!r}: this build of gru_fast has no "
                              f"{forced} core (the compiler could not target it)")
        return forced, module, True
    for level in runnable:
        module = _import_level(level)
        if module is not None:
            return level, module, False
    raise ImportError("gru_fast's compiled core is not built: run "
                      "`python setup.py build_ext --inplace` or `pip install .`")


CPU_LEVEL, _module, FORCED = _load()
_module.CPU_LEVEL = CPU_LEVEL
_module.FORCED = FORCED
_module.set_level2_cache(_caches.level2_cache_bytes())  # blocks of the large products
sys.modules[__name__] = _module  # `from . import _core` now gives the extension module
