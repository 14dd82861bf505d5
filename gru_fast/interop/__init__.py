"""Move GRU weights between gru_fast and PyTorch, Keras and ONNX.

This package owns every piece of layout knowledge about other libraries; nothing else in
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

One module per peer: ``_torch`` (:func:`from_torch`, :func:`to_torch`), ``_keras``
(:func:`from_keras`, :func:`to_keras_weights`), ``_onnx`` (:func:`to_onnx`,
:func:`from_onnx`); ``_common`` holds the gate reordering and the layer checks they share.
PyTorch, Keras and ONNX are optional: each is imported inside the function that needs it,
and ``import gru_fast`` never imports them.
"""

from ._common import swap_r_z as _swap_r_z  # noqa: F401  (tests check the permutation)
from ._keras import from_keras, to_keras_weights
from ._onnx import ONNX_IR_VERSION, ONNX_OPSET, from_onnx, to_onnx
from ._torch import from_torch, to_torch

__all__ = [
    "from_torch",
    "to_torch",
    "from_keras",
    "to_keras_weights",
    "to_onnx",
    "from_onnx",
]
