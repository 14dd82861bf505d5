"""The baseline level compiles for aarch64, through the kernel's generic vector code.

setup.py builds every module at the ``baseline`` level on any architecture; on aarch64
that is the only level, and the packed kernel and gate loops must compile there from
their generic vector code (no x86 intrinsics).  Here the C that this checkout's build
generated (build/cpu_levels/<module>_baseline.c) is cross-compiled with
``aarch64-linux-gnu-gcc`` and the flags setup.py gives GCC (read from setup.py itself),
and the objects are inspected: the core's products run on NEON vector multiply-adds,
and the optimizer kernels contain no fused multiply-add at all (their updates must
give the NumPy code's bits; aarch64's GCC contracts a * b + c by default, which
``-ffp-contract=off`` forbids).

This checks compilation and code generation, not a run: the Python headers are the
host's (an LP64 pyconfig.h, as on aarch64 Linux).  Skipped where the cross compiler
(Debian's gcc-aarch64-linux-gnu, which .ci/run installs) or the generated C is absent.
"""

import ast
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy
import pytest

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "build" / "cpu_levels"
CROSS_GCC = shutil.which("aarch64-linux-gnu-gcc")
CROSS_OBJDUMP = shutil.which("aarch64-linux-gnu-objdump")

pytestmark = pytest.mark.skipif(
    CROSS_GCC is None or CROSS_OBJDUMP is None
    or not (GENERATED / "_core_baseline.c").exists(),
    reason="needs aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu) and a "
           "build of this checkout (build/cpu_levels/*.c)")

FUSED_MULTIPLY_ADD = re.compile(r"\s(fmla|fmls|fmadd|fmsub|fnmadd|fnmsub)\s")
VECTOR_MULTIPLY_ADD = re.compile(r"\sfmla\s+v\d+\.(4s|2d)")
VECTOR_SQRT = re.compile(r"\sfsqrt\s+v\d+\.(4s|2d)")


def _setup_constants(*names):
    """The literal values assigned to `names` at the top level of setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in names:
                values[target.id] = ast.literal_eval(node.value)
    assert set(values) == set(names), f"setup.py no longer assigns {set(names) - set(values)}"
    return values


@pytest.fixture(scope="module")
def disassembly(tmp_path_factory):
    """{module: aarch64 disassembly} of the baseline level of every per-level module."""
    constants = _setup_constants("COMMON_ARGS", "ALIAS_CHECK_ARGS", "PER_LEVEL_MODULES")
    out = tmp_path_factory.mktemp("aarch64")
    include = sysconfig.get_paths()["include"]
    compiles = {}
    for module, extra in constants["PER_LEVEL_MODULES"].items():
        command = [CROSS_GCC, *constants["COMMON_ARGS"], *constants["ALIAS_CHECK_ARGS"]["gcc"],
                   "-fopenmp", "-fPIC", *extra, "-c", str(GENERATED / f"{module}_baseline.c"),
                   f"-I{REPO / 'src'}", f"-I{include}", f"-I{numpy.get_include()}",
                   "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION",  # as setup.py's NUMPY_C_API
                   "-o", str(out / f"{module}.o")]
        compiles[module] = subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True)
    listings = {}
    for module, process in compiles.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{module}_baseline.c for aarch64:\n{output[-4000:]}"
        listings[module] = subprocess.run([CROSS_OBJDUMP, "-d", str(out / f"{module}.o")],
                                          capture_output=True, text=True, check=True).stdout
    return listings


def test_the_core_compiles_and_its_products_run_on_neon(disassembly):
    assert len(VECTOR_MULTIPLY_ADD.findall(disassembly["_core"])) > 100


def test_the_optimizer_kernels_have_no_fused_multiply_add(disassembly):
    listing = disassembly["_optim_kernels"]
    assert VECTOR_SQRT.search(listing), "Adam's update is not vectorized"
    assert not FUSED_MULTIPLY_ADD.search(listing), FUSED_MULTIPLY_ADD.search(listing).group()
