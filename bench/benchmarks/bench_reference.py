"""The pure-NumPy reference (the oracle) on small shapes, for scale."""

from gru_fast import reference

from .common import DTYPES, REFERENCE_SHAPES, VARIANTS, make_inputs


class Reference:
    params = (list(REFERENCE_SHAPES), DTYPES, VARIANTS)
    param_names = ["shape", "dtype", "reset_after"]

    def setup(self, shape, dtype, reset_after):
        self.x, self.h0, self.weights, self.dy = make_inputs(REFERENCE_SHAPES[shape], dtype)
        self.reset_after = reset_after

    def time_forward(self, shape, dtype, reset_after):
        reference.gru_forward(self.x, self.h0, *self.weights, reset_after=self.reset_after)

    def peakmem_forward(self, shape, dtype, reset_after):
        reference.gru_forward(self.x, self.h0, *self.weights, reset_after=self.reset_after)

    def time_forward_backward(self, shape, dtype, reset_after):
        _, _, cache = reference.gru_forward(self.x, self.h0, *self.weights,
                                            reset_after=self.reset_after, return_cache=True)
        reference.gru_backward(cache, self.dy)
