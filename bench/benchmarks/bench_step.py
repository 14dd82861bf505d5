"""Latency of one time step (issue 16): gru_fast's step paths, ONNX Runtime, PyTorch.

The same contenders as bench/step_latency.py (which interleaves them and
reports the target ratios); peers that are not installed are skipped.
"""

from .step_contenders import SHAPES, all_contenders

CONTENDERS = ["FrozenGRU.step", "FrozenGRU.step out=", "GRU.step", "GRU.step out=",
              "gru_forward T=1", "ONNX Runtime T=1", "torch GRUCell", "torch nn.GRU T=1"]


class StepLatency:
    """One step, float32, reset_after=True, on the three (B, I, H) shapes of issue 16."""

    params = (list(SHAPES), CONTENDERS)
    param_names = ["shape", "contender"]
    number = 2000  # calls per sample: one call is a few microseconds

    def setup(self, shape, contender):
        calls, _ = all_contenders(SHAPES[shape])
        if contender not in calls:
            raise NotImplementedError(f"{contender} is not installed")  # asv skips
        self.call = calls[contender]
        self.call()

    def time_step(self, shape, contender):
        self.call()
