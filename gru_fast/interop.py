"""Move GRU weights between gru_fast and PyTorch, Keras and ONNX.

This module owns every piece of layout knowledge about other libraries; nothing else in
gru_fast knows how they store a GRU. gru_fast itself stores what ``torch.nn.GRU`` stores:
``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih`` and ``bias_hh`` (3H,), gate rows in
the order reset, update, candidate (r, z, n).

=========  ======================================  ========================================
peer       storage                                  gate order
=========  ======================================  ========================================
PyTorch    the same as gru_fast                     r, z, n
Keras      kernel (I, 3H), recurrent_kernel (H,     z, r, h (columns)
           3H), bias (3H,) or (2, 3H)
ONNX       W [D, 3H, I], R [D, 3H, H],              z, r, h (rows)
           B [D, 6H] = [Wb; Rb]
=========  ======================================  ========================================

The candidate-gate variants map as follows: ``reset_after=True`` is PyTorch's only form,
Keras ``reset_after=True`` (its default) and ONNX ``linear_before_reset=1``;
``reset_after=False`` is Keras ``reset_after=False`` and ONNX ``linear_before_reset=0``
(PyTorch cannot express it).

Every conversion only reorders and transposes, so a round trip returns the same weights
bit for bit. The one exception is documented at :func:`to_keras_weights`.

PyTorch, Keras and ONNX are optional: each is imported inside the function that needs it,
and ``import gru_fast`` never imports them.
"""

from __future__ import annotations

import os
import warnings
from collections import namedtuple

import numpy as np

from .layer import GRU

__all__ = [
    "from_torch",
    "to_torch",
    "from_keras",
    "to_keras_weights",
    "to_onnx",
    "from_onnx",
]

_SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Attributes every gru_fast-style GRU layer has (``gru_fast.GRU``,
#: ``gru_fast.layer.GRU``, ``gru_fast.reference.GRU``).
_LAYER_ATTRIBUTES = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "bidirectional",
    "reset_after",
    "dtype",
    "params",
)

# Keys of the ONNX model metadata that to_onnx writes and from_onnx reads back.
_META_PREFIX = "gru_fast."


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


def _swap_r_z(blocks, axis=0):
    """Swap the first two of three equal gate blocks along ``axis``.

    gru_fast orders gates r, z, n; Keras and ONNX order them z, r, h. The permutation
    that maps one order to the other is the same in both directions: swap the first two
    blocks. The result is a new C-contiguous array; values are copied, never computed.
    """
    blocks = np.asarray(blocks)
    size = blocks.shape[axis]
    if size % 3:
        raise ValueError(
            f"gate axis {axis} of an array of shape {blocks.shape} is not a multiple of 3"
        )
    hidden = size // 3
    first, second, third = np.split(blocks, [hidden, 2 * hidden], axis=axis)
    return np.ascontiguousarray(np.concatenate([second, first, third], axis=axis))


def _directions(bidirectional):
    """Parameter-name suffixes of the directions of a layer, forward first."""
    return ("", "_reverse") if bidirectional else ("",)


def _check_dtype(dtype, where):
    """Return ``dtype`` as a NumPy dtype if gru_fast supports it, else raise TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"{where} holds {dtype} weights; gru_fast supports float32 and float64 only "
            "(convert the model to float32 first)"
        )
    return dtype


def _check_layer(layer):
    """Check that ``layer`` is a gru_fast GRU layer; return its dtype."""
    missing = [name for name in _LAYER_ATTRIBUTES if not hasattr(layer, name)]
    if missing:
        raise TypeError(
            f"expected a gru_fast GRU layer, got {type(layer).__name__} "
            f"(missing attributes: {', '.join(missing)})"
        )
    return _check_dtype(layer.dtype, "the layer")


def _layer_state(layer):
    """The layer's parameters as a dict of NumPy arrays owned by the caller."""
    source = layer.state_dict() if hasattr(layer, "state_dict") else layer.params
    return {name: np.array(value, copy=True) for name, value in source.items()}


def _new_layer(state, *, input_size, hidden_size, num_layers, bias, batch_first,
               bidirectional, reset_after, dtype):
    """Build a gru_fast GRU with the given configuration and load ``state`` into it."""
    layer = GRU(
        input_size,
        hidden_size,
        num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        reset_after=reset_after,
        dtype=dtype,
    )
    expected = set(layer.params)
    if set(state) != expected:
        raise ValueError(
            "converted parameter names do not match the layer: missing "
            f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}"
        )
    layer.load_state_dict({name: np.asarray(value, dtype=dtype) for name, value in state.items()})
    return layer


# --------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------

