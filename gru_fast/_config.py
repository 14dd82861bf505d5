"""`show_config`: which build of the core runs here, and with what BLAS and threads."""

import importlib.util
import json
import platform

from . import _caches, _core, _cpu

__all__ = ["show_config"]


def _blas_info():
    """The BLAS libraries loaded in this process (threadpoolctl), else SciPy's build record."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so that threadpoolctl sees it)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import scipy

        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [{"source": "scipy.show_config (threadpoolctl not installed)", **blas}]
    return [{"source": "threadpoolctl", **entry} for entry in threadpool_info()
            if entry.get("user_api") == "blas"]


def _built_levels():
    """The CPU levels this installation has a core for, best first (without importing them)."""
    return [level for level in _cpu.LEVELS
            if importlib.util.find_spec(f"{__package__}._core_{level}") is not None]


def show_config(mode="stdout"):
    """Show how gru_fast runs on this machine: CPU level, panel width, threads, BLAS.

    The compiled core is built once per CPU level (baseline, AVX2+FMA,
    AVX-512 on x86-64; the baseline elsewhere) and the best level the CPU
    runs is chosen at import, unless the environment variable
    ``GRU_FAST_CPU_LEVEL`` forces one.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        "stdout" prints the configuration as JSON; "dicts" returns it.

    Returns
    -------
    dict or None
        With mode="dicts": ``{"gru_fast": {...}, "cpu": {...}, "threads": {...},
        "blas": [...]}``; "cpu" has ``level`` (the core in use), ``forced``,
        ``runnable`` (the levels this CPU can run), ``built`` (the levels this
        installation has), ``panel_width`` (columns per packed weight
        panel), ``level2_cache_bytes`` (one core's L2, read from the machine)
        and ``kernel_level2_budget`` (the bytes of an operand the packed
        kernel keeps in it, half); "threads" has ``openmp`` (whether the build has OpenMP, whose
        setting -- OMP_NUM_THREADS, threadpoolctl -- gives the core's default
        thread count; without it the count is the CPUs online) and
        ``max_threads``, that count.

    Raises
    ------
    ValueError
        For another mode.

    Examples
    --------
    >>> import gru_fast
    >>> gru_fast.show_config(mode="dicts")["cpu"]["panel_width"] in (16, 32)
    True
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    from . import __version__

    openmp = _cpu.openmp_version()
    config = {
        "gru_fast": {"version": __version__, "core": _core.__name__},
        "cpu": {
            "machine": platform.machine(),
            "level": _core.CPU_LEVEL,
            "forced": _core.FORCED,
            "runnable": list(_cpu.runnable_levels()),
            "built": _built_levels(),
            "panel_width": int(_core.PANEL_WIDTH),
            "level2_cache_bytes": _caches.level2_cache_bytes(),
            "kernel_level2_budget": int(_core.level2_budget()),
        },
        "threads": {
            "openmp": bool(openmp),
            "openmp_version": openmp or None,
            "max_threads": int(_core.max_threads()),
        },
        "blas": _blas_info(),
    }
    if mode == "dicts":
        return config
    print(json.dumps(config, indent=2, default=str))
    return None
