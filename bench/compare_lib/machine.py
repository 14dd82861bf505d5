"""The machine the comparison runs on: CPU, BLAS, commit, and the load of other work."""

import os
import platform
import subprocess
import time

# OpenBLAS kernel names of cores with AVX2 at most (see openblas_kernel_warning).
AVX2_CORES = {"haswell", "zen", "sandybridge", "nehalem", "core2", "prescott", "atom"}


def usable_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model():
    """The CPU's model name (lscpu), else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def git_state(repo):
    """The commit of ``repo`` and whether the core (src, gru_fast, setup.py) changed since."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "src", "gru_fast", "setup.py"))
        return {"commit": commit, "core_modified_since_commit": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "core_modified_since_commit": None}


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_kernel_warning(blas):
    """A note when OpenBLAS runs kernels below what the CPU supports (AVX-512 unused)."""
    if "avx512f" not in cpu_flags():
        return None
    slow = sorted({entry["architecture"] for entry in blas
                   if entry["internal_api"] == "openblas"
                   and str(entry["architecture"]).lower() in AVX2_CORES})
    if not slow:
        return None
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    why = (f"OPENBLAS_CORETYPE={coretype} is set in the environment"
           if coretype else "OpenBLAS chose them")
    return (f"note: the CPU has AVX-512 but OpenBLAS runs its {'/'.join(slow)} (AVX2) "
            f"kernels ({why}), so the sgemm 'peak' below is about half of what the "
            "hardware does, and peers with their own AVX-512 GEMM (ONNX Runtime's MLAS) "
            "can exceed it; unset OPENBLAS_CORETYPE or set it to SkylakeX for the "
            "AVX-512 kernels")


def blas_info():
    """The thread pools threadpoolctl sees (BLAS, OpenMP), as plain dicts."""
    from threadpoolctl import threadpool_info
    return [{key: entry.get(key) for key in
             ("internal_api", "version", "num_threads", "threading_layer", "architecture",
              "filepath")} for entry in threadpool_info()]


class LoadMonitor:
    """CPU time the rest of the machine used while we ran (Linux /proc/stat), in cores.

    Other processes on a small machine distort multi-threaded timings badly (a BLAS
    thread that loses its core stalls every step), so the run reports it.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = sum(fields[:8]) - idle
        own = sum(os.times()[:2])  # this process, every thread (children excluded)
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own

    def other_cores(self, since=None):
        """Average number of cores busy with other work since `since` (or the start)."""
        start, end = since or self.start, self._sample()
        if start is None or end is None or end[0] <= start[0]:
            return None
        return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def background_load(seconds=1.0):
    """Cores busy with other work during `seconds` of our idling."""
    monitor = LoadMonitor()
    time.sleep(seconds)
    return monitor.other_cores()


def wait_until_quiet(max_wait, threshold=0.1, window=0.25):
    """Sleep until other work uses < threshold cores over `window` s; give up after max_wait.

    Returns the seconds waited.
    """
    waited = 0.0
    while waited < max_wait:
        load = background_load(window)
        waited += window
        if load is None or load < threshold:
            break
    return waited
