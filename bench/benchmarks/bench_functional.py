"""gru_forward / gru_backward: one layer, one direction, whole sequence."""

import gru_fast

from .common import DTYPES, SHAPES, VARIANTS, make_inputs


class Forward:
    """Forward pass without a cache (inference)."""

    params = (list(SHAPES), DTYPES, VARIANTS)
    param_names = ["shape", "dtype", "reset_after"]

    def setup(self, shape, dtype, reset_after):
        self.x, self.h0, self.weights, _ = make_inputs(SHAPES[shape], dtype)
        self.reset_after = reset_after

    def time_forward(self, shape, dtype, reset_after):
        gru_fast.gru_forward(self.x, self.h0, *self.weights, reset_after=self.reset_after)

    def peakmem_forward(self, shape, dtype, reset_after):
        gru_fast.gru_forward(self.x, self.h0, *self.weights, reset_after=self.reset_after)


class FrozenForward:
    """FrozenGRU's forward: the same pass as Forward with the weights packed once."""

    params = (list(SHAPES), DTYPES, VARIANTS)
    param_names = ["shape", "dtype", "reset_after"]

    def setup(self, shape, dtype, reset_after):
        self.x, self.h0, weights, _ = make_inputs(SHAPES[shape], dtype)
        self.frozen = gru_fast.FrozenGRU(*weights, reset_after=reset_after)

    def time_forward(self, shape, dtype, reset_after):
        self.frozen(self.x, self.h0)

    def peakmem_forward(self, shape, dtype, reset_after):
        self.frozen(self.x, self.h0)


class ForwardBackward:
    """Forward with cache, then backward (one training step of the layer)."""

    params = (list(SHAPES), DTYPES, VARIANTS)
    param_names = ["shape", "dtype", "reset_after"]

    def setup(self, shape, dtype, reset_after):
        self.x, self.h0, self.weights, self.dy = make_inputs(SHAPES[shape], dtype)
        self.reset_after = reset_after
        self.cache = gru_fast.gru_forward(self.x, self.h0, *self.weights,
                                          reset_after=reset_after, return_cache=True)[2]

    def time_forward_backward(self, shape, dtype, reset_after):
        _, _, cache = gru_fast.gru_forward(self.x, self.h0, *self.weights,
                                           reset_after=self.reset_after, return_cache=True)
        gru_fast.gru_backward(cache, self.dy)

    def peakmem_forward_backward(self, shape, dtype, reset_after):
        _, _, cache = gru_fast.gru_forward(self.x, self.h0, *self.weights,
                                           reset_after=self.reset_after, return_cache=True)
        gru_fast.gru_backward(cache, self.dy)

    def time_backward(self, shape, dtype, reset_after):
        gru_fast.gru_backward(self.cache, self.dy)

    def track_cache_bytes(self, shape, dtype, reset_after):
        return self.cache.nbytes

    track_cache_bytes.unit = "bytes"
