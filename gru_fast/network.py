"""Sequence to one: a GRU over each sequence, a linear head on its final state.

`GRUNetwork` is the model behind `gru_fast.estimators`.  All its parameters
live in one flat vector, ``flat``; the ``params`` of its `GRU` and of its
`Linear` head are views into it.  So one optimizer step, one L-BFGS vector
or one sum of gradients over data chunks handles the whole model at once.

`GRUNetwork.loss_and_grad` is the one function training needs:
``(flat params, x batch, targets, lengths) -> (loss, flat gradient)``, with
``reduction="sum"`` for data-parallel training (sum the chunks' losses and
gradients, divide by the number of samples).  It is a plain method of a
picklable object, so a task on another process can call it.
"""

import numpy as np

from .functional import fold_biases, run_backward, run_forward
from .layer import GRU
from .linear import Linear
from .losses import cross_entropy_with_logits, mean_squared_error
from ._validation import realigned

__all__ = ["GRUNetwork"]

# Tests set this False to run every batch through the GRU layer's forward and backward
# (see GRUNetwork._loss_and_grad_one_layer).
USE_ONE_LAYER_STEP = True

_LOSSES = {"mse": mean_squared_error, "cross_entropy": cross_entropy_with_logits}
HEAD_PREFIX = "head."
# Rows per core call when predicting or computing a full-batch loss: bounds the memory
# of the outputs and caches, O(rows * T * H), whatever the number of sequences.
ROWS_PER_CALL = 4096


