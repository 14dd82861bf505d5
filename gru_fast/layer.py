"""The GRU layer: stacked layers, both directions, batch-first, variable lengths, step.

:class:`GRU` owns the parameters (named like ``torch.nn.GRU.state_dict()``) and composes
the functional core: one ``gru_forward`` / ``gru_backward`` call per (layer, direction),
so time never loops in Python. The math backend is a pair of class attributes,
``_forward_fn`` and ``_backward_fn``; ``gru_fast.GRU`` uses the compiled
``gru_fast.functional`` functions and ``gru_fast.reference.GRU`` the NumPy reference,
with everything else (validation, composition, parameters) shared.

Dtype policy
------------
The layer's ``dtype`` (float32 or float64) decides. Like ``torch.nn.GRU``, a NumPy array
of another dtype passed to :meth:`GRU.forward`, :meth:`GRU.backward` or :meth:`GRU.step`
raises ``TypeError`` (no silent cast); plain Python sequences (lists, tuples, scalars)
carry no dtype and are converted to the layer's dtype. :meth:`GRU.load_state_dict`
follows ``torch.nn.Module.load_state_dict``: any real floating array is accepted and cast
to the layer's dtype; non-floating values raise ``TypeError``.
"""

import warnings
from functools import lru_cache, partial

import numpy as np

from ._validation import (ForwardArgs, as_lengths, check_flag, check_layer_input,
                          check_layer_state, check_memory, layer_array, positive_int,
                          realigned, supported_dtype)
from ._fastpath import plain_lengths, plain_params, plain_sequence_input
from ._workspace import contiguous

__all__ = ["GRU"]  # FrozenGRULayer: gru_fast.frozen


class _LayerCache:
    """What :meth:`GRU.backward` needs from one :meth:`GRU.forward` call.

    Opaque to users. ``token`` identifies the layer that made it, so a cache handed to
    another layer (even one of identical shapes) is refused instead of silently
    producing gradients of someone else's weights.  Read-only: ``run_caches`` is
    a tuple and attributes cannot be set again, so the run of one layer and
    direction cannot be swapped for another's.
    """

    __slots__ = ("token", "seq_len", "batch_size", "batch_first", "dtype", "lengths",
                 "run_caches")

    def __init__(self, token, seq_len, batch_size, batch_first, dtype, lengths,
                 run_caches):
        values = (token, seq_len, batch_size, batch_first, dtype, lengths, tuple(run_caches))
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"a GRU cache is read-only (cannot set {name!r})")

    def __delattr__(self, name):
        raise AttributeError(f"a GRU cache is read-only (cannot delete {name!r})")

    def __reduce__(self):
        return (type(self), tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self):
        return (f"<GRU cache: T={self.seq_len}, B={self.batch_size}, "
                f"dtype={self.dtype.name}, {len(self.run_caches)} core runs>")



@lru_cache(maxsize=256)
def _param_shapes(input_size, hidden_size, num_layers, num_directions, bias):
    """((name, shape), ...) of a GRU's parameters, in torch.nn.GRU's state_dict order.

    Cached: every forward checks the parameters against it (built afresh, the names'
    f-strings cost ~8 us a call, a quarter of a one-step call's overhead).
    """
    H = hidden_size
    shapes = []
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else num_directions * H
        for direction in range(num_directions):
            names = _parameter_names(layer, direction, bias)
            shapes += zip(names, [(3 * H, layer_input), (3 * H, H), (3 * H,), (3 * H,)])
    return tuple(shapes)


def _parameter_names(layer, direction, bias):
    """torch.nn.GRU's names of one layer and direction's weights (and biases)."""
    suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
    names = ["weight_ih" + suffix, "weight_hh" + suffix]
    if bias:
        names += ["bias_ih" + suffix, "bias_hh" + suffix]
    return names

