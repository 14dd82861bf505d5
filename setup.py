"""Build the compiled core of gru_fast (Cython, a C GEMM kernel, OpenMP).

Compiler directives are set once here.  Set GRU_FAST_BOUNDSCHECK=1 at build
time to turn bounds, wraparound and initialisation checks back on (debugging),
GRU_FAST_NATIVE=0 to build without -march=native (portable binaries), and
GRU_FAST_SANITIZE=address for an AddressSanitizer build.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

checks = os.environ.get("GRU_FAST_BOUNDSCHECK", "0") == "1"
native = os.environ.get("GRU_FAST_NATIVE", "1") == "1"

directives = {
    "language_level": 3,
    "boundscheck": checks,
    "wraparound": checks,
    "initializedcheck": checks,
    "cdivision": True,
    "embedsignature": True,
}

# The gate loops read and write several arrays through pointers; GCC vectorizes
# them only after runtime alias checks, and its default limit (10 checks) is
# below what a fused GRU gate loop needs.
compile_args = ["-O3", "-fno-math-errno", "--param", "vect-max-version-for-alias-checks=256",
                "-fopenmp"]
# OpenMP runs the per-step work of one sequence on several threads (see
# src/_core.pyx); the thread count is OpenMP's, which threadpoolctl controls.
link_args = ["-fopenmp"]
if native:
    compile_args.append("-march=native")

# GRU_FAST_SANITIZE=address builds the core with AddressSanitizer, to run the tests and
# tests/fuzz_gru.py under it (README, "Hardening": Python needs libasan preloaded).
sanitize = os.environ.get("GRU_FAST_SANITIZE", "")
if sanitize:
    compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
    link_args += [f"-fsanitize={sanitize}"]

extensions = [
    Extension(
        "gru_fast._core",
        sources=["src/_core.pyx"],
        include_dirs=["src"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["src"]),
)
