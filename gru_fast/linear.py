"""A dense layer ``out = x W^T + b`` with its backward: the head on a GRU's state."""

import numpy as np

__all__ = ["Linear"]


class Linear:
    """Fully connected layer, parameters named like ``torch.nn.Linear``.

    Parameters
    ----------
    in_features : int
        Features of the input rows.
    out_features : int
        Features of the output rows.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Floating type of the parameters and of the arrays passed in.
    seed : None, int or numpy.random.Generator, optional
        Seed of the uniform initialisation in ``[-1/sqrt(in_features),
        1/sqrt(in_features)]`` (PyTorch's rule for ``nn.Linear``).

    Attributes
    ----------
    params : dict
        ``"weight"`` (out_features, in_features) and ``"bias"`` (out_features,); may be
        updated in place.
    """

    def __init__(self, in_features, out_features, *, dtype=np.float32, seed=None):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        self.params = {
            "weight": rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype),
            "bias": rng.uniform(-bound, bound, out_features).astype(self.dtype),
        }

    @property
    def in_features(self):
        """Features of the input rows."""
        return self.params["weight"].shape[1]

    @property
    def out_features(self):
        """Features of the output rows."""
        return self.params["weight"].shape[0]

    def _check_rows(self, array, name, width):
        if not isinstance(array, np.ndarray) or array.dtype != self.dtype:
            raise TypeError(f"{name} must be a numpy.ndarray of {self.dtype}, got "
                            f"{type(array).__name__} {getattr(array, 'dtype', '')}")
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name} must be (n, {width}), got shape {array.shape}")

    def forward(self, x):
        """``x W^T + b``.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, in_features)

        Returns
        -------
        numpy.ndarray, shape (n, out_features)
        """
        self._check_rows(x, "x", self.in_features)
        # out (n, O) = x (n, I) @ W.T (I, O) + b
        out = x @ self.params["weight"].T
        out += self.params["bias"]
        return out

    __call__ = forward

    def backward(self, x, d_out):
        """Gradients of a loss given its gradient `d_out` with respect to the output.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, in_features)
            The input of the forward pass.
        d_out : numpy.ndarray, shape (n, out_features)
            Gradient of the loss with respect to ``forward(x)``.

        Returns
        -------
        dx : numpy.ndarray, shape (n, in_features)
            Gradient with respect to `x`.
        grads : dict
            ``"weight"`` and ``"bias"``, shaped like :attr:`params`.
        """
        self._check_rows(x, "x", self.in_features)
        self._check_rows(d_out, "d_out", self.out_features)
        if x.shape[0] != d_out.shape[0]:
            raise ValueError(f"x and d_out must have the same rows, got {x.shape} and "
                             f"{d_out.shape}")
        # dx (n, I) = d_out (n, O) @ W (O, I)
        dx = d_out @ self.params["weight"]
        # dW (O, I) = d_out.T (O, n) @ x (n, I);  db = column sums of d_out
        grads = {"weight": d_out.T @ x, "bias": d_out.sum(axis=0)}
        return dx, grads
