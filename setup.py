"""Build the compiled core of gru_fast: one portable binary, several CPU levels.

The Cython core (src/_core.pyx: the time loops, the gate loops and the
packed GEMM kernel of src/_kernel.h) is compiled once per CPU level, as the
extension modules gru_fast._core_<level>:

    baseline  the architecture's default instruction set (x86-64: SSE2;
              aarch64 and others: their base vectors, through the kernel's
              generic vector code)
    avx2      x86-64 with AVX2 and FMA (Haswell, Zen 1 and later)
    avx512    x86-64 with AVX-512 F, CD, BW, DQ and VL (Skylake-SP, Zen 4 and later)

and gru_fast/_core.py imports, once, the best one the CPU reports it can run
(src/_cpu.h), or the one GRU_FAST_CPU_LEVEL names.  The whole core is
compiled per level, not the kernel alone: the gate loops (sigmoid and tanh
over B*H values per step) are Cython code in the same translation unit, and
at the x86-64 baseline they run on 4-wide vectors without FMA.  Levels the
compiler cannot target (avx2 and avx512 on aarch64) are left out.

The core's threads are its own (src/_parallel.h, POSIX threads); OpenMP
only gives their default count (OMP_NUM_THREADS, threadpoolctl).  It is used
when the compiler can compile and link it (probed here); without it (Apple's
clang, Debian's clang without libomp-dev) the count is the number of CPUs
online, and gru_fast.show_config() says "openmp": false.

Compiler directives are set once here.  Set GRU_FAST_BOUNDSCHECK=1 at build
time to turn bounds, wraparound and initialisation checks back on
(debugging), and GRU_FAST_SANITIZE=address for an AddressSanitizer build.
CFLAGS reaches every level (e.g. CFLAGS=-march=native for a binary that
only needs to run where it is built).
"""
import os
import shutil
import sysconfig
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
checks = os.environ.get("GRU_FAST_BOUNDSCHECK", "0") == "1"
# GRU_FAST_SANITIZE=address builds the core with AddressSanitizer, to run the tests and
# tests/fuzz_gru.py under it (README, "Hardening": Python needs libasan preloaded).
sanitize = os.environ.get("GRU_FAST_SANITIZE", "")

directives = {
    "language_level": 3,
    "boundscheck": checks,
    "wraparound": checks,
    "initializedcheck": checks,
    "cdivision": True,
    "embedsignature": True,
}

# Compiler flags of each CPU level, best last.  They must match what
# src/_cpu.h checks before gru_fast/_core.py imports a level.
CPU_LEVELS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512cd", "-mavx512bw", "-mavx512dq", "-mavx512vl",
               "-mavx2", "-mfma", "-mprefer-vector-width=512"],
}
# -fno-trapping-math: the gate loops select between values (the activations'
# clamps and saturation, _activations.h), and with trapping math GCC may not
# compute both sides of a select unconditionally, since one could raise a
# floating-point exception flag that the branch would not.  With AVX-512 it
# vectorizes anyway (masked arithmetic); at the avx2 and baseline levels
# every gate loop stayed scalar (measured on a Zen 3: small forward 5.1 ms on
# one thread, 30% of it in the scalar gate loops; 2.4 ms vectorized).  Nothing reads the
# exception flags; the arithmetic and its results do not change.
COMMON_ARGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]

# The gate loops read and write several arrays through pointers; the
# compilers vectorize them only after run-time alias checks, and their
# default limits (GCC: 10 checks, clang: 8) are below what a fused GRU gate
# loop needs.  Each compiler gets its own spelling, if it takes it.
ALIAS_CHECK_ARGS = {
    "gcc": ["--param", "vect-max-version-for-alias-checks=256"],
    "clang": ["-mllvm", "-runtime-memory-check-threshold=256"],
}

OPENMP_TEST = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""
COMPILER_TEST = """
#if defined(__clang__)
const char* gf_compiler = "clang";
#elif defined(__GNUC__)
const char* gf_compiler = "gcc";
#else
#error "neither GCC nor clang"
#endif
int main(void) { return 0; }
"""
CLANG_TEST = "#ifndef __clang__\n#error not clang\n#endif\nint main(void) { return 0; }\n"
GCC_TEST = ("#if !defined(__GNUC__) || defined(__clang__)\n#error not gcc\n#endif\n"
            "int main(void) { return 0; }\n")


