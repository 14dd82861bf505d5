"""The optimizers' one-pass updates (src/_optim_kernels.pyx), built for the core's CPU level.

setup.py compiles src/_optim_kernels.pyx once per CPU level, like the core,
as ``gru_fast._optim_kernels_<level>``; importing this module puts the one of
the level ``gru_fast._core`` chose (the best the CPU runs, or the one
GRU_FAST_CPU_LEVEL forces) in its place.  Every level gives the same bits:
the updates are compiled without FMA contraction, and sqrt and division are
exactly rounded at any vector width.
"""

import importlib
import sys

from . import _core

sys.modules[__name__] = importlib.import_module(
    f"{__package__}._optim_kernels_{_core.CPU_LEVEL}")
