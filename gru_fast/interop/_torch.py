"""PyTorch: ``torch.nn.GRU`` stores what gru_fast stores, under the same names.

Only the configuration and the dtype need checking; the tensors are copied as they are.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._common import check_layer, layer_state, new_layer

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
    return new_layer(
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
    dtype = check_layer(layer)
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
    state = {name: torch.from_numpy(value) for name, value in layer_state(layer).items()}
    with torch.no_grad():
        module.load_state_dict(state, strict=True)
    return module