class Probe:
    """Try small programs with the compiler setuptools chose, in a scratch directory."""

    def __init__(self, compiler):
        self.compiler = compiler
        self.directory = tempfile.mkdtemp(prefix="gru_fast_probe_")

    def works(self, source, args=(), link=False):
        """True when `source` compiles (and links, if `link`) with the extra `args`."""
        path = os.path.join(self.directory, f"probe{len(os.listdir(self.directory))}.c")
        with open(path, "w") as file:
            file.write(source)
        try:
            objects = self.compiler.compile([path], output_dir=self.directory,
                                            extra_postargs=list(args))
            if link:
                self.compiler.link_executable(objects, "probe", output_dir=self.directory,
                                              extra_postargs=list(args))
        except Exception:  # CompileError, LinkError, or a compiler that is missing
            return False
        return True

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class BuildCore(build_ext):
    """build_ext that probes the compiler once and gives each CPU level its flags."""

    def build_extensions(self):
        probe = Probe(self.compiler)
        try:
            if probe.works(CLANG_TEST):
                family = "clang"
            elif probe.works(GCC_TEST):
                family = "gcc"
            else:
                family = "other"
            openmp = probe.works(OPENMP_TEST, ["-fopenmp"], link=True)
            alias = ALIAS_CHECK_ARGS.get(family, [])
            if alias and not probe.works("int main(void) { return 0; }\n", alias):
                alias = []
            common = COMMON_ARGS + alias + (["-fopenmp"] if openmp else [])
            link = ["-fopenmp"] if openmp else []
            if sanitize:
                common += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
                link += [f"-fsanitize={sanitize}"]
            kept = []
            for ext in self.extensions:
                level = next((level for level in CPU_LEVELS
                              if ext.name.endswith(f"_{level}")), "baseline")
                flags = CPU_LEVELS[level]
                if flags and not probe.works("int main(void) { return 0; }\n", flags):
                    print(f"gru_fast: the compiler cannot target {level}; left out")
                    continue
                ext.extra_compile_args = common + flags + list(ext.extra_compile_args)
                ext.extra_link_args = link
                kept.append(ext)
        finally:
            probe.close()
        print(f"gru_fast: compiler {family}, OpenMP {'on' if openmp else 'off'}, "
              f"levels {[ext.name for ext in kept]}")
        self.extensions = kept
        self._remove_old_modules()
        super().build_extensions()

    def _remove_old_modules(self):
        """Delete gru_fast/<module>.<suffix>, the single-level modules of earlier builds.

        Python imports an extension module before a .py of the same name, so a
        stale one in the source tree (an in-place or editable build of an older
        version) would hide the dispatchers gru_fast/_core.py and _optim_kernels.py.
        Always, not only when ``self.inplace``: setuptools clears that flag while it
        builds and copies the modules in place afterwards.
        """
        for module in PER_LEVEL_MODULES:
            old = HERE / "gru_fast" / (module + sysconfig.get_config_var("EXT_SUFFIX"))
            if old.exists():
                print(f"gru_fast: removing {old.name} of an earlier build")
                old.unlink()


def level_sources(module):
    """One .pyx per level that includes src/<module>.pyx (a module name per level).

    Written into build/, so that the sources keep a single copy of the module.
    """
    directory = HERE / "build" / "cpu_levels"
    directory.mkdir(parents=True, exist_ok=True)
    sources = {}
    for level in CPU_LEVELS:
        path = directory / f"{module}_{level}.pyx"
        text = (f"# gru_fast.{module}_{level}: src/{module}.pyx compiled for the {level} "
                f"CPU level\n# (generated by setup.py; see there).\n"
                f'include "{module}.pyx"\n')
        if not path.exists() or path.read_text() != text:  # keep the timestamp: no rebuild
            path.write_text(text)
        sources[level] = os.path.relpath(path, HERE)
    return sources


# Compiled once per CPU level, each with a dispatcher gru_fast/<module>.py, and the
# extra flags of each: the optimizers' element-wise updates must give the same bits as
# their NumPy code, so no a * b + c contracted into an FMA (the avx2 and avx512 levels
# have FMA; aarch64's GCC contracts by default).  At the x86-64 baseline Adam's update
# runs on 4-wide vectors: 49 us for 50 000 float32 parameters, 26 us with AVX2.
PER_LEVEL_MODULES = {"_core": [], "_optim_kernels": ["-ffp-contract=off"]}

# The core reads its entry points' arrays through NumPy's C API (cheaper than typed
# memoryviews); built against NumPy 2, it runs with any NumPy from 1.25 on.
NUMPY_C_API = dict(include_dirs=["src", numpy.get_include()],
                   define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])

extensions = [
    Extension(f"gru_fast.{module}_{level}", sources=[source], extra_compile_args=list(extra),
              **NUMPY_C_API)
    for module, extra in PER_LEVEL_MODULES.items()
    for level, source in level_sources(module).items()
] + [
    # What the CPU can run and how the core was built: compiled for the baseline.
    Extension("gru_fast._cpu", sources=["src/_cpu.pyx"], include_dirs=["src"]),
    # The checks and bias folding every forward call repeats (no vector code).
    Extension("gru_fast._fastpath", sources=["src/_fastpath.pyx"], **NUMPY_C_API),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["src"],
                          nthreads=min(len(CPU_LEVELS), os.cpu_count() or 1)),
    cmdclass={"build_ext": BuildCore},
)