_TORCH_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def from_torch(module):
    """Make a gru_fast GRU from a ``torch.nn.GRU``.

    PyTorch and gru_fast store the same tensors under the same names, so this copies the
    ``state_dict`` and the configuration (``num_layers``, ``bidirectional``,
    ``batch_first``, ``bias``). The result has ``reset_after=True``, the only variant
    PyTorch implements, and computes what ``module`` computes in eval mode.

    Parameters
    ----------
    module : torch.nn.GRU
        The module to copy. Its parameters may live on any device and must be float32
        or float64.

    Returns
    -------
    GRU
        A new layer whose ``params`` equal the module's parameters bit for bit.

    Raises
    ------
    TypeError
        If ``module`` is not a ``torch.nn.GRU`` or its parameters are not float32 or
        float64.
    ValueError
        If the module uses ``proj_size`` (an LSTM-only feature).

    Warns
    -----
    UserWarning
        If ``module.dropout > 0``: dropout between layers only acts in training mode and
        is not carried over, so the layer matches ``module.eval()``.

    Examples
    --------
    >>> layer = interop.from_torch(torch.nn.GRU(8, 16, num_layers=2))  # doctest: +SKIP
    """
    import torch

    if not isinstance(module, torch.nn.GRU):
        raise TypeError(f"from_torch expects a torch.nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"the module has proj_size={module.proj_size}; gru_fast has no projection"
        )
    dtypes = {str(p.dtype) for p in module.parameters()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _TORCH_DTYPES:
        raise TypeError(
            f"the module's parameters are {sorted(dtypes)}; gru_fast supports "
            "torch.float32 and torch.float64 (call module.float() first)"
        )
    dtype = _TORCH_DTYPES[next(iter(dtypes))]
    if module.dropout > 0:
        warnings.warn(
            f"the module has dropout={module.dropout}, which acts only in training mode; "
            "the gru_fast layer has no dropout and matches module.eval()",
            UserWarning,
            stacklevel=2,
        )
    state = {
        name: tensor.detach().cpu().numpy().copy()
        for name, tensor in module.state_dict().items()
    }
    return _new_layer(
        state,
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        bidirectional=module.bidirectional,
        reset_after=True,
        dtype=dtype,
    )


def to_torch(layer):
    """Make a ``torch.nn.GRU`` from a gru_fast GRU.

    Parameters
    ----------
    layer : GRU
        A gru_fast layer with ``reset_after=True``.

    Returns
    -------
    torch.nn.GRU
        A new CPU module with the layer's configuration and dtype, whose
        ``state_dict()`` equals ``layer.params`` bit for bit. It is in training mode,
        as every new module is; with no dropout that changes nothing.

    Raises
    ------
    ValueError
        If ``layer.reset_after`` is False: PyTorch's GRU applies the reset gate after
        the recurrent product (``reset_after=True``) and cannot express the classic
        variant. Use :func:`to_onnx` or :func:`to_keras_weights` for such a layer.
    TypeError
        If ``layer`` is not a gru_fast GRU.

    Examples
    --------
    >>> module = interop.to_torch(layer)  # doctest: +SKIP
    """
    dtype = _check_layer(layer)
    if not layer.reset_after:
        raise ValueError(
            "to_torch needs a layer with reset_after=True: torch.nn.GRU applies the reset "
            "gate after the recurrent product, and cannot express reset_after=False "
            "(use to_onnx or to_keras_weights for that variant)"
        )
    import torch

    module = torch.nn.GRU(
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        bias=bool(layer.bias),
        batch_first=bool(layer.batch_first),
        bidirectional=bool(layer.bidirectional),
        dtype=torch.float32 if dtype == np.float32 else torch.float64,
    )
    state = {name: torch.from_numpy(value) for name, value in _layer_state(layer).items()}
    with torch.no_grad():
        module.load_state_dict(state, strict=True)
    return module


# --------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------


def _keras_gru_config(keras_layer, where):
    """Check a keras.layers.GRU for what gru_fast can express; return (weights, reset_after)."""
    cell = getattr(keras_layer, "cell", keras_layer)
    for attribute in ("units", "reset_after", "activation", "recurrent_activation"):
        if not hasattr(cell, attribute):
            raise TypeError(
                f"{where}: expected a keras.layers.GRU, got {type(keras_layer).__name__}"
            )
    activation = getattr(cell.activation, "__name__", repr(cell.activation))
    recurrent_activation = getattr(
        cell.recurrent_activation, "__name__", repr(cell.recurrent_activation)
    )
    if activation != "tanh" or recurrent_activation != "sigmoid":
        raise ValueError(
            f"{where}: gru_fast computes activation='tanh' and "
            f"recurrent_activation='sigmoid', the layer has activation={activation!r} "
            f"and recurrent_activation={recurrent_activation!r}"
        )
    weights = keras_layer.get_weights()
    if not weights:
        raise ValueError(
            f"{where}: the Keras layer has no weights yet; build it first "
            "(call it on an input or call layer.build(input_shape))"
        )
    return weights, bool(cell.reset_after)


#: One direction of one Keras GRU, converted: gru_fast parameters and configuration.
_KerasDirection = namedtuple(
    "_KerasDirection", "state input_size hidden_size reset_after bias dtype"
)


def _keras_weights_to_state(weights, reset_after, layer_index, suffix, where):
    """Convert one Keras GRU weight list into a :class:`_KerasDirection`."""
    weights = [np.asarray(w) for w in weights]
    if len(weights) not in (2, 3):
        raise ValueError(
            f"{where}: a Keras GRU has 2 weights (kernel, recurrent_kernel) or 3 "
            f"(kernel, recurrent_kernel, bias), got {len(weights)} arrays"
        )
    kernel, recurrent_kernel = weights[0], weights[1]
    if recurrent_kernel.ndim != 2 or recurrent_kernel.shape[1] != 3 * recurrent_kernel.shape[0]:
        raise ValueError(
            f"{where}: recurrent_kernel must have shape (H, 3H), got {recurrent_kernel.shape}"
        )
    hidden_size = recurrent_kernel.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != 3 * hidden_size:
        raise ValueError(
            f"{where}: kernel must have shape (I, {3 * hidden_size}), got {kernel.shape}"
        )
    input_size = kernel.shape[0]
    dtype = _check_dtype(kernel.dtype, where)
    for array in weights[1:]:
        if array.dtype != dtype:
            raise TypeError(f"{where}: weights mix {dtype} and {array.dtype}")

    has_bias = len(weights) == 3
    if has_bias:
        bias = weights[2]
        if bias.shape == (3 * hidden_size,):
            bias_reset_after = False
        elif bias.shape == (2, 3 * hidden_size):
            bias_reset_after = True
        else:
            raise ValueError(
                f"{where}: bias must have shape ({3 * hidden_size},) for reset_after=False "
                f"or (2, {3 * hidden_size}) for reset_after=True, got {bias.shape}"
            )
        if reset_after is None:
            reset_after = bias_reset_after
        elif bool(reset_after) != bias_reset_after:
            raise ValueError(
                f"{where}: reset_after={reset_after} but the bias has shape {bias.shape}, "
                f"which Keras uses for reset_after={bias_reset_after}"
            )
    elif reset_after is None:
        raise ValueError(
            f"{where}: weights without a bias do not tell reset_after; pass "
            "reset_after=True or reset_after=False"
        )

    # Keras: gates = x @ kernel, columns z, r, h. gru_fast: x @ weight_ih.T, rows r, z, n.
    state = {
        f"weight_ih_l{layer_index}{suffix}": _swap_r_z(kernel.T),
        f"weight_hh_l{layer_index}{suffix}": _swap_r_z(recurrent_kernel.T),
    }
    if has_bias:
        if reset_after:
            # Keras bias[0] is the input bias, bias[1] the recurrent bias (inside r * (.)).
            bias_ih, bias_hh = _swap_r_z(bias[0]), _swap_r_z(bias[1])
        else:
            # One bias, added to the input projection: b_hn outside r, the same thing.
            bias_ih, bias_hh = _swap_r_z(bias), np.zeros(3 * hidden_size, dtype)
        state[f"bias_ih_l{layer_index}{suffix}"] = bias_ih
        state[f"bias_hh_l{layer_index}{suffix}"] = bias_hh
    return _KerasDirection(state, input_size, hidden_size, bool(reset_after), has_bias, dtype)


def _is_weight_list(obj):
    """True if ``obj`` is a list of arrays (as opposed to Keras layers or nested lists)."""
    return (
        isinstance(obj, (list, tuple))
        and len(obj) > 0
        and all(
            hasattr(item, "shape") and hasattr(item, "dtype") and not hasattr(item, "get_weights")
            for item in obj
        )
    )


def _keras_weight_list_to_states(weights, reset_after, layer_index):
    """One ``get_weights()`` list (GRU: 2 or 3 arrays; Bidirectional: 4 or 6) converted."""
    where = f"Keras weights of layer {layer_index}"
    if len(weights) in (2, 3):
        halves = [(weights, "")]
    elif len(weights) in (4, 6):
        half = len(weights) // 2
        halves = [(weights[:half], ""), (weights[half:], "_reverse")]
    else:
        raise ValueError(
            f"{where}: expected the get_weights() list of a GRU (2 or 3 arrays) or of a "
            f"Bidirectional GRU (4 or 6 arrays), got {len(weights)} arrays"
        )
    return [
        _keras_weights_to_state(half, reset_after, layer_index, suffix, where)
        for half, suffix in halves
    ]


def _keras_layer_to_states(keras_layer, reset_after, layer_index):
    """One Keras GRU or Bidirectional(GRU) as a list of per-direction conversions."""
    name = getattr(keras_layer, "name", type(keras_layer).__name__)
    where = f"Keras layer {layer_index} ({name})"
    if hasattr(keras_layer, "forward_layer") and hasattr(keras_layer, "backward_layer"):
        merge_mode = getattr(keras_layer, "merge_mode", "concat")
        if merge_mode not in ("concat", None):
            warnings.warn(
                f"{where}: Bidirectional merge_mode={merge_mode!r}; gru_fast's y is the "
                "concatenation [forward, backward] along the last axis, combine its two "
                "halves to get Keras' merged output",
                UserWarning,
                stacklevel=3,
            )
        pairs = [
            (keras_layer.forward_layer, False, ""),
            (keras_layer.backward_layer, True, "_reverse"),
        ]
    else:
        pairs = [(keras_layer, False, "")]
    converted = []
    for sub_layer, go_backwards, suffix in pairs:
        if bool(getattr(sub_layer, "go_backwards", False)) != go_backwards:
            raise ValueError(
                f"{where}: go_backwards={not go_backwards} is not supported; gru_fast runs "
                "a plain GRU forward in time (wrap it in keras.layers.Bidirectional for a "
                "backward direction)"
            )
        weights, layer_reset_after = _keras_gru_config(sub_layer, where)
        if reset_after is not None and bool(reset_after) != layer_reset_after:
            raise ValueError(
                f"{where}: reset_after={reset_after} was passed but the layer has "
                f"reset_after={layer_reset_after}"
            )
        converted.append(
            _keras_weights_to_state(weights, layer_reset_after, layer_index, suffix, where)
        )
    return converted


def from_keras(layer_or_weights, reset_after=None, *, batch_first=True):
    """Make a gru_fast GRU from a Keras GRU layer or its weights.

    Keras stores ``kernel`` (I, 3H) and ``recurrent_kernel`` (H, 3H) with gate columns in
    the order z, r, h, and a ``bias`` of shape (3H,) for ``reset_after=False`` or
    (2, 3H) = [input bias; recurrent bias] for ``reset_after=True``. With
    ``reset_after=False`` Keras has one bias, which becomes ``bias_ih`` (``bias_hh`` is
    zero): the same function, because the classic candidate adds ``b_hn`` outside the
    reset gate.

    Output mapping (Keras is batch-major, so the layer gets ``batch_first=True``): for an
    input ``x`` of shape (B, T, I) and ``y, h_n = layer(x)``,

    * ``return_sequences=True`` output (B, T, H) is ``y``; ``return_sequences=False``
      output (B, H) is ``y[:, -1]`` (equal to ``h_n[-1]`` for a one-direction layer);
    * the ``return_state=True`` state (B, H) is ``h_n[0]`` (for a
      ``Bidirectional(..., return_state=True)``, the forward and backward states are
      ``h_n[0]`` and ``h_n[1]``, and the ``merge_mode="concat"`` output is ``y``);
    * ``initial_state=[h]`` is ``h0=h[None]`` (bidirectional: ``h0=np.stack([hf, hb])``);
    * a Keras mask of right-padded sequences is ``lengths=mask.sum(1)`` for the state;
      Keras repeats the last output at masked steps unless ``zero_output_for_mask``
      where gru_fast writes zeros.

    Parameters
    ----------
    layer_or_weights : keras layer, list of arrays, or sequence of those
        One of

        * a built ``keras.layers.GRU``;
        * a ``keras.layers.Bidirectional`` wrapping one (both directions become one
          bidirectional layer);
        * the list that ``get_weights()`` returns for either (2 or 3 arrays for a GRU,
          4 or 6 for a Bidirectional), e.g. from :func:`to_keras_weights`;
        * a list or tuple of the above, stacked in order: item k becomes layer k of
          ``num_layers`` and all must agree in ``reset_after``, bias, direction and
          dtype.
    reset_after : bool, optional
        The Keras ``reset_after`` flag. Read from the layer when a layer is given, in
        which case a different value is an error. For a weight list it is inferred from
        the bias shape and must be given when there is no bias (``use_bias=False``).
    batch_first : bool, default True
        ``batch_first`` of the returned layer. True matches Keras' (B, T, I) inputs.

    Returns
    -------
    GRU
        A new layer with the Keras weights reordered into gru_fast's layout.

    Raises
    ------
    ValueError
        For an unbuilt layer, an activation other than tanh / sigmoid,
        ``go_backwards=True`` outside ``Bidirectional``, a conflicting or missing
        ``reset_after``, or weights of the wrong shape.
    TypeError
        For an object that is not a Keras GRU or for weights that are not float32 or
        float64.

    Examples
    --------
    >>> layer = interop.from_keras(keras_gru)  # doctest: +SKIP
    >>> layer = interop.from_keras(keras_gru.get_weights(), reset_after=True)  # doctest: +SKIP
    """
    if _is_weight_list(layer_or_weights) or not isinstance(layer_or_weights, (list, tuple)):
        items = [layer_or_weights]
    else:
        items = list(layer_or_weights)
    if not items:
        raise ValueError("from_keras got an empty sequence")
    per_layer = [
        _keras_weight_list_to_states(item, reset_after, index)
        if _is_weight_list(item)
        else _keras_layer_to_states(item, reset_after, index)
        for index, item in enumerate(items)
    ]

    directions = {len(converted) for converted in per_layer}
    flags = {(d.reset_after, d.bias, d.dtype) for converted in per_layer for d in converted}
    if len(directions) != 1 or len(flags) != 1:
        raise ValueError(
            "the Keras layers differ in direction, reset_after, use_bias or dtype "
            f"(directions {sorted(directions)}, (reset_after, use_bias, dtype) "
            f"{sorted(map(str, flags))}); a gru_fast GRU needs them all equal"
        )
    num_directions = directions.pop()
    layer_reset_after, has_bias, dtype = flags.pop()
    input_size, hidden_size = per_layer[0][0].input_size, per_layer[0][0].hidden_size
    state = {}
    for index, converted in enumerate(per_layer):
        expected_input = input_size if index == 0 else num_directions * hidden_size
        for direction in converted:
            if (direction.input_size, direction.hidden_size) != (expected_input, hidden_size):
                raise ValueError(
                    f"Keras layer {index} has input size {direction.input_size} and units "
                    f"{direction.hidden_size}; a stack needs input size {expected_input} "
                    f"and units {hidden_size}"
                )
            state.update(direction.state)
    return _new_layer(
        state,
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=len(per_layer),
        bias=has_bias,
        batch_first=batch_first,
        bidirectional=num_directions == 2,
        reset_after=layer_reset_after,
        dtype=dtype,
    )


def to_keras_weights(layer, layer_index=None):
    """The weight list a Keras GRU takes in ``set_weights`` for a gru_fast layer.

    Build the Keras layer with ``units=layer.hidden_size``,
    ``reset_after=layer.reset_after`` and ``use_bias=layer.bias`` (default activations),
    wrapped in ``keras.layers.Bidirectional`` for a bidirectional layer, then call
    ``keras_layer.set_weights(to_keras_weights(layer))``. For a stack, build one Keras
    layer per gru_fast layer (``return_sequences=True`` on all but possibly the last)
    and pass ``layer_index`` for each.

    Keras' ``reset_after=False`` GRU has a single bias. The layer's ``bias_ih`` and
    ``bias_hh`` are added into it, which computes the same function; that sum is
    rounded, so a gru_fast -> Keras -> gru_fast round trip of a ``reset_after=False``
    layer with a nonzero ``bias_hh`` returns ``bias_ih + bias_hh`` and a zero
    ``bias_hh``. Every other round trip is exact (a zero ``bias_hh`` is not added).

    Parameters
    ----------
    layer : GRU
        A gru_fast layer.
    layer_index : int, optional
        Which layer of a stack to convert; required when ``layer.num_layers > 1``.

    Returns
    -------
    list of numpy.ndarray
        ``[kernel (I, 3H), recurrent_kernel (H, 3H), bias]`` with bias (3H,) or (2, 3H),
        without the bias when ``layer.bias`` is False; for a bidirectional layer the
        forward list followed by the backward list, the order of
        ``Bidirectional.set_weights``.

    Raises
    ------
    ValueError
        If ``layer_index`` is missing for a stacked layer or out of range.
    """
    dtype = _check_layer(layer)
    if layer_index is None:
        if layer.num_layers != 1:
            raise ValueError(
                f"the layer has num_layers={layer.num_layers}; a Keras GRU holds one, so "
                "pass layer_index (0 .. num_layers - 1) and build one Keras layer per index"
            )
        layer_index = 0
    if not 0 <= int(layer_index) < layer.num_layers:
        raise ValueError(
            f"layer_index={layer_index} is out of range for num_layers={layer.num_layers}"
        )
    layer_index = int(layer_index)
    state = _layer_state(layer)
    weights = []
    for suffix in _directions(layer.bidirectional):
        weight_ih = state[f"weight_ih_l{layer_index}{suffix}"]
        weight_hh = state[f"weight_hh_l{layer_index}{suffix}"]
        weights.append(np.ascontiguousarray(_swap_r_z(weight_ih).T))
        weights.append(np.ascontiguousarray(_swap_r_z(weight_hh).T))
        if layer.bias:
            bias_ih = state[f"bias_ih_l{layer_index}{suffix}"]
            bias_hh = state[f"bias_hh_l{layer_index}{suffix}"]
            if layer.reset_after:
                bias = np.stack([_swap_r_z(bias_ih), _swap_r_z(bias_hh)])
            elif np.any(bias_hh):
                bias = _swap_r_z(bias_ih + bias_hh)
            else:
                bias = _swap_r_z(bias_ih)
            weights.append(bias)
    return [np.asarray(w, dtype=dtype) for w in weights]


# --------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------

#: Default opset of exported models: GRU-14 (with ``layout``), Slice/Reshape with
#: tensor inputs; run by every current ONNX Runtime.
ONNX_OPSET = 17
#: IR version paired with opset 17 (onnx 1.12); newer IR versions gain nothing here and
#: older runtimes refuse them.
ONNX_IR_VERSION = 8


def to_onnx(layer, path=None, *, sequence_lens=False, initial_h=False, opset=ONNX_OPSET):
    """Export a gru_fast GRU as an ONNX model made of standard GRU nodes.

    The graph has one ``GRU`` node per layer (``direction="bidirectional"`` for a
    bidirectional layer, ``linear_before_reset`` = ``layer.reset_after``), with the
    weights as initializers ``W_l{k}``, ``R_l{k}``, ``B_l{k}``. Between layers, each
    node's ``Y`` [T, D, B, H] becomes [T, B, D*H] by Transpose + Reshape, exactly as
    PyTorch's exporter does; ``batch_first`` layers get a Transpose on the way in and
    out. ``T`` and ``B`` are dynamic.

    Graph inputs and outputs (shapes as in :meth:`GRU.forward`):

    * ``X``: (T, B, I), or (B, T, I) when ``layer.batch_first``;
    * ``sequence_lens`` (only if requested): int32 (B,), the ``lengths`` of forward;
    * ``initial_h`` (only if requested): (num_layers*D, B, H), forward's ``h0``;
    * ``Y``: (T, B, D*H), or (B, T, D*H) when batch_first; zero at padded steps;
    * ``Y_h``: (num_layers*D, B, H), forward's ``h_n``.

    ONNX Runtime's GRU runs the reverse direction of row b from ``len_b - 1`` down to 0
    and zeroes padded outputs, which is gru_fast's semantics, so exported models with
    ``sequence_lens`` match ``forward(x, lengths=...)``. For a row of length 0 ONNX
    Runtime's GRU returns a zero ``Y_h`` where gru_fast returns ``h0``; when both
    optional inputs are present the graph selects ``initial_h`` for such rows (Equal +
    Where) so that the model still matches. ONNX Runtime 1.32 implements GRU in float
    only: a float64 layer exports to a valid model that it cannot run.

    Parameters
    ----------
    layer : GRU
        The layer to export.
    path : str or os.PathLike, optional
        If given, the model is also saved there.
    sequence_lens : bool, default False
        Add the graph input ``sequence_lens``.
    initial_h : bool, default False
        Add the graph input ``initial_h``; without it the initial state is zero.
    opset : int, default 17
        The ai.onnx opset to declare (at least 14).

    Returns
    -------
    onnx.ModelProto
        The checked model. Its metadata (``gru_fast.*`` keys) records the layer's
        configuration for :func:`from_onnx`.

    Examples
    --------
    >>> model = interop.to_onnx(layer, "gru.onnx", sequence_lens=True)  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("gru.onnx")  # doctest: +SKIP
    >>> y, h_n = session.run(None, {"X": x, "sequence_lens": lengths})  # doctest: +SKIP
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = _check_layer(layer)
    if opset < 14:
        raise ValueError(f"opset={opset}: exported models need opset 14 or newer")
    elem_type = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    state = _layer_state(layer)
    num_layers = int(layer.num_layers)
    hidden_size = int(layer.hidden_size)
    input_size = int(layer.input_size)
    suffixes = _directions(layer.bidirectional)
    num_directions = len(suffixes)
    batch_first = bool(layer.batch_first)

    nodes, initializers = [], []

    def constant_int64(name, values):
        initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    # [T, B, D*H] from a GRU's Y [T, D, B, H]; batch-first output [B, T, D*H] at the end.
    merged_shape = constant_int64("shape_merge_directions", [0, 0, num_directions * hidden_size])

    current = "X"
    if batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2]))
        current = "X_time_major"

    # ONNX Runtime returns a zero Y_h for a row with sequence_lens 0; gru_fast returns
    # h0. With both optional inputs present, select initial_h for such rows.
    keep_initial_state = sequence_lens and initial_h
    if keep_initial_state:
        initializers.append(numpy_helper.from_array(np.zeros((), np.int32), "zero_length"))
        nodes.append(
            helper.make_node("Equal", ["sequence_lens", "zero_length"], ["empty_rows"])
        )
        empty_axes = constant_int64("empty_rows_axes", [0, 2])
        nodes.append(
            helper.make_node("Unsqueeze", ["empty_rows", empty_axes], ["empty_rows_1b1"])
        )

    final_states = []
    for index in range(num_layers):
        weight_ih = [state[f"weight_ih_l{index}{s}"] for s in suffixes]
        weight_hh = [state[f"weight_hh_l{index}{s}"] for s in suffixes]
        # ONNX rows are z, r, h: the same swap as Keras, on the rows.
        initializers.append(
            numpy_helper.from_array(np.stack([_swap_r_z(w) for w in weight_ih]), f"W_l{index}")
        )
        initializers.append(
            numpy_helper.from_array(np.stack([_swap_r_z(w) for w in weight_hh]), f"R_l{index}")
        )
        inputs = [current, f"W_l{index}", f"R_l{index}", "", "", ""]
        if layer.bias:
            bias = np.stack(
                [
                    np.concatenate(
                        [_swap_r_z(state[f"bias_ih_l{index}{s}"]),
                         _swap_r_z(state[f"bias_hh_l{index}{s}"])]
                    )
                    for s in suffixes
                ]
            )
            initializers.append(numpy_helper.from_array(bias, f"B_l{index}"))
            inputs[3] = f"B_l{index}"
        if sequence_lens:
            inputs[4] = "sequence_lens"
        if initial_h:
            if num_layers == 1:
                inputs[5] = "initial_h"
            else:
                starts = constant_int64(f"initial_h_start_l{index}", [index * num_directions])
                ends = constant_int64(f"initial_h_end_l{index}", [(index + 1) * num_directions])
                axes = constant_int64(f"initial_h_axes_l{index}", [0])
                nodes.append(
                    helper.make_node(
                        "Slice", ["initial_h", starts, ends, axes], [f"initial_h_l{index}"]
                    )
                )
                inputs[5] = f"initial_h_l{index}"
        while inputs[-1] == "":
            inputs.pop()
        y_name = f"Y_l{index}"
        y_h_name = "Y_h" if num_layers == 1 else f"Y_h_l{index}"
        final_states.append(y_h_name)
        gru_y_h_name = f"{y_h_name}_gru" if keep_initial_state else y_h_name
        nodes.append(
            helper.make_node(
                "GRU",
                inputs,
                [y_name, gru_y_h_name],
                name=f"gru_l{index}",
                hidden_size=hidden_size,
                direction="bidirectional" if num_directions == 2 else "forward",
                linear_before_reset=int(bool(layer.reset_after)),
            )
        )
        if keep_initial_state:
            nodes.append(
                helper.make_node(
                    "Where", ["empty_rows_1b1", inputs[5], gru_y_h_name], [y_h_name]
                )
            )
        last = index == num_layers - 1
        # Y [T, D, B, H] -> [T, B, D, H] (or [B, T, D, H] for a batch-first output).
        perm = [2, 0, 1, 3] if (last and batch_first) else [0, 2, 1, 3]
        nodes.append(
            helper.make_node("Transpose", [y_name], [f"Y_l{index}_transposed"], perm=perm)
        )
        out_name = "Y" if last else f"X_l{index + 1}"
        nodes.append(
            helper.make_node("Reshape", [f"Y_l{index}_transposed", merged_shape], [out_name])
        )
        current = out_name
    if num_layers > 1:
        nodes.append(helper.make_node("Concat", final_states, ["Y_h"], axis=0))

    time_dim, batch_dim = "seq_len", "batch"
    sequence_dims = [batch_dim, time_dim] if batch_first else [time_dim, batch_dim]
    graph_inputs = [helper.make_tensor_value_info("X", elem_type, sequence_dims + [input_size])]
    if sequence_lens:
        graph_inputs.append(
            helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [batch_dim])
        )
    if initial_h:
        graph_inputs.append(
            helper.make_tensor_value_info(
                "initial_h", elem_type, [num_layers * num_directions, batch_dim, hidden_size]
            )
        )
    graph_outputs = [
        helper.make_tensor_value_info(
            "Y", elem_type, sequence_dims + [num_directions * hidden_size]
        ),
        helper.make_tensor_value_info(
            "Y_h", elem_type, [num_layers * num_directions, batch_dim, hidden_size]
        ),
    ]
    graph = helper.make_graph(
        nodes, "gru_fast_GRU", graph_inputs, graph_outputs, initializer=initializers
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", int(opset))],
        ir_version=ONNX_IR_VERSION,
        producer_name="gru_fast",
        doc_string=(
            f"gru_fast GRU: input_size={input_size}, hidden_size={hidden_size}, "
            f"num_layers={num_layers}, bidirectional={bool(layer.bidirectional)}, "
            f"batch_first={batch_first}, reset_after={bool(layer.reset_after)}"
        ),
    )
    helper.set_model_props(
        model,
        {
            _META_PREFIX + "batch_first": str(int(batch_first)),
            _META_PREFIX + "reset_after": str(int(bool(layer.reset_after))),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# Nodes that may sit between a graph input / GRU output and the next GRU's X without
# changing which numbers the GRU sees (only their layout).
_ONNX_GLUE_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}
_ONNX_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh")


def _onnx_constants(graph, numpy_helper):
    """Arrays of the graph's initializers and Constant nodes, by output name."""
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    return constants


def _onnx_trace_input(name, producers):
    """Walk back from ``name`` through layout-only nodes.

    Returns (origin_node_or_None, origin_name, transposes), where ``transposes`` lists the
    ``perm`` of every Transpose passed, nearest the origin first.
    """
    transposes = []
    while name in producers and producers[name].op_type in _ONNX_GLUE_OPS:
        node = producers[name]
        if node.op_type == "Transpose":
            for attribute in node.attribute:
                if attribute.name == "perm":
                    transposes.insert(0, list(attribute.ints))
        name = node.input[0]
    return producers.get(name), name, transposes


def from_onnx(model_or_path, *, batch_first=None):
    """Make a gru_fast GRU from an ONNX model made of GRU nodes.

    Works for models from :func:`to_onnx` and from other exporters that lay a GRU out
    the same way, e.g. ``torch.onnx.export`` of a ``torch.nn.GRU`` (the TorchScript
    exporter, ``dynamo=False``). The GRU nodes, in graph order, become the layers; each
    must read the previous one's ``Y`` through layout-only nodes (Transpose, Reshape,
    Squeeze, ...), and the weights ``W``, ``R`` and ``B`` must be initializers or
    Constant nodes.

    Parameters
    ----------
    model_or_path : onnx.ModelProto, str or os.PathLike
        The model or the path of a ``.onnx`` file.
    batch_first : bool, optional
        ``batch_first`` of the returned layer. By default it is read from the metadata
        :func:`to_onnx` writes; otherwise True if the graph input reaches the first GRU
        through a ``Transpose(perm=[1, 0, 2])`` (PyTorch's batch_first export) or the
        node has ``layout=1``, else False.

    Returns
    -------
    GRU
        A new layer; ``reset_after`` is the nodes' ``linear_before_reset``.

    Raises
    ------
    ValueError
        If the model has no GRU node, the nodes disagree (direction,
        ``linear_before_reset``, hidden size), a node is ``direction="reverse"`` (a
        gru_fast GRU layer has no reverse-only form; use
        ``gru_fast.gru_forward(..., reverse=True)``), uses non-default activations or
        ``clip``, is not fed by the previous node, or its weights are not constants.
    TypeError
        If the weights are not float32 or float64.

    Examples
    --------
    >>> layer = interop.from_onnx("gru.onnx")  # doctest: +SKIP
    """
    import onnx
    from onnx import helper, numpy_helper

    if isinstance(model_or_path, (str, bytes, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path))
    elif isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        raise TypeError(
            "from_onnx expects an onnx.ModelProto or a path, got "
            f"{type(model_or_path).__name__}"
        )
    graph = model.graph
    gru_nodes = [n for n in graph.node if n.op_type == "GRU" and n.domain in ("", "ai.onnx")]
    if not gru_nodes:
        ops = sorted({n.op_type for n in graph.node})
        raise ValueError(f"the ONNX model has no GRU node (its ops: {ops})")
    constants = _onnx_constants(graph, numpy_helper)
    producers = {output: node for node in graph.node for output in node.output}

    def where(index, node):
        return f"GRU node {index} ({node.name or 'unnamed'})"

    configs = []
    for index, node in enumerate(gru_nodes):
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        direction = attributes.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction == "reverse":
            raise ValueError(
                f"{where(index, node)} has direction='reverse'; a gru_fast GRU layer runs "
                "forward or bidirectional (for one reverse direction use "
                "gru_fast.gru_forward(..., reverse=True) with this node's weights)"
            )
        if direction not in ("forward", "bidirectional"):
            raise ValueError(f"{where(index, node)} has unknown direction={direction!r}")
        num_directions = 2 if direction == "bidirectional" else 1
        activations = attributes.get("activations")
        if activations is not None:
            names = tuple(
                (a.decode() if isinstance(a, bytes) else str(a)).lower() for a in activations
            )
            if names != _ONNX_DEFAULT_ACTIVATIONS * num_directions:
                raise ValueError(
                    f"{where(index, node)} uses activations {list(names)}; gru_fast computes "
                    "Sigmoid and Tanh only"
                )
        if "clip" in attributes:
            raise ValueError(
                f"{where(index, node)} clips the gate inputs (clip={attributes['clip']}); "
                "gru_fast does not clip"
            )
        names = list(node.input) + [""] * (4 - len(node.input))
        arrays = []
        for role, name in zip(("W", "R", "B"), names[1:4]):
            if name == "":
                arrays.append(None)
                continue
            if name not in constants:
                raise ValueError(
                    f"{where(index, node)}: its {role} input {name!r} is not an initializer "
                    "or Constant; from_onnx reads weights from constants only"
                )
            arrays.append(constants[name])
        weight, recurrence, bias = arrays
        if weight is None or recurrence is None:
            raise ValueError(f"{where(index, node)} lacks its W or R input")
        if recurrence.ndim != 3 or recurrence.shape[0] != num_directions:
            raise ValueError(
                f"{where(index, node)}: R must be [{num_directions}, 3H, H], got "
                f"{recurrence.shape}"
            )
        hidden_size = recurrence.shape[2]
        if int(attributes.get("hidden_size", hidden_size)) != hidden_size:
            raise ValueError(
                f"{where(index, node)}: hidden_size={attributes['hidden_size']} but R has "
                f"shape {recurrence.shape}"
            )
        if recurrence.shape[1] != 3 * hidden_size:
            raise ValueError(
                f"{where(index, node)}: R must be [{num_directions}, {3 * hidden_size}, "
                f"{hidden_size}], got {recurrence.shape}"
            )
        if weight.ndim != 3 or weight.shape[:2] != (num_directions, 3 * hidden_size):
            raise ValueError(
                f"{where(index, node)}: W must be [{num_directions}, {3 * hidden_size}, I], "
                f"got {weight.shape}"
            )
        if bias is not None and bias.shape != (num_directions, 6 * hidden_size):
            raise ValueError(
                f"{where(index, node)}: B must be [{num_directions}, {6 * hidden_size}], "
                f"got {bias.shape}"
            )
        dtype = _check_dtype(weight.dtype, where(index, node))
        for array in (recurrence, bias):
            if array is not None and array.dtype != dtype:
                raise TypeError(f"{where(index, node)}: W is {dtype} but R or B is {array.dtype}")

        origin, origin_name, transposes = _onnx_trace_input(node.input[0], producers)
        if index == 0:
            if origin is not None:
                raise ValueError(
                    f"{where(index, node)} reads {origin_name!r}, the output of a "
                    f"{origin.op_type} node; from_onnx expects the first GRU to read a "
                    "graph input (through layout-only nodes)"
                )
        elif origin is not gru_nodes[index - 1] or origin_name != origin.output[0]:
            raise ValueError(
                f"{where(index, node)} does not read the Y output of GRU node {index - 1}; "
                "from_onnx handles plain stacks of GRU nodes only"
            )
        configs.append(
            dict(
                num_directions=num_directions,
                reset_after=bool(attributes.get("linear_before_reset", 0)),
                hidden_size=hidden_size,
                input_size=weight.shape[2],
                layout=int(attributes.get("layout", 0)),
                dtype=dtype,
                weight=weight,
                recurrence=recurrence,
                bias=bias,
                transposes=transposes,
            )
        )

    first = configs[0]
    for index, config in enumerate(configs):
        for key in ("num_directions", "reset_after", "hidden_size", "dtype", "layout"):
            if config[key] != first[key]:
                raise ValueError(
                    f"GRU nodes 0 and {index} differ in {key} ({first[key]} vs "
                    f"{config[key]}); a gru_fast GRU needs them equal"
                )
        expected_input = first["num_directions"] * first["hidden_size"]
        if index > 0 and config["input_size"] != expected_input:
            raise ValueError(
                f"GRU node {index} has input size {config['input_size']}; stacked on "
                f"node {index - 1} it must be {expected_input}"
            )

    if batch_first is None:
        properties = {p.key: p.value for p in model.metadata_props}
        if _META_PREFIX + "batch_first" in properties:
            batch_first = properties[_META_PREFIX + "batch_first"] == "1"
        else:
            batch_first = first["layout"] == 1 or [1, 0, 2] in first["transposes"]

    hidden_size = first["hidden_size"]
    suffixes = _directions(first["num_directions"] == 2)
    has_bias = any(config["bias"] is not None for config in configs)
    state = {}
    for index, config in enumerate(configs):
        for direction, suffix in enumerate(suffixes):
            state[f"weight_ih_l{index}{suffix}"] = _swap_r_z(config["weight"][direction])
            state[f"weight_hh_l{index}{suffix}"] = _swap_r_z(config["recurrence"][direction])
            if has_bias:
                bias = config["bias"]
                if bias is None:  # ONNX: a missing B is zero
                    bias = np.zeros((len(suffixes), 6 * hidden_size), first["dtype"])
                state[f"bias_ih_l{index}{suffix}"] = _swap_r_z(bias[direction, : 3 * hidden_size])
                state[f"bias_hh_l{index}{suffix}"] = _swap_r_z(bias[direction, 3 * hidden_size :])
    return _new_layer(
        state,
        input_size=first["input_size"],
        hidden_size=hidden_size,
        num_layers=len(configs),
        bias=has_bias,
        batch_first=bool(batch_first),
        bidirectional=first["num_directions"] == 2,
        reset_after=first["reset_after"],
        dtype=first["dtype"],
    )
