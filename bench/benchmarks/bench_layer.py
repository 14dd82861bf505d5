"""The GRU layer: stacked layers, both directions, and streaming `step`."""

import numpy as np

import gru_fast

from .common import DTYPES, VARIANTS

# (num_layers, bidirectional) on the "small" shape (T=100, B=8, I=64, H=128).
CONFIGS = {
    "1_layer": (1, False),
    "2_layers": (2, False),
    "bidirectional": (1, True),
    "2_layers_bidirectional": (2, True),
}
LAYER_SHAPE = (100, 8, 64, 128)


class Layer:
    params = (list(CONFIGS), DTYPES)
    param_names = ["config", "dtype"]

    def setup(self, config, dtype):
        num_layers, bidirectional = CONFIGS[config]
        seq_len, batch_size, input_size, hidden_size = LAYER_SHAPE
        self.gru = gru_fast.GRU(input_size, hidden_size, num_layers,
                                bidirectional=bidirectional, reset_after=True,
                                dtype=dtype, seed=0)
        rng = np.random.default_rng(1)
        directions = 2 if bidirectional else 1
        self.x = rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype)
        self.dy = rng.standard_normal(
            (seq_len, batch_size, directions * hidden_size)).astype(dtype)

    def time_forward(self, config, dtype):
        self.gru.forward(self.x)

    def peakmem_forward(self, config, dtype):
        self.gru.forward(self.x)

    def time_forward_backward(self, config, dtype):
        _, _, cache = self.gru.forward(self.x, return_cache=True)
        self.gru.backward(cache, self.dy)

    def peakmem_forward_backward(self, config, dtype):
        _, _, cache = self.gru.forward(self.x, return_cache=True)
        self.gru.backward(cache, self.dy)


class Step:
    """One time step of a 2-layer GRU (streaming inference), B rows of hidden size H."""

    params = ([(1, 64), (8, 128), (32, 256)], DTYPES, VARIANTS)
    param_names = ["batch_hidden", "dtype", "reset_after"]

    def setup(self, batch_hidden, dtype, reset_after):
        batch_size, hidden_size = batch_hidden
        self.gru = gru_fast.GRU(hidden_size, hidden_size, 2, reset_after=reset_after,
                                dtype=dtype, seed=0)
        rng = np.random.default_rng(1)
        self.x_t = rng.standard_normal((batch_size, hidden_size)).astype(dtype)
        self.h = (0.1 * rng.standard_normal((2, batch_size, hidden_size))).astype(dtype)
        self.frozen = self.gru.freeze()

    def time_step(self, batch_hidden, dtype, reset_after):
        self.gru.step(self.x_t, self.h)

    def time_frozen_step(self, batch_hidden, dtype, reset_after):
        self.frozen.step(self.x_t, self.h)

    def peakmem_step(self, batch_hidden, dtype, reset_after):
        self.gru.step(self.x_t, self.h)
