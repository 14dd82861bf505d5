"""The default build runs on older x86-64 CPUs: a smoke check under qemu-user.

The build here may have been made on an AVX-512 machine; under
``qemu-x86_64 -cpu Haswell`` (AVX2 and FMA, no AVX-512) the core must choose
its avx2 level and under ``-cpu Nehalem`` (SSE4.2) its baseline, and run
correctly, including a FrozenGRU pickled here (see tests/qemu_smoke.py).
Skipped where qemu-x86_64 is absent (CI: ``apt-get install -y qemu-user``).
"""

import pickle
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gru_fast

from cpu_level_helpers import REPO, level_env

QEMU = shutil.which("qemu-x86_64")
SCRIPT = Path(__file__).resolve().parent / "qemu_smoke.py"


def interpreter_is_elf():
    """qemu-user runs ELF binaries only: not a shell wrapper (pyenv shims, for one)."""
    with open(Path(sys.executable).resolve(), "rb") as file:
        return file.read(4) == b"\x7fELF"


pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (apt-get install qemu-user) not found"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only"),
    pytest.mark.skipif(QEMU is not None and not interpreter_is_elf(),
                       reason="sys.executable is not an ELF binary"),
]


def run_under_qemu(cpu, args, level=None):
    # sys.executable as given (a venv's symlink keeps the venv); qemu follows it.
    return subprocess.run([QEMU, "-cpu", cpu, sys.executable, *args], cwd=REPO,
                          env=level_env(level), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def host_pickle(tmp_path_factory):
    """A FrozenGRU and a frozen GRU layer made here, with what they compute here."""
    rng = np.random.default_rng(1)
    hidden, inputs = 70, 9
    weights = {name: rng.uniform(-0.4, 0.4, shape).astype(np.float32)
               for name, shape in (("weight_ih", (3 * hidden, inputs)),
                                   ("weight_hh", (3 * hidden, hidden)),
                                   ("bias_ih", (3 * hidden,)), ("bias_hh", (3 * hidden,)))}
    frozen = gru_fast.FrozenGRU(**weights, reset_after=False)
    layer = gru_fast.GRU(inputs, 24, 2, bidirectional=True, seed=2).freeze()
    x = rng.standard_normal((5, 3, inputs)).astype(np.float32)
    path = tmp_path_factory.mktemp("qemu") / "host.pkl"
    path.write_bytes(pickle.dumps((frozen, layer, x, weights, frozen(x)[0], layer(x)[0])))
    return path


@pytest.mark.parametrize("cpu, level", [("Haswell", "avx2"), ("Nehalem", "baseline")])
def test_default_build_runs_on_older_cpus(cpu, level, host_pickle):
    result = run_under_qemu(cpu, [str(SCRIPT), level, str(host_pickle)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"level {level}" in result.stdout and "smoke ok" in result.stdout


def test_forcing_a_level_the_cpu_lacks_is_refused():
    result = run_under_qemu("Nehalem", ["-c", "import gru_fast"], level="avx2")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "cannot run" in result.stderr
