"""The packed kernel's rate on one core against OpenBLAS's (NumPy's matmul), one product at a time.

Compiles a small shim over src/_kernel.h (with setup.py's flags of the best
CPU level this machine runs, or of --level) into a temporary directory and times,
alternating in one process on one thread each, C = A @ B three ways:

- ``plain``: packed_gemm, A read in place;
- ``tiles``: pack_row_tiles of all of A first (counted), then packed_gemm_tiled;
- ``blocks``: packed_gemm_packing, A's row tiles packed a block at a time.

Shapes are ``rows:M,K,N`` (A (M, K) row-major, the projection's and dx's
products) or ``t:M,K,N`` (A = G.T for G (K, M) row-major: the weight
gradients' d_gates^T @ rows). Prints GFLOP/s and OpenBLAS's time over ours
(medians of --repeats). Needs a C compiler (cc) and threadpoolctl.

    python bench/kernel_rate.py rows:256,1024,3072 t:1536,3200,64

With ``--against ROOT`` (another checkout, e.g. a ``git worktree`` of an older commit)
the kernel of ROOT/src is compiled too and run alternately with this one on the same
operands: each line then also gives the median of the paired time ratios (this
checkout's over ROOT's, < 1: this one is faster) and whether the two gave the same
bits.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODES = ("plain", "tiles", "blocks")
SHIM = r"""
#include "_kernel.h"
#define T_ float
#define N_(x) gf_##x##_float
#define S_(x) x##_float
#include "shim_body.h"
#undef T_
#undef N_
#undef S_
#define T_ double
#define N_(x) gf_##x##_double
#define S_(x) x##_double
#include "shim_body.h"
void set_level2(long bytes) { gf_set_level2_bytes(bytes); }
long panel(void) { return GF_PANEL; }
"""
SHIM_BODY = r"""
static T_ S_(buffer)[1 << 22];
static T_ S_(tiles)[1 << 24];
void S_(pack_b_transposed)(const T_* w, int n, int k, T_* p) { N_(pack_transposed)(w, k, n, k, p); }
void S_(pack_b)(const T_* w, int n, int k, T_* p) { N_(pack)(w, n, n, k, p); }
/* mode 0 plain, 1 tiles, 2 blocks; lda and a_step describe A */
int S_(run)(int mode, int m, int n, int k, const T_* a, long lda, long a_step, const T_* p, T_* c)
{
    ptrdiff_t stride = (ptrdiff_t)k * GF_PANEL;
    if (mode == 0) {
        N_(packed_gemm)(m, n, k, a, lda, a_step, p, stride, 0, c, n);
    } else if (mode == 1) {
        if ((size_t)m * k > sizeof(S_(tiles)) / sizeof(T_)) return -1;
        N_(pack_row_tiles)(m, k, a, lda, a_step, S_(tiles));
        N_(packed_gemm_tiled)(m, n, k, a, lda, a_step, S_(tiles), p, stride, 0, c, n);
    } else {
        if (N_(packing_values)(m, k) > sizeof(S_(buffer)) / sizeof(T_)) return -1;
        N_(packed_gemm_packing)(m, n, k, a, lda, a_step, S_(buffer), p, stride, 0, c, n);
    }
    return 0;
}
"""


def level_flags(level, root=ROOT):
    """setup.py's compiler flags of a CPU level (its CPU_LEVELS, read without running setup.py)."""
    import ast
    with open(os.path.join(root, "setup.py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CPU_LEVELS":
            return ast.literal_eval(node.value)[level]
    raise RuntimeError("setup.py has no CPU_LEVELS")


def build(directory, dtype, level, root=ROOT):
    """Compile the shim over root/src; its functions for `dtype` (ctypes argument types
    set) and the panel."""
    from gru_fast import _caches
    flags = level_flags(level, root)
    for name, text in (("shim.c", SHIM), ("shim_body.h", SHIM_BODY)):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
    library = os.path.join(directory, "shim.so")
    subprocess.run(["cc", "-O3", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC",
                    *flags, "-I", os.path.join(root, "src"), "-I", directory,
                    os.path.join(directory, "shim.c"), "-o", library], check=True)
    lib = ctypes.CDLL(library)
    suffix = "_float" if dtype == np.float32 else "_double"
    pointer = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    functions = {name: getattr(lib, name + suffix)
                 for name in ("pack_b_transposed", "pack_b", "run")}
    functions["pack_b_transposed"].argtypes = functions["pack_b"].argtypes = [
        pointer, ctypes.c_int, ctypes.c_int, pointer]
    functions["run"].argtypes = [ctypes.c_int] * 4 + [pointer, ctypes.c_long, ctypes.c_long,
                                                      pointer, pointer]
    lib.set_level2.argtypes = [ctypes.c_long]
    lib.set_level2(_caches.level2_cache_bytes())
    return functions, pointer, lib.panel()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shapes", nargs="+", help="rows:M,K,N or t:M,K,N")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--level", help="CPU level to compile for (default: the best this CPU runs)")
    parser.add_argument("--against", metavar="ROOT",
                        help="another checkout whose kernel runs alternately with this one")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype).type
    from gru_fast import _cpu
    level = args.level or _cpu.runnable_levels()[0]
    print(f"kernel compiled for the {level} level, {args.dtype}")
    rng = np.random.default_rng(0)
    tol = 1e-3 if dtype == np.float32 else 1e-9
    with tempfile.TemporaryDirectory() as directory:
        os.mkdir(os.path.join(directory, "this"))
        kernels = {"this": build(os.path.join(directory, "this"), dtype, level)}
        if args.against:
            os.mkdir(os.path.join(directory, "other"))
            kernels["other"] = build(os.path.join(directory, "other"), dtype, level,
                                     args.against)
        for spec in args.shapes:
            _time_shape(spec, kernels, args.repeats, dtype, tol, rng)


