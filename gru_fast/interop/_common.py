"""What the peer converters share: the gate permutation and the gru_fast layer side.

Every peer converter reads a gru_fast layer through :func:`check_layer` and
:func:`layer_state`, and builds one through :func:`new_layer`; the Keras and ONNX ones
reorder gates with :func:`swap_r_z`.
"""

from __future__ import annotations

import numpy as np

from .._validation import SUPPORTED_DTYPES
from ..layer import GRU

#: Attributes every gru_fast-style GRU layer has (``gru_fast.GRU``,
#: ``gru_fast.layer.GRU``, ``gru_fast.reference.GRU``).
LAYER_ATTRIBUTES = (
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


def swap_r_z(blocks, axis=0):
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


def directions(bidirectional):
    """Parameter-name suffixes of the directions of a layer, forward first."""
    return ("", "_reverse") if bidirectional else ("",)


def check_dtype(dtype, where):
    """Return ``dtype`` as a NumPy dtype if gru_fast supports it, else raise TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{where} holds {dtype} weights; gru_fast supports float32 and float64 only "
            "(convert the model to float32 first)"
        )
    return dtype


def check_layer(layer):
    """Check that ``layer`` is a gru_fast GRU layer; return its dtype."""
    missing = [name for name in LAYER_ATTRIBUTES if not hasattr(layer, name)]
    if missing:
        raise TypeError(
            f"expected a gru_fast GRU layer, got {type(layer).__name__} "
            f"(missing attributes: {', '.join(missing)})"
        )
    return check_dtype(layer.dtype, "the layer")


def layer_state(layer):
    """The layer's parameters as a dict of NumPy arrays owned by the caller."""
    source = layer.state_dict() if hasattr(layer, "state_dict") else layer.params
    return {name: np.array(value, copy=True) for name, value in source.items()}


def new_layer(state, *, input_size, hidden_size, num_layers, bias, batch_first,
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
