"""Shared shapes and input builders for the asv benchmarks and bench/compare.py.

Shapes are (T, B, I, H) = (time steps, batch, input features, hidden size).
compare.py runs ALL_SHAPES; the asv suite keeps to the smaller SHAPES so that
``asv run --quick`` stays short. compare.py imports this module as
``benchmarks.common`` (bench/ is on its path), asv as ``.common``.
"""

import numpy as np

ALL_SHAPES = {
    "stream": (100, 1, 64, 64),
    "small": (100, 8, 64, 128),
    "medium": (100, 32, 128, 256),
    "large": (50, 64, 512, 512),
    "wide": (25, 16, 1024, 1024),
}
SHAPES = {name: ALL_SHAPES[name] for name in ("stream", "small", "medium")}

# Tiny shapes for the pure-NumPy reference, whose time loop runs in Python.
REFERENCE_SHAPES = {
    "tiny": (20, 4, 16, 32),
    "stream": (100, 1, 64, 64),
}

DTYPES = ["float32", "float64"]
VARIANTS = [False, True]  # reset_after


def make_weights(input_size, hidden_size, dtype, seed=0):
    """(weight_ih, weight_hh, bias_ih, bias_hh), uniform in +-1/sqrt(H) like torch."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)

    def uniform(*shape):
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    return (uniform(3 * hidden_size, input_size), uniform(3 * hidden_size, hidden_size),
            uniform(3 * hidden_size), uniform(3 * hidden_size))


def make_inputs(shape, dtype, seed=0):
    """x (T, B, I), h0 (B, H), the four weights and a fixed dy (T, B, H)."""
    seq_len, batch_size, input_size, hidden_size = shape
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype)
    h0 = (0.1 * rng.standard_normal((batch_size, hidden_size))).astype(dtype)
    dy = rng.standard_normal((seq_len, batch_size, hidden_size)).astype(dtype)
    return x, h0, make_weights(input_size, hidden_size, dtype, seed), dy


def spread_lengths(seq_len, batch_size, seed=0):
    """Lengths spread uniformly over 1..T (deterministic, shuffled)."""
    lengths = np.linspace(1, seq_len, batch_size).round().astype(np.int64)
    return np.random.default_rng(seed).permutation(lengths)
