"""Losses that return their value and their gradient with respect to the prediction.

Every loss is a mean (``reduction="mean"``, PyTorch's default) or a sum
(``reduction="sum"``) over the samples, the rows of the prediction; the sum is
what data-parallel training adds up chunk by chunk before dividing by the
total number of samples.  Gradients are of the same dtype as the prediction.
"""

import numpy as np

__all__ = ["mean_squared_error", "cross_entropy_with_logits", "softmax"]


def _check_reduction(reduction):
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def mean_squared_error(prediction, target, reduction="mean"):
    """Squared error, averaged over the outputs of each sample.

    The loss of sample ``i`` is ``mean_k (prediction[i, k] - target[i, k])**2``; with
    ``reduction="mean"`` the value equals ``torch.nn.MSELoss()``.

    Parameters
    ----------
    prediction : numpy.ndarray, shape (n_samples, n_outputs)
        Predicted values.
    target : array_like, shape (n_samples, n_outputs)
        True values.
    reduction : {"mean", "sum"}, default "mean"
        Mean or sum of the per-sample losses.

    Returns
    -------
    value : float
        The loss.
    grad : numpy.ndarray, shape (n_samples, n_outputs)
        Its gradient with respect to `prediction`, of `prediction`'s dtype.
    """
    _check_reduction(reduction)
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    if prediction.ndim != 2 or target.shape != prediction.shape:
        raise ValueError(f"prediction and target must both be (n_samples, n_outputs), got "
                         f"{prediction.shape} and {target.shape}")
    n_samples, n_outputs = prediction.shape
    residual = prediction - target.astype(prediction.dtype, copy=False)
    # per sample: mean_k r^2;  d/dprediction = 2 r / n_outputs (/ n_samples for the mean)
    scale = n_outputs * (n_samples if reduction == "mean" else 1)
    value = float(np.dot(residual.ravel(), residual.ravel())) / scale
    grad = residual
    grad *= prediction.dtype.type(2.0 / scale)
    return value, grad


def softmax(logits):
    """Row-wise softmax, computed stably (the row maximum subtracted first).

    Parameters
    ----------
    logits : numpy.ndarray, shape (n_samples, n_classes)

    Returns
    -------
    numpy.ndarray
        Probabilities of the same shape and dtype; every row sums to 1.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities


def cross_entropy_with_logits(logits, labels, reduction="mean"):
    """Cross-entropy of integer class labels under the softmax of `logits`.

    The loss of sample ``i`` is ``logsumexp(logits[i]) - logits[i, labels[i]]``; with
    ``reduction="mean"`` the value equals ``torch.nn.CrossEntropyLoss()``.

    Parameters
    ----------
    logits : numpy.ndarray, shape (n_samples, n_classes)
        Unnormalised log-probabilities.
    labels : array_like of int, shape (n_samples,)
        Class index of every sample, in ``0 .. n_classes - 1``.
    reduction : {"mean", "sum"}, default "mean"
        Mean or sum of the per-sample losses.

    Returns
    -------
    value : float
        The loss.
    grad : numpy.ndarray, shape (n_samples, n_classes)
        Its gradient with respect to `logits` (``softmax - one_hot``, divided by
        ``n_samples`` for the mean), of `logits`' dtype.
    """
    _check_reduction(reduction)
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits must be (n_samples, n_classes) and labels (n_samples,), "
                         f"got {logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    n_samples, n_classes = logits.shape
    if n_samples and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got values in "
                         f"{labels.min()}..{labels.max()}")
    rows = np.arange(n_samples)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp_shifted = np.exp(shifted)
    sum_exp = exp_shifted.sum(axis=1)
    # loss_i = log sum_k exp(s_ik) - s_i,label   (s = logits - row max)
    losses = np.log(sum_exp, dtype=np.float64) - shifted[rows, labels]
    value = float(losses.sum())
    grad = exp_shifted
    grad /= sum_exp[:, None]                  # softmax
    grad[rows, labels] -= 1                   # softmax - one_hot
    if reduction == "mean":
        value /= n_samples
        grad *= logits.dtype.type(1.0 / n_samples)
    return value, grad
