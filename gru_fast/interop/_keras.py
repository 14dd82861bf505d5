"""Keras: ``kernel`` (I, 3H) and ``recurrent_kernel`` (H, 3H), gate columns z, r, h.

A Keras ``reset_after=True`` GRU has a (2, 3H) bias = [input bias; recurrent bias], a
``reset_after=False`` one a single (3H,) bias added to the input projection.
"""

from __future__ import annotations

import warnings
from collections import namedtuple

import numpy as np

from ._common import check_dtype, check_layer, directions, layer_state, new_layer, swap_r_z

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


def _keras_reset_after(bias, hidden_size, reset_after, where):
    """The ``reset_after`` of a Keras weight list: the bias shape tells, else the caller.

    Keras gives a ``reset_after=False`` GRU a (3H,) bias and a ``reset_after=True`` one a
    (2, 3H) bias; without a bias the caller must say which variant the weights are.
    """
    if bias is None:
        if reset_after is None:
            raise ValueError(
                f"{where}: weights without a bias do not tell reset_after; pass "
                "reset_after=True or reset_after=False"
            )
        return bool(reset_after)
    if bias.shape == (3 * hidden_size,):
        bias_reset_after = False
    elif bias.shape == (2, 3 * hidden_size):
        bias_reset_after = True
    else:
        raise ValueError(
            f"{where}: bias must have shape ({3 * hidden_size},) for reset_after=False "
            f"or (2, {3 * hidden_size}) for reset_after=True, got {bias.shape}"
        )
    if reset_after is not None and bool(reset_after) != bias_reset_after:
        raise ValueError(
            f"{where}: reset_after={reset_after} but the bias has shape {bias.shape}, "
            f"which Keras uses for reset_after={bias_reset_after}"
        )
    return bias_reset_after


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
    dtype = check_dtype(kernel.dtype, where)
    for array in weights[1:]:
        if array.dtype != dtype:
            raise TypeError(f"{where}: weights mix {dtype} and {array.dtype}")

    has_bias = len(weights) == 3
    bias = weights[2] if has_bias else None
    reset_after = _keras_reset_after(bias, hidden_size, reset_after, where)

    # Keras: gates = x @ kernel, columns z, r, h. gru_fast: x @ weight_ih.T, rows r, z, n.
    state = {
        f"weight_ih_l{layer_index}{suffix}": swap_r_z(kernel.T),
        f"weight_hh_l{layer_index}{suffix}": swap_r_z(recurrent_kernel.T),
    }
    if has_bias:
        if reset_after:
            # Keras bias[0] is the input bias, bias[1] the recurrent bias (inside r * (.)).
            bias_ih, bias_hh = swap_r_z(bias[0]), swap_r_z(bias[1])
        else:
            # One bias, added to the input projection: b_hn outside r, the same thing.
            bias_ih, bias_hh = swap_r_z(bias), np.zeros(3 * hidden_size, dtype)
        state[f"bias_ih_l{layer_index}{suffix}"] = bias_ih
        state[f"bias_hh_l{layer_index}{suffix}"] = bias_hh
    return _KerasDirection(state, input_size, hidden_size, reset_after, has_bias, dtype)


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

    direction_counts = {len(converted) for converted in per_layer}
    flags = {(d.reset_after, d.bias, d.dtype) for converted in per_layer for d in converted}
    if len(direction_counts) != 1 or len(flags) != 1:
        raise ValueError(
            "the Keras layers differ in direction, reset_after, use_bias or dtype "
            f"(directions {sorted(direction_counts)}, (reset_after, use_bias, dtype) "
            f"{sorted(map(str, flags))}); a gru_fast GRU needs them all equal"
        )
    num_directions = direction_counts.pop()
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
    return new_layer(
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
    dtype = check_layer(layer)
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
    state = layer_state(layer)
    weights = []
    for suffix in directions(layer.bidirectional):
        weight_ih = state[f"weight_ih_l{layer_index}{suffix}"]
        weight_hh = state[f"weight_hh_l{layer_index}{suffix}"]
        weights.append(np.ascontiguousarray(swap_r_z(weight_ih).T))
        weights.append(np.ascontiguousarray(swap_r_z(weight_hh).T))
        if layer.bias:
            bias_ih = state[f"bias_ih_l{layer_index}{suffix}"]
            bias_hh = state[f"bias_hh_l{layer_index}{suffix}"]
            if layer.reset_after:
                bias = np.stack([swap_r_z(bias_ih), swap_r_z(bias_hh)])
            elif np.any(bias_hh):
                bias = swap_r_z(bias_ih + bias_hh)
            else:
                bias = swap_r_z(bias_ih)
            weights.append(bias)
    return [np.asarray(w, dtype=dtype) for w in weights]
