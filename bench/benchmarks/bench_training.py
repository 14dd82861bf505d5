"""Training: one epoch of GRURegressor, and its speed-up over the same model in PyTorch."""

from .training_tasks import HIDDEN_SIZES, make_data, gru_fast_epoch, torch_epoch

# A corner-and-middle subset of bench/training.py's grid keeps `asv run --quick` short.
LENGTHS = [20, 100, 200]


class TrainingEpoch:
    """GRURegressor.partial_fit: one epoch of 512 sequences, batch 32, Adam, float32."""

    params = (HIDDEN_SIZES, LENGTHS)
    param_names = ["hidden_size", "seq_len"]

    def setup(self, hidden_size, seq_len):
        try:
            import sklearn  # noqa: F401  (the estimators need it)
        except ImportError:
            raise NotImplementedError("scikit-learn is not installed")
        X, y = make_data(seq_len)
        self.epoch = gru_fast_epoch(hidden_size, X, y)

    def time_epoch(self, hidden_size, seq_len):
        self.epoch()

    def peakmem_epoch(self, hidden_size, seq_len):
        self.epoch()


class TrainingVersusTorch:
    """PyTorch's epoch time / gru_fast's, same model, optimizer, batch and threads."""

    params = ([16, 128], [20, 200])
    param_names = ["hidden_size", "seq_len"]
    timeout = 300

    def setup(self, hidden_size, seq_len):
        try:
            import sklearn  # noqa: F401
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch or scikit-learn is not installed")
        from gru_fast import _core

        X, y = make_data(seq_len)
        self.threads = _core.max_threads()
        self.ours = gru_fast_epoch(hidden_size, X, y)
        self.theirs = torch_epoch(hidden_size, X, y, self.threads)
        self.torch = torch

    def track_speedup_vs_torch(self, hidden_size, seq_len):
        import statistics
        import time

        ours, theirs = [], []
        for _ in range(3):   # interleaved, median of 3
            for function, samples in ((self.ours, ours), (self.theirs, theirs)):
                self.torch.set_num_threads(self.threads)
                start = time.perf_counter()
                function()
                samples.append(time.perf_counter() - start)
        return statistics.median(theirs) / statistics.median(ours)

    track_speedup_vs_torch.unit = "x"
