"""Variable lengths versus the padded (full-length) batch of the same shape.

``padded``: no lengths, every row runs all T steps.  ``full_lengths``: lengths
given but all equal to T (the cost of the packing machinery).  ``spread``:
lengths spread uniformly over 1..T, which should cost about half the padded
batch because only the active rows of each step are computed.  ``half``: every
length T/2, so the last half of the steps run no row at all (those steps cost
only the zeros of y's padding: about the padded batch of T/2 steps).
"""

import numpy as np

import gru_fast

from .common import SHAPES, make_inputs, spread_lengths

LENGTH_SHAPES = {name: SHAPES[name] for name in ("small", "medium")}
MODES = ["padded", "full_lengths", "spread", "half"]


def _lengths(mode, seq_len, batch_size):
    if mode == "padded":
        return None
    if mode == "full_lengths":
        return np.full(batch_size, seq_len, dtype=np.int64)
    if mode == "half":
        return np.full(batch_size, seq_len // 2, dtype=np.int64)
    return spread_lengths(seq_len, batch_size)


class Lengths:
    params = (list(LENGTH_SHAPES), ["float32"], MODES)
    param_names = ["shape", "dtype", "lengths"]

    def setup(self, shape, dtype, mode):
        seq_len, batch_size = LENGTH_SHAPES[shape][:2]
        self.x, self.h0, self.weights, self.dy = make_inputs(LENGTH_SHAPES[shape], dtype)
        self.lengths = _lengths(mode, seq_len, batch_size)

    def time_forward(self, shape, dtype, mode):
        gru_fast.gru_forward(self.x, self.h0, *self.weights, reset_after=True,
                             lengths=self.lengths)

    def peakmem_forward(self, shape, dtype, mode):
        gru_fast.gru_forward(self.x, self.h0, *self.weights, reset_after=True,
                             lengths=self.lengths)

    def time_forward_backward(self, shape, dtype, mode):
        _, _, cache = gru_fast.gru_forward(self.x, self.h0, *self.weights, reset_after=True,
                                           lengths=self.lengths, return_cache=True)
        gru_fast.gru_backward(cache, self.dy)
