"""One GRU call right after another library's call (issue 12; bench/pipeline.py has the peers).

asv tracks the median time of one forward call (float32, reset_after=True) timed
right after each scenario of pipeline_scenarios: idle, a NumPy matmul, an ONNX
Runtime session run, a PyTorch op.  Scenarios whose library is missing are skipped.
"""

import os
import statistics
import time

import gru_fast

from .common import SHAPES, make_inputs
from .pipeline_scenarios import SCENARIOS, make_scenario

SAMPLES = 15


class AfterAnotherLibrary:
    params = (list(SHAPES), list(SCENARIOS), ["gru_forward", "FrozenGRU"])
    param_names = ["shape", "before", "contestant"]
    timeout = 120

    def setup(self, shape, before, contestant):
        try:
            self.scenario = make_scenario(before, len(os.sched_getaffinity(0)),
                                          idle_seconds=0.05)
        except ImportError as error:
            raise NotImplementedError(f"{before} is not installed: {error}")
        x, h0, weights, _ = make_inputs(SHAPES[shape], "float32")
        if contestant == "FrozenGRU":
            frozen = gru_fast.FrozenGRU(*weights, reset_after=True)
            self.call = lambda: frozen(x, h0)
        else:
            self.call = lambda: gru_fast.gru_forward(x, h0, *weights, reset_after=True)
        self.call()

    def track_seconds_per_call(self, shape, before, contestant):
        samples = []
        for _ in range(SAMPLES):
            self.scenario()
            start = time.perf_counter()
            self.call()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    track_seconds_per_call.unit = "seconds"