def _time_shape(spec, kernels, repeats, dtype, tol, rng):
    """Time every mode of every kernel and OpenBLAS on one shape; print one line."""
    kind, dims = spec.split(":")
    m, k, n = map(int, dims.split(","))
    blas_c = np.zeros((m, n), dtype)
    if kind == "rows":
        a = rng.standard_normal((m, k)).astype(dtype)
        w = rng.standard_normal((n, k)).astype(dtype)
        lda, a_step, expected = k, 1, a @ w.T
        w_t = np.ascontiguousarray(w.T)
        blas = lambda: np.matmul(a, w_t, out=blas_c)  # noqa: E731
    else:
        g = rng.standard_normal((k, m)).astype(dtype)
        x = rng.standard_normal((k, n)).astype(dtype)
        a, lda, a_step, expected = g, 1, m, g.T @ x
        blas = lambda: np.matmul(g.T, x, out=blas_c)  # noqa: E731
    operands = {}
    for name, (lib, pointer, panel) in kernels.items():
        panels = np.zeros(-(-n // panel) * panel * k, dtype)
        if kind == "rows":
            lib["pack_b_transposed"](w.ctypes.data_as(pointer), n, k,
                                     panels.ctypes.data_as(pointer))
        else:
            lib["pack_b"](x.ctypes.data_as(pointer), n, k, panels.ctypes.data_as(pointer))
        operands[name] = (panels, {mode: np.zeros((m, n), dtype) for mode in MODES})
    times = {(name, mode): [] for name in kernels for mode in MODES}
    times["openblas"] = []
    with threadpool_limits(1):
        for repeat in range(repeats):
            for mode_index, mode in enumerate(MODES):
                order = list(kernels) if repeat % 2 == 0 else list(kernels)[::-1]  # either first
                for name in order:
                    lib, pointer, _ = kernels[name]
                    panels, outputs = operands[name]
                    start = time.perf_counter()
                    status = lib["run"](mode_index, m, n, k, a.ctypes.data_as(pointer), lda,
                                        a_step, panels.ctypes.data_as(pointer),
                                        outputs[mode].ctypes.data_as(pointer))
                    times[name, mode].append(time.perf_counter() - start)
                    if status:
                        sys.exit(f"{spec}: too large for the shim's buffers")
                    np.testing.assert_allclose(outputs[mode], expected, rtol=tol, atol=tol * 10)
            start = time.perf_counter()
            blas()
            times["openblas"].append(time.perf_counter() - start)
    gflop = 2 * m * n * k / 1e9
    blas_time = np.median(times["openblas"])
    cells = [f"{mode} {gflop / np.median(times['this', mode]):.1f} GFLOP/s "
             f"({blas_time / np.median(times['this', mode]):.2f})" for mode in MODES]
    line = f"{spec}: " + ", ".join(cells) + f"; openblas {gflop / blas_time:.1f}"
    if "other" in kernels:
        ratios = [f"{mode} {np.median(np.divide(times['this', mode], times['other', mode])):.3f}"
                  for mode in MODES]
        same = all(np.array_equal(operands["this"][1][mode], operands["other"][1][mode])
                   for mode in MODES)
        line += f"; this/other time: {', '.join(ratios)}; same bits: {'yes' if same else 'NO'}"
    print(line, flush=True)


if __name__ == "__main__":
    main()
