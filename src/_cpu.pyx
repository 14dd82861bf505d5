# gru_fast._cpu: which CPU levels of the core this CPU runs, and how the core was built.
#
# Compiled for the baseline instruction set only (setup.py), so that it is
# safe to import on any CPU of the architecture.  See src/_cpu.h.

cdef extern from "_cpu.h" nogil:
    int GF_OPENMP_VERSION
    int GF_X86
    int gf_cpu_runs_avx2()
    int gf_cpu_runs_avx512()


# Every level setup.py knows, best first.
LEVELS = ("avx512", "avx2", "baseline")


def runnable_levels():
    """The levels of LEVELS this CPU can run, best first (always ends with "baseline")."""
    runnable = []
    if gf_cpu_runs_avx512():
        runnable.append("avx512")
    if gf_cpu_runs_avx2():
        runnable.append("avx2")
    runnable.append("baseline")
    return tuple(runnable)


def openmp_version():
    """The OpenMP version the core was built with (as the _OPENMP date, e.g. 201511), 0 without."""
    return GF_OPENMP_VERSION


def is_x86():
    """True when built for x86 (where the avx2 and avx512 levels exist)."""
    return bool(GF_X86)