class GRUNetwork:
    """A GRU over each sequence and a linear head on its final state.

    The head reads the last layer's final state ``h_n`` (B, H), or for a
    bidirectional GRU the forward and the reverse final states side by side
    (B, 2H); with ``lengths`` that is the state after each row's last valid
    step, so a sequence gives the same output alone or padded in a batch.

    Parameters
    ----------
    input_size : int
        Features per time step.
    hidden_size : int
        Size of the GRU's state.
    output_size : int
        Outputs of the head (targets for ``loss="mse"``, classes for
        ``loss="cross_entropy"``).
    num_layers : int, default 1
    bidirectional : bool, default False
    reset_after : bool, default False
        As in `gru_fast.GRU`.
    loss : {"mse", "cross_entropy"}, default "mse"
        `gru_fast.losses.mean_squared_error` on float targets (n, output_size) or
        `gru_fast.losses.cross_entropy_with_logits` on integer labels (n,).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
    seed : None, int or numpy.random.Generator, optional
        Seed of the initialisation of the GRU, then of the head (PyTorch's rules).

    Attributes
    ----------
    gru : GRU
        The recurrent layers, ``batch_first=True``; their ``params`` are views of ``flat``.
    head : Linear
        The head; its ``params`` are views of ``flat``.
    flat : numpy.ndarray
        Every parameter in one vector: the GRU's in ``GRU.params`` order, then
        ``head.weight`` and ``head.bias``.
    """

    def __init__(self, input_size, hidden_size, output_size, *, num_layers=1,
                 bidirectional=False, reset_after=False, loss="mse", dtype=np.float32,
                 seed=None):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        rng = np.random.default_rng(seed)
        self.gru = GRU(input_size, hidden_size, num_layers, batch_first=True,
                       bidirectional=bidirectional, reset_after=reset_after, dtype=dtype,
                       seed=rng)
        self.head = Linear(self.gru.num_directions * hidden_size, output_size,
                           dtype=self.gru.dtype, seed=rng)
        self.loss = loss
        self._layout = ([(name, value.shape) for name, value in self.gru.params.items()]
                        + [(HEAD_PREFIX + name, value.shape)
                           for name, value in self.head.params.items()])
        self._slices, start = [], 0   # (name, start, stop, shape) of each parameter in flat
        for name, shape in self._layout:
            stop = start + int(np.prod(shape))
            self._slices.append((name, start, stop, shape))
            start = stop
        self.flat = np.empty(start, dtype=self.gru.dtype)
        self._views = None
        self.adopt()

    # ------------------------------------------------------------------ parameters
    @property
    def dtype(self):
        """The floating type of every parameter and of every array passed in."""
        return self.gru.dtype

    @property
    def output_size(self):
        """Outputs of the head."""
        return self.head.out_features

    def unflatten(self, vector):
        """Views of a flat vector laid out like ``flat``, keyed by parameter name.

        Parameters
        ----------
        vector : numpy.ndarray, shape (flat.size,)

        Returns
        -------
        dict of str to numpy.ndarray
            GRU names (``weight_ih_l0``, ...) then ``head.weight`` and ``head.bias``.
        """
        if vector.shape != self.flat.shape:
            raise ValueError(f"vector has shape {vector.shape}, expected {self.flat.shape}")
        return {name: vector[start:stop].reshape(shape)
                for name, start, stop, shape in self._slices}

    @property
    def params(self):
        """Every parameter by name, views of ``flat`` (see `unflatten`)."""
        self._bind()
        return dict(self._views)

    def adopt(self):
        """Copy the current ``gru.params`` and ``head.params`` into ``flat`` and bind them.

        Call after replacing the GRU's or the head's arrays (``load_state_dict``
        or an assignment), so that training updates what inference reads.
        """
        for name, target in self.unflatten(self.flat).items():
            if name.startswith(HEAD_PREFIX):
                target[...] = self.head.params[name[len(HEAD_PREFIX):]]
            else:
                target[...] = self.gru.params[name]
        self._views = None
        self._bind()

    def _bind(self):
        """Make the GRU's and the head's params the views of ``flat`` (cheap if they are)."""
        views = self._views
        if views is not None and all(
                (self.head.params.get(name[len(HEAD_PREFIX):]) if name.startswith(HEAD_PREFIX)
                 else self.gru.params.get(name)) is view for name, view in views.items()):
            return
        views = self.unflatten(self.flat)
        self.gru.params = {name: view for name, view in views.items()
                           if not name.startswith(HEAD_PREFIX)}
        self.head.params = {name[len(HEAD_PREFIX):]: view for name, view in views.items()
                            if name.startswith(HEAD_PREFIX)}
        self._views = views

    def __getstate__(self):
        # Pickle writes each view as its own array; rebind them to `flat` after loading.
        state = self.__dict__.copy()
        state["_views"] = None
        return state

    def __setstate__(self, state):
        """Unpickle; ``flat`` on aligned memory (see `_validation.realigned`), its views
        bound again on first use."""
        self.__dict__.update(state)
        self.flat = realigned(self.flat)

    # ------------------------------------------------------------------ computation
    def _final_features(self, h_n):
        """The head's input: the last layer's final state(s), (B, D*H)."""
        if self.gru.num_directions == 1:
            return h_n[-1]
        # [h_forward, h_reverse] (B, 2H), the order of y's feature axis
        return np.concatenate([h_n[-2], h_n[-1]], axis=1)

    def forward(self, x, lengths=None):
        """The head's output for every sequence (inference, no cache).

        Parameters
        ----------
        x : numpy.ndarray, shape (B, T, input_size)
            Batch-major sequences of the network's dtype (a transposed view of a
            time-major array is taken without a copy).
        lengths : array_like of int, shape (B,), optional
            Valid steps of every row (packed-sequence semantics).

        Returns
        -------
        numpy.ndarray, shape (B, output_size)
            Predictions (``mse``) or logits (``cross_entropy``).
        """
        _, h_n = self.gru.forward(x, lengths=lengths)
        return self.head.forward(self._final_features(h_n))

    def forward_data(self, data):
        """`forward` over every sequence of `data`, a block of ``ROWS_PER_CALL`` rows at a time.

        Parameters
        ----------
        data : gru_fast._sequences.SequenceData
            Padded sequences (with their lengths).

        Returns
        -------
        numpy.ndarray, shape (data.n_samples, output_size)
        """
        outputs = np.empty((data.n_samples, self.output_size), dtype=self.dtype)
        for start in range(0, data.n_samples, ROWS_PER_CALL):
            rows = np.arange(start, min(start + ROWS_PER_CALL, data.n_samples))
            outputs[rows] = self.forward(*data.batch(rows))
        return outputs

    def loss_and_grad(self, params, x, targets, lengths=None, reduction="mean"):
        """Loss of a batch and its gradient with respect to every parameter.

        Parameters
        ----------
        params : numpy.ndarray, shape (flat.size,)
            The parameters to evaluate at (copied into ``flat`` unless it is ``flat``;
            cast to the network's dtype).
        x : numpy.ndarray, shape (B, T, input_size)
            Batch-major sequences of the network's dtype.
        targets : numpy.ndarray
            (B, output_size) floats for ``mse``; (B,) integer labels for
            ``cross_entropy``.
        lengths : array_like of int, shape (B,), optional
            Valid steps of every row.
        reduction : {"mean", "sum"}, default "mean"
            Mean or sum over the batch of the per-sample losses (and gradients).

        Returns
        -------
        loss : float
        grad : numpy.ndarray, shape (flat.size,)
            A new array laid out like ``flat``, of the network's dtype.
        """
        self._bind()
        if params is not self.flat:
            params = np.asarray(params)
            if params.shape != self.flat.shape:
                raise ValueError(f"params has shape {params.shape}, expected "
                                 f"{self.flat.shape} (GRUNetwork.flat)")
            self.flat[...] = params
        gru = self.gru
        if (USE_ONE_LAYER_STEP and gru.num_layers == 1 and gru.num_directions == 1
                and gru._on_compiled_core()):
            return self._loss_and_grad_one_layer(x, targets, lengths, reduction)
        # Only h_n feeds the head: no outputs y; backward runs before the params change,
        # so the cache reads them in place (GRU._forward).
        _, h_n, cache = self.gru._forward(x, None, lengths, return_cache=True,
                                          return_sequences=False, borrow_params=True)
        features = self._final_features(h_n)
        output = self.head.forward(features)
        loss, d_output = _LOSSES[self.loss](output, targets, reduction)
        d_features, head_grads = self.head.backward(features, d_output)
        # dh_n is zero but for the last layer's final states, which fed the head
        D, H = self.gru.num_directions, self.gru.hidden_size
        dh_n = np.zeros_like(h_n)
        dh_n[-D:] = d_features.reshape(-1, D, H).transpose(1, 0, 2)
        grad = np.empty_like(self.flat)
        grad_parts = self.unflatten(grad)
        # the GRU's gradients straight into their places in grad, the head's copied in
        self.gru._backward(cache, None, dh_n, False,
                           grads_out={name: part for name, part in grad_parts.items()
                                      if not name.startswith(HEAD_PREFIX)})
        for name, value in head_grads.items():
            grad_parts[HEAD_PREFIX + name][...] = value
        return loss, grad

    def _loss_and_grad_one_layer(self, x, targets, lengths, reduction):
        """`loss_and_grad` of a one-layer, one-direction GRU on the compiled core.

        The same core calls with the same arguments as the layer's forward and
        backward (so the same bits), without what those add for callers that
        keep a cache or stack layers: at H = 128, T = 20, batch 32, the layer's
        path spent ~200 us of Python around 2 ms of core work per batch.  x,
        lengths and the params get the layer's own checks.
        """
        gru = self.gru
        gru._check_params()
        x = gru._check_x(x).transpose(1, 0, 2)  # batch-first -> (T, B, I)
        seq_len, batch_size = x.shape[0], x.shape[1]
        lengths = gru._check_lengths(lengths, batch_size, seq_len)
        names = gru._names(0, 0)
        weight_ih, weight_hh = (np.ascontiguousarray(gru.params[name]) for name in names[:2])
        has_bias = len(names) == 4
        bias_ih, bias_hh = ((gru.params[name] for name in names[2:]) if has_bias
                            else (None, None))
        hidden_size, reset_after, dtype = gru.hidden_size, gru.reset_after, gru.dtype
        # forward, keeping what backward reads (the gates and entering states), no y
        bias_gates, bias_hn = fold_biases(bias_ih, bias_hh, hidden_size, reset_after, dtype)
        _, h_last, run = run_forward(np.ascontiguousarray(x), None, lengths, bias_gates,
                                     bias_hn, hidden_size, reset_after, False, True,
                                     weights=(weight_ih, weight_hh), return_sequences=False)
        packing, x_packed, gates, h_prev = run
        output = self.head.forward(h_last)
        loss, d_output = _LOSSES[self.loss](output, targets, reduction)
        d_last, head_grads = self.head.backward(h_last, d_output)
        grad = np.empty_like(self.flat)
        grad_parts = self.unflatten(grad)
        # backward from dh_n = d_last (no dy), the GRU's gradients into their places
        run_backward(x_packed, packing, weight_ih, weight_hh, gates, h_prev,
                     np.empty((0, hidden_size), dtype=dtype), packing.sort_rows(d_last),
                     reset_after, False, has_bias, False,
                     out=dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                                  (grad_parts[name] for name in names))))
        for name, value in head_grads.items():
            grad_parts[HEAD_PREFIX + name][...] = value
        return loss, grad
