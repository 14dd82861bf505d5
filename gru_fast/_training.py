"""The training loops of the estimators: minibatch epochs, full-batch L-BFGS, progress.

Nothing here knows scikit-learn: the estimators hand in a `GRUNetwork`, the
prepared data and a loss-and-gradient callable, and keep the bookkeeping
(loss curve, early stopping) themselves.
"""

import threading
import time

import numpy as np
import scipy.optimize

from .network import ROWS_PER_CALL
from .optim import SGD, Adam

__all__ = ["make_optimizer", "run_epoch", "summed_loss_and_grad", "minimize_lbfgs",
           "Progress"]


def make_optimizer(solver, params, learning_rate):
    """The optimizer of a stochastic `solver` ("adam" or "sgd") over `params`.

    "sgd" is SGD with Nesterov momentum 0.9 (scikit-learn's MLP default).
    """
    if solver == "adam":
        return Adam(params, lr=learning_rate)
    if solver == "sgd":
        return SGD(params, lr=learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"no stochastic optimizer for solver={solver!r}")


def run_epoch(network, optimizer, data, targets, batch_size, rng):
    """One pass over `data` in shuffled minibatches, one optimizer step each.

    Parameters
    ----------
    network : GRUNetwork
        Its ``flat`` parameters are what `optimizer` updates.
    optimizer : gru_fast.optim optimizer
        Bound to ``{"flat": network.flat}``.
    data : SequenceData
    targets : numpy.ndarray
        One row (or label) per sequence.
    batch_size : int
    rng : numpy.random.Generator
        Draws the order of the rows.

    Returns
    -------
    float
        The mean over the epoch's samples of the batch losses.
    """
    if hasattr(data, "run_epoch"):  # gru_fast.dask.DaskSequences: chunk after chunk
        return data.run_epoch(network, optimizer, targets, batch_size, rng)
    order = rng.permutation(data.n_samples)
    total = 0.0
    with _BLAS_ON_ONE_THREAD:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            x, lengths = data.batch(rows)
            loss, grad = network.loss_and_grad(network.flat, x, targets[rows], lengths)
            optimizer.step({"flat": grad})
            total += loss * len(rows)
    return total / len(order)


class _BlasOnOneThread:
    """Context: the BLAS libraries of the process run on one thread inside it.

    A minibatch step calls BLAS only for small products (dW_ih over the
    batch's rows, the head), but each multithreaded call leaves OpenBLAS's
    workers spinning for a while afterwards, on the cores the compiled core's
    own threads need for the next step's time loop: measured, one epoch at
    H=128, T=100, batch 32 took 321 ms with BLAS on 2 threads and 262 ms with
    it on one (bench/README.md, "Training").  The previous limits come back on
    exit.  Acts on the main thread only (re-entrant: the outermost use limits
    and restores): limits are process-wide, so fits running concurrently in
    other threads leave them alone (and OpenBLAS did not take a limit set from
    another thread here).  Does nothing without threadpoolctl (installed with
    scikit-learn, which the estimators need anyway).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._controller = None
        self._limit = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        with self._lock:
            if self._depth == 0:
                try:
                    if self._controller is None:
                        from threadpoolctl import ThreadpoolController
                        self._controller = ThreadpoolController()  # ~5 ms: once
                    self._limit = self._controller.limit(limits=1, user_api="blas")
                except ImportError:
                    self._limit = None
            self._depth += 1
        return self

    def __exit__(self, *exc_info):
        if threading.current_thread() is not threading.main_thread():
            return False
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limit is not None:
                self._limit.restore_original_limits()
                self._limit = None
        return False


_BLAS_ON_ONE_THREAD = _BlasOnOneThread()


def summed_loss_and_grad(network, data, targets):
    """Sum over every sequence of `data` of the loss and its gradient at ``network.flat``.

    Computed ``ROWS_PER_CALL`` rows per core call, so memory stays bounded
    whatever the number of sequences.  The full-batch objective of L-BFGS is
    this sum divided by the number of samples, over the whole training set in
    memory or over the chunks of a Dask array (`gru_fast.dask`).

    Parameters
    ----------
    network : GRUNetwork
    data : SequenceData
    targets : numpy.ndarray
        One row (or label) per sequence of `data`.

    Returns
    -------
    loss : float
    grad : numpy.ndarray of float64, laid out like ``network.flat``
    """
    loss, grad = 0.0, np.zeros(network.flat.shape, dtype=np.float64)
    for start in range(0, data.n_samples, ROWS_PER_CALL):
        rows = np.arange(start, min(start + ROWS_PER_CALL, data.n_samples))
        x, lengths = data.batch(rows)
        block_loss, block_grad = network.loss_and_grad(network.flat, x, targets[rows],
                                                       lengths, reduction="sum")
        loss += block_loss
        grad += block_grad
    return loss, grad


def minimize_lbfgs(objective, x0, max_iter, tol, callback=None):
    """Full-batch L-BFGS with the exact gradient (scipy's L-BFGS-B without bounds).

    Parameters
    ----------
    objective : callable
        ``objective(w) -> (loss, grad)`` for a float64 vector ``w``; the loss and
        gradient over the whole training set (computed however the caller likes:
        in memory chunk by chunk, or on a cluster).
    x0 : numpy.ndarray
        Starting point.
    max_iter : int
        Most L-BFGS iterations.
    tol : float
        Stop when the largest gradient entry falls below it (``gtol``).
    callback : callable, optional
        ``callback(loss)`` after every iteration.

    Returns
    -------
    scipy.optimize.OptimizeResult
    """
    def fun(w):
        loss, grad = objective(w)
        return float(loss), np.asarray(grad, dtype=np.float64)

    def on_iteration(intermediate_result):
        if callback is not None:
            callback(float(intermediate_result.fun))

    return scipy.optimize.minimize(
        fun, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
        callback=on_iteration,
        options={"maxiter": max_iter, "maxfun": 15 * max_iter + 20, "gtol": tol})


class Progress:
    """Progress of a fit: a tqdm bar, or one printed line per epoch.

    Parameters
    ----------
    verbose : bool or int
        0/False: silent.  True/1: a tqdm bar when tqdm is installed, else lines.
        2 or more: always one line per epoch.
    total : int
        Expected epochs (the bar's length).
    label : str
        Name of the estimator.
    score_name : str
        Name of the validation score ("R^2", "accuracy").
    """

    def __init__(self, verbose, total, label, score_name):
        self.verbose = int(verbose)
        self.score_name = score_name
        self.start = self.last = time.perf_counter()
        self.bar = None
        if self.verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=label, unit="epoch")

    def update(self, epoch, loss, score=None):
        """Report one finished epoch (1-based), its mean loss and validation score."""
        if not self.verbose:
            return
        now = time.perf_counter()
        if self.bar is not None:
            postfix = {"loss": f"{loss:.4g}"}
            if score is not None:
                postfix[self.score_name] = f"{score:.4f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        else:
            line = f"epoch {epoch:4d}  loss {loss:.6g}"
            if score is not None:
                line += f"  validation {self.score_name} {score:.4f}"
            line += f"  {now - self.last:.3f} s  (total {now - self.start:.2f} s)"
            print(line, flush=True)
        self.last = now

    def close(self, message=None):
        """End the bar; print `message` if verbose."""
        if self.bar is not None:
            self.bar.close()
        if self.verbose and message:
            print(message, flush=True)