class GRU:
    """Multi-layer gated recurrent unit, optionally bidirectional, on the CPU.

    Every layer computes, for each time step (gate rows stacked reset ``r``, update
    ``z``, candidate ``n`` as in ``torch.nn.GRU``)::

        r_t = sigmoid(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
        z_t = sigmoid(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)
        n_t = tanh(x_t W_in^T + b_in + (r_t * h_{t-1}) W_hn^T + b_hn)   reset_after=False
        n_t = tanh(x_t W_in^T + b_in + r_t * (h_{t-1} W_hn^T + b_hn))   reset_after=True
        h_t = z_t * h_{t-1} + (1 - z_t) * n_t

    Layer ``k > 0`` takes the output of layer ``k - 1`` (both directions concatenated)
    as its input.

    Parameters
    ----------
    input_size : int
        Number of features ``I`` of the input ``x``.
    hidden_size : int
        Number of features ``H`` of the hidden state.
    num_layers : int, default 1
        Number of stacked GRU layers.
    bias : bool, default True
        Whether the layers have the biases ``bias_ih`` and ``bias_hh``. This and the
        other flags must be ``True``/``False`` (or NumPy booleans): a string such as
        ``"False"`` raises ``TypeError`` instead of counting as true.
    batch_first : bool, default False
        If True, ``x`` and ``y`` are (batch, time, features) instead of
        (time, batch, features). Hidden states are always (layers*D, batch, H).
    bidirectional : bool, default False
        If True, every layer also runs over the sequence backwards (``D = 2``); the two
        outputs are concatenated along the feature axis, forward first.
    reset_after : bool, default False
        Candidate-state variant: False is the classic GRU (reset applied before the
        recurrent product), True is the variant of ``torch.nn.GRU``, cuDNN and Keras.
        Load a ``torch.nn.GRU`` state_dict into a layer with ``reset_after=True``.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Floating type of the parameters; every array passed in must have it (lists are
        converted to it). ``None`` raises ``TypeError``.
    seed : None, int or numpy.random.Generator, optional
        Seed of the ``numpy.random.default_rng`` that initialises the parameters
        uniformly in ``[-1/sqrt(hidden_size), 1/sqrt(hidden_size)]`` (PyTorch's rule).

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        The parameters, named exactly like the keys of ``torch.nn.GRU.state_dict()``:
        per layer ``k``, ``weight_ih_l{k}`` (3H, I or D*H), ``weight_hh_l{k}`` (3H, H),
        ``bias_ih_l{k}`` (3H,), ``bias_hh_l{k}`` (3H,), then the same with suffix
        ``_reverse`` when bidirectional. Arrays may be updated in place (e.g. by an
        optimiser); use :meth:`load_state_dict` to replace them.
    num_directions : int
        ``D``: 2 if bidirectional else 1.

    Raises
    ------
    TypeError
        If a size is not an integer, a flag not a boolean, or ``dtype`` not float32 or
        float64.
    ValueError
        If a size is below 1, or the parameters would need more memory than is
        available (checked before any is made).

    Examples
    --------
    >>> import numpy as np
    >>> import gru_fast
    >>> gru = gru_fast.GRU(8, 16, num_layers=2, seed=0)
    >>> x = np.zeros((5, 3, 8), dtype=np.float32)
    >>> y, h_n = gru(x)
    >>> y.shape, h_n.shape
    ((5, 3, 16), (2, 3, 16))
    """

    # The math backend. ``None`` means gru_fast.functional, imported on first use so that
    # this module (and gru_fast.reference, which subclasses GRU) imports without the
    # compiled core. Subclasses bind other functions with ``staticmethod(...)``.
    _forward_fn = None
    _backward_fn = None

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True,
                 batch_first=False, bidirectional=False, reset_after=False,
                 dtype=np.float32, seed=None):
        self._configure(input_size, hidden_size, num_layers, bias, batch_first,
                        bidirectional, reset_after, dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self._hidden_size)
        self.params = {}
        for name, shape in self._param_shapes().items():
            values = rng.uniform(-bound, bound, size=shape)
            self.params[name] = values.astype(self._dtype, copy=False)

    def _configure(self, input_size, hidden_size, num_layers, bias, batch_first,
                   bidirectional, reset_after, dtype):
        """Check and store the configuration (the constructor's arguments but the seed)."""
        self._input_size = positive_int(input_size, "input_size")
        self._hidden_size = positive_int(hidden_size, "hidden_size")
        self._num_layers = positive_int(num_layers, "num_layers")
        self._bias = check_flag(bias, "bias")
        self._batch_first = check_flag(batch_first, "batch_first")
        self._bidirectional = check_flag(bidirectional, "bidirectional")
        self._reset_after = check_flag(reset_after, "reset_after")
        dtype = supported_dtype(dtype)
        check_memory(self._parameter_bytes(dtype), f"the parameters of {self._describe(dtype)}")
        self._dtype = dtype
        # Identity of this layer, stored in every cache it makes.
        self._token = object()

    def _config(self):
        """The constructor's keyword arguments (but the seed) that rebuild this layer."""
        return dict(input_size=self._input_size, hidden_size=self._hidden_size,
                    num_layers=self._num_layers, bias=self._bias,
                    batch_first=self._batch_first, bidirectional=self._bidirectional,
                    reset_after=self._reset_after, dtype=self._dtype)

    # Bytes of Python bookkeeping per parameter array (the ndarray object, its
    # name and its entry in `params`), counted with the values when checking
    # that a layer fits in memory.
    _BYTES_PER_PARAMETER_ARRAY = 256

    def _parameter_bytes(self, dtype):
        """Bytes the parameters will take, worked out before making any of them."""
        H, D, L = self._hidden_size, self.num_directions, self._num_layers
        bias_values = 6 * H if self._bias else 0
        first_layer = 3 * H * self._input_size + 3 * H * H + bias_values
        later_layer = 3 * H * D * H + 3 * H * H + bias_values
        values = D * (first_layer + (L - 1) * later_layer)
        arrays = L * D * (4 if self._bias else 2)
        return values * dtype.itemsize + arrays * self._BYTES_PER_PARAMETER_ARRAY

    def _describe(self, dtype):
        return (f"GRU({self._input_size}, {self._hidden_size}, num_layers={self._num_layers}, "
                f"bidirectional={self._bidirectional}, dtype={dtype.name})")

    # ------------------------------------------------------------------ properties
    input_size = property(lambda self: self._input_size, doc="Input features I.")
    hidden_size = property(lambda self: self._hidden_size, doc="Hidden features H.")
    num_layers = property(lambda self: self._num_layers, doc="Number of layers.")
    bias = property(lambda self: self._bias, doc="Whether the layers have biases.")
    batch_first = property(lambda self: self._batch_first,
                           doc="Whether x and y are (batch, time, features).")
    bidirectional = property(lambda self: self._bidirectional,
                             doc="Whether every layer also runs backwards.")
    reset_after = property(lambda self: self._reset_after,
                           doc="Candidate-state variant (True: torch.nn.GRU's).")
    dtype = property(lambda self: self._dtype, doc="Floating dtype of the parameters.")

    @property
    def num_directions(self):
        """int : 2 if bidirectional else 1."""
        return 2 if self._bidirectional else 1

    def __repr__(self):
        options = [f"{self._input_size}", f"{self._hidden_size}"]
        if self._num_layers != 1:
            options.append(f"num_layers={self._num_layers}")
        if not self._bias:
            options.append("bias=False")
        if self._batch_first:
            options.append("batch_first=True")
        if self._bidirectional:
            options.append("bidirectional=True")
        if self._reset_after:
            options.append("reset_after=True")
        options.append(f"dtype={self._dtype.name}")
        return f"{type(self).__name__}({', '.join(options)})"

    # ------------------------------------------------------------------ parameters
    def _names(self, layer, direction):
        return _parameter_names(layer, direction, self._bias)

    def _shape_items(self):
        """((name, shape), ...) of the parameters, in torch.nn.GRU's state_dict order."""
        return _param_shapes(self._input_size, self._hidden_size, self._num_layers,
                             self.num_directions, self._bias)

    def _param_shapes(self):
        """Names and shapes of the parameters, in torch.nn.GRU's state_dict order."""
        return dict(self._shape_items())

    def _check_params(self):
        """Make sure ``params`` still holds arrays the core can take (cheap)."""
        if not isinstance(self.params, dict):
            raise TypeError(f"params must be a dict, got {type(self.params).__name__}")
        for name, shape in self._shape_items():
            value = self.params.get(name)
            if value is None:
                raise ValueError(f"params is missing {name!r}")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"params[{name!r}] must be a numpy.ndarray, got "
                                f"{type(value).__name__}")
            if value.shape != shape:
                raise ValueError(f"params[{name!r}] has shape {value.shape}, "
                                 f"expected {shape}")
            if value.dtype != self._dtype:
                raise TypeError(f"params[{name!r}] has dtype {value.dtype}, expected "
                                f"{self._dtype} (the layer's dtype)")

    def state_dict(self):
        """Return a copy of the parameters.

        Returns
        -------
        dict of str to numpy.ndarray
            Fresh copies of :attr:`params`, in ``torch.nn.GRU.state_dict()`` order and
            with its key names.
        """
        return {name: np.array(value, copy=True) for name, value in self.params.items()}

    def load_state_dict(self, state_dict):
        """Replace the parameters by copies of those in ``state_dict``.

        The names must be exactly those of :attr:`params` (no missing and no unexpected
        keys) and every array must have the expected shape. Like
        ``torch.nn.Module.load_state_dict``, any real floating array is accepted and cast
        to the layer's dtype; integer, boolean, complex or object arrays are refused.
        Nothing is changed unless every entry is valid.

        The weights alone do not say which GRU variant they were trained in:
        ``torch.nn.GRU`` (like Keras' default, cuDNN and ONNX with
        ``linear_before_reset=1``) computes ``reset_after=True``, while this layer's
        default is the classic ``reset_after=False``. Loaded into a layer of the
        other variant, the same weights give different outputs (a warning is issued
        when the values are torch tensors and the layer has ``reset_after=False``).

        Parameters
        ----------
        state_dict : mapping of str to array_like
            For example the result of :meth:`state_dict`, or
            ``{k: v.numpy() for k, v in torch_gru.state_dict().items()}``.

        Raises
        ------
        ValueError
            If keys are missing or unexpected, or an array has the wrong shape.
        TypeError
            If ``state_dict`` is not a mapping or an entry is not a real floating array.

        Examples
        --------
        Reproduce a ``torch.nn.GRU``'s numbers (``gru_fast.interop.from_torch`` does
        the same in one call)::

            layer = gru_fast.GRU(torch_gru.input_size, torch_gru.hidden_size,
                                 torch_gru.num_layers, bias=torch_gru.bias,
                                 batch_first=torch_gru.batch_first,
                                 bidirectional=torch_gru.bidirectional,
                                 reset_after=True)          # torch's variant
            layer.load_state_dict({name: value.detach().numpy()
                                   for name, value in torch_gru.state_dict().items()})

        For Keras weights (another layout and gate order) use
        ``gru_fast.interop.from_keras``, which reads the variant from the layer.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a mapping of name to array, got "
                            f"{type(state_dict).__name__}")
        shapes = self._param_shapes()
        keys = list(state_dict.keys())
        missing = [name for name in shapes if name not in state_dict]
        unexpected = [key for key in keys if key not in shapes]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"load_state_dict: {' and '.join(parts)} for {self!r}")
        from_torch = any(hasattr(state_dict[name], "detach") for name in shapes)
        if from_torch and not self._reset_after:
            warnings.warn("load_state_dict: these are torch tensors, and torch.nn.GRU "
                          "computes the reset_after=True variant, but this layer has "
                          "reset_after=False (the classic GRU): its outputs will differ "
                          "from torch's. Make the layer with reset_after=True (or use "
                          "gru_fast.interop.from_torch) to reproduce them.",
                          UserWarning, stacklevel=2)
        new_params = {}
        for name, shape in shapes.items():
            value = state_dict[name]
            if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {name!r} has dtype {value.dtype}, "
                                f"expected a real floating array (cast to "
                                f"{self._dtype})")
            if value.shape != shape:
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape}, "
                                 f"expected {shape}")
            new_params[name] = np.array(value, dtype=self._dtype, order="C", copy=True)
        self.params = new_params

    # ------------------------------------------------------------------ validation
    def _backend(self):
        forward_fn, backward_fn = type(self)._forward_fn, type(self)._backward_fn
        if forward_fn is None or backward_fn is None:
            from . import functional
            forward_fn = forward_fn or functional.gru_forward
            backward_fn = backward_fn or functional.gru_backward
        return forward_fn, backward_fn

    # The checks themselves live in gru_fast._validation; these bind the layer's sizes.
    def _as_array(self, value, name):
        return layer_array(value, name, self._dtype)

    def _plain_call(self, x, h0, lengths):
        """(x time-major, h0, lengths) of a forward whose params and arrays are plain,
        checked in C (`gru_fast._fastpath`: these checks in Python took ~40 us right
        after another library ran); None: check them in Python."""
        type_num = self._dtype.num
        if not (plain_params(self.params, self._shape_items(), type_num)
                and plain_sequence_input(x, h0, self._input_size, self._hidden_size,
                                         self._num_layers * self.num_directions,
                                         self._batch_first, type_num)):
            return None
        if self._batch_first:
            x = x.transpose(1, 0, 2)
        checked = plain_lengths(lengths, x.shape[1], x.shape[0])
        return None if checked is False else (x, h0, checked)

    def _check_x(self, x):
        return check_layer_input(x, self._input_size, self._dtype, self._batch_first)

    def _check_state(self, h, name, batch_size, num_states):
        """An initial state (num_states, B, H) or None."""
        return check_layer_state(h, name, (num_states, batch_size, self._hidden_size),
                                 self._dtype)

    @staticmethod
    def _check_lengths(lengths, batch_size, seq_len):
        if hasattr(lengths, "detach") and hasattr(lengths, "cpu"):  # torch lengths
            lengths = lengths.detach().cpu().numpy()
        return as_lengths(lengths, batch_size, seq_len)

    # ------------------------------------------------------------------ computation
    def _run_direction(self, layer, direction, layer_input, h0, lengths, return_cache,
                       return_sequences=True, input_is_ours=False, borrow_params=False):
        """One core call: `layer` in `direction` (1: reverse) over the whole `layer_input`.

        The arguments are those :meth:`forward` (or :meth:`step`) checked once, with
        :meth:`_check_params`; on the compiled core the call skips ``gru_forward``'s
        checks (``functional.forward_validated``), another backend gets the public
        function.  What a cache keeps is copied only where the caller could change it:
        not `layer_input` when `input_is_ours` (made by this forward), not the weights
        when `borrow_params` (`_forward`).
        """
        weights = [self.params[name] for name in self._names(layer, direction)]
        if not self._bias:
            weights += [None, None]
        if self._on_compiled_core():
            from .functional import forward_validated
            core_weights = [None if weight is None else np.ascontiguousarray(weight)
                            for weight in weights]
            if borrow_params and return_cache:
                # read-only views: the seal protects the cache, the params stay writable
                core_weights[:2] = [weight.view() for weight in core_weights[:2]]
            args = ForwardArgs(layer_input, h0, *core_weights, lengths, self._reset_after,
                               direction == 1)
            callers = (None if input_is_ours else layer_input,
                       *((None, None) if borrow_params else weights[:2]))
            return forward_validated(args, return_cache, return_sequences, callers=callers)
        forward_fn, _ = self._backend()
        return forward_fn(layer_input, h0, *weights, reset_after=self._reset_after,
                          lengths=lengths, reverse=(direction == 1),
                          return_cache=return_cache, return_sequences=return_sequences)

    def _run_directions(self, runs, key):
        """The results of `runs`, one call per direction; two on the compiled core run
        concurrently where that measured faster (gru_fast._concurrent): they are
        independent sequences, so concurrently they need no meeting at all."""
        if len(runs) == 2 and self._on_compiled_core():
            from . import _concurrent
            return _concurrent.run_all(runs, key)
        return [run() for run in runs]

    def _on_compiled_core(self):
        return type(self)._forward_fn is None and type(self)._backward_fn is None

    def freeze(self):
        """A copy of this layer for inference, its weights packed once.

        Every layer and direction becomes a `gru_fast.FrozenGRU`: the weights are
        packed for the compiled kernel here, once, instead of on every call.
        The copy's ``params`` are a read-only snapshot; later changes to this
        layer's parameters do not reach it.  It has `forward` (without a
        cache), ``__call__`` and `step`; it cannot run `backward`.

        Returns
        -------
        FrozenGRULayer
            Same configuration and results as this layer (always on the
            compiled core, also when called on ``gru_fast.reference.GRU``).
        """
        self._check_params()
        from .frozen import FrozenGRULayer  # the compiled core, imported only when freezing
        return FrozenGRULayer(**self._config(), params=self.params)

    def forward(self, x, h0=None, lengths=None, return_cache=False, *,
                return_sequences=True):
        """Run every layer and direction over the whole sequence.

        Parameters
        ----------
        x : array_like
            Input sequence, (T, B, I), or (B, T, I) when ``batch_first``. A NumPy array
            must have the layer's dtype.
        h0 : array_like, optional
            Initial states (num_layers*D, B, H), ordered ``[l0_fwd, l0_rev, l1_fwd,
            ...]`` like ``torch.nn.GRU``. Zeros when omitted.
        lengths : array_like of int, optional
            Valid length of every batch row, ``0 <= lengths[b] <= T``, in any order
            (packed-sequence semantics): row ``b`` runs steps ``0..lengths[b]-1`` only
            (the reverse direction runs them backwards from ``lengths[b]-1``), ``y`` is 0
            at the padded steps and ``h_n`` holds the state after the last valid step.
        return_cache : bool, default False
            Also return the cache that :meth:`backward` needs.
        return_sequences : bool, default True
            ``False``: return only the final states (``y`` is ``None``). The last
            layer's outputs are then never allocated: for one layer, memory beyond
            the input stays O(B*H) (stacked layers still keep the outputs of the
            layer below while the next one runs).

        Returns
        -------
        y : numpy.ndarray or None
            Outputs of the last layer, (T, B, D*H) or (B, T, D*H) when ``batch_first``;
            the forward direction in ``[..., :H]``, the reverse one in ``[..., H:]``.
            ``None`` when ``return_sequences`` is false.
        h_n : numpy.ndarray
            Final states (num_layers*D, B, H), ordered like ``h0``.
        cache : object
            Only when ``return_cache``; pass it to :meth:`backward` of this layer.

        Raises
        ------
        ValueError
            If a shape or ``lengths`` is wrong.
        TypeError
            If an array has another dtype than the layer.
        """
        return self._forward(x, h0, lengths, return_cache, return_sequences)

    def _forward(self, x, h0, lengths, return_cache, return_sequences, borrow_params=False):
        """`forward`; with `borrow_params` a cache reads the params themselves (no copy).

        For a caller that runs :meth:`backward` before anything changes the
        params (`gru_fast.network.GRUNetwork.loss_and_grad`): a copy of W_hh
        per call is ~40 us of a ~2 ms training step at H = 128.  The cache's
        views of the params are read-only; the params stay writable.
        """
        D = self.num_directions
        plain = (self._plain_call(x, h0, lengths) if type(return_sequences) is bool
                 else None)
        if plain is not None:
            x, h0, lengths = plain
        else:
            self._check_params()
            return_sequences = check_flag(return_sequences, "return_sequences")
            x = self._check_x(x)
            if self._batch_first:
                x = x.transpose(1, 0, 2)
            h0 = self._check_state(h0, "h0", x.shape[1], self._num_layers * D)
            lengths = self._check_lengths(lengths, x.shape[1], x.shape[0])
        seq_len, batch_size = x.shape[0], x.shape[1]

        if self._on_compiled_core():
            from .functional import input_for_run  # a batch run in blocks copies its rows
            layer_input = input_for_run(x, self._hidden_size, keep_history=return_cache)
        else:
            layer_input = contiguous(x)
        input_is_ours = layer_input is not x  # a copy: the caller holds none of it
        final_states = []
        run_caches = []
        last_layer = self._num_layers - 1
        for layer in range(self._num_layers):
            keep_outputs = return_sequences or layer < last_layer
            runs = [partial(self._run_direction, layer, direction, layer_input,
                            None if h0 is None else h0[layer * D + direction],
                            lengths, return_cache, keep_outputs,
                            input_is_ours=input_is_ours or layer > 0,
                            borrow_params=borrow_params) for direction in range(D)]
            key = ("forward", type(self), layer_input.shape, layer_input.dtype,
                   self._hidden_size, lengths is None, return_cache, keep_outputs)
            outputs = []
            for result in self._run_directions(runs, key):
                outputs.append(result[0])
                final_states.append(result[1])
                if return_cache:
                    run_caches.append(result[2])
            if keep_outputs:
                layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
            else:
                layer_input = None
            del outputs  # the separate directions' outputs go before the next layer runs

        y = layer_input
        if self._batch_first and y is not None:
            y = y.transpose(1, 0, 2)
        # (np.stack costs ~5 us, a sixth of a one-step call on the compiled core)
        h_n = final_states[0][np.newaxis] if len(final_states) == 1 else np.stack(final_states)
        if not return_cache:
            return y, h_n
        cache = _LayerCache(self._token, seq_len, batch_size, self._batch_first,
                            self._dtype, lengths, run_caches)
        return y, h_n, cache

    def __call__(self, x, h0=None, lengths=None, *, return_sequences=True):
        """Run the layer; same as :meth:`forward` without a cache.

        Parameters
        ----------
        x, h0, lengths, return_sequences
            As in :meth:`forward`.

        Returns
        -------
        y : numpy.ndarray or None
            (T, B, D*H), or (B, T, D*H) when ``batch_first``; None when
            ``return_sequences`` is false.
        h_n : numpy.ndarray
            (num_layers*D, B, H).
        """
        return self.forward(x, h0, lengths, return_sequences=return_sequences)

    def backward(self, cache, dy, dh_n=None, *, input_grad=True):
        """Backpropagate through time, all layers and directions.

        Parameters
        ----------
        cache : object
            The cache returned by ``self.forward(..., return_cache=True)``.
        dy : array_like or None
            Gradient of the loss with respect to ``y``, shaped like ``y``. ``None``
            means zeros (a loss on ``h_n`` only). Values at padded steps are ignored.
        dh_n : array_like, optional
            Gradient with respect to ``h_n``, (num_layers*D, B, H); zeros if omitted.
        input_grad : bool, default True
            False skips the gradient with respect to ``x`` (``dx`` is None): training
            needs none for the input of the first layer.

        Returns
        -------
        dx : numpy.ndarray or None
            Gradient with respect to ``x``, shaped like ``x``; 0 at padded steps.
        dh0 : numpy.ndarray
            Gradient with respect to ``h0``, (num_layers*D, B, H) (also when the forward
            used the default zero state).
        grads : dict of str to numpy.ndarray
            Gradients of the parameters, keyed and ordered like :attr:`params`.

        Raises
        ------
        TypeError
            If ``cache`` is not a cache from :meth:`forward`, or a dtype is wrong.
        ValueError
            If ``cache`` comes from another layer, or ``dy`` / ``dh_n`` has the wrong
            shape.
        """
        return self._backward(cache, dy, dh_n, input_grad)

    def _backward(self, cache, dy, dh_n, input_grad, grads_out=None):
        """`backward`; with `grads_out` the parameter gradients go into its arrays.

        `grads_out` maps every name of :attr:`params` to a C-contiguous writable
        array of its shape and the layer's dtype (`GRUNetwork.loss_and_grad` passes
        views of its flat gradient: no copy of dW_hh afterwards).  On the compiled
        core only; another backend's gradients are copied into them.
        """
        if not isinstance(cache, _LayerCache):
            raise TypeError(f"cache must be the object returned by "
                            f"forward(..., return_cache=True), got "
                            f"{type(cache).__name__}")
        if cache.token is not self._token:
            raise ValueError("cache was made by the forward of another GRU layer; pass "
                             "the cache returned by this layer's forward")
        input_grad = check_flag(input_grad, "input_grad")
        _, backward_fn = self._backend()
        D = self.num_directions
        H = self._hidden_size
        seq_len, batch_size = cache.seq_len, cache.batch_size
        num_states = self._num_layers * D
        y_shape = ((batch_size, seq_len, D * H) if self._batch_first
                   else (seq_len, batch_size, D * H))
        if dy is not None:
            dy = self._as_array(dy, "dy")
            if dy.shape != y_shape:
                raise ValueError(f"dy has shape {dy.shape}, expected {y_shape} "
                                 f"(the shape of y from the forward of this cache)")
            if self._batch_first:
                dy = dy.transpose(1, 0, 2)
        if dh_n is not None:
            dh_n = self._as_array(dh_n, "dh_n")
            expected = (num_states, batch_size, H)
            if dh_n.shape != expected:
                raise ValueError(f"dh_n has shape {dh_n.shape}, expected {expected} "
                                 f"(num_layers*num_directions, batch, hidden_size)")
            dh_n = np.ascontiguousarray(dh_n)

        grads_by_layer = [None] * self._num_layers
        dh0 = np.empty((num_states, batch_size, H), dtype=self._dtype)
        d_output = None if dy is None else np.ascontiguousarray(dy)  # None: zeros, never read
        for layer in reversed(range(self._num_layers)):
            d_input = None
            layer_grads = {}
            runs = []
            for direction in range(D):
                index = layer * D + direction
                d_y = d_output if D == 1 or d_output is None else np.ascontiguousarray(
                    d_output[:, :, direction * H:(direction + 1) * H])
                options = {} if layer > 0 or input_grad else {"input_grad": False}
                if grads_out is not None and self._on_compiled_core():
                    options["_out"] = dict(zip(("weight_ih", "weight_hh", "bias_ih",
                                                "bias_hh"),
                                               (grads_out[name] for name in
                                                self._names(layer, direction))))
                runs.append(partial(backward_fn, cache.run_caches[index], d_y,
                                    None if dh_n is None else dh_n[index], **options))
            key = ("backward", type(self),
                   (seq_len, batch_size, D * H) if d_output is None else d_output.shape,
                   self._dtype, cache.lengths is None)
            for direction, result in enumerate(self._run_directions(runs, key)):
                index = layer * D + direction
                d_input = result["x"] if d_input is None else d_input + result["x"]
                dh0[index] = result["h0"]  # gru_backward always returns it (B, H)
                names = self._names(layer, direction)
                layer_grads[names[0]] = result["weight_ih"]
                layer_grads[names[1]] = result["weight_hh"]
                if self._bias:
                    layer_grads[names[2]] = result["bias_ih"]
                    layer_grads[names[3]] = result["bias_hh"]
            grads_by_layer[layer] = layer_grads
            d_output = d_input

        dx = d_output
        if self._batch_first and dx is not None:
            dx = dx.transpose(1, 0, 2)
        grads = {}
        for layer_grads in grads_by_layer:
            grads.update(layer_grads)
        grads = {name: grads[name] for name in self.params if name in grads}
        if grads_out is not None and not self._on_compiled_core():
            for name, value in grads.items():
                grads_out[name][...] = value
            grads = {name: grads_out[name] for name in grads}
        return dx, dh0, grads

    def step(self, x_t, h=None, *, out=None):
        """Advance every layer by one time step (streaming inference).

        Equivalent to :meth:`forward` on a sequence of length 1 (bitwise, on the compiled
        core); feeding a sequence step by step ends in the ``h_n`` of :meth:`forward` (up
        to rounding: a sequence's input projection is one product over all its rows).
        Arrays that are already right (C-contiguous, the layer's dtype and shapes) take a
        lean path: one call into the core for all layers, on weights packed once. The
        packing is reused while the params hold the same values: every step compares them
        with a copy (exact, also after in-place changes, at the cost of reading the weights
        once); a frozen layer (:meth:`freeze`) skips that comparison.

        Parameters
        ----------
        x_t : array_like
            Input at this step, (B, I).
        h : array_like, optional
            States after the previous step, (num_layers, B, H); zeros if omitted.
        out : numpy.ndarray, optional
            Where to write the new states, (num_layers, B, H), C-contiguous, the layer's
            dtype. It may be ``h`` itself (``h = gru.step(x_t, h, out=h)``), so that a
            streaming loop allocates nothing.

        Returns
        -------
        numpy.ndarray
            New states (num_layers, B, H); ``h[-1]`` is the last layer's output. ``out``
            when given.

        Raises
        ------
        ValueError
            If the layer is bidirectional (the reverse direction needs the whole
            sequence), or a shape is wrong.
        TypeError
            If an array has another dtype than the layer.
        """
        steps = self._step_cache
        if steps is not None:
            new_states = steps.step(self.params, x_t, h, out)
            if new_states is not None:
                return new_states
        return self._checked_step(x_t, h, out)

    def _checked_step(self, x_t, h, out):
        """:meth:`step` for what the lean path refused: check everything, then run."""
        if self._bidirectional:
            raise ValueError("step() needs a unidirectional GRU: the reverse direction "
                             "of a bidirectional layer depends on future inputs; use "
                             "forward() on the whole sequence")
        self._check_params()
        x_t = self._as_array(x_t, "x_t")
        if x_t.ndim != 2 or x_t.shape[1] != self._input_size:
            raise ValueError(f"x_t must be (B, I) with I=input_size="
                             f"{self._input_size}, got shape {x_t.shape}")
        if x_t.shape[0] == 0:
            raise ValueError(f"x_t must have at least one batch row, got shape "
                             f"{x_t.shape}")
        x_t = np.ascontiguousarray(x_t)
        batch_size = x_t.shape[0]
        h = self._check_state(h, "h", batch_size, self._num_layers)
        if out is not None:
            from ._stepping import check_out
            check_out(out, (self._num_layers, batch_size, self._hidden_size), self._dtype,
                      x_t, h)
        if type(self)._forward_fn is None:  # the compiled core: the lean path, repacked
            steps = self._step_cache
            if steps is None or not steps.matches(self.params):
                steps = self._step_cache = self._make_step_cache()
            new_states = steps.step(self.params, x_t, h, out)
            if new_states is None:
                raise RuntimeError("gru_fast internal error: the step kernels refused "
                                   "checked arguments")
            return new_states
        layer_input = x_t[None]
        new_states = []
        for layer in range(self._num_layers):
            y, h_new = self._run_direction(layer, 0, layer_input,
                                           None if h is None else h[layer], None, False)
            new_states.append(h_new)
            layer_input = y
        if out is None:
            return np.stack(new_states, axis=0)
        out[...] = new_states
        return out

    # The packed weights `step` reuses (a gru_fast._stepping.CheckedSteps), made on
    # the first step; None until then and after unpickling.
    _step_cache = None

    def _make_step_cache(self):
        from ._stepping import CheckedSteps
        names = [name for layer in range(self._num_layers) for name in self._names(layer, 0)]
        return CheckedSteps(self.params, names, self._num_layers, self._hidden_size,
                            self._reset_after, self._dtype)

    def __getstate__(self):
        """Pickle without the packed weights of `step` (made again on the next step)."""
        state = self.__dict__.copy()
        state.pop("_step_cache", None)
        return state

    def __setstate__(self, state):
        """Unpickle, the parameters on aligned memory (see `_validation.realigned`)."""
        self.__dict__.update(state)
        self.params = {name: realigned(value) for name, value in self.params.items()}


def __getattr__(name):
    """``gru_fast.layer.FrozenGRULayer``: the class lives in `gru_fast.frozen` (it needs the
    compiled core, which this module does not import)."""
    if name == "FrozenGRULayer":
        from .frozen import FrozenGRULayer
        return FrozenGRULayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
