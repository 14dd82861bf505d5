"""One training epoch of the same model in gru_fast and in PyTorch, for bench/ and asv.

The model: a GRU (reset_after=True, PyTorch's variant; float32) over univariate
sequences of length T, a linear head on its final state, the mean squared error,
Adam (lr 1e-3), minibatches of BATCH_SIZE drawn by a fresh permutation each
epoch.  gru_fast runs it as ``GRURegressor.partial_fit`` (exactly one epoch per
call); PyTorch as the loop a PyTorch user writes (zero_grad, forward, loss,
backward, step), defined once in ``gru_fast._demo.torch_epoch``.
"""

import numpy as np

N_SAMPLES = 512
BATCH_SIZE = 32
HIDDEN_SIZES = [16, 32, 64, 128]
SEQ_LENGTHS = [20, 50, 100, 200]


def make_data(seq_len, n_samples=N_SAMPLES, seed=0):
    """X (n_samples, T) float32 noisy sines, y the value after each (float32)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n_samples, 1))
    t = np.arange(seq_len + 1)
    series = np.sin(0.3 * t + phase) + 0.1 * rng.standard_normal((n_samples, seq_len + 1))
    series = series.astype(np.float32)
    return series[:, :-1], series[:, -1]


def gru_fast_epoch(hidden_size, X, y, seed=0):
    """A callable running one epoch of GRURegressor (after one warm-up epoch)."""
    from gru_fast.estimators import GRURegressor

    model = GRURegressor(hidden_size=hidden_size, reset_after=True, dtype="float32",
                         solver="adam", learning_rate=1e-3, batch_size=BATCH_SIZE,
                         random_state=seed)
    model.partial_fit(X, y)
    return lambda: model.partial_fit(X, y)


def torch_epoch(hidden_size, X, y, threads, seed=0):
    """A callable running one epoch of the same model in PyTorch (after a warm-up epoch)."""
    from gru_fast._demo import torch_epoch as make_torch_epoch

    epoch, _ = make_torch_epoch(X, y, hidden_size, learning_rate=1e-3,
                                batch_size=BATCH_SIZE, threads=threads, seed=seed)
    epoch()
    return epoch
